import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raymlops import load_model
from raymlops.errors import DataError
from tests.integration.conftest import pipeline


def test_quickstart_run_has_every_artifact(quickstart, storage):
    _, result = quickstart
    d = result.run_dir
    for name in (
        "config.yaml",
        "meta.json",
        "metrics.json",
        "schema.json",
        "preprocessing.json",
        "model.ubj",
        "reference.parquet",
        "quality.json",
        "drift/inputs/detector.json",
        "drift/prediction/detector.json",
    ):
        assert (d / name).exists(), name
    assert not [p for p in d.parent.iterdir() if p.name.endswith(".partial")]
    metrics = json.loads((d / "metrics.json").read_text())
    ok = [t for t in metrics["trials"] if t["status"] == "ok"]
    assert len(metrics["trials"]) == 2 and len(ok) == 2
    assert metrics["best"]["auc"] == max(t["metrics"]["auc"] for t in ok)
    assert result.metrics["auc"] > 0.6  # the demo label has real signal (random is 0.5; the gate asks 0.6)
    meta = json.loads((d / "meta.json").read_text())
    assert meta["classes"] == [0, 1] and meta["model_type"] == "xgboost"
    assert "customer_id" not in meta["input_columns"] and "event_ts" not in meta["input_columns"]
    rows = json.loads((d / "meta.json").read_text())["rows"]["train"]
    # the default: 10 x the 500-row drift window, or the whole training split when smaller
    assert len(pd.read_parquet(d / "reference.parquet")) == min(5000, rows)
    assert json.loads((d / "drift/inputs/effects.json").read_text())["thresholds"] is None  # reference: sample


def test_load_model_by_dir_and_by_id(quickstart, storage, demo_dir):
    _, result = quickstart
    rows = pd.read_parquet(demo_dir / "holdout.parquet").head(300)
    by_dir = load_model(result.run_dir)
    by_id = load_model(result.run_id, storage=storage)
    preds, probs = by_dir.predict_with_proba(rows)
    assert by_id.predict_proba(rows).tolist() == probs
    assert set(preds) <= {0, 1} and all(0 <= p <= 1 for p in probs)
    assert by_dir.predict(rows).tolist() == preds


def test_binary_decisions_use_the_threshold_chosen_out_of_fold(quickstart, demo_dir, tmp_path, storage):
    """quickstart.yaml: decision: {threshold: auto, optimize: f1}. The threshold comes from out-of-fold scores of
    the training split; the holdout's f1 and accuracy, load_model and batch scoring all decide at it."""
    from raymlops.pipeline.predict import plan, score
    from raymlops.training.metrics import evaluate

    _, result = quickstart
    meta = json.loads((result.run_dir / "meta.json").read_text())
    d = meta["decision"]
    assert d["optimize"] == "f1" and d["how"] == "chosen on 5-fold out-of-fold scores of the training split"
    assert 0.05 < d["threshold"] < 0.4  # churners are ~12% of customers
    model = load_model(result.run_dir)
    assert model.threshold == d["threshold"]
    holdout = pd.read_parquet(demo_dir / "holdout.parquet")
    preds, probs = model.predict_with_proba(holdout)
    assert preds == [int(p >= d["threshold"]) for p in probs]
    evaluation = json.loads((result.run_dir / "evaluation.json").read_text())
    assert evaluation["threshold"] == d["threshold"]
    y = holdout["churned"].to_numpy()
    at_half = evaluate("binary", y, np.asarray(probs))["f1"]
    assert evaluate("binary", y, np.asarray(probs), threshold=d["threshold"])["f1"] > at_half + 0.2, at_half
    assert evaluation["candidate"]["f1"] > result.metrics["f1"] + 0.2  # vs the search's f1 at 0.5
    assert (result.run_dir / "report" / "threshold.png").stat().st_size > 1000
    out = tmp_path / "scored"
    score(plan(result.run_id, str(demo_dir / "holdout.parquet"), storage), str(out))
    scored = pd.read_parquet(out)
    assert (scored["prediction"] == (scored["probability"] >= d["threshold"]).astype(int)).all()


def test_validation_metric_is_reproducible_offline(quickstart, demo_dir):
    """The stored AUC is the model's AUC on the time-split validation rows, recomputed here."""
    from sklearn.metrics import roc_auc_score

    _, result = quickstart
    df = pd.read_parquet(demo_dir / "train.parquet")
    cut = np.sort(df["event_ts"].to_numpy())[int(len(df) * 0.8)]
    valid = df[df["event_ts"] >= cut]
    auc = roc_auc_score(valid["churned"], load_model(result.run_dir).predict_proba(valid))
    assert auc == pytest.approx(result.metrics["auc"], abs=1e-4)


