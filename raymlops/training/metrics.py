"""Validation metrics per task."""

from __future__ import annotations

import numpy as np


def evaluate(
    task: str, y_true: np.ndarray, scores: np.ndarray, n_classes: int | None = None, threshold: float = 0.5
) -> dict[str, float]:
    """Computes every metric of a task.

    Args:
        task: binary, multiclass or regression.
        y_true: Encoded labels (class indices) or regression targets.
        scores: P(positive) for binary, an (n, k) probability matrix for multiclass, predictions otherwise.
        n_classes: Class count for multiclass.
        threshold: Binary: P(positive) at or above it predicts the positive class (accuracy and f1).
    """
    from sklearn import metrics as m

    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    if task == "regression":
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y_true, scores))),
            "mae": float(m.mean_absolute_error(y_true, scores)),
            "r2": float(m.r2_score(y_true, scores)),
        }
    if task == "binary":
        pred = (scores >= threshold).astype(int)
        both = len(np.unique(y_true)) == 2
        return {
            "auc": float(m.roc_auc_score(y_true, scores)) if both else float("nan"),
            "logloss": float(m.log_loss(y_true, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
            "accuracy": float(m.accuracy_score(y_true, pred)),
            "f1": float(m.f1_score(y_true, pred, zero_division=0)),
        }
    labels = list(range(n_classes or scores.shape[1]))
    pred = np.argmax(scores, axis=1)
    return {
        "logloss": float(m.log_loss(y_true, np.clip(scores, 1e-15, 1), labels=labels)),
        "accuracy": float(m.accuracy_score(y_true, pred)),
        "f1": float(m.f1_score(y_true, pred, average="macro", zero_division=0)),
    }
