"""Tracking, registry, gates, reports, step caching, reproducibility and fault tolerance, on the embedded
MLflow store (sqlite under the test storage) with real Ray Tune/Train runs."""

import json
import shutil
import subprocess
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from raymlops import load_model
from raymlops.registry import ModelRegistry, tracking_uri
from raymlops.registry.tracking import client
from tests.conftest import ROOT, cli_env
from tests.integration.conftest import pipeline

MODEL = "churn"


@pytest.fixture(scope="module")
def mlflow_client(storage):
    return client(tracking_uri(None, storage))


@pytest.fixture(scope="module")
def registry(storage):
    return ModelRegistry(tracking_uri(None, storage))


@pytest.fixture(scope="module")
def challenger(quickstart, registry, demo_dir, storage):
    """A second run whose gate cannot pass (min auc 0.99): it must become @challenger, not @champion."""
    before = registry.alias_version(MODEL, "champion")
    pipe = pipeline(
        "quickstart.yaml",
        demo_dir,
        storage,
        "training.tune.num_samples=1",
        "monitoring=null",
        "training.model.num_boost_round=30",
        "registry.promotion.min=0.99",
    )
    result = pipe.train(progress=False, no_cache=True)
    return result, before


def test_run_is_recorded_in_mlflow_with_trials_tags_inputs_and_report(quickstart, mlflow_client, demo_dir):
    _, result = quickstart
    run = mlflow_client.get_run(result.mlflow_run_id)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and run.info.run_name == result.run_id
    assert tags["raymlops.run_id"] == result.run_id and len(tags["raymlops.config_hash"]) == 16
    sha = tags["raymlops.input.customers.sha256"]
    from raymlops.pipeline.fingerprint import digest, file_sha256

    assert sha == digest([["train.parquet", file_sha256(demo_dir / "train.parquet")]])  # content, not location
    assert json.loads(tags["raymlops.packages"])["xgboost"].startswith("3.2")
    assert json.loads(tags["raymlops.ray_resources"])["CPU"] == 2.0
    assert (
        tags["raymlops.seed.tune"] == "7"
        and tags["raymlops.git.commit"]
        and tags["raymlops.git.dirty"] in ("true", "false")
    )
    assert {tags[f"raymlops.step.{s}"] for s in ("prepare", "train", "evaluate")} == {"ran"}
    assert run.data.metrics["auc"] == pytest.approx(result.metrics["auc"])
    assert run.data.metrics["holdout_auc"] == pytest.approx(result.metrics["auc"], abs=1e-6)
    # Datasets as MLflow inputs, with the content digest.
    [ds] = run.inputs.dataset_inputs
    assert ds.dataset.name == "customers" and sha.startswith(ds.dataset.digest)
    # One child run per trial, with params and the per-round validation curve.
    children = mlflow_client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(children) == 2
    for child in children:
        assert set(child.data.params) == {"max_depth", "eta", "subsample"}
        curve = mlflow_client.get_metric_history(child.info.run_id, "valid_auc")
        assert len(curve) > 5 and [m.step for m in curve] == list(range(1, len(curve) + 1))
    arts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "report")}
    assert {
        "report/report.html",
        "report/roc.png",
        "report/pr.png",
        "report/confusion_matrix.png",
        "report/calibration.png",
        "report/feature_importance.png",
    } <= arts
    assert "run/config.yaml" in {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "run")}


def test_the_best_model_is_registered_with_signature_bundle_and_alias(
    quickstart, registry, mlflow_client, storage, demo_dir
):
    _, result = quickstart
    m = result.model
    assert m["name"] == MODEL and m["version"] >= 1
    assert m["alias"] == ("champion" if m["passed"] else "challenger")
    mv = registry.version(MODEL, m["version"])
    assert mv.run_id == result.mlflow_run_id and mv.tags["raymlops.run_id"] == result.run_id
    assert float(mv.tags["raymlops.metric.auc"]) == pytest.approx(result.metrics["auc"], abs=1e-6)
    import mlflow.models

    from raymlops.registry.tracking import using

    with using(registry.uri):
        info = mlflow.models.get_model_info(f"models:/{MODEL}/{m['version']}")
    assert "xgboost" in info.flavors and info.signature is not None
    assert "tenure_months" in info.signature.inputs.input_names()
    # The registry URI loads the same predictor as the run directory.
    rows = pd.read_parquet(demo_dir / "holdout.parquet").head(200)
    by_uri = load_model(f"models:/{MODEL}/{m['version']}", storage=storage)
    assert by_uri.version == f"{MODEL}/{m['version']}"  # a registered model is called by its version
    assert np.array_equal(by_uri.predict_proba(rows), load_model(result.run_dir).predict_proba(rows))


