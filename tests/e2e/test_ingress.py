"""Ingress options as a user runs them: `raymlops serve` in a subprocess, with its own local Ray.

- `serving.ingress: haproxy`: Serve's HAProxy ingress (direct-ingress replicas, throughput-optimized
  settings). HAProxy, not Serve's Python proxy, holds the port; answers equal the model's and client errors
  are the same 422 bodies.
- `serving.grpc_port`: Serve's gRPC proxy beside HTTP; `raymlops.ModelServer/Predict` (through
  examples/grpc_client.py) answers what HTTP /predict answers, and an HTTP error is the mapped gRPC status
  with the same body as details.
"""

import contextlib
import importlib.util
import json
import re
import signal
import subprocess

import grpc
import httpx
import numpy as np
import pandas as pd

from raymlops import load_model
from raymlops.pipeline.probe import _jsonable
from tests.conftest import ROOT, cli_env, free_port, stop_process, wait_http


def listener(port: int) -> str | None:
    """The name of the process listening on TCP ``port`` (iproute2's ``ss``), or None."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    names = re.findall(r'users:\(\("([^"]+)"', out)
    return names[0] if names else None


@contextlib.contextmanager
def served(cli_quickstart, tmp_path, *overrides: str):
    """`raymlops serve configs/quickstart.yaml --run RUN` with ``overrides``: yields (URL, port, model, log)
    once /health answers; stops it with Ctrl-C (the CLI's own clean-up: Serve and its local Ray). No monitor
    and no request log: the quickstart's store is shared with test_readme_paths, which counts logged rows."""
    r, store, env = cli_quickstart
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    run_id = json.loads(out[out.index("{") : out.index("}\n", out.index('"endpoint"')) + 1])["run_id"]
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 - read back by wait_http and the callers
    proc = subprocess.Popen(
        [
            "raymlops",
            "serve",
            "configs/quickstart.yaml",
            "--run",
            run_id,
            "--set",
            f"serving.port={port}",
            "--set",
            "monitoring=null",
            "--set",
            "serving.request_log=null",
            *[a for o in overrides for a in ("--set", o)],
        ],
        cwd=ROOT,
        env=cli_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/churn"
    try:
        wait_http(f"{url}/health", proc, log, seconds=240)
        yield url, port, load_model(store / "runs" / "churn-quickstart" / run_id), log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        finally:
            stop_process(proc)


def test_haproxy_ingress_answers_as_the_model_does(cli_quickstart, demo, tmp_path):
    with served(cli_quickstart, tmp_path, "serving.ingress=haproxy") as (url, port, model, log):
        assert listener(port) == "haproxy"
        df = pd.read_parquet(demo / "holdout.parquet").head(100)
        got = httpx.post(f"{url}/predict", json={"instances": _jsonable(df[model.schema.names])}, timeout=60)
        assert got.status_code == 200, got.text
        preds, probs = model.predict_with_proba(df)
        assert got.json()["predictions"] == preds and np.allclose(got.json()["probabilities"], probs, atol=1e-6)
        row = _jsonable(df[model.schema.names].head(1))[0]
        bad = httpx.post(f"{url}/predict", json={"instances": [{**row, "tenure_months": "x"}]}, timeout=60)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "instances", 0, "tenure_months"]
        assert httpx.get(f"{url}/nope", timeout=30).status_code == 404
    log.seek(0)
    assert listener(port) is None, log.read()[-3000:]


def test_grpc_ingress_answers_as_http_does(cli_quickstart, demo, tmp_path):
    spec = importlib.util.spec_from_file_location("grpc_client", ROOT / "examples" / "grpc_client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    from raymlops.serving.grpc_api import predict_pb2 as pb
    from raymlops.serving.grpc_api import predict_pb2_grpc as pb_grpc

    grpc_port = free_port()
    with served(cli_quickstart, tmp_path, f"serving.grpc_port={grpc_port}") as (url, _, model, _log):
        target, app = f"127.0.0.1:{grpc_port}", "churn-quickstart"
        df = pd.read_parquet(demo / "holdout.parquet").head(50)
        body = {"instances": _jsonable(df[model.schema.names])}
        over_grpc = client.predict(target, app, body)
        over_http = httpx.post(f"{url}/predict", json=body, timeout=60).json()
        for key in ("predictions", "probabilities", "model_version", "variant"):
            assert over_grpc[key] == over_http[key], key
        assert over_grpc["predictions"] == model.predict_with_proba(df)[0]
        with grpc.insecure_channel(target) as channel:  # the typed fields of the reply
            stub = pb_grpc.ModelServerStub(channel)
            reply = stub.Predict(
                pb.PredictRequest(json=json.dumps(body), request_id="r-1"), metadata=(("application", app),), timeout=30
            )
            assert list(reply.predictions) == over_http["predictions"] and reply.request_id == "r-1"
            assert stub.Health(pb.HealthRequest(), metadata=(("application", app),), timeout=30).status == "ok"
        row = body["instances"][0]
        for bad in ({"instances": [{**row, "tenure_months": "x"}]}, {"instances": []}, '{"instances": ['):
            http = httpx.post(f"{url}/predict", content=bad if isinstance(bad, str) else json.dumps(bad), timeout=60)
            assert http.status_code == 422
            try:
                client.predict(target, app, bad)
                raise AssertionError(f"no error for {bad!r}")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and json.loads(e.details()) == http.json()
