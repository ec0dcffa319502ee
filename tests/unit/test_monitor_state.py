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
    return VariantMonitor(
        {
            "app": "app",
            "variant": "v",
            "namespace": "ns",
            "run_dir": str(run_dir),
            "model_version": version,
            "state_dir": str(state_dir),
            "started": started,
            "drift": DriftConfig(window=200).model_dump(),
            "quality": DataQualityConfig(window=200).model_dump(),
            "history": 50,
            "checkpoint_s": 60,
            "app_monitor": None,
        }
    )


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


def test_history_rotates_at_its_size_keeps_what_is_asked_and_reads_across_files(tmp_path):
    path = tmp_path / HISTORY
    for w in range(1, 41):  # ~60 bytes a line, rotated at 300 bytes: ~5 lines a file
        append_line(path, {"kind": "drift", "model_version": "a", "window": w}, rotate_bytes=300, keep=3)
    logs = sorted(p for p in tmp_path.iterdir() if not p.name.startswith("."))  # not the hidden lock file
    assert [p.name for p in logs] == [HISTORY, f"{HISTORY}.1", f"{HISTORY}.2", f"{HISTORY}.3"]  # .4+ dropped
    assert all(p.stat().st_size < 300 + 80 for p in logs)
    kept = [
        json.loads(ln)["window"]
        for p in (f"{HISTORY}.3", f"{HISTORY}.2", f"{HISTORY}.1", HISTORY)
        for ln in (tmp_path / p).read_text().splitlines()
    ]
    two = {json.loads(ln)["window"] for ln in (tmp_path / f"{HISTORY}.2").read_text().splitlines()}
    assert kept == list(range(kept[0], 41)) and len(kept) < 40  # contiguous, newest last, oldest gone
    assert [e["window"] for e in read_history(tmp_path, 8, keep=3)] == list(range(33, 41))  # spans two files
    assert [e["window"] for e in read_history(tmp_path, keep=3)] == kept
    (tmp_path / f"{HISTORY}.2").unlink()  # a gap (as a crash between two renames of a rotation leaves)
    assert [e["window"] for e in read_history(tmp_path, keep=3)] == [w for w in kept if w not in two]
    m = {"history_rotate_mb": 1, "history_keep": 2}
    from raymlops.monitoring.actor import rotation

    assert rotation(m) == (1024 * 1024, 2) and rotation({"history_rotate_mb": None}) == (None, 5)


def test_lowering_keep_drops_the_extra_rotated_files_at_the_next_rotation(tmp_path):
    path = tmp_path / HISTORY
    for w in range(30):
        append_line(path, {"kind": "drift", "model_version": "a", "window": w}, rotate_bytes=300, keep=4)
    assert (tmp_path / f"{HISTORY}.4").exists()
    for w in range(30, 40):  # at least one rotation with keep=2
        append_line(path, {"kind": "drift", "model_version": "a", "window": w}, rotate_bytes=300, keep=2)
    logs = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert logs == [HISTORY, f"{HISTORY}.1", f"{HISTORY}.2"]
    assert read_history(tmp_path, keep=2)[-1]["window"] == 39
