"""The decision threshold: each objective against a brute-force search over every threshold."""

import numpy as np
import pytest

from raymlops.training.decision import choose, curve


def brute(y, s, objective):
    best = None
    for t in sorted(set(s.tolist()), reverse=True):  # high to low: ties go to the highest threshold
        pred = s >= t
        tp, fp, fn = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum()), int((~pred & (y == 1)).sum())
        v = objective(tp, fp, fn)
        if v is not None and (best is None or v > best[0]):
            best = (v, t)
    return best[1]


@pytest.mark.parametrize("seed", range(8))
def test_each_objective_matches_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    y = (rng.random(n) < rng.uniform(0.05, 0.5)).astype(int)
    y[0], y[1] = 0, 1
    s = np.round(np.clip(0.3 * y + rng.normal(0.3, 0.2, n), 0, 1), 2)  # rounded: many ties
    assert choose(y, s, "f1")["threshold"] == brute(y, s, lambda tp, fp, fn: 2 * tp / (2 * tp + fp + fn))
    r = float(rng.uniform(0.3, 0.95))
    pos = y.sum()
    assert choose(y, s, "precision_at_recall", min_recall=r)["threshold"] == brute(
        y, s, lambda tp, fp, fn: tp / (tp + fp) if tp / pos >= r and tp + fp else None
    )
    cost = {"false_positive": 1.0, "false_negative": float(rng.uniform(1, 10))}
    assert choose(y, s, "cost", cost=cost)["threshold"] == brute(
        y, s, lambda tp, fp, fn: -(fp + cost["false_negative"] * fn)
    )


def test_reported_figures_and_one_class():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
    got = choose(y, s, "f1")
    assert got["threshold"] == 0.35 and got["recall"] == 1.0 and got["precision"] == 0.75
    assert got["f1"] == pytest.approx(6 / 7)
    assert choose(np.zeros(5), np.linspace(0, 1, 5))["threshold"] == 0.5
    c = curve(y, s, points=3)
    assert c["threshold"] == [0.0, 0.5, 1.0] and c["recall"] == [1.0, 2 / 3, 0.0] and c["precision"][1] == 1.0


class _Rows:
    """A training split as out_of_fold reads it (``to_pandas``), without Ray."""

    def __init__(self, df):
        self.df = df

    def to_pandas(self):
        return self.df


def test_folds_are_capped_by_the_rarer_class():
    import pandas as pd

    from raymlops.training.decision import out_of_fold
    from raymlops.training.search import TrainSpec

    rng = np.random.default_rng(0)
    y = np.zeros(60, dtype=int)
    y[:3] = 1  # 3 positives: 5 stratified folds cannot each hold one
    df = pd.DataFrame({"a": rng.normal(size=60) + y, "y": y})
    spec = TrainSpec(
        task="binary",
        label="y",
        feature_columns=["a"],
        n_classes=2,
        metric="auc",
        mode="max",
        model={"type": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression", "cpus_per_trial": 1},
    )
    labels, scores, folds = out_of_fold(_Rows(df), spec, {}, None, 5, 0)
    assert folds == 3 and scores.shape == (60,) and np.all((scores >= 0) & (scores <= 1))
    _, none, folds = out_of_fold(_Rows(df.iloc[2:]), spec, {}, None, 5, 0)  # one positive left
    assert none is None and folds == 1
