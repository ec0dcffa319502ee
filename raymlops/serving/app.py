"""The Serve deployment: a lean FastAPI ingress that validates, predicts in-process and hands inputs to
the drift actor in the background."""


import asyncio
import os
import threading
import uuid

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from raymlops.serving.api import DriftResponse, HealthResponse, PredictRequest, PredictResponse, SchemaResponse

app = FastAPI(title="raymlops model server", description="Predictions, schema, health and drift for one run.")

FLUSH_ROWS = 256
FLUSH_SECONDS = 0.5


def _unprocessable(errors: list[dict]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": errors})


@serve.deployment
@serve.ingress(app)
class ModelServer:
    """One replica: the run's Predictor plus an optional drift actor it feeds."""

    def __init__(self, run_dir: str, max_batch_rows: int, drift_actor: str | None = None,
                 namespace: str = "raymlops", features: dict | None = None, watch: dict | None = None):
        import ray

        from raymlops.artifacts import Predictor

        self.run_dir = run_dir
        self.predictor = Predictor(run_dir)
        self.max_batch_rows = max_batch_rows
        self.drift = ray.get_actor(drift_actor, namespace=namespace) if drift_actor else None
        self.features = self.feature_refs = None
        if features:
            from raymlops.config.models import PipelineConfig
            from raymlops.features import FeatureStore

            self.features = FeatureStore(PipelineConfig.model_validate(features["config"]))
            self.feature_refs = features["refs"]
            self.join_keys = list(dict.fromkeys(
                k for v, _ in self.features.resolve(self.feature_refs) for k in self.features.join_keys(v)))
        self._buffer: list[pd.DataFrame] = []
        self._buffered = 0
        self._flusher = None
        self.swaps: list[dict] = []
        if watch:
            threading.Thread(target=self._watch, args=(watch["resolve"], watch["every"]), daemon=True,
                             name="model-watch").start()

    # ------------------------------------------------------------ model swapping

    @property
    def version(self) -> str:
        return self.predictor.version

    def _watch(self, resolve, every: float) -> None:
        """Polls the registry alias; when it moves, loads the new version beside the old one and swaps the
        reference in one assignment, so requests in flight finish on the model they started with."""
        import logging
        import time

        from raymlops.artifacts import Predictor

        log = logging.getLogger("ray.serve")
        while True:
            time.sleep(every)
            try:
                run_dir = resolve()
                if run_dir == self.run_dir:
                    continue
                new = Predictor(run_dir)
            except Exception as e:  # registry unreachable, bad bundle: keep serving the current model
                log.warning("model watch: keeping %s: %s: %s", self.version, type(e).__name__, e)
                continue
            old, self.predictor, self.run_dir = self.version, new, run_dir
            self.swaps.append({"from": old, "to": new.version, "at": time.time()})
            log.info("model watch: swapped %s -> %s", old, new.version)
            if self.drift is not None and os.path.isdir(os.path.join(run_dir, "drift")):
                self.drift.swap.remote(os.path.join(run_dir, "drift"), new.version)

    # ------------------------------------------------------------------ drift feed

    def _flush(self) -> None:
        if self._buffer and self.drift is not None:
            rows = pd.concat(self._buffer, ignore_index=True) if len(self._buffer) > 1 else self._buffer[0]
            self._buffer, self._buffered = [], 0
            self.drift.observe.remote(rows)  # fire-and-forget: never awaited on the request path

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self._flush()

    def _feed_drift(self, df: pd.DataFrame) -> None:
        if self.drift is None:
            return
        self._buffer.append(df)
        self._buffered += len(df)
        if self._buffered >= FLUSH_ROWS:
            self._flush()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    # ---------------------------------------------------------------------- routes

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True,
              responses={422: {"description": "A field is missing, mistyped or the body is malformed."}})
    async def predict(self, body: PredictRequest, request: Request) -> JSONResponse:
        from raymlops.data.schema import RecordErrors, records_to_frame
        from raymlops.errors import DataError

        # Serve's proxy sets x-request-id (the client's, or a new one) and echoes it on the response.
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if (body.instances is None) == (body.entities is None):
            loc, kind = (["body", "instances"], "missing") if body.instances is None else (["body", "entities"],
                                                                                           "value_error")
            return _unprocessable([{"loc": loc, "type": kind, "msg": "send exactly one of 'instances' (feature "
                                                                     "values) or 'entities' (entity keys)"}])
        field = "instances" if body.instances is not None else "entities"
        rows = body.instances if body.instances is not None else body.entities
        if len(rows) > self.max_batch_rows:
            return _unprocessable([{"loc": ["body", field], "type": "too_long",
                                    "msg": f"at most {self.max_batch_rows} rows per request, got {len(rows)}"}])
        fetched = None
        if body.entities is not None:
            rows, fetched = self._with_features(body.entities)
            if fetched is None:
                return rows if isinstance(rows, JSONResponse) else _unprocessable(rows)
        model = self.predictor  # one model for the whole request, even if a swap happens meanwhile
        try:
            df = records_to_frame(rows, model.schema, loc_prefix=("body", field))
        except RecordErrors as e:
            return _unprocessable(e.errors)
        try:
            preds, probs = model.predict_with_proba(df)
        except (DataError, ValueError) as e:  # e.g. an estimator that cannot take a missing value
            return _unprocessable([{"loc": ["body", "instances"], "type": "value_error",
                                    "msg": f"the model cannot score these rows: {e}"[:500]}])
        self._feed_drift(df)
        out = {"predictions": preds, "model_version": model.version, "request_id": request_id}
        if probs is not None:
            out["probabilities"] = probs
        if fetched is not None:
            out["features"], out["feature_statuses"] = fetched.values, fetched.statuses
        return JSONResponse(out)

    def _with_features(self, entities: list[dict]):
        """Entity rows plus their online feature values (request values win); or (errors, None)."""
        if self.features is None:
            return [{"loc": ["body", "entities"], "type": "value_error",
                     "msg": "this model was not trained from a feature set; send 'instances' with feature values"}], None
        errors = [{"loc": ["body", "entities", i, k], "type": "missing", "msg": "join key required"}
                  for i, row in enumerate(entities) for k in self.join_keys if k not in row]
        if errors:
            return errors[:20], None
        from raymlops.errors import DataError
        from raymlops.features.online import OnlineStoreError

        try:
            got = self.features.get_online_features(self.feature_refs, entities)
        except DataError as e:
            return [{"loc": ["body", "entities"], "type": "value_error", "msg": str(e)[:500]}], None
        except OnlineStoreError as e:
            return JSONResponse(status_code=503, content={"detail": f"online store unavailable: {e}"[:500]}), None
        rows = [{**{name: vals[i] for name, vals in got.values.items()}, **row} for i, row in enumerate(entities)]
        return rows, got

    @app.get("/health", response_model=HealthResponse)
    def health(self) -> dict:
        return {"status": "ok", "model_version": self.version}

    @app.get("/schema", response_model=SchemaResponse)
    def schema(self) -> dict:
        model = self.predictor
        s = model.schema
        return {"columns": [c.__dict__ for c in s.columns], "task": s.task, "label": s.label,
                "classes": s.classes, "model_version": model.version}

    @app.get("/drift", response_model=DriftResponse, response_model_exclude_none=True)
    async def drift_status(self) -> dict:
        if self.drift is None:
            return {"enabled": False}
        self._flush()
        try:
            latest = await self.drift.latest.remote()
        except Exception as e:  # the actor died or was replaced by a newer deployment
            return JSONResponse(status_code=503, content={"detail": f"drift monitor unavailable: {type(e).__name__}"})
        return {"enabled": True, **latest}


def build(run_dir: str, serving_cfg, drift_actor: str | None, namespace: str, features: dict | None = None,
          watch: dict | None = None):
    """The bound Serve application for a run (``features``: config and refs for entity-key requests;
    ``watch``: {resolve: () -> run dir, every: seconds} to follow a registry alias)."""
    return ModelServer.options(
        num_replicas=serving_cfg.num_replicas,
        max_ongoing_requests=serving_cfg.max_ongoing_requests,
        ray_actor_options={"num_cpus": serving_cfg.num_cpus},
    ).bind(run_dir, serving_cfg.max_batch_rows, drift_actor, namespace, features, watch)


