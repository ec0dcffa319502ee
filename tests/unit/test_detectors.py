"""Drift detectors behind one interface: batch tests on the demo data's shift, online detectors' false-alarm
rate against their expected run time, save/load and checkpointed state."""

import importlib.util
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from raymlops.data.schema import Column
from raymlops.monitoring.detectors import fit_detector, load_detector
from raymlops.monitoring.drift import PREDICTION, DriftTester, fit_inputs, fit_prediction

COLUMNS = [
    Column("plan", "string"),
    Column("region", "string"),
    Column("contract", "string"),
    Column("payment_method", "string"),
    Column("autopay", "boolean"),
    Column("tenure_months", "integer"),
    Column("age", "integer"),
    Column("monthly_charges", "number"),
    Column("usage_gb", "number"),
    Column("support_calls", "integer"),
]
SHIFTED = {"plan", "region", "contract", "tenure_months", "monthly_charges", "usage_gb", "support_calls"}
SETTINGS = {"p_val": 0.05, "correction": "bonferroni", "ert": 200, "online_window": 20, "n_bootstraps": 3000}


@pytest.fixture(scope="module")
def demo(demo_dir):
    train = pd.read_parquet(demo_dir / "train.parquet")
    reference = train.sample(2000, random_state=0)
    held_out = train.drop(reference.index).sample(500, random_state=1)  # the reference period, unseen rows
    return reference, held_out, pd.read_parquet(demo_dir / "shifted.parquet").head(500)


@pytest.mark.parametrize(
    "kind, handles",
    [
        ("ks", {"integer", "number"}),
        ("chi2", {"string", "boolean"}),
        ("tabular", {"integer", "number", "string", "boolean"}),
    ],
)
def test_batch_detectors_flag_the_shifted_features_and_not_a_held_out_reference_sample(demo, kind, handles, tmp_path):
    reference, held_out, shifted = demo
    detector, untested = fit_detector(kind, reference, COLUMNS, {**SETTINGS, "kind": kind})
    assert set(untested) == {c.name for c in COLUMNS if c.type not in handles}
    detector.save(tmp_path)
    loaded = load_detector(tmp_path)
    calm, drifted = loaded.test(held_out), loaded.test(shifted)
    assert calm["is_drift"] is False, calm
    assert drifted["is_drift"] is True
    flagged = {n for n, f in drifted["features"].items() if f["is_drift"]}
    tested = {c.name for c in COLUMNS if c.type in handles}
    assert flagged and flagged <= SHIFTED & tested | {"support_calls"}, flagged
    assert len(flagged) >= len(SHIFTED & tested) - 1, (flagged, SHIFTED & tested)
    assert detector.test(shifted) == drifted  # loading changes nothing


def test_fdr_correction_reports_its_threshold_and_agrees_with_the_flags(demo):
    reference, _, shifted = demo
    detector, _ = fit_detector("tabular", reference, COLUMNS, {**SETTINGS, "correction": "fdr"})
    got = detector.test(shifted)
    assert got["is_drift"] is True
    for f in got["features"].values():
        assert f["is_drift"] == (f["p_value"] <= got["threshold"])


def _stream(rng, n, shift=0.0):
    return pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.exponential(1, n), "c": rng.random(n) < 0.3})


@pytest.mark.parametrize("kind", ["cvm_online", "fet_online"])
def test_online_false_alarms_match_the_expected_run_time_and_a_shift_is_caught_fast(kind):
    rng = np.random.default_rng(0)
    columns = [Column("a", "number"), Column("b", "number")] + (
        [Column("c", "boolean")] if kind == "fet_online" else []
    )
    detector, _ = fit_detector(kind, _stream(rng, 1000), columns, SETTINGS)
    got = detector.test(_stream(rng, 8000))
    runs = [d["run_length"] for d in got["detections"]]
    # Unshifted data: alarms are false; their mean spacing estimates the expected run time (ERT 200).
    assert 0.5 * SETTINGS["ert"] <= np.mean(runs) <= 2 * SETTINGS["ert"], (len(runs), np.mean(runs))
    detector.reset()
    shifted = detector.test(_stream(rng, 1000, shift=1.0))
    assert shifted["is_drift"] and shifted["detections"][0]["row"] < 150, shifted["detections"][:1]
    assert "a" in shifted["detections"][0]["features"]


