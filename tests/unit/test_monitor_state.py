"""The variant monitor's state without Ray: what a restart resumes, a swap before a restart, an unusable
checkpoint, torn and repeated history lines."""

import json

import pandas as pd
import pytest

from raymlops.config.monitoring import DataQualityConfig, DriftConfig
from raymlops.data.quality import DataProfile
from raymlops.data.schema import Column
from raymlops.monitoring.actor import CHECKPOINT, HISTORY, VariantMonitor, append_line, read_history
from raymlops.monitoring.drift import fit_inputs

COLUMNS = [Column("plan", "string"), Column("monthly_charges", "number"), Column("tenure_months", "integer")]


def _run(path, train):
    drift = DriftConfig(window=200).model_dump()
    fit_inputs(train, COLUMNS, drift, path / "drift")
    DataProfile.fit(train, COLUMNS).save(path / "quality.json")
    return path


@pytest.fixture(scope="module")
def runs(demo_dir, tmp_path_factory):
    train = pd.read_parquet(demo_dir / "train.parquet")
    root = tmp_path_factory.mktemp("runs")
    (root / "a").mkdir()
    (root / "b").mkdir()
    return _run(root / "a", train.head(2000)), _run(root / "b", train.tail(2000)), train


def _monitor(run_dir, state_dir, version, started=1.0):
    return VariantMonitor({"app": "app", "variant": "v", "namespace": "ns", "run_dir": str(run_dir),
                           "model_version": version, "state_dir": str(state_dir), "started": started,
                           "drift": DriftConfig(window=200).model_dump(),
                           "quality": DataQualityConfig(window=200).model_dump(), "history": 50,
                           "checkpoint_s": 60, "app_monitor": None})


def test_a_restart_resumes_the_swapped_model_and_a_redeploy_does_not(runs, tmp_path):
    a, b, train = runs
    m = _monitor(a, tmp_path, "a")
    m.observe(train.iloc[:250])
    assert m.swap(str(b), "b")
    m.observe(train.iloc[:250])  # one window of b, 50 rows pending
    restarted = _monitor(a, tmp_path, "a")  # Ray restarts an actor with its first spec
    assert restarted.restored and restarted.model_version == "b" and restarted.run_dir == str(b)
    assert restarted.drift_window.rows == 50 and restarted.windows_tested == 1
    redeployed = _monitor(a, tmp_path, "a", started=2.0)  # a new deployment of model a starts afresh
    assert not redeployed.restored and redeployed.model_version == "a" and redeployed.windows_tested == 0


def test_an_unusable_checkpoint_is_kept_aside_and_the_monitor_starts_afresh(runs, tmp_path):
    a, _, train = runs
    _monitor(a, tmp_path, "a").observe(train.iloc[:250])
    (tmp_path / CHECKPOINT).write_bytes(b"not a pickle")
    m = _monitor(a, tmp_path, "a")
    assert not m.restored and m.windows_tested == 0 and (tmp_path / f"{CHECKPOINT}.bad").is_file()
    assert len(m.history) == 2  # the history file is untouched: drift and quality of the first window


def test_a_torn_history_line_never_swallows_the_next_and_repeats_count_once(tmp_path):
    append_line(tmp_path / HISTORY, {"kind": "drift", "model_version": "a", "window": 1})
    with open(tmp_path / HISTORY, "a") as f:
        f.write('{"kind": "drift", "model_version": "a", "win')  # a crash mid-append
    append_line(tmp_path / HISTORY, {"kind": "drift", "model_version": "a", "window": 2, "is_drift": False})
    append_line(tmp_path / HISTORY, {"kind": "drift", "model_version": "a", "window": 2, "is_drift": True})
    lines = (tmp_path / HISTORY).read_text().splitlines()
    assert [json.loads(ln)["window"] for ln in lines] == [1, 2, 2]
    got = read_history(tmp_path)
    assert [(e["window"], e.get("is_drift")) for e in got] == [(1, None), (2, True)]
