"""Offline drift reports: a JSON document and a self-contained HTML page comparing reference and current data."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.artifacts.plots import png_figure
from raymlops.data.stats import is_missing
from raymlops.storage.local import atomic_write

_LABELS = {"__prediction__": "model output"}  # the prediction monitored as a feature
_RESULT_KEYS = ("detector", "threshold", "p_val", "correction", "reference", "rows", "reference_rows")
_TEST_KINDS = {"ks": "numeric", "cvm": "numeric", "chi2": "categorical", "fet": "categorical"}
MISSING_LABEL = "(missing)"
OTHER_LABEL = "(other)"
_TOP_SUMMARY = 10  # categories listed in the JSON summary
_TOP_PLOT = 15  # categories plotted; the rest are pooled as "other"
_BINS = 30
_DPI = 80
_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f2f2f2}"
    "td.num{text-align:right;font-family:monospace}figure{display:inline-block;margin:1em 0}"
    ".verdict{font-size:1.6em;font-weight:bold;padding:.4em .8em;display:inline-block;border-radius:4px}"
    ".drift{background:#fde2e2;color:#a00}.ok{background:#e2f5e2;color:#186a18}.note{color:#a15c00}"
    "section{border-top:1px solid #ddd;margin-top:1.5em}"
)


def build_report(
    result: dict, reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str], meta: dict
) -> dict:
    """JSON-safe drift document: meta, overall verdict and one row per feature (drifted first).

    Args:
        result: A detector's result: ``is_drift``, ``features`` {name: {test, statistic, p_value,
            is_drift, threshold?}} and optional ``threshold``, ``p_val``, ``correction``, ``rows``...
        reference, current: The compared frames (used for the per-feature summaries).
        kinds: Feature name -> "numeric" or "categorical" (inferred from the test or dtype if absent).
        meta: Run id, model, current path, created time...; copied as is (made JSON-safe).
    """
    rows = []
    default = result.get("threshold")
    for name, f in ((str(k), f) for k, f in (result.get("features") or {}).items()):
        kind = _kind(name, f, kinds, reference)
        rows.append(
            {
                "name": name,
                "label": _LABELS.get(name, name),
                "kind": kind,
                "test": f.get("test"),
                "statistic": _num(f.get("statistic")),
                "p_value": _num(f.get("p_value")),
                "threshold": _num(f.get("threshold", default)),
                "effect": _num(f.get("effect")),
                "effect_metric": f.get("effect_metric"),
                "effect_threshold": _num(f.get("effect_threshold", f.get("min_effect"))),
                "significant": bool(f.get("significant", f.get("is_drift"))),
                "is_drift": bool(f.get("is_drift")),
                "reference": _summary(reference, name, kind),
                "current": _summary(current, name, kind),
            }
        )
    rows.sort(key=lambda r: (not r["is_drift"], _strength(r)))
    drifted = [r["name"] for r in rows if r["is_drift"]]
    info = {k: _safe(result.get(k)) for k in _RESULT_KEYS}
    return {
        "meta": _safe(dict(meta)),
        "detector": info,
        "verdict": {
            "is_drift": bool(result.get("is_drift", bool(drifted))),
            "drifted": drifted,
            "n_features": len(rows),
            "n_drifted": len(drifted),
        },
        "features": rows,
    }


def render_html(doc: dict, reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str]) -> str:
    """Self-contained HTML page of a ``build_report`` document, one embedded PNG per feature."""
    esc = html.escape
    v = doc["verdict"]
    cls, text = ("drift", "DRIFT") if v["is_drift"] else ("ok", "NO DRIFT")
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Drift report</title>',
        f"<style>{_CSS}</style></head><body><h1>Drift report</h1>",
        f'<p class="verdict {cls}">{text}</p>',
        f"<p>{v['n_drifted']} of {v['n_features']} features drifted"
        + (": " + ", ".join(esc(_LABELS.get(n, n)) for n in v["drifted"]) if v["drifted"] else "")
        + ".</p>",
    ]
    details = {**doc.get("meta", {}), **{k: x for k, x in doc.get("detector", {}).items() if x is not None}}
    if details:
        parts.append(
            "<table>"
            + "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(x))}</td></tr>" for k, x in details.items())
            + "</table>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "feature",
            "kind",
            "test",
            "statistic",
            "p-value",
            "threshold",
            "effect",
            "effect threshold",
            "drift",
            "reference",
            "current",
        )
    )
    body = []
    for i, r in enumerate(doc["features"]):
        flag = (
            '<b class="drift">yes</b>'
            if r["is_drift"]
            else '<span class="note">significant, below the effect threshold</span>'
            if r.get("significant")
            else "no"
        )
        body.append(
            f'<tr><td><a href="#f{i}">{esc(r["label"])}</a></td><td>{esc(str(r["kind"]))}</td>'
            f"<td>{esc(str(r['test'] or '–'))}</td>"
            + "".join(f'<td class="num">{esc(_fmt(r[k]))}</td>' for k in ("statistic", "p_value", "threshold"))
            + f'<td class="num" title="{esc(str(r.get("effect_metric") or ""))}">{esc(_fmt(r.get("effect")))}</td>'
            + f'<td class="num">{esc(_fmt(r.get("effect_threshold")))}</td>'
            + f"<td>{flag}</td>"
            + "".join(f"<td>{esc(_brief(r[k]))}</td>" for k in ("reference", "current"))
            + "</tr>"
        )
    parts.append(f"<h2>Features</h2><table><tr>{head}</tr>{''.join(body)}</table>")
    for i, r in enumerate(doc["features"]):
        kind = r.get("kind") or kinds.get(r["name"], "numeric")
        parts.append(
            f'<section id="f{i}"><h3>{esc(r["label"])}'
            + (' <span class="drift">(drift)</span>' if r["is_drift"] else "")
            + "</h3>"
        )
        if r["name"] not in reference.columns or r["name"] not in current.columns:
            parts.append('<p class="note">Column missing from the data; no plot.</p></section>')
            continue
        png = (_numeric_plot if kind == "numeric" else _categorical_plot)(
            reference[r["name"]], current[r["name"]], r["label"]
        )
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img src="{uri}" alt="{esc(r["label"])}"><figcaption>'
            + ("Normalized histograms on shared bins" if kind == "numeric" else "Category shares")
            + "</figcaption></figure></section>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(doc: dict, html_text: str | None, out: str | os.PathLike) -> list[Path]:
    """Writes ``out`` atomically: ``x.html`` also gets ``x.json`` beside it; ``x.json`` gets only the JSON."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".json") or (suffix == ".html" and html_text is None):
        raise ValueError(f"report path must end with .html or .json (.html needs html_text), got {str(out)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(_safe(doc), indent=2, allow_nan=False).encode("utf-8")
    written = [atomic_write(out.with_suffix(".json"), data)]
    if suffix == ".html":
        written.insert(0, atomic_write(out, html_text.encode("utf-8")))
    return written


# ---------------------------------------------------------------- data helpers


def _kind(name, f, kinds, reference):
    if kinds.get(name) in ("numeric", "categorical"):
        return kinds[name]
    if f.get("test") in _TEST_KINDS:
        return _TEST_KINDS[f["test"]]
    col = reference[name] if name in reference.columns else pd.Series(dtype=object)
    return "numeric" if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col) else "categorical"