def test_online_state_survives_a_checkpoint(tmp_path):
    rng = np.random.default_rng(1)
    columns = [Column("a", "number"), Column("b", "number")]
    detector, _ = fit_detector("cvm_online", _stream(rng, 1000), columns, SETTINGS)
    detector.save(tmp_path)
    stream = _stream(rng, 600, shift=0.4)
    whole = load_detector(tmp_path)
    expected = [whole.test(stream.iloc[:300]), whole.test(stream.iloc[300:])]
    first = load_detector(tmp_path)
    first.test(stream.iloc[:300])
    resumed = load_detector(tmp_path)  # a restarted actor: loaded afresh, then its checkpointed state
    resumed.set_state(first.get_state())
    assert resumed.test(stream.iloc[300:]) == expected[1]


def test_prediction_drift_is_tested_beside_the_inputs(demo, tmp_path):
    reference, held_out, shifted = demo
    drift = {"detector": "tabular", **SETTINGS}
    fit_inputs(reference, COLUMNS, drift, tmp_path)
    score = lambda df: 1 / (1 + np.exp(-(df["monthly_charges"] - 60) / 20))  # noqa: E731 - a stand-in model
    assert fit_prediction(score(reference), drift, tmp_path) == "ks"
    tester = DriftTester(tmp_path)
    assert tester.columns[-1] == PREDICTION
    calm = tester.test(held_out.assign(**{PREDICTION: score(held_out)}))
    moved = tester.test(shifted.assign(**{PREDICTION: score(shifted)}))
    assert calm["prediction_drift"] is False and moved["prediction_drift"] is True
    assert moved["features"][PREDICTION]["is_drift"]


def test_a_detector_with_no_column_of_its_kind_is_refused(demo):
    reference, _, _ = demo
    with pytest.raises(ValueError, match="tests numeric columns"):
        fit_detector("ks", reference, [Column("plan", "string")], SETTINGS)


def test_mmd_needs_the_torch_extra_or_tests_all_features_at_once(demo):
    reference, held_out, shifted = demo
    numeric = [c for c in COLUMNS if c.type in ("number", "integer")]
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(ImportError, match=r"raymlops\[mmd\]"):
            fit_detector("mmd", reference, numeric, SETTINGS)
        return
    detector, _ = fit_detector("mmd", reference, numeric, SETTINGS)
    assert detector.test(shifted)["is_drift"] is True
    assert detector.test(held_out)["is_drift"] is False


def test_fet_online_catches_a_falling_share_too():
    rng = np.random.default_rng(2)
    columns = [Column("a", "number"), Column("c", "boolean")]
    detector, _ = fit_detector("fet_online", _stream(rng, 1000), columns, SETTINGS)
    falling = _stream(rng, 1000).assign(c=lambda d: rng.random(len(d)) < 0.05)  # 30% -> 5% True
    got = detector.test(falling)
    assert got["is_drift"] and "c" in got["detections"][0]["features"], got["detections"][:1]


