"""The evaluate step: the run's model and the current champion scored on the same holdout, and the report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from raymlops.artifacts import Predictor
from raymlops.artifacts import run as layout
from raymlops.errors import DataError
from raymlops.training.metrics import evaluate as metrics_of
from raymlops.training.report import feature_importance, write_report

EVALUATION = "evaluation.json"
REPORT_DIR = "report"
MIN_ROWS = 5  # holdout rows a range or category finding needs before training warns of it


def _encoded(y: pd.Series, classes: list | None) -> np.ndarray:
    if classes is None:
        return y.to_numpy(dtype=np.float64)
    codes = {c: i for i, c in enumerate(classes)}
    return np.asarray([codes.get(v.item() if isinstance(v, np.generic) else v, -1) for v in y], dtype=np.int64)


def _scores(p: Predictor, df: pd.DataFrame) -> np.ndarray:
    return p._raw(p.features_of(df))


def evaluate(
    run_dir: Path,
    holdout: pd.DataFrame,
    label: str,
    champion: tuple[str, Predictor] | None,
    out: Path,
    say: Callable[[str], None],
) -> dict:
    """Scores the run's model (and the champion, when there is one) on ``holdout``; writes the report.

    Args:
        run_dir: The run directory (its model and fitted preprocessing).
        holdout: Raw validation rows with the label column.
        label: Label column.
        champion: (label such as 'champion v3', its Predictor), or None.
        out: Directory for ``report/`` and ``evaluation.json``.
    """
    cand = Predictor(run_dir)
    y = _encoded(holdout[label], cand.classes)
    known = y >= 0  # classifiers: rows whose label the model knows
    rows = holdout[known].reset_index(drop=True)
    y = y[known]
    from raymlops.pipeline.fingerprint import file_sha256

    sha = file_sha256(run_dir / cand.meta["model_file"])[:12]
    name = f"candidate (model {sha})"  # named by its bytes: a cached evaluation serves every run of this model
    scores = {name: _scores(cand, rows)}
    metrics = {
        name: metrics_of(cand.task, y, scores[name], len(cand.classes) if cand.classes else None, cand.threshold)
    }
    notes: dict[str, str] = {"holdout rows": str(len(rows))}
    champ_out = None
    if champion is not None:
        clabel, cp = champion
        if cp.task != cand.task or (cp.classes is not None and list(cp.classes) != list(cand.classes)):
            notes["champion"] = f"{clabel} has another task or classes; not compared"
        else:
            try:
                s = _scores(cp, rows)
            except DataError as e:
                notes["champion"] = f"{clabel} cannot score this holdout ({e}); not compared"
            else:
                scores[clabel] = s
                metrics[clabel] = metrics_of(cp.task, y, s, len(cp.classes) if cp.classes else None, cp.threshold)
                champ_out = {"label": clabel, "run": cp.version, "metrics": metrics[clabel]}
    say("evaluating on the holdout" + (f" beside {champion[0]}" if champion else " (no champion yet)"))
    say(
        "  holdout: "
        + ", ".join(f"{k}={v:.4f}" for k, v in metrics[name].items())
        + (f" (decision threshold {cand.threshold:.4f})" if cand.task == "binary" else "")
    )
    warnings = holdout_warnings(run_dir, holdout)
    for w in warnings:
        say(w)
    notes["holdout data quality"] = (
        "; ".join(w.removeprefix("warning: ") for w in warnings) or "passes the checks against the training profile"
    )
    importance = feature_importance(cand.model, cand.model_type, cand.features)
    if cand.task == "binary":
        how = (cand.meta.get("decision") or {}).get("how", "default")
        notes["decision threshold"] = f"{cand.threshold:.4f} ({how}); accuracy and f1 are at it"
    files = write_report(
        out / REPORT_DIR,
        title=f"{cand.meta['pipeline']}: model {sha}",
        task=cand.task,
        y_true=y,
        scores=scores,
        metrics=metrics,
        classes=cand.classes,
        importance=importance,
        threshold=cand.threshold,
        details={
            "model sha256": sha,
            "first trained in run": cand.version,
            "model type": cand.model_type,
            "label": label,
            **notes,
        },
    )
    result = {
        "candidate": metrics[name],
        "champion": champ_out,
        "holdout_rows": int(len(rows)),
        **({"threshold": cand.threshold} if cand.task == "binary" else {}),
        "holdout_warnings": warnings,
        "importance": dict(list(importance.items())[:50]),
        "files": sorted(files),
    }
    layout.write_json(out / EVALUATION, result)
    return result


def holdout_warnings(run_dir: Path, holdout: pd.DataFrame) -> list[str]:
    """The holdout checked against the training split's data-quality profile (the default tolerances, as a
    monitor would check live traffic): one warning per failed check, with its numbers. A holdout that fails
    them (ranges or categories the model never saw) measures the model on data it was not fitted for."""
    from raymlops.data.quality import DataProfile, check

    profile = DataProfile.load(run_dir / layout.QUALITY)
    report = check(holdout[[c.name for c in profile.columns if c.name in holdout.columns]], profile)
    return [
        f"warning: holdout fails the training profile's {i['check']} check: {i['column']}: {i['message']}"
        for i in report.issues
        if i["severity"] == "error" and _enough(i, len(holdout))
    ]


def _enough(issue: dict, rows: int) -> bool:
    """Range and category findings that come to fewer than MIN_ROWS rows are a small holdout's extremes (one
    penguin of 78 is 1.3%), not a sign of data the model was not fitted for."""
    if issue["check"] not in ("ranges", "unseen_categories"):
        return True
    return float(issue["observed"] or 0) * rows >= MIN_ROWS - 0.5


def read_holdout(prep) -> pd.DataFrame:
    """The raw validation rows the prepare step kept (``prep``: the step's Storage)."""
    return prep.read_parquet("valid_raw")


def load_evaluation(path: Path) -> dict:
    return json.loads((path / EVALUATION).read_text())
