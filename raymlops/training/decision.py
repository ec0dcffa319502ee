"""The decision threshold of a binary classifier, chosen on out-of-fold scores of the training split.

The holdout (the validation split) picks the best trial and then measures the model; choosing the threshold on
it too would report an F1 the model cannot keep. So, as scikit-learn's ``TunedThresholdClassifierCV`` does, the
best trial's params are refitted on k folds of the training split and the threshold is chosen on the scores of
the rows each fold left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT = 0.5


def cuts(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, true positives, false positives) for "positive when score >= threshold" at every distinct
    score, highest threshold first."""
    order = np.argsort(-scores, kind="stable")
    s, yy = scores[order], y[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the last row of each run of equal scores
    return s[last], np.cumsum(yy)[last], np.cumsum(1 - yy)[last]


def choose(
    y, scores, optimize: str = "f1", min_recall: float = 0.8, cost: dict[str, float] | None = None
) -> dict[str, Any]:
    """The threshold that optimizes ``optimize`` on (labels, P(positive)) and what it achieves there.

    f1: the highest F1. precision_at_recall: the highest precision among thresholds whose recall is at least
    ``min_recall``. cost: the lowest ``false_positive * FP + false_negative * FN``. Ties go to the highest
    threshold. A sample with a single class keeps the default 0.5.
    """
    y, scores = np.asarray(y), np.asarray(scores, dtype=np.float64)
    pos = int(y.sum())
    if pos == 0 or pos == len(y):
        return {"threshold": DEFAULT, "optimize": optimize, "note": "one class only: kept 0.5"}
    t, tp, fp = cuts(y, scores)
    fn = pos - tp
    precision, recall = tp / (tp + fp), tp / pos
    f1 = 2 * tp / (2 * tp + fp + fn)
    if optimize == "f1":
        value = f1
    elif optimize == "precision_at_recall":
        value = np.where(recall >= min_recall - 1e-12, precision, -np.inf)
    else:
        c = cost or {}
        value = -(c.get("false_positive", 1.0) * fp + c.get("false_negative", 1.0) * fn)
    i = int(np.argmax(value))  # the first maximum: thresholds run from high to low
    return {
        "threshold": float(t[i]),
        "optimize": optimize,
        "precision": float(precision[i]),
        "recall": float(recall[i]),
        "f1": float(f1[i]),
        **({"cost": float(-value[i])} if optimize == "cost" else {}),
    }


def curve(y, scores, points: int = 101) -> dict[str, list[float]]:
    """Precision, recall and F1 at evenly spaced thresholds in [0, 1] (for the report's threshold plot)."""
    y, scores = np.asarray(y).astype(np.int64), np.asarray(scores, dtype=np.float64)
    grid = np.linspace(0, 1, points)
    # rows at or above each threshold, by class: sorted scores and a binary search, not a points x rows matrix
    pos, neg = np.sort(scores[y == 1]), np.sort(scores[y == 0])
    tp = len(pos) - np.searchsorted(pos, grid, side="left")
    fp = len(neg) - np.searchsorted(neg, grid, side="left")
    fn = len(pos) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        recall = tp / max(int(y.sum()), 1)
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return {"threshold": grid.tolist(), "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}


def out_of_fold(
    train_ds, spec, params: dict[str, Any], rounds: int | None, folds: int, seed: int | None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(labels, P(positive), folds used) of every training row, each scored by a model fitted on the other
    folds with ``params`` (``rounds``: the best trial's boosting rounds). Folds are capped by the rarer class's
    rows (stratified folds need one each); below 2, no scores. Run it as a Ray task: the split is read where it
    runs, not on the driver."""
    from sklearn.model_selection import StratifiedKFold

    df = train_ds.to_pandas()
    x = df[spec.feature_columns].to_numpy(
        dtype=np.float32 if spec.model.type == "xgboost" else np.float64, na_value=np.nan
    )
    y = df[spec.label].to_numpy()
    folds = min(folds, int(np.bincount(y.astype(np.int64), minlength=2).min()))
    if folds < 2:
        return y, None, folds
    scores = np.empty(len(y), dtype=np.float64)
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed or 0)
    for fit_rows, score_rows in split.split(x, y):
        scores[score_rows] = _fit_score(spec, params, rounds, x[fit_rows], y[fit_rows], x[score_rows])
    return y, scores, folds


def _fit_score(spec, params: dict[str, Any], rounds: int | None, x, y, x_score) -> np.ndarray:
    if spec.model.type == "xgboost":
        import xgboost

        from raymlops.training.xgb import xgb_params

        full, _, _ = xgb_params(spec, params, max(1, int(getattr(spec.model, "cpus_per_trial", 1))))
        booster = xgboost.train(full, xgboost.DMatrix(x, label=y), num_boost_round=rounds or spec.model.num_boost_round)
        return booster.inplace_predict(x_score)
    from raymlops.training.sk import build_estimator

    est = build_estimator(spec.model.estimator, params, spec.seed)
    est.fit(x, y)
    return est.predict_proba(x_score)[:, 1]