@pytest.mark.parametrize("n, windows", [(300, [20]), (500, [10, 30])])
def test_fast_cvm_calibration_equals_alibi_detects_own_simulation(n, windows):
    from alibi_detect.cd import CVMDriftOnline
    from alibi_detect.cd.cvm_online import _normalise_stats

    from raymlops.monitoring.detectors.calibration import cvm_streams

    fitted, _ = fit_detector(
        "cvm_online",
        pd.DataFrame({"a": np.random.default_rng(0).normal(size=n)}),
        [Column("a", "number")],
        {**SETTINGS, "online_window": windows[0]},
    )
    assert type(fitted.impl).__name__ == "FastCVMDriftOnline"
    # alibi-detect's own O(n^2)-per-stream simulation, without the threshold search its constructor runs.
    alibi = SimpleNamespace(n=n, window_sizes=np.asarray(windows), n_bootstraps=300, batch_size=64, verbose=False)
    t_max = 2 * max(windows) - 1
    np.random.seed(5)
    expected = CVMDriftOnline._simulate_streams(alibi, t_max)
    np.random.seed(5)
    got = cvm_streams(n, t_max, windows, 300, batch_size=37, normalise=_normalise_stats)  # the same draws
    assert got.shape == expected.shape and np.isnan(got[:, : min(windows) - 1]).all()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_fast_fet_calibration_equals_alibi_detects_own_simulation(alternative):
    from alibi_detect.cd import FETDriftOnline

    from raymlops.monitoring.detectors.calibration import fet_streams

    x_ref = np.random.default_rng(1).random(400) < 0.3
    alibi = SimpleNamespace(
        n=400,
        t_max=59,
        window_sizes=[10, 30],
        n_bootstraps=500,
        alternative=alternative,
        lam=0.99,
        _exp_moving_avg=FETDriftOnline._exp_moving_avg,
    )
    np.random.seed(9)
    expected = FETDriftOnline._simulate_streams(alibi, x_ref, None)
    np.random.seed(9)
    got = fet_streams(x_ref, 59, [10, 30], 500, alternative, lambda a: FETDriftOnline._exp_moving_avg(a, 0.99))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_one_verdict_over_inputs_and_prediction_keeps_the_false_alarm_rate_at_p_val(tmp_path, correction):
    """400 unshifted windows: the overall verdict (4 input tests and the prediction test judged together)
    fires at about p_val, within a 3-sigma binomial bound; before, the prediction test ran at the full p_val
    beside the corrected inputs, and the verdict fired at up to ~2 x p_val."""
    from scipy import stats

    rng = np.random.default_rng(11)

    def draw(n):
        return pd.DataFrame(
            {
                "a": rng.normal(0, 1, n),
                "b": rng.exponential(1, n),
                "c": rng.random(n) < 0.3,
                "d": rng.choice(list("xyz"), n, p=[0.5, 0.3, 0.2]),
            }
        )

    columns = [Column("a", "number"), Column("b", "number"), Column("c", "boolean"), Column("d", "string")]
    score = lambda df: 1 / (1 + np.exp(-df["b"]))  # noqa: E731 - a stand-in model on one input
    drift = {"detector": "tabular", "predictions": True, **SETTINGS, "correction": correction}
    reference = draw(2000)
    fit_inputs(reference, columns, drift, tmp_path)
    fit_prediction(score(draw(2000)), drift, tmp_path)  # outputs on other rows, as training does
    tester = DriftTester(tmp_path)
    results = [tester.test(w.assign(**{PREDICTION: score(w)})) for w in (draw(100) for _ in range(400))]
    alarms = sum(r["is_drift"] for r in results)
    upper = stats.binom.ppf(0.9987, 400, 0.05)  # 3 sigma above p_val
    assert alarms <= upper, (alarms, upper)
    for r in results:  # every flag agrees with the verdict and the one threshold
        flags = [f["is_drift"] for f in r["features"].values()]
        assert r["is_drift"] == any(flags)
        assert all(f["is_drift"] == (f["p_value"] <= r["threshold"]) for f in r["features"].values())
    shifted = draw(100).assign(b=lambda d: d["b"] * 1.8)
    assert tester.test(shifted.assign(**{PREDICTION: score(shifted)}))["is_drift"]


def test_family_wise_thresholds():
    from raymlops.monitoring.drift import family_wise

    assert family_wise({"a": 0.01, "b": 0.5}, 0.05, "bonferroni") == (0.025, {"a"})
    assert family_wise({"a": 0.03, "b": 0.5}, 0.05, "bonferroni") == (0.025, set())
    # Benjamini-Hochberg: 0.01 <= 1/3 * 0.05, 0.03 <= 2/3 * 0.05: both rejected, threshold 0.03
    assert family_wise({"a": 0.01, "b": 0.03, "c": 0.9}, 0.05, "fdr") == (0.03, {"a", "b"})
    assert family_wise({}, 0.05, "fdr") == (0.05, set())
