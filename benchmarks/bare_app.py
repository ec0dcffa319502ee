"""Baseline for serve_bench.py: the /predict contract of raymlops.serving.app on plain FastAPI + uvicorn.

Same body model, row checks (check_records) and model path (Predictor.predict_rows, the compiled plan) as
the Serve replicas, without Ray, the drift feed, metrics or the request log. Usage: python bare_app.py RUN_DIR PORT
"""

import os
import sys
import threading
import time
import uuid

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from raymlops import load_model
from raymlops.data.schema import RecordErrors, check_records
from raymlops.serving.api import PredictRequest


def create_app(run_dir: str) -> FastAPI:
    """A FastAPI app serving the run's model at POST /predict and GET /health."""
    predictor = load_model(run_dir)
    app = FastAPI(title="raymlops bare baseline")

    @app.post("/predict")
    async def predict(body: PredictRequest, request: Request) -> JSONResponse:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            check_records(body.instances, predictor.schema, loc_prefix=("body", "instances"))
        except RecordErrors as e:
            return JSONResponse(status_code=422, content={"detail": e.errors})
        preds, probs = predictor.predict_rows(body.instances)
        out = {"predictions": preds, "model_version": predictor.version, "request_id": request_id}
        if probs is not None:
            out["probabilities"] = probs
        return JSONResponse(out, headers={"x-request-id": request_id})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model_version": predictor.version}

    return app


def exit_with_parent() -> None:
    """Exits this process once its parent is gone (a Ray driver may hard-exit without cleaning up)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    run_dir, port = sys.argv[1], int(sys.argv[2])
    exit_with_parent()
    uvicorn.run(create_app(run_dir), host="127.0.0.1", port=port, workers=1, log_level="warning")
