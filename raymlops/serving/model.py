"""The model deployment: one variant's Predictor behind Ray Serve, called by the router through a handle.

Requests are validated against the model's schema, scored in dynamic batches (``@serve.batch``: every request
queued while a batch is scored joins the next one), fed to the variant's drift actor in the background, and
the model is swapped in place when the registry alias it follows moves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pandas as pd
from ray import serve

from raymlops.contracts.serving import ModelSpec, Reply
from raymlops.contracts.status import ReplicaHealth, ReplicaStats
from raymlops.serving.api import unprocessable
from raymlops.storage.files import read_file

FLUSH_ROWS = 256
FLUSH_SECONDS = 0.5
MAX_IN_FLIGHT = 16  # monitor batches a replica lets queue before it skips rows
# A batch expected to take less is scored on the replica's loop: handing it to a worker thread cost more than
# the quickstart model's whole 512-row call here (0.4 ms), and the two then contend for the GIL.
INLINE_MS = 2.0

log = logging.getLogger("ray.serve")


def _error(status: int, detail) -> Reply:
    return {"status": status, "body": {"detail": detail}}


def _unprocessable(errors: list[dict]) -> Reply:
    return {"status": 422, "body": unprocessable(errors)}


@serve.deployment
class ModelServer:
    """One replica of one variant (the router checks body size). ``spec``: a `ModelSpec` (or its JSON shape)."""

    def __init__(self, spec: ModelSpec):
        import ray

        from raymlops.artifacts import Predictor

        spec = ModelSpec.model_validate(spec)
        self.variant = spec.variant
        self.run_dir = spec.run_dir
        self.namespace = spec.namespace
        self.canary_controller = spec.canary_controller
        self.predictor = Predictor(self.run_dir)  # a location every node resolves (path, URI or registry call)
        self.drift = None
        if spec.monitor:
            try:
                self.drift = ray.get_actor(spec.monitor, namespace=spec.namespace)
            except ValueError:
                log.warning("monitor actor %s is not running; serving without monitoring", spec.monitor)
        self.features = self.feature_refs = None
        if spec.features:
            from raymlops.config.models import PipelineConfig
            from raymlops.features import FeatureStore

            f = spec.features
            config = f.config or PipelineConfig.model_validate(json.loads(read_file(f.config_file or "")))  # exported
            self.features = FeatureStore(config)
            self.feature_refs = f.refs
            self.join_keys = list(
                dict.fromkeys(
                    k for v, _ in self.features.resolve(self.feature_refs) for k in self.features.join_keys(v)
                )
            )
        batching = spec.batching
        self.batched = batching is not None
        if batching is not None:
            self._score_batch.set_max_batch_size(batching.max_batch_size)
            self._score_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
        self._buffer: list[tuple] = []  # (schema, rows, outputs) of each answered request, until the flush
        self._buffered = 0
        self._in_flight: list = []
        self.monitor_dropped_rows = 0
        self._flusher = None
        self.swaps: list[dict] = []
        self.batch_sizes: list[int] = []  # recent batch sizes (requests), for tests and `stats`
        self._fast_rows = 0  # the most rows a call has scored in under INLINE_MS (0: not known yet)
        self._entity_cache: tuple[str, list[dict]] | None = None  # (model version, entity columns)
        if spec.watch:
            threading.Thread(
                target=self._watch, args=(spec.watch, spec.watch.every), daemon=True, name="model-watch"
            ).start()

    # ------------------------------------------------------------ model swapping

    @property
    def version(self) -> str:
        return self.predictor.version

    def _watch(self, resolve, every: float) -> None:
        """Polls the registry alias; when it moves, loads the new version beside the old one and swaps the
        reference in one assignment, so requests in flight finish on the model they started with."""
        from raymlops.artifacts import Predictor

        last_error = None
        while True:
            time.sleep(every)
            try:
                run_dir = resolve()
                if run_dir == self.run_dir:
                    continue
                new = Predictor(run_dir)
            except Exception as e:  # registry unreachable, bad bundle, alias not set yet: keep the current model
                if f"{e}" != last_error:  # once per distinct error, not every poll
                    log.warning("model watch: keeping %s: %s: %s", self.version, type(e).__name__, e)
                    last_error = f"{e}"
                continue
            last_error = None
            old, self.predictor, self.run_dir = self.version, new, run_dir
            self._fast_rows = 0  # the new model's speed is learnt again
            self.swaps.append({"from": old, "to": new.version, "at": time.time()})
            log.info("model watch: %s swapped %s -> %s", self.variant, old, new.version)
            if self.drift is not None:
                self.drift.swap.remote(run_dir, new.version)
            if self.canary_controller:
                self._tell_controller(new.version)

    def _tell_controller(self, version: str) -> None:
        """The canary variant's model changed: the traffic controller restarts the canary for it."""
        import ray

        try:
            ray.get_actor(self.canary_controller, namespace=self.namespace).model_swapped.remote(self.variant, version)
        except Exception as e:  # the controller is restarting: the canary goes on judging under the new model
            log.warning("model watch: could not tell the traffic controller about %s: %s", version, e)

    # ------------------------------------------------------------------ drift feed

    def _flush(self) -> None:
        if self._buffer and self.drift is not None:
            import ray

            rows = _drift_frame(self._buffer)
            self._buffer, self._buffered = [], 0
            if self._in_flight:  # forget the batches the monitor has finished
                _, self._in_flight = ray.wait(self._in_flight, num_returns=len(self._in_flight), timeout=0)
            if len(self._in_flight) >= MAX_IN_FLIGHT:  # a slow monitor never backs up serving: skip, count
                self.monitor_dropped_rows += len(rows)
                log.warning(
                    "monitor %s is behind (%d batches queued): %d rows not monitored",
                    self.variant,
                    len(self._in_flight),
                    len(rows),
                )
                return
            self._in_flight.append(self.drift.observe.remote(rows))  # never awaited on the request path

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self._flush()

    def _feed_drift(self, model, rows: list[dict], outputs: list) -> None:
        """Queues the rows with the model output (``__prediction__``) for the monitor actor; the typed frame
        is built once per flush (``_drift_frame``), not per request."""
        if self.drift is None:
            return
        self._buffer.append((model.schema, rows, outputs))
        self._buffered += len(rows)
        if self._buffered >= FLUSH_ROWS:
            self._flush()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    # ------------------------------------------------------------------ scoring

    def _prepare(self, kind: str, rows: list[dict]):
        """Validates one request: (model, rows, fetched features) or its {status, body} error."""
        from raymlops.data.schema import RecordErrors, check_records

        fetched = None
        if kind == "entities":
            rows, fetched = self._with_features(rows)
            if fetched is None:
                return rows
        model = self.predictor  # one model for the whole request, even if a swap happens meanwhile
        try:
            check_records(rows, model.schema, loc_prefix=("body", kind))
            return model, rows, fetched
        except RecordErrors as e:
            return _unprocessable(e.errors)

    def _answer(self, kind: str, prepared: tuple, scored) -> Reply:
        """{status, body[, model]} of one request from its prepared inputs and (predictions, probabilities) or
        error; ``model`` is the version that answered (the router counts it for the canary)."""
        from raymlops.errors import DataError

        model, rows, fetched = prepared
        if isinstance(scored, DataError):  # the rows, not the model: a client error naming the field
            return _unprocessable(
                [
                    {
                        "loc": ["body", kind],
                        "type": "value_error",
                        "msg": f"the model cannot score these rows: {scored}"[:500],
                    }
                ]
            )
        if isinstance(scored, BaseException):  # valid rows the model failed on: a server error (and a canary's)
            return {
                **_error(500, f"variant {self.variant!r}: {type(scored).__name__}: {scored}"[:500]),  # type: ignore[typeddict-item]
                "model": model.version,
            }  # an error counts against the model that failed (a canary's)
        preds, probs = scored
        self._feed_drift(model, rows, probs if model.task == "binary" else preds)
        body = {"predictions": preds, "model_version": model.version}
        if probs is not None:
            body["probabilities"] = probs
        if fetched is not None:
            body["features"], body["feature_statuses"] = fetched.values, fetched.statuses
        return {"status": 200, "body": body, "model": model.version}

    async def predict(self, kind: str, rows: list[dict]) -> Reply:
        """Scores one request's rows (``kind``: 'instances' or 'entities'); returns {status, body}."""
        prepared = self._prepare(kind, rows)
        if isinstance(prepared, dict):
            return prepared
        model, rows, _ = prepared
        if self.batched:
            scored = await self._score_batch((model, rows))
        else:
            try:
                scored = model.predict_rows(rows)
            except Exception as e:
                scored = e
        return self._answer(kind, prepared, scored)

    async def predict_many(self, items: list[tuple[str, list[dict]]]) -> list[Reply]:
        """Scores many requests in one call (the router sends shadow copies this way): one model call for
        all of them, in a worker thread. A request that fails alone gets a 500 of its own."""
        prepared = [self._prepare(kind, rows) for kind, rows in items]
        ok = [i for i, p in enumerate(prepared) if not isinstance(p, dict)]
        scored = await asyncio.get_running_loop().run_in_executor(
            None, _score_items, [(prepared[i][0], prepared[i][1]) for i in ok]
        )
        self._observe_batch(len(ok), sum(len(prepared[i][1]) for i in ok))
        out = list(prepared)
        for i, got in zip(ok, scored):
            out[i] = self._answer(items[i][0], prepared[i], got)
        return out

    def _observe_batch(self, requests: int, rows: int) -> None:
        m = model_metrics_safe()
        if m:
            m["batch_requests"].observe(requests, tags={"variant": self.variant})
            m["batch_rows"].observe(rows, tags={"variant": self.variant})
        self.batch_sizes = (self.batch_sizes + [requests])[-1000:]

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _score_batch(self, items: list[tuple]) -> list:
        """Scores the queued requests with one model call per model (two only during a swap). A lone request,
        or a batch no larger than one the model already scored in under INLINE_MS, is scored on the loop; a
        larger one in a worker thread, so the replica keeps queueing requests for the next batch meanwhile."""
        rows = sum(len(r) for _, r in items)
        self._observe_batch(len(items), rows)
        if len(items) == 1 or rows <= self._fast_rows:
            return self._timed(items, rows)
        return await asyncio.get_running_loop().run_in_executor(None, self._timed, items, rows)

    def _timed(self, items: list[tuple], rows: int) -> list:
        """`_score_items`, learning how many rows the model scores in under INLINE_MS (``_fast_rows``)."""
        t0 = time.perf_counter()
        out = _score_items(items)
        if (time.perf_counter() - t0) * 1000 < INLINE_MS:
            self._fast_rows = max(self._fast_rows, rows)
        else:
            self._fast_rows = min(self._fast_rows, rows - 1)
        return out

    def stats(self) -> ReplicaStats:
        return {
            "variant": self.variant,
            "model_version": self.version,
            "batch_sizes": list(self.batch_sizes),
            "swaps": list(self.swaps),
        }

    def _with_features(self, entities: list[dict]):
        """Entity rows plus their online feature values (request values win); or ({status, body}, None)."""
        if self.features is None:
            return _unprocessable(
                [
                    {
                        "loc": ["body", "entities"],
                        "type": "value_error",
                        "msg": "this model was not trained from a feature set; send 'instances' with feature values",
                    }
                ]
            ), None
        errors = [
            {"loc": ["body", "entities", i, k], "type": "missing", "msg": "join key required"}
            for i, row in enumerate(entities)
            for k in self.join_keys
            if k not in row
        ]
        if errors:
            return _unprocessable(errors[:20]), None
        from raymlops.errors import DataError
        from raymlops.features.online import OnlineStoreError

        try:
            got = self.features.get_online_features(self.feature_refs, entities)
        except DataError as e:
            return _unprocessable([{"loc": ["body", "entities"], "type": "value_error", "msg": str(e)[:500]}]), None
        except OnlineStoreError as e:
            return _error(503, f"online store unavailable: {e}"[:500]), None
        rows = [{**{name: vals[i] for name, vals in got.values.items()}, **row} for i, row in enumerate(entities)]
        return rows, got

    def health(self) -> ReplicaHealth:
        return {"variant": self.variant, "model_version": self.version}

    def schema(self) -> dict:
        model = self.predictor
        s = model.schema
        return {
            "columns": [c.__dict__ for c in s.columns],
            "task": s.task,
            "label": s.label,
            "classes": s.classes,
            "model_version": model.version,
            "entities": self.features is not None,
            "entity_columns": self._entity_columns(model) if self.features is not None else None,
        }

    def _entity_columns(self, model) -> list[dict]:
        """What an entity row carries: the join keys (typed as the offline store keeps them) and the inputs
        the online store does not provide. Worked out once per model version (it reads the offline store;
        the router asks /schema on every /openapi.json)."""
        if self._entity_cache is None or self._entity_cache[0] != model.version:
            self._entity_cache = (model.version, self._work_out_entity_columns(model.schema))
        return self._entity_cache[1]

    def _work_out_entity_columns(self, schema) -> list[dict]:
        from raymlops.data.schema import arrow_kind

        plan = self.features.resolve(self.feature_refs)
        fetched = {out for _, names in plan for out in names.values()}
        types = {}
        for view, _ in plan:
            latest = self.features.offline.latest(view.name)
            for k in self.features.join_keys(view):
                if latest is not None and k in latest.schema.names:
                    types.setdefault(k, arrow_kind(latest.schema.field(k).type))
        keys = [{"name": k, "type": types.get(k, "string"), "nullable": False} for k in self.join_keys]
        return keys + [c.__dict__ for c in schema.columns if c.name not in fetched and c.name not in self.join_keys]

    async def drift_status(self) -> dict | None:
        if self.drift is None:
            return None
        self._flush()
        return await self.drift.latest.remote()

    async def monitor_status(self) -> dict | None:
        """The variant monitor's latest drift and quality results and its history."""
        if self.drift is None:
            return None
        self._flush()
        return await self.drift.status.remote()


