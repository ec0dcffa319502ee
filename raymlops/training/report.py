"""Evaluation reports: plots and a self-contained HTML page for one run, with the champion side by side."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np

from raymlops.artifacts.plots import png_figure
from raymlops.storage.local import atomic_write

_MAX_POINTS = 5000  # scatter plots subsample to this many rows (seeded)
_TOP_FEATURES = 20
_DPI = 100
_FIGSIZE = (5.0, 4.0)
_CAPTIONS = {
    "roc.png": "ROC curve (area under the curve in the legend)",
    "pr.png": "Precision-recall curve (average precision in the legend)",
    "confusion_matrix.png": "Confusion matrix of the first model, at its decision threshold",
    "threshold.png": "Precision, recall and F1 of the first model by threshold (dashed: its decision threshold)",
    "calibration.png": "Reliability curve: predicted probability vs observed frequency",
    "residuals.png": "Residuals (actual minus predicted) vs predicted",
    "predicted_vs_actual.png": "Predicted vs actual, with the y = x line",
    "feature_importance.png": f"Feature importance (top {_TOP_FEATURES})",
}
_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f2f2f2}"
    "td.num{text-align:right;font-family:monospace}figure{display:inline-block;margin:1em}"
    ".note{color:#a15c00}"
)


def write_report(
    out_dir,
    *,
    title: str,
    task: str,
    y_true,
    scores: dict[str, np.ndarray],
    metrics: dict[str, dict[str, float]],
    classes: list | None = None,
    importance: dict[str, float] | None = None,
    details: dict[str, str] | None = None,
    threshold: float = 0.5,
) -> dict[str, Path]:
    """Draws the evaluation plots of one run and writes them with a self-contained HTML page.

    Args:
        out_dir: Folder to write into (created if missing).
        title: Page title.
        task: binary, multiclass or regression.
        y_true: Encoded labels (class indices) for classifiers, float targets for regression.
        scores: Model label -> scores on the same holdout rows; the run's own model first, then
            optionally the champion. P(class 1) for binary, (n, k) probabilities for multiclass,
            predictions for regression.
        metrics: Model label -> {metric name: value}, shown side by side.
        classes: Original class values for tick labels (classifiers).
        importance: Feature name -> importance; the top 20 are plotted.
        details: Extra key/value rows shown at the top of the page.
        threshold: Binary: the first model's decision threshold (its confusion matrix and threshold curve).

    Returns:
        File name -> path of every file written (the PNGs and ``report.html``).
    """
    if task not in ("binary", "multiclass", "regression"):
        raise ValueError(f"unknown task {task!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true, dtype=np.float64 if task == "regression" else None)
    notes: list[str] = []
    clean = {label: _finite_rows(label, y, s, task, notes) for label, s in scores.items()}
    clean = {label: ys for label, ys in clean.items() if len(ys[0])}
    if task == "binary":
        pngs = _binary_plots(clean, _class_names(classes, 2), notes, threshold)
    elif task == "multiclass":
        k = next((s.shape[1] for _, s in clean.values()), 0 if classes is None else len(classes))
        pngs = _multiclass_plots(clean, _class_names(classes, k), notes)
    else:
        pngs = _regression_plots(clean, notes)
    if importance:
        pngs["feature_importance.png"] = _importance_plot(importance)
    written = {}
    for name, data in pngs.items():
        written[name] = atomic_write(out / name, data)
    page = _html(title, details or {}, metrics, list(scores), pngs, notes, bool(importance))
    written["report.html"] = atomic_write(out / "report.html", page.encode("utf-8"))
    return written


def feature_importance(model, model_type: str, feature_names: list[str]) -> dict[str, float]:
    """Importance of every feature of a trained model, sorted descending.

    Args:
        model: An ``xgboost.Booster`` (model_type "xgboost") or a fitted sklearn estimator or pipeline.
        model_type: "xgboost" or "sklearn".
        feature_names: Names of the model's input columns, in training order.

    Returns:
        Feature name -> importance as Python floats: total gain for xgboost (0.0 for features never
        split on); ``feature_importances_`` or the mean absolute ``coef_`` for sklearn; {} when the
        estimator exposes neither.
    """
    names = list(feature_names)
    if model_type == "xgboost":
        gain = model.get_score(importance_type="gain")
        booster_names = model.feature_names or [f"f{i}" for i in range(len(names))]
        if len(booster_names) != len(names):
            raise ValueError(f"booster has {len(booster_names)} features, got {len(names)} names")
        values = [gain.get(b, 0.0) for b in booster_names]
    elif model_type == "sklearn":
        est = model[-1] if hasattr(model, "steps") else model
        if getattr(est, "feature_importances_", None) is not None:
            values = np.asarray(est.feature_importances_, dtype=np.float64)
        elif getattr(est, "coef_", None) is not None:
            coef = np.abs(np.asarray(est.coef_, dtype=np.float64))
            values = coef.mean(axis=0) if coef.ndim == 2 else coef
        else:
            return {}
        if len(values) != len(names):
            raise ValueError(f"model has {len(values)} features, got {len(names)} names")
    else:
        raise ValueError(f"unknown model_type {model_type!r}")
    pairs = sorted(zip(names, (float(v) for v in values)), key=lambda p: -p[1])
    return dict(pairs)


# ---------------------------------------------------------------- data helpers


def _finite_rows(label, y, s, task, notes):
    s = np.asarray(s, dtype=np.float64)
    if len(s) != len(y):
        raise ValueError(f"scores of {label!r} have {len(s)} rows, y_true has {len(y)}")
    ok = np.isfinite(s).all(axis=1) if s.ndim == 2 else np.isfinite(s)
    if task == "regression":
        ok &= np.isfinite(y)
    if not ok.all():
        notes.append(f"{label}: {int((~ok).sum())} of {len(s)} rows with non-finite values left out of the plots.")
    return y[ok], s[ok]


def _class_names(classes, k):
    return [str(c) for c in classes] if classes is not None and len(classes) == k else [str(i) for i in range(k)]


def _subsample(n):
    if n <= _MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, _MAX_POINTS, replace=False))


# ---------------------------------------------------------------- plots


def _figure(xlabel, ylabel, title):
    return png_figure(title, xlabel, ylabel, _FIGSIZE, _DPI)


def _binary_plots(clean, names, notes, threshold):
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    pngs = {}
    both = {m: ys for m, ys in clean.items() if len(np.unique(ys[0])) == 2}
    for m in clean.keys() - both.keys():
        notes.append(f"{m}: only one class in the holdout; ROC and precision-recall curves skipped.")
    if both:
        with _figure("False positive rate", "True positive rate", "ROC") as (ax, buf):
            for m, (y, s) in both.items():
                fpr, tpr, _ = roc_curve(y, s)
                ax.plot(fpr, tpr, label=f"{m} (AUC {auc(fpr, tpr):.3f})")
            ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
        pngs["roc.png"] = buf.getvalue()
        with _figure("Recall", "Precision", "Precision-recall") as (ax, buf):
            for m, (y, s) in both.items():
                prec, rec, _ = precision_recall_curve(y, s)
                ax.step(rec, prec, where="post", label=f"{m} (AP {average_precision_score(y, s):.3f})")
            ax.set_ylim(-0.02, 1.02)
        pngs["pr.png"] = buf.getvalue()
    if clean:
        y, s = next(iter(clean.values()))
        pngs["confusion_matrix.png"] = _confusion(
            y.astype(int), (s >= threshold).astype(int), names, f"{next(iter(clean))}, threshold {threshold:.3g}"
        )
        if len(np.unique(y)) == 2:
            pngs["threshold.png"] = _threshold_plot(y, s, threshold, f"P({names[1]})")
        pngs["calibration.png"] = _calibration(
            {m: (y, np.clip(s, 0, 1)) for m, (y, s) in clean.items()},
            "Mean predicted P(" + names[1] + ")",
            "Calibration",
        )
    return pngs


def _multiclass_plots(clean, names, notes):
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    pngs = {}
    grid = np.linspace(0, 1, 201)
    roc, pr = {}, {}
    for m, (y, s) in clean.items():
        present = [c for c in range(s.shape[1]) if (y == c).any()]
        if len(present) < 2:
            notes.append(f"{m}: fewer than two classes in the holdout; ROC and precision-recall curves skipped.")
            continue
        tprs, precs, aps = [], [], []
        for c in present:
            fpr, tpr, _ = roc_curve(y == c, s[:, c])
            tprs.append(np.interp(grid, fpr, tpr))
            prec, rec, _ = precision_recall_curve(y == c, s[:, c])
            precs.append(np.interp(grid, rec[::-1], prec[::-1]))
            aps.append(average_precision_score(y == c, s[:, c]))
        roc[m] = np.mean(tprs, axis=0)
        pr[m] = (np.mean(precs, axis=0), float(np.mean(aps)))
    if roc:
        with _figure("False positive rate", "True positive rate", "ROC, one-vs-rest macro average") as (ax, buf):
            for m, tpr in roc.items():
                ax.plot(grid, tpr, label=f"{m} (AUC {auc(grid, tpr):.3f})")
            ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
        pngs["roc.png"] = buf.getvalue()
        with _figure("Recall", "Precision", "Precision-recall, one-vs-rest macro average") as (ax, buf):
            for m, (prec, ap) in pr.items():
                ax.plot(grid, prec, label=f"{m} (AP {ap:.3f})")
            ax.set_ylim(-0.02, 1.02)
        pngs["pr.png"] = buf.getvalue()
    if clean:
        y, s = next(iter(clean.values()))
        pngs["confusion_matrix.png"] = _confusion(
            y.astype(int), s.argmax(axis=1), names, f"{next(iter(clean))}, argmax"
        )
        top = {m: ((s.argmax(axis=1) == y).astype(int), np.clip(s.max(axis=1), 0, 1)) for m, (y, s) in clean.items()}
        pngs["calibration.png"] = _calibration(
            top, "Top-class confidence", "Calibration (top class)", ylabel="Accuracy"
        )
    return pngs


def _threshold_plot(y, s, threshold, score_name):
    from raymlops.training.decision import curve

    c = curve(y, s)
    with _figure(f"Threshold on {score_name}", "Value", "Precision, recall and F1 by threshold") as (ax, buf):
        for k in ("precision", "recall", "f1"):
            ax.plot(c["threshold"], c[k], label=k)
        ax.axvline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:.3g}")
        ax.set_ylim(-0.02, 1.02)
    return buf.getvalue()


def _confusion(y, pred, names, title):
    from sklearn.metrics import confusion_matrix

    k = len(names)
    cm = confusion_matrix(y, pred, labels=list(range(k)))
    with _figure("Predicted", "Actual", title) as (ax, buf):
        ax.imshow(cm, cmap="Blues")
        rot = 45 if k > 4 else 0
        ax.set_xticks(range(k), labels=names, rotation=rot, ha="right" if rot else "center", fontsize=8)
        ax.set_yticks(range(k), labels=names, fontsize=8)
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black",
                )
    return buf.getvalue()


def _calibration(data, xlabel, title, ylabel="Fraction of positives"):
    from sklearn.calibration import calibration_curve

    with _figure(xlabel, ylabel, title) as (ax, buf):
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
        for m, (y, p) in data.items():
            frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform", pos_label=1)
            ax.plot(mean, frac, "o-", ms=3, label=m)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
    return buf.getvalue()


def _regression_plots(clean, notes):
    pngs = {}
    if not clean:
        return pngs
    with _figure("Predicted", "Residual (actual - predicted)", "Residuals") as (ax, buf):
        for i, (m, (y, p)) in enumerate(clean.items()):
            idx = _subsample(len(y))
            ax.scatter(p[idx], (y - p)[idx], s=4, alpha=0.6 if i == 0 else 0.25, label=m, zorder=3 if i == 0 else 2)
        ax.axhline(0, color="k", lw=0.8)
    pngs["residuals.png"] = buf.getvalue()
    with _figure("Actual", "Predicted", "Predicted vs actual") as (ax, buf):
        lo, hi = math.inf, -math.inf
        for i, (m, (y, p)) in enumerate(clean.items()):
            idx = _subsample(len(y))
            ax.scatter(y[idx], p[idx], s=4, alpha=0.6 if i == 0 else 0.25, label=m, zorder=3 if i == 0 else 2)
            lo, hi = min(lo, y.min(), p.min()), max(hi, y.max(), p.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    pngs["predicted_vs_actual.png"] = buf.getvalue()
    if any(len(y) > _MAX_POINTS for y, _ in clean.values()):
        notes.append(f"Scatter plots show a random sample of {_MAX_POINTS} rows.")
    return pngs


def _importance_plot(importance):
    top = sorted(importance.items(), key=lambda kv: -float(kv[1]))[:_TOP_FEATURES][::-1]
    with _figure("Importance", "", f"Feature importance (top {len(top)})") as (ax, buf):
        ax.barh([str(k) for k, _ in top], [float(v) for _, v in top])
        ax.tick_params(axis="y", labelsize=7)
    return buf.getvalue()


# ---------------------------------------------------------------- HTML and files


def _fmt(v):
    if v is None:
        return "–"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    if math.isnan(f):
        return "nan"
    return f"{f:.4f}" if abs(f) < 1e6 else f"{f:.4g}"


def _metrics_table(metrics, labels):
    labels = labels + [m for m in metrics if m not in labels]
    names = list(dict.fromkeys(k for m in labels for k in metrics.get(m, {})))
    two = len(labels) == 2
    head = "".join(f"<th>{html.escape(str(m))}</th>" for m in labels) + ("<th>difference</th>" if two else "")
    rows = []
    for name in names:
        vals = [metrics.get(m, {}).get(name) for m in labels]
        cells = "".join(f'<td class="num">{_fmt(v)}</td>' for v in vals)
        if two:
            try:
                diff = float(vals[0]) - float(vals[1])
            except (TypeError, ValueError):
                diff = None
            cells += f'<td class="num">{_fmt(diff)}</td>'
        rows.append(f"<tr><th>{html.escape(str(name))}</th>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _html(title, details, metrics, labels, pngs, notes, has_importance):
    esc = html.escape
    parts = [
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(title)}</title>',
        f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>",
    ]
    if details:
        rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in details.items())
        parts.append(f"<table>{rows}</table>")
    parts.append("<h2>Metrics</h2>" + _metrics_table(metrics, labels))
    parts += [f'<p class="note">{esc(n)}</p>' for n in notes]
    if not has_importance:
        parts.append('<p class="note">Feature importance is not available for this model.</p>')
    parts.append("<h2>Plots</h2>")
    for name, data in pngs.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        parts.append(
            f'<figure><img src="{uri}" alt="{esc(name)}">'
            f"<figcaption>{esc(_CAPTIONS.get(name, name))}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