def test_batch_predict_matches_load_model(quickstart, demo_dir, tmp_path, storage):
    from raymlops.pipeline.predict import plan, score

    _, result = quickstart
    out = tmp_path / "scored"
    n = score(plan(result.run_id, str(demo_dir / "holdout.parquet"), storage), str(out))
    scored = pd.read_parquet(out).sort_values("customer_id").reset_index(drop=True)
    rows = pd.read_parquet(demo_dir / "holdout.parquet").sort_values("customer_id").reset_index(drop=True)
    assert n == len(rows) == len(scored)
    expected = load_model(result.run_dir).predict_proba(rows)
    assert np.allclose(scored["probability"], expected, atol=1e-6)
    assert (scored["model_version"] == result.run_id).all()


def test_sklearn_multiclass_grid(ray_session, demo_dir, storage):
    result = pipeline("sklearn_multiclass.yaml", demo_dir, storage).train(progress=False)
    assert len(result.trials) == 2 and {t["params"]["C"] for t in result.trials} == {0.1, 1.0}
    assert set(result.metrics) == {"logloss", "accuracy", "f1"}
    model = load_model(result.run_dir)
    assert model.classes == ["month-to-month", "one-year", "two-year"]
    proba = model.predict_proba(pd.read_parquet(demo_dir / "holdout.parquet").head(50))
    assert proba.shape == (50, 3) and np.allclose(proba.sum(axis=1), 1)


def test_sklearn_regression_with_asha(ray_session, demo_dir, storage):
    result = pipeline("sklearn_regression.yaml", demo_dir, storage).train(progress=False)
    assert set(result.metrics) == {"rmse", "mae", "r2"}
    assert result.metrics["r2"] > 0.8  # price is driven by plan
    preds = load_model(result.run_dir).predict(pd.read_parquet(demo_dir / "holdout.parquet").head(20))
    assert preds.dtype == np.float64 and not any(math.isnan(p) for p in preds)


def test_a_failing_run_leaves_nothing_visible(ray_session, demo_dir, storage):
    pipe = pipeline("sklearn_multiclass.yaml", demo_dir, storage, "training.label=no_such_column")
    with pytest.raises(DataError, match="label column 'no_such_column' is not in the data"):
        pipe.train(progress=False)
    assert not list((Path(storage) / "runs" / "contract-multiclass").glob(".*.partial"))


@pytest.mark.parametrize("distributed", ["never", "always"])
def test_xgboost_with_asha_reports_rounds_and_keeps_a_complete_best(ray_session, demo_dir, storage, distributed):
    pipe = pipeline(
        "quickstart.yaml",
        demo_dir,
        storage,
        "training.tune.scheduler=asha",
        "training.tune.num_samples=2",
        "training.model.num_boost_round=20",
        f"training.model.distributed={distributed}",
        "training.model.early_stopping_rounds=null",
        "monitoring=null",
        "serving=null",
    )
    result = pipe.train(progress=False)
    statuses = [t["status"] for t in result.trials]
    assert len(statuses) == 2 and "ok" in statuses and set(statuses) <= {"ok", "stopped"}, result.trials
    assert (result.run_dir / "model.ubj").exists() and result.metrics["auc"] > 0.6  # 20 rounds: well above chance
    meta = json.loads((result.run_dir / "meta.json").read_text())
    assert meta["spec"]["path"] == {"never": "in-process", "always": "data-parallel"}[distributed]
    search = max(Path(storage).rglob("search.json"), key=lambda p: p.stat().st_mtime)  # the train step's record
    ok = [t for t in json.loads(search.read_text())["trials"] if t["status"] == "ok"]
    assert ok and all(len(t["history"]["valid_auc"]) == 20 and t["history"]["auc"] for t in ok), ok  # curve + reports


def test_both_xgboost_paths_give_the_same_results_and_reproducible_bytes(ray_session, demo_dir, tmp_path):
    """One trial per path, twice each: identical model bytes within a path; the same metrics across them."""
    runs = {}
    for distributed in ("never", "always", "never", "always"):
        pipe = pipeline(
            "quickstart.yaml",
            demo_dir,
            str(tmp_path / distributed),
            "training.tune.num_samples=1",
            f"training.model.distributed={distributed}",
            "monitoring=null",
            "serving=null",
            "registry.enabled=false",
            "training.model.num_boost_round=30",
        )
        result = pipe.train(progress=False, no_cache=True)
        runs.setdefault(distributed, []).append((result.run_dir / "model.ubj").read_bytes())
        runs.setdefault(f"{distributed} metrics", []).append(result.metrics)
    assert runs["never"][0] == runs["never"][1] and runs["always"][0] == runs["always"][1]
    a, b = runs["never metrics"][0], runs["always metrics"][0]
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-6) for k in a), (a, b)


