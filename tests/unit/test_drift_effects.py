"""Drift verdicts on real-world shapes of data: rare categories, effect sizes beside p-values, and thresholds
learned from time-ordered reference chunks."""

import numpy as np
import pandas as pd
import pytest

from raymlops.config.monitoring import DriftConfig
from raymlops.data.schema import Column
from raymlops.monitoring.detectors.base import Encoder
from raymlops.monitoring.drift import PREDICTION, DriftTester, fit_inputs, fit_prediction
from raymlops.monitoring.effects import Profile


def bound(p: float, n: int) -> float:
    """A false-alarm count clearly above the target: ``p`` plus three binomial standard deviations."""
    return n * p + 3 * np.sqrt(n * p * (1 - p))


def fitted(tmp_path, rows, columns, **drift) -> DriftTester:
    fit_inputs(rows, columns, DriftConfig(**drift).model_dump(), tmp_path)
    return DriftTester(tmp_path)


def rare(rng, n):
    """One categorical column with a category of 0.4% (8 rows in 2,000) and a few unseen-in-reference ones."""
    cats = rng.choice(["a", "b", "c", "r", "s", "t"], n, p=[0.6, 0.3, 0.092, 0.004, 0.003, 0.001])
    return pd.DataFrame({"c": cats, "x": rng.normal(0, 1, n)})


def test_rare_categories_share_a_code_and_keep_chi2_at_its_false_alarm_rate(tmp_path):
    rng = np.random.default_rng(3)
    ref = rare(rng, 2000)
    enc = Encoder.fit(ref, [Column("c", "string")], window=500)
    col = enc.columns[0]
    assert col["categories"] == ["a", "b", "c"] and set(col["merged"]) <= {"r", "s", "t"}
    assert col["other"] == 2 and col["missing"] == 2  # the merged bucket is rare too: it joins 'c'
    assert Encoder.fit(ref, [Column("c", "string")]).columns[0]["categories"] == sorted(set(ref.c))  # no window
    t = fitted(tmp_path, ref, [Column("c", "string")], detector="chi2", reference_size=2000, predictions=False)
    windows = 300
    alarms = sum(t.test(rare(rng, 500))["is_drift"] for _ in range(windows))
    assert alarms <= bound(0.05, windows), alarms
    assert t.test(rare(rng, 500).assign(c="t"))["is_drift"] is True  # a flood of an unseen category is drift


def test_effect_sizes_do_not_grow_with_the_window_and_min_effect_reports_a_tiny_shift_without_alerting(tmp_path):
    rng = np.random.default_rng(4)
    cols = [Column("x", "number"), Column("c", "string")]

    def rows(n, shift=0.0):
        return pd.DataFrame({"x": rng.normal(shift, 2, n), "c": rng.choice(list("abc"), n, p=[0.5, 0.3, 0.2])})

    t = fitted(tmp_path, rows(20_000), cols, detector="tabular", min_effect=0.1, predictions=False)
    half = t.test(rows(2000, shift=1.0))["features"]["x"]  # half a standard deviation
    assert half["effect_metric"] == "wasserstein_norm" and half["effect"] == pytest.approx(0.5, abs=0.06)
    assert half["is_drift"] and half["significant"] and half["min_effect"] == 0.1
    small, large = (t.test(rows(n, shift=0.1))["features"]["x"] for n in (2000, 20_000))
    assert large["effect"] == pytest.approx(0.05, abs=0.02) and small["effect"] < 0.12  # ~ shift, not rows
    assert large["significant"] and not large["is_drift"]  # p tiny at 20,000 rows; effect below min_effect
    cat = t.test(rows(2000).assign(c="a"))["features"]["c"]
    assert cat["effect_metric"] == "jensen_shannon" and 0.4 < cat["effect"] <= 1 and cat["is_drift"]
    calm = t.test(rows(2000))
    assert calm["is_drift"] is False and all(f["effect"] < 0.1 for f in calm["features"].values())


def test_per_feature_min_effect_and_config_errors():
    assert DriftConfig(min_effect={"x": 0.2}).min_effect == {"x": 0.2}
    with pytest.raises(ValueError, match="must be >= 0, got -0.1 for 'x'"):
        DriftConfig(min_effect={"x": -0.1})
    with pytest.raises(ValueError, match="reference: chunks"):
        DriftConfig(reference="chunks", detector="cvm_online")
    assert DriftConfig().reference_rows() == 5000 and DriftConfig(window=100).reference_rows() == 2000
    assert DriftConfig(reference="chunks", chunks=10).reference_rows() == 5000
    assert DriftConfig(detector="fet_online").reference_rows() == 2000
    assert DriftConfig(reference_size=800).reference_rows() == 800


def seasonal(rng, start: int, n: int) -> pd.DataFrame:
    """Time-ordered traffic whose level wanders with a weekly cycle (rows are hours), like real ordered data."""
    t = np.arange(start, start + n)
    level = 0.3 * np.sin(2 * np.pi * t / (24 * 7 * 20))  # 20 rows an hour
    return pd.DataFrame(
        {
            "x": rng.normal(level, 1),
            "y": rng.normal(0.5 * level, 1),
            "c": np.where(rng.random(n) < 0.3 + 0.3 * level, "a", "b"),
        }
    )


