"""The router: the app's HTTP ingress. It validates the body, picks a variant (by weight, or by a stable
hash of the sticky key), calls that variant's model deployment, copies the request to the shadows in the
background, logs the request and counts metrics.

It is a lean ASGI-free ingress (``__call__`` on Serve's Starlette request): a FastAPI ingress costs ~3 ms per
request on a 2-core machine. FastAPI still generates the exact OpenAPI document from the pydantic models
(`raymlops.serving.openapi.openapi_document`), served at ``{prefix}/openapi.json``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import threading
import time
import uuid

from pydantic import ValidationError
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from raymlops.contracts.serving import RouterSpec
from raymlops.contracts.traffic import TrafficStatus, TrafficView, VariantSamples
from raymlops.serving.api import (
    DriftResponse,
    InvocationsRequest,
    MonitoringResponse,
    PredictRequest,
    SchemaResponse,
    VariantsResponse,
    invocation_rows,
    json_response,
    unprocessable,
)
from raymlops.serving.compare import same_prediction
from raymlops.serving.grpc_ingress import GrpcIngress
from raymlops.serving.openapi import openapi_document
from raymlops.serving.split import Splitter

SYNC_S = 0.25  # how often a router replica reports counts to the traffic controller and reads weights
MAX_SHADOW_INFLIGHT = 256
ROUTES = {
    "predict": "POST",
    "invocations": "POST",
    "health": "GET",
    "schema": "GET",
    "drift": "GET",
    "monitoring": "GET",
    "variants": "GET",
    "openapi.json": "GET",
}  # route -> its method
SHADOW_BATCH = 64  # shadow copies sent in one call
SHADOW_LINGER_S = 0.02  # longest a copy waits for others before its call goes out
READ_TIMEOUT_S = 10  # /health, /schema, /drift, /variants

log = logging.getLogger("ray.serve")


def _as_sent(answer: dict, field: str) -> dict:
    """A replica's 422 for rows sent under another field: locations name that field (and, for
    ``dataframe_split``, the row under ``data``)."""
    detail = answer.get("detail")
    if not isinstance(detail, list):
        return answer
    out = []
    for e in detail:
        loc = list(e.get("loc", []))
        if loc[:2] == ["body", "instances"]:
            loc = ["body", field, *(["data"] if field == "dataframe_split" else []), *loc[2:]]
        out.append({**e, "loc": loc})
    return {**answer, "detail": out}


def _unprocessable(errors: list) -> Response:
    return json_response(unprocessable(errors), 422)


class Inline:
    """A model object living in this replica, called with a deployment handle's shape:
    ``await inline.method.remote(*args)``."""

    class _Method:
        def __init__(self, fn):
            self.fn = fn

        def remote(self, *args, **kwargs):
            out = self.fn(*args, **kwargs)
            return out if inspect.isawaitable(out) else asyncio.sleep(0, result=out)

    def __init__(self, obj):
        self.obj = obj

    def __getattr__(self, name: str) -> _Method:
        return Inline._Method(getattr(self.obj, name))


async def _result(response):
    return await response


def _record(request_id: str, variant: str, role: str, status: int, latency_ms: float, rows: list, body: dict) -> dict:
    """One request-log record (see `request_log.RequestLog`)."""
    return {
        "ts": time.time(),
        "request_id": request_id,
        "variant": variant,
        "role": role,
        "model_version": body.get("model_version"),
        "status": status,
        "latency_ms": latency_ms,
        "rows": rows,
        "predictions": body.get("predictions"),
        "probabilities": body.get("probabilities"),
        "features": body.get("features"),
        "error": _detail(body) if status >= 400 else None,
    }


def _detail(body: dict) -> str | None:
    d = body.get("detail")
    return d if d is None or isinstance(d, str) else json.dumps(d)[:2000]


@serve.deployment
class Router(GrpcIngress):
    """``spec``: a `RouterSpec` (or its JSON shape); ``models``: {name: deployment handle}."""

    def __init__(self, spec: RouterSpec, models: dict):
        import ray

        from raymlops.serving.controller import get_or_start

        self.spec = spec = RouterSpec.model_validate(spec)
        self.handles = dict(models)
        for name, model in (spec.inline or {}).items():  # scored in this replica: no extra hop
            from raymlops.serving.model import ModelServer

            self.handles[name] = Inline(ModelServer.func_or_class(model))
        self.variants = [v.name for v in spec.variants]
        self.primary = self.variants[0]
        self.shadows = [s.name for s in spec.shadow]
        self.sticky = spec.sticky_key
        self.openapi = openapi_document(spec.route_prefix, variants=self.variants + self.shadows)
        self._typed_openapi: tuple | None = None  # (model version, document typed by its rows)
        self.timeout_s = spec.request_timeout_s
        self.controller = get_or_start(spec.app, spec.namespace, spec.state_dir)
        from raymlops.serving.controller import canary_plan, plan_fingerprint

        self._plan = (
            {v.name: v.weight for v in spec.variants},
            canary_plan(spec.canary),
            {v.name: v.model_version for v in spec.variants},
        )
        self.plan = plan_fingerprint(*self._plan)
        self.view = TrafficView(version=0, weights=self._plan[0], plan=self.plan)
        self.splitter = Splitter(self._plan[0])
        self._apply(ray.get(self.controller.configure.remote(*self._configure_args()), timeout=60))
        self._stats: dict[str, VariantSamples] = {}
        self._observed: list[tuple] = []  # (variant, role, latency ms, error) since the last sync
        self._stats_lock = threading.Lock()
        self._shadow_inflight = {s: 0 for s in self.shadows}
        self._shadow_limit = {s.name: s.max_in_flight for s in spec.shadow}
        self.shadow_dropped = {s: 0 for s in self.shadows}
        self._shadow_queue: dict[str, list] = {}
        self._shadow_timer: dict = {}
        self._tasks: set = set()
        from raymlops.serving.metrics import router_metrics

        self.metrics = router_metrics()
        self.log = None
        rl = spec.request_log
        if rl:
            from raymlops.serving.request_log import RequestLog

            self.sample_rate = rl.sample_rate
            self.log = RequestLog(
                rl.path,
                rl.flush_s,
                rl.max_buffer_rows,
                on_drop=lambda n: self.metrics["log_dropped"].inc(n),
                on_write=lambda n: self.metrics["log_written"].inc(n),
            )
        threading.Thread(target=self._sync_loop, daemon=True, name="traffic-sync").start()

    # ----------------------------------------------------------------- traffic

    def _configure_args(self) -> tuple:
        """The plan as the traffic controller's ``configure`` takes it (the canary as its typed section)."""
        return self._plan[0], self.spec.canary, self._plan[2]

    def _apply(self, view: TrafficView) -> None:
        """Takes the controller's weights if they belong to this replica's plan (during a redeploy, old and
        new replicas each keep their own) and name only variants this replica can call."""
        weights = view.weights
        if view.plan != self.plan or not weights or not set(weights) <= set(self.handles):
            return
        self.view = view
        self.splitter = Splitter(weights)

    def _sync_loop(self) -> None:
        """Every SYNC_S: hands the counts since the last sync to the controller and takes its weights back.
        While the controller is unreachable the counts are dropped and the last weights stay."""
        import ray

        while True:
            time.sleep(SYNC_S)
            with self._stats_lock:
                stats, self._stats = self._stats, {}
                observed, self._observed = self._observed, []
            self._flush_metrics(observed)
            try:
                view = ray.get(self.controller.sync.remote(stats), timeout=10)
                if view.weights is None:  # a controller that lost its state: give it the plan again
                    view = ray.get(self.controller.configure.remote(*self._configure_args()), timeout=10)
                if view.version != self.view.version or view.plan != self.view.plan:
                    self._apply(view)
                for name, w in (self.view.weights or {}).items():
                    self.metrics["weight"].set(w, tags={"variant": name})
            except Exception as e:
                log.warning(
                    "router: traffic controller unavailable (%s); keeping weights %s",
                    type(e).__name__,
                    self.view.weights,
                )

    def _count(self, variant: str, error: bool, latency_ms: float, model: str | None = None) -> None:
        """One request for the traffic controller: (latency, error, the model version that answered if known),
        and for the metrics (both handed over by the sync thread, off the response path)."""
        with self._stats_lock:
            counts = self._stats.get(variant)
            if counts is None:  # not setdefault: that would build a model on every request
                counts = self._stats[variant] = VariantSamples()
            counts.samples.append((latency_ms, int(error), model))
            self._observed.append((variant, "primary", latency_ms, error))

    def _pick(self, rows: list[dict]) -> str:
        if self.sticky is not None and rows and self.sticky in rows[0] and rows[0][self.sticky] is not None:
            return self.splitter.pick(rows[0][self.sticky])
        return self.splitter.pick()

    # ------------------------------------------------------------------ routes

    async def __call__(self, request: Request) -> Response:
        path, root = request.url.path, request.scope.get("root_path", "")
        route = (path[len(root) :] if root and path.startswith(root) else path).strip("/")
        method = request.method
        if method == "POST" and route == "predict":
            return await self.predict(request)
        if method == "POST" and route == "invocations":
            return await self.predict(request, mlflow=True)
        if method == "GET":
            if route == "health":
                return await self.health()
            if route == "schema":
                return await self._forward("schema", request)
            if route == "drift":
                return await self._forward("drift_status", request)
            if route == "monitoring":
                return await self._forward("monitor_status", request)
            if route == "variants":
                return JSONResponse(await self.variants_status())
            if route == "openapi.json":
                return JSONResponse(await self._openapi())
        if route in ROUTES:  # RFC 9110: a 405 lists the methods the route takes
            return JSONResponse(
                status_code=405, content={"detail": "Method Not Allowed"}, headers={"Allow": ROUTES[route]}
            )
        return JSONResponse(status_code=404, content={"detail": "Not Found"})

    async def predict(self, request: Request, mlflow: bool = False) -> Response:
        """``/predict``, or with ``mlflow`` ``/invocations`` (MLflow's scoring protocol: the same rows,
        validation and answer; 422 locations name the field as sent)."""
        status, content = await self.answer(await request.body(), request.headers.get("x-request-id"), mlflow)
        return json_response(content, status)

    async def answer(self, raw: bytes | str, request_id: str | None = None, mlflow: bool = False) -> tuple[int, dict]:
        """(status, JSON body) of one prediction request from its raw body: the path the HTTP and the gRPC
        ingress share (validation, variant choice, the call, counts, the request log and shadows)."""
        t0 = time.perf_counter()
        request_id = request_id or uuid.uuid4().hex
        try:
            body = (InvocationsRequest if mlflow else PredictRequest).model_validate_json(raw)
        except ValidationError as e:
            return 422, unprocessable(
                [
                    {"loc": ["body", *err["loc"]], "type": err["type"], "msg": err["msg"]}
                    for err in e.errors(include_url=False, include_context=False)
                ]
            )
        sent = None
        if mlflow:
            sent, rows, errors = invocation_rows(body)
            if errors:
                return 422, unprocessable(errors)
            kind = "instances"
        elif (body.instances is None) == (body.entities is None):
            loc, kind = (
                (["body", "instances"], "missing") if body.instances is None else (["body", "entities"], "value_error")
            )
            return 422, unprocessable(
                [
                    {
                        "loc": loc,
                        "type": kind,
                        "msg": "send exactly one of 'instances' (feature values) or 'entities' (entity keys)",
                    }
                ]
            )
        else:
            kind = "instances" if body.instances is not None else "entities"
            rows = body.instances if body.instances is not None else body.entities
        if len(rows) > self.spec.max_batch_rows:
            return 422, unprocessable(
                [
                    {
                        "loc": ["body", sent or kind],
                        "type": "too_long",
                        "msg": f"at most {self.spec.max_batch_rows} rows per request, got {len(rows)}",
                    }
                ]
            )
        variant = self._pick(rows)
        out = None
        try:
            async with asyncio.timeout(self.timeout_s):  # no task per request, unlike wait_for
                out = await self.handles[variant].predict.remote(kind, rows)
        except TimeoutError:
            out = {"status": 504, "body": {"detail": f"variant {variant!r} did not answer within {self.timeout_s:g} s"}}
        except asyncio.CancelledError:  # the client went away: still count it, a hung variant must show up
            self._count(variant, True, (time.perf_counter() - t0) * 1000)
            raise
        except Exception as e:  # the replica raised or died: a server error, counted against the variant
            out = {"status": 500, "body": {"detail": f"variant {variant!r} failed: {type(e).__name__}: {e}"[:500]}}
        status, answer = out["status"], out["body"]
        latency_ms = (time.perf_counter() - t0) * 1000
        error = status >= 500
        self._count(variant, error, latency_ms, out.get("model"))
        try:
            if status < 500 and status >= 400:
                return status, (_as_sent(answer, sent) if sent else answer)
            logged = self.log is not None and (self.sample_rate >= 1 or random.random() < self.sample_rate)
            if logged:
                self.log.add(_record(request_id, variant, "primary", status, latency_ms, rows, answer))
            for shadow in self.shadows:
                self._shadow(shadow, kind, rows, request_id, None if error else answer.get("predictions"), logged)
        except Exception:  # metrics, the log and shadows are never allowed to fail a request
            log.exception("router: bookkeeping failed for request %s", request_id)
        if error:
            return status, {**answer, "variant": variant}
        return 200, {**answer, "variant": variant, "request_id": request_id}

    def _flush_metrics(self, observed: list[tuple]) -> None:
        """Requests, errors and latencies since the last sync, one counter call per (variant, role); runs in
        the sync thread, so no Ray metric call is made on the response path (py-spy showed them there)."""
        if not observed:
            return
        groups: dict[tuple, list] = {}
        for variant, role, latency_ms, error in observed:
            groups.setdefault((variant, role), []).append((latency_ms, error))
        try:
            for (variant, role), got in groups.items():
                tags = {"variant": variant, "role": role}
                self.metrics["requests"].inc(len(got), tags=tags)
                errors = sum(e for _, e in got)
                if errors:
                    self.metrics["errors"].inc(errors, tags=tags)
                for latency_ms, _ in got:
                    self.metrics["latency"].observe(latency_ms, tags=tags)
        except Exception:  # metrics are best effort
            log.exception("router: metrics not recorded")

    # ------------------------------------------------------------------ shadows

    def _shadow(self, name: str, kind: str, rows: list, request_id: str, answer: list | None, logged: bool) -> None:
        """Queues a copy for the shadow; copies go out in calls of up to SHADOW_BATCH requests."""
        if self._shadow_inflight[name] >= self._shadow_limit[name]:
            self.shadow_dropped[name] += 1
            self.metrics["shadow_dropped"].inc(tags={"variant": name})
            return
        self._shadow_inflight[name] += 1
        queue = self._shadow_queue.setdefault(name, [])
        queue.append((kind, rows, request_id, answer, logged, time.perf_counter()))
        if len(queue) >= SHADOW_BATCH:
            self._send_shadow(name)
        elif name not in self._shadow_timer:
            self._shadow_timer[name] = asyncio.get_running_loop().call_later(SHADOW_LINGER_S, self._send_shadow, name)

    def _send_shadow(self, name: str) -> None:
        timer = self._shadow_timer.pop(name, None)
        if timer is not None:
            timer.cancel()
        items, self._shadow_queue[name] = self._shadow_queue.get(name, []), []
        if items:
            task = asyncio.get_running_loop().create_task(self._run_shadow(name, items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_shadow(self, name: str, items: list[tuple]) -> None:
        try:
            try:
                outs = await asyncio.wait_for(
                    _result(self.handles[name].predict_many.remote([(kind, rows) for kind, rows, *_ in items])),
                    self.timeout_s,
                )
            except Exception as e:  # a failing shadow is logged and counted, never seen by the client
                outs = [{"status": 500, "body": {"detail": f"{type(e).__name__}: {e}"[:500]}}] * len(items)
            done = time.perf_counter()
            for (_kind, rows, request_id, answer, logged, queued), out in zip(items, outs):
                latency_ms = (done - queued) * 1000
                status, body = out["status"], out["body"]
                with self._stats_lock:
                    self._observed.append((name, "shadow", latency_ms, status >= 500))
                preds = body.get("predictions")
                if preds is not None and answer is not None:
                    differ = sum(not same_prediction(a, b) for a, b in zip(preds, answer))
                    if differ:
                        self.metrics["shadow_disagreements"].inc(differ, tags={"variant": name})
                if logged:
                    self.log.add(_record(request_id, name, "shadow", status, latency_ms, rows, body))
        except Exception:  # never let a shadow task fail loudly
            log.exception("shadow %s failed", name)
        finally:
            self._shadow_inflight[name] -= len(items)

    # ------------------------------------------------------------------ reads

    def _variant_arg(self, request: Request) -> tuple[str | None, Response | None]:
        name = request.query_params.get("variant") or self.primary
        if name not in self.handles:
            return None, _unprocessable(
                [
                    {
                        "loc": ["query", "variant"],
                        "type": "value_error",
                        "msg": f"unknown variant {name!r}; have {sorted(self.handles)}",
                    }
                ]
            )
        return name, None

    async def _forward(self, method: str, request: Request) -> Response:
        """GET /schema and /drift of a variant, shaped by their response models (as documented)."""
        name, err = self._variant_arg(request)
        if err is not None:
            return err
        try:
            got = await asyncio.wait_for(_result(getattr(self.handles[name], method).remote()), READ_TIMEOUT_S)
        except Exception as e:
            return JSONResponse(status_code=503, content={"detail": f"{name} unavailable: {type(e).__name__}"})
        if method == "monitor_status":
            return JSONResponse(
                MonitoringResponse(
                    variant=name, enabled=got is not None, monitor=got, app=await self._app_monitor()
                ).model_dump(mode="json")
            )
        if method == "drift_status":
            body = {"enabled": False} if got is None else {"enabled": True, **got}
            return JSONResponse(
                DriftResponse.model_validate({**body, "variant": name}).model_dump(mode="json", exclude_none=True)
            )
        return JSONResponse(SchemaResponse.model_validate({**got, "variant": name}).model_dump(mode="json"))

    async def _openapi(self) -> dict:
        """The document, with the rows typed by the primary variant's model schema (rebuilt when its model
        version changes); the untyped document while the variant does not answer."""
        try:
            got = await asyncio.wait_for(_result(self.handles[self.primary].schema.remote()), READ_TIMEOUT_S)
        except Exception:
            return self.openapi
        key = got.get("model_version")
        if self._typed_openapi is None or self._typed_openapi[0] != key:
            doc = openapi_document(
                self.spec.route_prefix,
                columns=got["columns"],
                entities=got.get("entity_columns") or bool(got.get("entities")),
                max_rows=self.spec.max_batch_rows,
                variants=self.variants + self.shadows,
            )
            self._typed_openapi = (key, doc)
        return self._typed_openapi[1]

    async def _app_monitor(self) -> dict | None:
        """The app monitor actor's status (named in the spec; serving does not import monitoring)."""
        name = self.spec.app_monitor
        if not name:
            return None
        import ray

        try:
            handle = ray.get_actor(name, namespace=self.spec.namespace)
            return await asyncio.wait_for(handle.status.remote(), READ_TIMEOUT_S)
        except Exception as e:
            return {"error": f"app monitor unavailable: {type(e).__name__}"}

    async def health(self) -> Response:
        status, content = await self.health_body()
        return JSONResponse(status_code=status, content=content)

    async def health_body(self) -> tuple[int, dict]:
        """(200 or 503, body): the model version of every variant and shadow; 503 when a variant does not
        answer."""
        names = self.variants + self.shadows
        got = await asyncio.gather(
            *(asyncio.wait_for(_result(self.handles[n].health.remote()), READ_TIMEOUT_S) for n in names),
            return_exceptions=True,
        )
        versions = {n: (g["model_version"] if isinstance(g, dict) else None) for n, g in zip(names, got)}
        ok = all(versions[n] for n in self.variants)
        return (200 if ok else 503), {
            "status": "ok" if ok else "degraded",
            "model_version": versions[self.primary],
            "variants": versions,
        }

    async def variants_status(self) -> dict:
        try:
            live = await asyncio.wait_for(_result(self.controller.status.remote()), READ_TIMEOUT_S)
            if live.plan != self.plan:  # mid-redeploy: another plan owns the controller
                raise ValueError("plan mismatch")
        except Exception:
            live = TrafficStatus(**self.view.model_dump())
        body = {
            **live.model_dump(mode="json"),
            "sticky_key": self.sticky,
            "history": [e.model_dump(mode="json", exclude_unset=True) for e in live.history],  # as recorded
            "shadow": self.shadows,
            "variants": [v.name for v in self.spec.variants],
        }
        return VariantsResponse.model_validate(body).model_dump(mode="json")

    async def stats(self) -> dict:
        """This replica's view (tests and `serving status`): weights version and request-log counters."""
        return {
            "version": self.view.version,
            "weights": self.view.weights,
            "shadow_dropped": dict(self.shadow_dropped),
            "shadow_in_flight": dict(self._shadow_inflight),
            "log": None if self.log is None else {"written": self.log.written, "dropped": self.log.dropped},
        }

    async def flush_log(self) -> bool:
        return True if self.log is None else await asyncio.get_running_loop().run_in_executor(None, self.log.flush)

    def __del__(self):  # Serve calls it on a graceful replica shutdown (redeploy, scale-down)
        if getattr(self, "log", None) is not None:
            self.log.close(timeout=10)