def test_evaluation_report_is_written_with_every_plot(quickstart):
    _, result = quickstart
    report = result.run_dir / "report"
    for name in (
        "report.html",
        "roc.png",
        "pr.png",
        "confusion_matrix.png",
        "threshold.png",
        "calibration.png",
        "feature_importance.png",
    ):
        assert (report / name).stat().st_size > 1000, name
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "first trained in run" in html
    assert "decision threshold" in html
    ev = json.loads((result.run_dir / "evaluation.json").read_text())
    assert ev["candidate"]["auc"] == pytest.approx(result.metrics["auc"], abs=1e-6)
    assert ev["holdout_rows"] == json.loads((result.run_dir / "meta.json").read_text())["rows"]["valid"]


def test_no_change_rerun_skips_every_step(quickstart, registry):
    """Runs before anything moves the champion (a new champion is a changed input of 'evaluate')."""
    pipe, first = quickstart
    again = pipe.train(progress=False)
    assert {s: v["cached"] for s, v in again.steps.items()} == {"prepare": True, "train": True, "evaluate": True}
    assert again.model["cached"] is True and again.model["version"] == first.model["version"]
    assert again.metrics == first.metrics and again.run_id != first.run_id
    assert (again.run_dir / "model.ubj").read_bytes() == (first.run_dir / "model.ubj").read_bytes()


def test_a_monitoring_only_change_registers_a_version_that_carries_it(quickstart, registry, demo_dir, storage):
    """Same data, same model: a new drift detector still needs a new version, or a server following the
    registry would keep the old detector; an unchanged rerun reuses that version."""
    name = "churn-monitoring"
    base = ["training.tune.num_samples=2", "monitoring.drift.p_val=0.01", f"registry.model_name={name}"]
    first = pipeline("quickstart.yaml", demo_dir, storage, *base).train(progress=False)
    changed = pipeline("quickstart.yaml", demo_dir, storage, *base, "monitoring.drift.detector=ks")
    second = changed.train(progress=False)
    assert second.steps["train"]["cached"] and not second.model["cached"]
    assert second.model["version"] == first.model["version"] + 1
    bundle = registry.download(f"models:/{name}/{second.model['version']}", storage + "/dl")[0]
    assert json.loads((bundle / "meta.json").read_text())["run_id"] == second.run_id
    third = changed.train(progress=False)
    assert third.model["cached"] and third.model["version"] == second.model["version"]


def test_failed_gate_leaves_the_champion_and_becomes_challenger(challenger, registry):
    result, before = challenger
    m = result.model
    assert m["passed"] is False and m["alias"] == "challenger"
    assert any("< min 0.99" in line for line in m["gate"])
    assert before is not None  # the quickstart run passed its gate (min 0.60) and is the champion
    assert registry.alias_version(MODEL, "champion") == before
    assert registry.alias_version(MODEL, "challenger") == m["version"]
    # The champion was scored on the same holdout and shown side by side in the report.
    ev = result.evaluation
    assert ev["champion"]["label"] == f"champion v{before}" and "auc" in ev["champion"]["metrics"]
    assert f"champion v{before}" in (result.run_dir / "report" / "report.html").read_text()


def _cli(*args, storage):
    return subprocess.run(
        ["raymlops", *args, "--storage", storage], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=180
    )


def test_cli_promotion_enforces_the_gate_and_records_force(challenger, registry, storage):
    version = challenger[0].model["version"]
    champion = registry.alias_version(MODEL, "champion")
    r = _cli("models", "promote", MODEL, str(version), "--alias", "champion", storage=storage)
    assert r.returncode == 1 and "fails the promotion gate" in r.stderr and "< min 0.99" in r.stderr, r.stderr
    assert registry.alias_version(MODEL, "champion") == champion
    r = _cli("models", "promote", MODEL, str(version), "--alias", "champion", "--force", storage=storage)
    assert r.returncode == 0 and "FORCED" in r.stdout, r.stderr
    assert registry.alias_version(MODEL, "champion") == version
    last = registry.history(MODEL)[-1]
    assert last["alias"] == "champion" and last["version"] == version and last["forced"] is True
    assert last["previous"] == champion
    import getpass

    assert last["by"] == getpass.getuser() != "unknown"  # the OS user, even where $USER is unset (CI, root)
    r = _cli("models", "history", MODEL, storage=storage)
    assert "[forced]" in r.stdout.splitlines()[-1] and f"by {getpass.getuser()}" in r.stdout.splitlines()[-1]
    r = _cli("models", "list", MODEL, storage=storage)
    assert r.returncode == 0 and f"@champion=v{version}" in r.stdout
    r = _cli(
        "models", "promote", MODEL, str(champion), "--alias", "champion", "--force", "--by", "alice", storage=storage
    )
    assert r.returncode == 0 and registry.history(MODEL)[-1]["by"] == "alice", r.stderr


