"""`serving.ingress: haproxy` as a user runs it: `raymlops serve` in a subprocess starts its own local Ray with
Serve's HAProxy ingress (direct-ingress replicas, throughput-optimized settings). HAProxy, not Serve's Python
proxy, holds the port; answers equal the model's and client errors are the same 422 bodies."""

import json
import re
import signal
import subprocess

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


def test_haproxy_ingress_answers_as_the_model_does(cli_quickstart, demo, tmp_path):
    r, store, env = cli_quickstart
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    run_id = json.loads(out[out.index("{"): out.index("}\n", out.index('"endpoint"')) + 1])["run_id"]
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 - read back by wait_http and below
    proc = subprocess.Popen(["raymlops", "serve", "configs/quickstart.yaml", "--run", run_id, "--set",
                                 "serving.ingress=haproxy", "--set", f"serving.port={port}", "--set", "monitoring=null"],
                            cwd=ROOT, env=cli_env(**env), stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/churn"
    try:
        wait_http(f"{url}/health", proc, log, seconds=240)
        assert listener(port) == "haproxy"
        model = load_model(store / "runs" / "churn-quickstart" / run_id)
        df = pd.read_parquet(demo / "holdout.parquet").head(100)
        got = httpx.post(f"{url}/predict", json={"instances": _jsonable(df[model.schema.names])}, timeout=60)
        assert got.status_code == 200, got.text
        preds, probs = model.predict_with_proba(df)
        assert got.json()["predictions"] == preds and np.allclose(got.json()["probabilities"], probs, atol=1e-6)
        row = _jsonable(df[model.schema.names].head(1))[0]
        bad = httpx.post(f"{url}/predict", json={"instances": [{**row, "tenure_months": "x"}]}, timeout=60)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "instances", 0, "tenure_months"]
        assert httpx.get(f"{url}/nope", timeout=30).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)  # the CLI's own clean-up: Serve and its local Ray (and HAProxy) stop
        try:
            proc.wait(timeout=120)
        finally:
            stop_process(proc)
    log.seek(0)
    assert listener(port) is None, log.read()[-3000:]
