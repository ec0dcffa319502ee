"""A pipeline against a real `mlflow server` on 127.0.0.1, and `raymlops ui` on the embedded store."""

import subprocess
import sys

import httpx
import pandas as pd
import pytest

from raymlops import load_model
from tests.conftest import ROOT, cli_env, free_port, stop_process, wait_http
from tests.integration.conftest import pipeline


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` with a sqlite backend and proxied artifacts, on a free loopback port."""
    d = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(d / "server.log", "w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{d / 'mlflow.db'}",
            "--artifacts-destination",
            str(d / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=cli_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, log)
        yield url
    finally:
        stop_process(proc)
        log.close()


def test_quickstart_against_a_real_mlflow_server(ray_session, mlflow_server, demo_dir, tmp_path):
    from raymlops.registry.tracking import client

    store = str(tmp_path / "store")
    pipe = pipeline(
        "quickstart.yaml",
        demo_dir,
        store,
        f"registry.tracking_uri={mlflow_server}",
        "training.tune.num_samples=1",
        "training.model.num_boost_round=20",
        "monitoring=null",
    )
    result = pipe.train(progress=False)
    assert not (tmp_path / "store" / "mlflow.db").exists()  # nothing went to the embedded store
    c = client(mlflow_server)
    run = c.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["raymlops.run_id"] == result.run_id
    children = c.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(children) == 1 and set(children[0].data.params) == {"max_depth", "eta", "subsample"}
    assert len(c.get_metric_history(children[0].info.run_id, "valid_auc")) > 5
    assert "raymlops.input.customers.sha256" in run.data.tags and run.inputs.dataset_inputs
    assert "report/report.html" in {a.path for a in c.list_artifacts(run.info.run_id, "report")}
    assert result.model["version"] == 1 and result.model["alias"] == "champion"
    assert c.get_model_version_by_alias("churn", "champion").run_id == run.info.run_id
    rows = pd.read_parquet(demo_dir / "holdout.parquet").head(50)
    served = load_model("models:/churn@champion", storage=store, tracking_uri_=mlflow_server)
    assert served.version == "churn/1" and served.meta["run_id"] == result.run_id
    assert (served.predict_proba(rows) == load_model(result.run_dir).predict_proba(rows)).all()
    # A second run with nothing changed is skipped step by step, registering nothing new.
    again = pipe.train(progress=False)
    assert all(s["cached"] for s in again.steps.values()) and again.model["version"] == 1


def test_raymlops_ui_serves_the_embedded_store(tmp_path):
    from raymlops.registry.tracking import Tracker, tracking_uri

    store = str(tmp_path / "store")
    Tracker(tracking_uri(None, store), "ui-check")
    port = free_port()
    log = open(tmp_path / "ui.log", "w+")
    proc = subprocess.Popen(
        ["raymlops", "ui", "--storage", store, "--port", str(port)],
        cwd=ROOT,
        env=cli_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log)
        r = httpx.post(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search", json={"max_results": 10})
        assert "ui-check" in {e["name"] for e in r.json()["experiments"]}
    finally:
        stop_process(proc)
        log.close()