def _strength(r):
    """Sort key, strongest drift first: smallest p-value, else largest statistic relative to its threshold."""
    stat = r["statistic"] if r["statistic"] is not None else -math.inf
    if r["p_value"] is not None:
        return (0, r["p_value"], -stat)
    return (1, -(stat / r["threshold"] if r["threshold"] else stat), 0.0)


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _safe(v: Any) -> Any:
    """Recursively JSON-safe: numpy scalars to Python, non-finite floats to None, other objects to str."""
    if isinstance(v, dict):
        return {str(k): _safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_safe(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else str(v)


def _floats(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _labels(s: pd.Series) -> pd.Series:
    return pd.Series([MISSING_LABEL if is_missing(x) else str(x) for x in s.tolist()], dtype=object)


def _summary(df, name, kind):
    """Numeric: mean/std/min/max over finite values and null rate; categorical: top shares of all rows."""
    if name not in df.columns:
        return None
    n = len(df)
    if kind == "numeric":
        x = _floats(df[name])
        ok = x[np.isfinite(x)]
        stats = (
            {"mean": ok.mean(), "std": ok.std(), "min": ok.min(), "max": ok.max()}
            if len(ok)
            else dict.fromkeys(("mean", "std", "min", "max"))
        )
        return _safe({"rows": n, "null_rate": float(np.isnan(x).mean()) if n else None, **stats})
    counts = _labels(df[name]).value_counts()
    missing = int(counts.pop(MISSING_LABEL)) if MISSING_LABEL in counts else 0
    top = [{"value": str(k), "share": int(c) / n} for k, c in counts.head(_TOP_SUMMARY).items()]
    return {"rows": n, "null_rate": missing / n if n else None, "distinct": int(len(counts)), "top": top}


def _brief(s):
    if not s:
        return "–"
    miss = "" if not s.get("null_rate") else f", {s['null_rate']:.1%} missing"
    if "top" in s:
        return ", ".join(f"{t['value'][:20]} {t['share']:.0%}" for t in s["top"][:3]) + miss or "(empty)"
    return f"mean {_fmt(s['mean'])} ± {_fmt(s['std'])}{miss}"


def _fmt(v):
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, float):
        return str(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
        return f"{v:.3g}"
    return f"{v:.4f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------- plots


def _plain(text, width=30):
    """Matplotlib text without mathtext: '$' escaped, long labels cut."""
    text = str(text)
    return (text[: width - 1] + "…" if len(text) > width else text).replace("$", r"\$")


def _figure(title, xlabel, ylabel, height=3.2):
    return png_figure(_plain(title, 60), xlabel, ylabel, (5.5, height), _DPI)


def _edges(pooled):
    """Shared bin edges: one bin per value for few distinct values, else pooled quantiles."""
    u = np.unique(pooled)
    if len(u) == 1:
        return np.array([u[0] - 0.5, u[0] + 0.5])
    if len(u) <= _BINS:
        mids = (u[:-1] + u[1:]) / 2
        return np.concatenate([[2 * u[0] - mids[0]], mids, [2 * u[-1] - mids[-1]]])
    e = np.unique(np.quantile(pooled, np.linspace(0, 1, _BINS + 1)))
    return e if len(e) >= 3 else np.linspace(u[0], u[-1], _BINS + 1)


def _numeric_plot(ref, cur, title):
    xs = {"reference": _floats(ref), "current": _floats(cur)}
    ok = {k: x[np.isfinite(x)] for k, x in xs.items()}
    pooled = np.concatenate(list(ok.values()))
    with _figure(title, "value", "density") as (ax, buf):
        if not len(pooled):
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        else:
            edges = _edges(pooled)
            for (k, x), style in zip(
                ok.items(), ({"histtype": "stepfilled", "alpha": 0.45}, {"histtype": "step", "lw": 1.8})
            ):
                if len(x):
                    miss = float(np.isnan(xs[k]).mean())
                    extra = f", {miss:.0%} missing" if miss else ""
                    ax.hist(x, bins=edges, density=True, label=f"{k} (n={len(x)}{extra})", **style)
            if len(np.unique(pooled)) > _BINS:  # keep outliers from squashing the plot
                lo, hi = np.quantile(pooled, [0.005, 0.995])
                if hi > lo:
                    pad = 0.05 * (hi - lo)
                    ax.set_xlim(lo - pad, hi + pad)
    return buf.getvalue()


def _categorical_plot(ref, cur, title):
    shares = {
        "reference": _labels(ref).value_counts(normalize=True),
        "current": _labels(cur).value_counts(normalize=True),
    }
    both = pd.concat(shares, axis=1).fillna(0.0)
    both = both.loc[both.sum(axis=1).sort_values(ascending=False, kind="stable").index]
    if len(both) > _TOP_PLOT + 1:
        both = pd.concat([both.iloc[:_TOP_PLOT], both.iloc[_TOP_PLOT:].sum().to_frame(OTHER_LABEL).T])
    n = len(both)
    with _figure(title, "share of rows", "", height=1.4 + 0.28 * max(n, 1)) as (ax, buf):
        y = np.arange(n)
        for off, col in ((-0.2, "reference"), (0.2, "current")):
            if col in both.columns:
                ax.barh(y + off, both[col].to_numpy(), height=0.4, label=col)
        ax.set_yticks(y, labels=[_plain(c, 25) for c in both.index], fontsize=7)
        ax.invert_yaxis()
    return buf.getvalue()