def test_lineage_cli_prints_version_run_config_and_sources(quickstart, storage, demo_dir):
    _, result = quickstart
    r = _cli("lineage", f"models:/{MODEL}/{result.model['version']}", storage=storage)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"models:/{MODEL}/{result.model['version']}" in out and f"raymlops run {result.run_id}" in out
    assert f"MLflow run {result.mlflow_run_id}" in out and "step train: key" in out
    assert f"source customers: {demo_dir / 'train.parquet'}" in out
    r = _cli("lineage", f"models:/{MODEL}/{result.model['version']}", "--json", storage=storage)
    d = json.loads(r.stdout)
    assert d["inputs"]["sources"]["customers"]["sha256"] and "name: churn-quickstart" in d["config"]


def test_reproduce_gives_identical_metrics_and_model_bytes(challenger, storage):
    from raymlops.pipeline.reproduce import reproduce

    result, _ = challenger  # an XGBoost run through Ray Train (one trial keeps the test short)
    got = reproduce(result.run_id, storage, say=lambda _m: None)
    assert got["metrics_match"] and got["model_bytes_match"], got
    assert got["reproduction"] != result.run_id


def test_reproduce_refuses_when_inputs_changed(ray_session, demo_dir, tmp_path):
    from raymlops.pipeline.reproduce import InputsChanged, reproduce

    data = tmp_path / "train.parquet"
    shutil.copy(demo_dir / "train.parquet", data)
    store = str(tmp_path / "store")
    pipe = pipeline(
        "sklearn_regression.yaml", demo_dir, store, f"sources.customers.path={data}", "registry.enabled=false"
    )
    result = pipe.train(progress=False)
    df = pd.read_parquet(data)
    df.iloc[: len(df) - 10].to_parquet(data)
    with pytest.raises(InputsChanged, match="source customers"):
        reproduce(result.run_id, store, say=lambda _m: None)


def test_a_killed_trial_worker_is_retried(ray_session, demo_dir, tmp_path):
    marker = tmp_path / "killed"
    pipe = pipeline(
        "sklearn_multiclass.yaml",
        demo_dir,
        str(tmp_path / "store"),
        "training.model.estimator=tests.integration.chaos.DieOnceClassifier",
        f"training.model.params.marker={marker}",
        "training.model.params.C=1.0",
        "training.failure.max_failures=1",
        "registry.enabled=false",
    )
    result = pipe.train(progress=False)
    assert marker.exists()  # the first attempt's worker really was SIGKILLed
    assert [t["status"] for t in result.trials] == ["ok"] and result.metrics["accuracy"] > 0.5


def test_serving_follows_the_alias_with_no_failed_request(quickstart, challenger, registry, demo_dir, storage):
    pipe, result = quickstart
    served = registry.alias_version(MODEL, "champion")
    target = result.model["version"] if served == challenger[0].model["version"] else challenger[0].model["version"]
    url = pipe.serve(model=f"models:/{MODEL}@champion")
    model = load_model(result.run_dir)
    rows = {
        "instances": json.loads(
            pd.read_parquet(demo_dir / "holdout.parquet")[model.schema.names].head(5).to_json(orient="records")
        )
    }
    before = httpx.post(f"{url}/predict", json=rows, timeout=30).json()["model_version"]
    want = f"{MODEL}/{target}"
    assert before == f"{MODEL}/{served}" != want
    seen, failures, stop = [], [], threading.Event()

    def traffic():
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                r = c.post(f"{url}/predict", json=rows)
                (seen if r.status_code == 200 else failures).append(r.json().get("model_version") or r.text)

    workers = [threading.Thread(target=traffic) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        time.sleep(1)
        registry.promote(MODEL, target, "champion", force=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not seen or seen[-1] != want):
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        for w in workers:
            w.join()
        from raymlops.serving import shutdown

        shutdown(pipe.app_name)
    assert not failures, failures[:3]
    assert seen[0] == before and seen[-1] == want, (seen[:3], seen[-3:])
    # Once swapped, every later answer comes from the new version.
    assert before not in seen[seen.index(want) :]
