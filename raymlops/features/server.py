"""The feature server: a Ray Serve deployment answering online feature lookups over HTTP (Feast's shape)
and taking pushed events (`POST {prefix}/push`).

The replica is a lean ASGI-free ingress (`__call__` on Serve's Starlette request): a FastAPI ingress adds
~3 ms per request on a 2-core machine, a third of the lookup's whole HTTP latency. The request and response
are still the pydantic models in `api.py`, and FastAPI generates the OpenAPI document served at
`{prefix}/openapi.json`, so the contract stays exact.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations below to build the schema.

import asyncio
import time

from fastapi import FastAPI
from pydantic import ValidationError
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from raymlops.features.api import (
    OnlineFeaturesRequest,
    OnlineFeaturesResponse,
    PushRequest,
    PushResponse,
    typed_requests,
)

ROUTES = {"online": "POST", "push": "POST", "health": "GET", "openapi.json": "GET"}
START_TIMEOUT_S = 300  # replicas not running by then: the app is deleted and the error says why
_UNPROCESSABLE = {422: {"description": "Unknown feature, missing join key, ragged entity lists or a bad body."}}


def openapi_document(store=None) -> dict:
    """The exact OpenAPI document of the routes below (generated, never served by FastAPI itself); with the
    ``store``, requests are typed by its views: feature references one of theirs, entity keys and pushed
    columns typed as their offline schemas hold them."""
    online_body, push_body = (OnlineFeaturesRequest, PushRequest) if store is None else typed_requests(store)
    doc = FastAPI(title="raymlops feature server", description="Online feature values by entity key.")

    @doc.post(
        "/online",
        response_model=OnlineFeaturesResponse,
        responses={**_UNPROCESSABLE, 503: {"description": "The online store is unavailable."}},
    )
    def online(body: online_body) -> OnlineFeaturesResponse:  # type: ignore[valid-type]  # pragma: no cover
        """Latest feature values for each entity, with a status per value."""

    @doc.post(
        "/push",
        response_model=PushResponse,
        responses={
            422: {"description": "Unknown view, or rows with a missing, null or mistyped field: nothing is written."},
            503: {"description": "The offline or online store is unavailable."},
        },
    )
    def push(body: push_body) -> PushResponse:  # type: ignore[valid-type]  # pragma: no cover
        """Writes new events: online at once, offline (for the next training set) in the same call."""

    @doc.get("/health")
    def health() -> dict:  # pragma: no cover - schema only
        """Liveness."""

    return doc.openapi()


def _unprocessable(errors: list) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": errors})


def _body_errors(e: ValidationError) -> JSONResponse:
    return _unprocessable(
        [
            {"loc": ["body", *err["loc"]], "type": err["type"], "msg": err["msg"]}
            for err in e.errors(include_url=False, include_context=False)
        ]
    )


class GroupCommit:
    """Pushes that arrive while another is being written are written together: one offline version (and
    one online write) per group, however many requests it holds. Each request still waits for its rows to
    be committed, so an answered push is never lost."""

    def __init__(self, write):
        self.write = write  # (view, [tables]) -> result dict; runs in a thread
        self.pending: dict[str, list] = {}
        self.lock = asyncio.Lock()

    async def submit(self, view: str, table) -> dict:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self.pending.setdefault(view, []).append((table, done))
        async with self.lock:
            group = self.pending.pop(view, None)  # None: an earlier holder wrote this request with its group
            if group:
                try:
                    result = await loop.run_in_executor(None, self.write, view, [t for t, _ in group])
                except Exception as e:
                    for _, f in group:
                        f.set_exception(e)
                else:
                    for t, f in group:
                        f.set_result({**result, "rows": t.num_rows})
        return await done


@serve.deployment
class FeatureServer:
    """One replica holding an online-store connection."""

    def __init__(self, config: dict):
        from raymlops.config.models import PipelineConfig
        from raymlops.features.store import FeatureStore

        self.store = FeatureStore(PipelineConfig.model_validate(config))
        self.openapi = openapi_document(self.store)
        self.pushes = GroupCommit(self._write_pushed)
        self.schemas: dict[str, tuple[float, object]] = {}  # view -> (read at, offline schema)

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "POST" and path == "online":
            try:
                body = OnlineFeaturesRequest.model_validate_json(await request.body())
            except ValidationError as e:
                return _body_errors(e)
            return self.online(body)
        if request.method == "POST" and path == "push":
            try:
                body = PushRequest.model_validate_json(await request.body())
            except ValidationError as e:
                return _body_errors(e)
            return await self.push(body)
        if request.method == "GET" and path == "health":
            return JSONResponse({"status": "ok"})
        if request.method == "GET" and path == "openapi.json":
            return JSONResponse(self.openapi)
        if path in ROUTES:  # RFC 9110: a 405 lists the methods the route takes
            return JSONResponse(
                status_code=405, content={"detail": "Method Not Allowed"}, headers={"Allow": ROUTES[path]}
            )
        return JSONResponse(status_code=404, content={"detail": "Not Found"})

    def online(self, body: OnlineFeaturesRequest) -> JSONResponse:
        """Latest feature values for each entity, with a status per value (see `OnlineFeaturesResponse`)."""
        from raymlops.config.models import feature_ref_issue
        from raymlops.errors import DataError

        errors = [
            {"loc": ["body", "features", i], "type": "value_error", "msg": why}
            for i, ref in enumerate(body.features)
            if (why := feature_ref_issue(ref, self.store.features))
        ]
        if errors:
            return _unprocessable(errors)
        lengths = {k: len(v) for k, v in body.entities.items()}
        n = max(lengths.values())
        ragged = [
            {"loc": ["body", "entities", k], "type": "value_error", "msg": f"has {m} values; every key needs {n}"}
            for k, m in lengths.items()
            if m != n
        ]
        if ragged:
            return _unprocessable(ragged)
        try:
            plan = self.store.resolve(body.features, body.full_feature_names)
        except DataError as e:
            return _unprocessable([{"loc": ["body", "features"], "type": "value_error", "msg": str(e)}])
        keys = list(dict.fromkeys(k for v, _ in plan for k in self.store.join_keys(v)))
        missing = [
            {"loc": ["body", "entities", k], "type": "missing", "msg": "join key required"}
            for k in keys
            if k not in body.entities
        ]
        if missing:
            return _unprocessable(missing)
        rows = [{k: body.entities[k][i] for k in keys} for i in range(n)]
        from raymlops.features.online import OnlineStoreError

        try:
            got = self.store.get_online_features(body.features, rows, body.full_feature_names)
        except DataError as e:
            return _unprocessable([{"loc": ["body", "entities"], "type": "value_error", "msg": str(e)[:500]}])
        except OnlineStoreError as e:  # the store is down: the server's problem, not the client's
            return JSONResponse(status_code=503, content={"detail": f"online store unavailable: {e}"[:500]})
        results = [
            {"values": body.entities[k], "statuses": ["PRESENT"] * n, "event_timestamps": [None] * n} for k in keys
        ]
        results += [
            {"values": got.values[f], "statuses": got.statuses[f], "event_timestamps": got.event_timestamps[f]}
            for f in got.values
        ]
        return JSONResponse({"metadata": {"feature_names": [*keys, *got.values]}, "results": results})

    async def push(self, body: PushRequest) -> JSONResponse:
        """Validates the rows (422 naming each bad field, nothing written), then writes them with any pushes
        that arrived meanwhile (see `GroupCommit`)."""
        from raymlops.errors import DataError
        from raymlops.features.online import OnlineStoreError
        from raymlops.features.push import PushError, validate

        if body.view not in [v.name for v in self.store.features.views]:
            return _unprocessable(
                [
                    {
                        "loc": ["body", "view"],
                        "type": "value_error",
                        "msg": f"unknown feature view {body.view!r}; defined: "
                        f"{[v.name for v in self.store.features.views]}",
                    }
                ]
            )
        view = self.store.view(body.view)
        try:
            table = validate(body.rows, view, self.store.join_keys(view), self._schema(view.name), time.time_ns())
        except PushError as e:
            return _unprocessable(
                [
                    {
                        "loc": ["body", "rows", *([] if r is None else [r]), *([f] if f else [])],
                        "type": "value_error",
                        "msg": m,
                    }
                    for r, f, m in e.problems[:100]
                ]
            )
        try:
            result = await self.pushes.submit(view.name, table)
        except (DataError, OnlineStoreError, OSError) as e:
            return JSONResponse(status_code=503, content={"detail": f"push not written: {e}"[:500]})
        return JSONResponse(PushResponse(**result).model_dump())

    def _schema(self, view: str):
        """The offline schema the rows must fit (re-read every 30 s)."""
        at, schema = self.schemas.get(view, (0.0, None))
        if time.monotonic() - at > 30:
            latest = self.store.offline.latest(view)
            schema = latest.schema if latest else None
            self.schemas[view] = (time.monotonic(), schema)
        return schema

    def _write_pushed(self, view: str, tables: list) -> dict:
        import pyarrow as pa

        from raymlops.features.push import write_pushed

        v = self.store.view(view)
        table = pa.concat_tables(tables, promote_options="permissive")
        return write_pushed(self.store.offline, self.store.online, v, self.store.join_keys(v), table)