def test_auto_trains_in_process_unless_the_split_is_large(ray_session, demo_dir, tmp_path):
    import ray

    from raymlops.training.search import xgboost_path

    ds = ray.data.range(1000)
    model = {"distributed": "auto", "num_workers": 1, "in_process_max_share": 0.25}
    assert xgboost_path(model, ds) == "in-process"
    assert xgboost_path({**model, "in_process_max_share": 1e-12}, ds) == "data-parallel"  # a lowered threshold
    assert xgboost_path({**model, "num_workers": 2}, ds) == "data-parallel"
    assert xgboost_path({**model, "distributed": "always"}, ds) == "data-parallel"


def test_unknown_preprocessing_columns_fail_before_any_work(ray_session, demo_dir, storage):
    pipe = pipeline("sklearn_multiclass.yaml", demo_dir, storage, "training.preprocessing.0.columns=[usage_gbb]")
    with pytest.raises(DataError, match=r"training.preprocessing\[0\] \(impute\): unknown columns \['usage_gbb'\]"):
        pipe.train(progress=False)


def test_optuna_search_runs_in_process_trials_two_at_a_time(ray_session, demo_dir, storage):
    """TPE through Tune's Optuna integration, on the in-process path: with one CPU per trial, the default
    concurrency runs as many trials at once as the cluster has CPUs (2 here), and they overlap in time."""
    import ray

    pipe = pipeline(
        "quickstart.yaml",
        demo_dir,
        storage,
        "training.tune.search=optuna",
        "training.tune.num_samples=4",
        "training.model.num_boost_round=40",
        "monitoring=null",
        "serving=null",
        "registry.enabled=false",
    )
    result = pipe.train(progress=False, no_cache=True)
    assert [t["status"] for t in result.trials] == ["ok"] * 4, result.trials
    assert len({t["params"]["eta"] for t in result.trials}) == 4  # suggested, not repeated
    assert result.metrics["auc"] == max(t["metrics"]["auc"] for t in result.trials)
    assert ray.cluster_resources()["CPU"] >= 2
    spans = sorted((t["ended"] - t["seconds"], t["ended"]) for t in result.trials)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans  # some trial started before another ended


def test_cuda_without_a_gpu_fails_before_any_trial(ray_session, demo_dir, storage):
    import ray

    from raymlops.training.search import TrainingError

    assert ray.cluster_resources().get("GPU", 0) == 0  # the test machines have none
    pipe = pipeline(
        "quickstart.yaml",
        demo_dir,
        storage,
        "training.model.device=cuda",
        "monitoring=null",
        "serving=null",
        "registry.enabled=false",
    )
    with pytest.raises(TrainingError, match="training.model.device is 'cuda' but this Ray cluster has no GPU"):
        pipe.train(progress=False, no_cache=True)


def _ray_workers() -> dict[int, str]:
    """pid -> process title of every worker of this test session's Ray node (children of its raylet)."""
    import os

    import ray
    from ray._private import ray_constants

    raylet = ray._private.worker._global_node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    out = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != raylet:
                    continue
            with open(f"/proc/{d}/cmdline") as f:
                out[int(d)] = f.read().split("\0")[0]
        except (OSError, ValueError, IndexError):
            continue
    return out


@pytest.mark.parametrize("distributed,title", [("never", "ray::ImplicitFunc.train"), ("always", "ray::RayTrainWorker")])
def test_a_killed_trial_process_is_retried_on_both_paths(ray_session, demo_dir, tmp_path, distributed, title):
    """failure.max_failures: 1. The process that boosts (the Tune trial in-process; the Train worker when
    data-parallel) is SIGKILLed mid-fit; Tune (or Ray Train) starts it again and the run finishes."""
    import os
    import signal
    import threading
    import time

    pipe = pipeline(
        "quickstart.yaml",
        demo_dir,
        str(tmp_path),
        "training.tune.num_samples=1",
        f"training.model.distributed={distributed}",
        "training.model.num_boost_round=3000",
        "training.model.early_stopping_rounds=null",
        "training.failure.max_failures=1",
        "training.decision=null",
        "monitoring=null",
        "serving=null",
        "registry.enabled=false",
    )
    seen: dict = {"killed": None, "after": set()}
    done = threading.Event()

    def killer():  # the search runs in the main thread (Tune's signal handling needs it)
        while not done.is_set():
            found = [pid for pid, t in _ray_workers().items() if t == title]
            if seen["killed"] is None and found:
                time.sleep(1.0)  # mid-fit: 3,000 rounds take several seconds
                os.kill(found[0], signal.SIGKILL)
                seen["killed"] = found[0]
            seen["after"].update(p for p in found if p != seen["killed"])
            time.sleep(0.2)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    try:
        result = pipe.train(progress=False, no_cache=True)
    finally:
        done.set()
        th.join(timeout=30)
    assert seen["killed"] is not None and seen["after"], seen  # one process killed, another one did the work
    assert [t["status"] for t in result.trials] == ["ok"], result.trials
    assert result.metrics["auc"] > 0.6