def model_metrics_safe() -> dict | None:
    try:
        from raymlops.serving.metrics import model_metrics

        return model_metrics()
    except Exception:  # metrics are best effort
        return None


def _drift_frame(buffer: list[tuple]) -> pd.DataFrame:
    """[(schema, rows, outputs)] -> one typed frame with ``__prediction__`` (consecutive requests of the same
    model share one conversion)."""
    from raymlops.data.schema import typed_frame

    frames, i = [], 0
    while i < len(buffer):
        schema, j = buffer[i][0], i
        while j < len(buffer) and buffer[j][0] is schema:
            j += 1
        rows = [r for _, rs, _ in buffer[i:j] for r in rs]
        outputs = [o for _, _, os_ in buffer[i:j] for o in os_]
        frames.append(typed_frame(rows, schema).assign(__prediction__=outputs))
        i = j
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _score_items(items: list[tuple]) -> list:
    """[(model, rows)] -> [(predictions, probabilities) or the exception for that item]."""
    out: list = [None] * len(items)
    groups: dict[int, list[int]] = {}
    for i, (model, _) in enumerate(items):
        groups.setdefault(id(model), []).append(i)
    for idx in groups.values():
        model = items[idx[0]][0]
        rows = [r for i in idx for r in items[i][1]]
        try:
            preds, probs = model.predict_rows(rows)
        except Exception:  # one bad request must not fail the batch: score each alone to find it
            for i in idx:
                try:
                    out[i] = items[i][0].predict_rows(items[i][1])
                except Exception as e:
                    out[i] = e
            continue
        start = 0
        for i in idx:
            n = len(items[i][1])
            out[i] = (preds[start : start + n], None if probs is None else probs[start : start + n])
            start += n
    return out