def test_chunk_thresholds_keep_ordered_traffic_of_the_same_period_quiet_and_still_catch_a_shift(tmp_path):
    rng = np.random.default_rng(5)
    cols = [Column("x", "number"), Column("y", "number"), Column("c", "string")]
    period = 24 * 7 * 20  # a week of rows
    ref = seasonal(rng, 0, 6 * period)  # six weeks, in time order
    later = seasonal(rng, 6 * period, 4 * period)  # the next four weeks, in time order
    windows = [later.iloc[i : i + 500] for i in range(0, len(later) - 499, 500)]
    sample = fitted(tmp_path / "s", ref, cols, detector="tabular", reference_size=len(ref), predictions=False)
    chunks = fitted(
        tmp_path / "c", ref, cols, detector="tabular", reference="chunks", chunks=len(ref) // 500, predictions=False
    )
    by_sample = sum(sample.test(w)["is_drift"] for w in windows)
    by_chunks = sum(chunks.test(w)["is_drift"] for w in windows)
    assert by_sample > 0.5 * len(windows)  # p-values assume shuffled windows: ordered traffic looks drifted
    assert by_chunks <= bound(0.05, len(windows)), (by_chunks, len(windows))
    got = chunks.test(windows[0].assign(x=windows[0].x + 1.5))
    assert got["is_drift"] and got["reference"] == "chunks"
    f = got["features"]["x"]
    assert f["is_drift"] and f["effect"] > f["effect_threshold"] > 0


def test_chunks_need_three_chunks(tmp_path):
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="at least 3 chunks"):
        fitted(
            tmp_path,
            seasonal(rng, 0, 1200),
            [Column("x", "number")],
            detector="ks",
            reference="chunks",
            predictions=False,
        )


def test_profile_distances():
    enc = Encoder.fit(
        pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "c": list("aabb")}), [Column("x", "number"), Column("c", "string")]
    )
    ref = enc.encode(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "c": list("aabb")}))
    p = Profile.fit(ref, enc)
    assert p.distances(ref) == [0.0, 0.0] and p.metrics() == ["wasserstein_norm", "jensen_shannon"]
    moved = p.distances(enc.encode(pd.DataFrame({"x": [10.0, 11.0, 12.0, 13.0], "c": list("zzzz")})))
    assert moved[0] == pytest.approx(10 / np.std([0, 1, 2, 3]))  # every point moved by 10
    assert moved[1] == pytest.approx(1.0)  # disjoint shares: the largest Jensen-Shannon distance
    assert p.distances(ref[:0]) == [None, None]


def test_skewed_samples_of_one_distribution_are_close():
    rng = np.random.default_rng(7)
    enc = Encoder.fit(pd.DataFrame({"x": [0.0]}), [Column("x", "number")])
    ref = rng.pareto(2, 200_000)
    p = Profile.fit(ref[:, None], enc)
    # the quantile grid's extremes once made this 0.19: over Evidently's 0.1 with no drift at all
    assert p.distances(rng.pareto(2, 50_000)[:, None])[0] < 0.02
    assert Profile.fit(np.array([[0.0], [1.0]]), enc).distances(np.array([[0.0], [0.0], [1.0], [1.0]]))[0] == 0


def test_merging_never_leaves_a_column_that_cannot_change():
    ref = pd.DataFrame({"c": ["a"] * 1980 + ["r"] * 10 + [None] * 10})
    col = Encoder.fit(ref, [Column("c", "string")], window=500).columns[0]
    assert col["categories"] == ["a"] and col["other"] == 1 and col["missing"] == 2  # own codes: not folded


def test_verdicts_keep_the_multivariate_test_and_unexplained_alarms(tmp_path):
    rng = np.random.default_rng(8)
    drift = DriftConfig(detector="ks", min_effect=0.5).model_dump()
    fit_inputs(pd.DataFrame({"x": rng.normal(0, 1, 2000)}), [Column("x", "number")], drift, tmp_path)
    fit_prediction(pd.Series(rng.random(2000)), drift, tmp_path)
    t = DriftTester(tmp_path)
    window = pd.DataFrame({"x": rng.normal(0, 1, 500), PREDICTION: rng.random(500)})
    # mmd-like, inputs calm: a significant prediction below min_effect is no drift of the window
    result = {
        "is_drift": True,
        "inputs_drift": False,
        "p_value": 0.4,
        "prediction_drift": True,
        "features": {PREDICTION: {"test": "ks", "p_value": 0.001, "is_drift": True}},
    }
    t._effects(window, result)
    assert result["is_drift"] is False and result["prediction_drift"] is False
    # mmd-like: one test over every input flagged; its features below min_effect do not cancel it
    result = {
        "is_drift": True,
        "inputs_drift": True,
        "p_value": 0.001,
        "features": {"x": {"test": "ks", "p_value": 0.001, "is_drift": True}},
    }
    t._effects(window, result)
    assert result["features"]["x"]["significant"] and not result["features"]["x"]["is_drift"]
    assert result["is_drift"] is True

    # online: an alarm of the prediction detector that no statistic explains still counts
    class Online(DriftTester):
        online = True  # type: ignore[assignment]

    t.__class__ = Online
    result = {
        "is_drift": True,
        "detections": [],
        "prediction_detections": [{"row": 3, "features": []}],
        "features": {"x": {"test": "cvm", "p_value": None, "is_drift": False}},
    }
    t._effects(window, result)
    assert result["is_drift"] is True


def test_chunks_need_three_windows_of_validation_rows_for_the_prediction():
    from raymlops.errors import DataError
    from raymlops.pipeline.train import _check_chunks

    cfg = DriftConfig(reference="chunks", window=100)
    _check_chunks(cfg, 300)
    _check_chunks(cfg.model_copy(update={"predictions": False}), 10)
    with pytest.raises(DataError, match="at least 3 windows"):
        _check_chunks(cfg, 299)
