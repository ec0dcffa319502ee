"""Drift verdicts on real data with documented drift: the US Census employment data of Massachusetts that
NannyML ships (tests/realdata.py). 2015 is the reference year: its first 80% (file order) play the training
split, its last 20% the hold-out (27 windows of 500 rows). NannyML's README ranks RELP, AGEP and SCHL as the
features that drift the most over 2016-2018."""

import numpy as np
import pandas as pd
import pytest

from raymlops.config.monitoring import DriftConfig
from raymlops.data.schema import Column
from raymlops.monitoring.drift import PREDICTION, DriftTester, fit_inputs, fit_prediction
from tests.realdata import FEATURES, NUMERIC, load_census


def bound(p: float, n: int) -> float:
    """A false-alarm count clearly above the target: ``p`` plus three binomial standard deviations."""
    return n * p + 3 * np.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def census():
    reference, analysis = load_census()
    cut = int(len(reference) * 0.8)
    return reference.iloc[:cut], reference.iloc[cut:], analysis


def fitted(train: pd.DataFrame, mode: str, out) -> DriftTester:
    """The default detector (tabular, p_val 0.05, Bonferroni over 16 features and the model output)."""
    cfg = DriftConfig(reference=mode)
    rows = (
        train.iloc[-cfg.reference_rows() :] if mode == "chunks" else train.sample(cfg.reference_rows(), random_state=0)
    )
    columns = [Column(c, "number" if c in NUMERIC else "string") for c in FEATURES]
    fit_inputs(rows[FEATURES], columns, cfg.model_dump(), out)
    fit_prediction(rows["predicted_probability"].reset_index(drop=True), cfg.model_dump(), out)
    return DriftTester(out)


def verdicts(tester: DriftTester, rows: pd.DataFrame) -> list[dict]:
    windows = [rows.iloc[i : i + 500] for i in range(0, len(rows) - 499, 500)]
    return [tester.test(w[FEATURES].assign(**{PREDICTION: w["predicted_probability"].to_numpy()})) for w in windows]


def test_the_hold_out_of_the_reference_year_is_flagged_at_p_val(census, tmp_path):
    train, hold_out, _ = census
    assert train.RELP.value_counts().min() < 40  # rare categories: the merged bucket is exercised
    tester = fitted(train, "sample", tmp_path)
    results = [r for seed in range(10) for r in verdicts(tester, hold_out.sample(frac=1, random_state=seed))]
    flagged = sum(r["is_drift"] for r in results)
    assert len(results) == 270 and flagged <= bound(0.05, len(results)), flagged  # 14 of 270 when written


def test_chunk_thresholds_keep_time_ordered_traffic_quiet_and_find_the_documented_drift(census, tmp_path):
    train, hold_out, analysis = census
    sample, chunks = fitted(train, "sample", tmp_path / "s"), fitted(train, "chunks", tmp_path / "c")
    ordered = [r["is_drift"] for r in verdicts(chunks, hold_out)]
    assert sum(ordered) <= bound(0.05, len(ordered)), ordered  # 0 of 27 when written
    # p-values assume shuffled windows: the same hold-out in file order (sorted by household) flags more
    assert sum(r["is_drift"] for r in verdicts(sample, hold_out)) > sum(ordered)  # 9 of 27 when written
    late = verdicts(chunks, analysis[analysis.year == 2018])
    assert sum(r["is_drift"] for r in late) >= 0.9 * len(late)
    counts = pd.Series([n for r in late for n, f in r["features"].items() if f["is_drift"]]).value_counts()
    assert counts.index[0] == "RELP", counts  # the README's first-ranked feature
    relp = [r["features"]["RELP"] for r in late]
    assert all(f["effect"] > f["effect_threshold"] for f in relp if f["is_drift"])
