"""Promotion gates, model URIs, the step cache and fingerprints (no Ray, no MLflow server)."""

import json
import os

import pytest

from raymlops.config import load_config
from raymlops.errors import ConfigError
from raymlops.pipeline.cache import StepCache
from raymlops.pipeline.fingerprint import Fingerprinter
from raymlops.registry import RegistryError, check_gate, parse_uri
from tests.conftest import ROOT

GATE = {"metric": "auc", "min": 0.8, "max": None, "beat_champion_by": 0.0}


@pytest.mark.parametrize(
    "candidate,champion,passed",
    [
        ({"auc": 0.85}, None, True),  # above min, no champion
        ({"auc": 0.79}, None, False),  # below min
        ({"auc": 0.85}, {"auc": 0.85}, True),  # a tie beats the champion by 0.0
        ({"auc": 0.85}, {"auc": 0.86}, False),  # worse than the champion
        ({"logloss": 0.3}, None, False),  # the gate metric is missing
    ],
)
def test_gate_on_a_maximised_metric(candidate, champion, passed):
    ok, lines = check_gate(GATE, candidate, champion)
    assert ok is passed and lines


def test_gate_on_a_minimised_metric_and_margin():
    gate = {"metric": "logloss", "min": None, "max": 0.5, "beat_champion_by": 0.05}
    assert check_gate(gate, {"logloss": 0.30}, {"logloss": 0.40})[0]  # lower by 0.10 >= 0.05
    ok, lines = check_gate(gate, {"logloss": 0.38}, {"logloss": 0.40})  # lower by only 0.02
    assert not ok and "better by +0.0200 (< 0.05)" in lines[-1]
    assert not check_gate(gate, {"logloss": 0.6}, None)[0]  # above max
    assert check_gate({**gate, "beat_champion_by": None}, {"logloss": 0.45}, {"logloss": 0.1})[0]


def test_model_uris():
    assert parse_uri("models:/churn@champion") == ("churn", "champion", None)
    assert parse_uri("models:/churn/12") == ("churn", None, 12)
    for bad in ("models:/churn", "churn@champion", "models:/churn/x", "models:/@a"):
        with pytest.raises(RegistryError, match="expected 'models:/NAME@ALIAS'"):
            parse_uri(bad)


def test_step_cache_runs_once_per_key_and_publishes_whole(tmp_path):
    cache = StepCache(tmp_path)
    calls = []

    def build(d):
        calls.append(d)
        (d / "out.txt").write_text("x")
        return {"n": 1}

    first = cache.run("prep", {"a": 1}, build)
    again = cache.run("prep", {"a": 1}, build)
    assert len(calls) == 1 and not first.cached and again.cached
    assert again.info == {"n": 1} and again.fingerprint == first.fingerprint and again.path == first.path
    other = cache.run("prep", {"a": 2}, build)
    assert len(calls) == 2 and other.key != first.key
    forced = StepCache(tmp_path, enabled=False).run("prep", {"a": 1}, build)
    assert len(calls) == 3 and not forced.cached and (forced.path / "out.txt").read_text() == "x"
    # --no-cache never replaces a published entry (a reader may hold it): its outputs get their own folder.
    assert forced.path != first.path and cache.lookup("prep", first.key).path == first.path


def test_step_cache_first_writer_wins(tmp_path):
    a, b = StepCache(tmp_path), StepCache(tmp_path)

    def slow(d):  # while this step runs, another process publishes the same key
        b.run("train", {"k": 1}, lambda d2: (d2 / "m").write_text("B") and {"who": "B"})
        (d / "m").write_text("A")
        return {"who": "A"}

    got = a.run("train", {"k": 1}, slow)
    assert got.cached and got.info == {"who": "B"} and (got.path / "m").read_text() == "B"
    assert [p.name for p in (tmp_path / "train").iterdir()] == [got.key]


def test_step_cache_put_replaces_a_record(tmp_path):
    cache = StepCache(tmp_path)
    key = cache.put("features", {"v": 1}, {"version": 1})
    assert cache.put("features", {"v": 1}, {"version": 2}) == key
    assert cache.lookup("features", key).info == {"version": 2}


def test_step_cache_failure_leaves_nothing(tmp_path):
    cache = StepCache(tmp_path)

    def boom(d):
        (d / "half.txt").write_text("partial")
        raise RuntimeError("crash mid-step")

    with pytest.raises(RuntimeError):
        cache.run("train", {"a": 1}, boom)
    assert cache.lookup("train", cache.key("train", {"a": 1})) is None
    assert not list((tmp_path / "train").iterdir())


def test_fingerprint_follows_content_not_names(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.parquet").write_bytes(b"one")
    memo = tmp_path / "memo.json"
    fp = Fingerprinter(memo)
    first = fp.path(str(d))
    assert first["files"] == 1 and first["bytes"] == 3 and json.loads(memo.read_text())
    assert Fingerprinter(memo).path(str(d))["sha256"] == first["sha256"]  # from the memo
    (d / "a.parquet").write_bytes(b"two")
    os.utime(d / "a.parquet", ns=(1, 1))
    assert fp.path(str(d))["sha256"] != first["sha256"]
    assert fp.path(str(d / "*.parquet"))["files"] == 1


@pytest.mark.parametrize(
    "old,new,expected",
    [
        (
            "metric: auc\n    min: 0.60",
            "metric: rmse\n    min: 0.60",
            "registry.promotion.metric: got 'rmse'; task 'binary' supports",
        ),
        (
            "model: models:/churn@champion",
            "model: churn@champion",
            "serving.model: got 'churn@champion'; expected 'models:/NAME@ALIAS'",
        ),
        ("max_failures: 1", "max_failures: -2", "training.failure.max_failures: "),
    ],
)
def test_registry_config_errors_name_the_key(tmp_path, old, new, expected):
    text = (ROOT / "configs" / "quickstart.yaml").read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msgs = [str(i) for i in e.value.issues]
    line = next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if new.split("\n")[0] in ln)
    assert any(m.startswith(f"{bad}:{line}: ") and expected in m for m in msgs), msgs


def test_a_source_fingerprint_follows_content_not_location(tmp_path):
    """A Ray job's working dir is unpacked under a new path whenever any of its files changes: the same data
    must key the same cached steps there."""
    from raymlops.pipeline.fingerprint import Fingerprinter

    fp = Fingerprinter()
    for where in ("a", "b"):
        (tmp_path / where / "data").mkdir(parents=True)
        (tmp_path / where / "data" / "t.parquet").write_bytes(b"same")
        (tmp_path / where / "data" / "u.parquet").write_bytes(b"too")
    one, other = (fp.path(str(tmp_path / w / "data" / "t.parquet")) for w in ("a", "b"))
    assert one["sha256"] == other["sha256"] and one["path"] != other["path"]
    assert fp.path(str(tmp_path / "a" / "data"))["sha256"] == fp.path(str(tmp_path / "b" / "data"))["sha256"]
    (tmp_path / "b" / "data" / "u.parquet").write_bytes(b"changed")
    assert fp.path(str(tmp_path / "a" / "data"))["sha256"] != fp.path(str(tmp_path / "b" / "data"))["sha256"]
