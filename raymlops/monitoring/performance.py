"""Live model performance: late labels joined to the serving request log, scored in tumbling windows."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from raymlops.config.training import MAXIMIZE

COLUMNS = ["ts", "request_id", "row", "variant", "role", "model_version", "prediction", "probability", "label"]
LOWER_IS_WORSE = MAXIMIZE  # a metric tuned up is one whose fall is a breach
HIGHER_IS_WORSE = {"logloss", "rmse", "mae"}


def _answered(log: pd.DataFrame) -> pd.DataFrame:
    """Status-200 primary and shadow rows, one per (request_id, row) for the answer and per shadow variant.

    A client may reuse an x-request-id: the latest log row wins, so a label never meets two answers.
    """
    ok = log[(log["status"] == 200) & log["role"].isin(["primary", "shadow"])].copy()
    ok["ts"] = pd.to_datetime(ok["ts"], utc=True).astype("datetime64[ns, UTC]")
    ok["request_id"] = ok["request_id"].astype(str)
    ok["row"] = ok["row"].astype("int64")
    ok["_side"] = ok["variant"].where(ok["role"] == "shadow", "")
    ok = ok.sort_values("ts", kind="stable").drop_duplicates(["request_id", "row", "role", "_side"], keep="last")
    return ok.drop(columns="_side")


def _utc(s: pd.Series) -> pd.Series:
    """Label timestamps as UTC (naive ones are taken as UTC; numbers as epoch seconds)."""
    if pd.api.types.is_numeric_dtype(s):
        return pd.to_datetime(s, unit="s", utc=True).astype("datetime64[ns, UTC]")
    return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")


def _align(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Two key columns in one comparable dtype: floats when either is numeric and both convert, else text."""
    a, b = a.infer_objects(), b.infer_objects()
    if pd.api.types.is_numeric_dtype(a) or pd.api.types.is_numeric_dtype(b):
        na, nb = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
        if na.notna().all() and nb.notna().all():
            return na.astype("float64"), nb.astype("float64")
    return a.astype(str), b.astype(str)


def _by_request_id(ok: pd.DataFrame, labels: pd.DataFrame, cfg: dict, label: str) -> pd.DataFrame:
    """(request_id, row, label); without a ``row`` column a label covers every row of its request."""
    on = ["request_id", "row"] if "row" in labels.columns else ["request_id"]
    lab = labels[[cfg.get("request_id") or "request_id", *on[1:], label]].dropna()
    lab.columns = [*on, "label"]
    lab = lab.astype({"request_id": str, **({"row": "int64"} if "row" in on else {})})
    lab = lab.drop_duplicates(on, keep="last")  # a re-sent label replaces the earlier one
    return ok[["request_id", "row"]].drop_duplicates().merge(lab, on=on)


def _by_entity(ok: pd.DataFrame, labels: pd.DataFrame, cfg: dict, label: str) -> pd.DataFrame:
    """(request_id, row, label): per label, the latest primary row for its keys within max_delay_s before it."""
    keys, when = list(cfg["keys"]), cfg["timestamp"]
    prim = ok.loc[ok["role"] == "primary", ["ts", "request_id", "row", "inputs"]]
    parsed = [json.loads(s) if isinstance(s, str) else {} for s in prim["inputs"]]
    prim = prim.drop(columns="inputs").assign(
        **{k: [d.get(k) if isinstance(d, dict) else None for d in parsed] for k in keys}
    )
    lab = labels[[*keys, when, label]].dropna().rename(columns={label: "label"})
    lab["_lts"] = _utc(lab.pop(when))
    prim = prim.dropna(subset=keys)
    for k in keys:
        lab[k], prim[k] = _align(lab[k], prim[k])
    delay = pd.Timedelta(seconds=float(cfg.get("max_delay_s", 30 * 86400)))
    hit = pd.merge_asof(
        lab.sort_values("_lts"),
        prim.sort_values("ts"),
        left_on="_lts",
        right_on="ts",
        by=keys,
        direction="backward",
        tolerance=delay,
    )
    hit = hit.dropna(subset=["request_id"])
    # Several labels can meet one request: the first outcome observed after it counts, once.
    hit = hit.drop_duplicates(["request_id", "row"], keep="first")
    return hit[["request_id", "row", "label"]].astype({"row": "int64"})


def _parse(s: pd.Series) -> pd.Series:
    """JSON text to values: plain numbers (binary and regression outputs) in one vectorised pass, anything
    else (class names, probability lists) decoding each distinct text once."""
    present = s.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():  # exact: to_numeric's float parser rounds in the last digits, float() does not
        exact = numbers if pd.api.types.is_integer_dtype(numbers) else present.astype("float64")
        return exact.reindex(s.index)
    texts = present.unique()
    return s.map(dict(zip(texts, (json.loads(t) for t in texts))))


def row_note(joined: pd.DataFrame, labels: pd.DataFrame, cfg: dict) -> str | None:
    """What a request-id join without a ``row`` column did to requests that scored several rows (each one's
    label went to every row), said so that a user who meant one label per row finds out; None otherwise."""
    if cfg.get("join") == "entity" or "row" in labels.columns or joined.empty:
        return None
    rows = joined.groupby("request_id")["row"].nunique()
    several = int((rows > 1).sum())
    if not several:
        return None
    return (
        f"labels have no 'row' column: {several} labelled request(s) scored several rows, and each one's "
        "label was applied to all of its rows; add 'row' (the row's 0-based position in the request) to "
        "label rows one by one"
    )


def join_labels(log: pd.DataFrame, labels: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Labelled request-log rows (status 200, primary and shadow), ordered by request ts.

    ``cfg``: the ``monitoring.performance`` section as a dict (``label`` resolved by the caller).
    """
    label = cfg.get("label") or "label"
    ok = _answered(log)
    if ok.empty or labels.empty:
        return pd.DataFrame(columns=COLUMNS)
    pick = _by_entity if cfg.get("join") == "entity" else _by_request_id
    out = ok.merge(pick(ok, labels, cfg, label), on=["request_id", "row"])
    out["prediction"], out["probability"] = _parse(out["prediction"]), _parse(out["probability"])
    return out.sort_values(["ts", "request_id", "row"], kind="stable")[COLUMNS].reset_index(drop=True)


def _classes(task: str, y_true, prediction) -> list:
    """Classes when the model's are not given: [0, 1] for 0/1 binary labels, else the sorted values seen."""
    seen = set(pd.Series(list(y_true) + list(prediction)).dropna().tolist())
    if task == "binary" and seen <= {0, 1}:
        return [0, 1]
    try:
        return sorted(seen)
    except TypeError:
        return sorted(seen, key=str)


def _codes(values, classes: list) -> np.ndarray:
    """Class indices (-1 for a value outside ``classes``), matching by value, then by text."""
    idx = {c: i for i, c in enumerate(classes)}
    text = {str(c): i for i, c in enumerate(classes)}
    return np.array([idx.get(v, text.get(str(v), -1)) if v is not None else -1 for v in values], dtype=np.int64)


def _matrix(probability, classes: list) -> np.ndarray:
    """Multiclass probabilities (lists in class order or {class: p} dicts) as rows that sum to one."""
    rows = [[p.get(str(c), p.get(c, 0.0)) for c in classes] if isinstance(p, dict) else p for p in probability]
    m = np.clip(np.asarray(rows, dtype=np.float64), 1e-15, 1)
    return m / m.sum(axis=1, keepdims=True)


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def metric_value(metric: str, task: str, y_true, prediction, probability, classes=None) -> float | None:
    """One metric over labelled rows; None when undefined (no rows, one class for auc, no probabilities).

    Binary f1 takes the second class as positive; multiclass f1 is macro. Labels outside ``classes`` are
    ignored; auc and logloss use only rows with a logged probability.
    """
    from sklearn import metrics as m

    y_true, prediction, probability = list(y_true), list(prediction), list(probability)
    if task == "regression":
        y, p = np.asarray(y_true, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
        keep = np.isfinite(y) & np.isfinite(p)
        y, p = y[keep], p[keep]
        if len(y) < (2 if metric == "r2" else 1):
            return None
        fn = {
            "rmse": lambda: m.mean_squared_error(y, p) ** 0.5,
            "mae": lambda: m.mean_absolute_error(y, p),
            "r2": lambda: m.r2_score(y, p),
        }[metric]
        return _finite(fn())
    classes = list(classes) if classes is not None else _classes(task, y_true, prediction)
    y, pred = _codes(y_true, classes), _codes(prediction, classes)
    known = y >= 0
    if metric in ("accuracy", "f1"):
        y, pred = y[known], pred[known]
        if not len(y):
            return None
        if metric == "accuracy":
            return float(m.accuracy_score(y, pred))
        if task == "binary":
            return float(m.f1_score(y, pred, pos_label=1, zero_division=0))
        return float(m.f1_score(y, pred, labels=list(range(len(classes))), average="macro", zero_division=0))
    has_p = np.array([p is not None and not (isinstance(p, float) and math.isnan(p)) for p in probability])
    keep = known & has_p
    y = y[keep]
    probs = [p for p, k in zip(probability, keep) if k]
    if not len(y):
        return None
    if task == "binary":
        p = np.asarray(probs, dtype=np.float64)
        if metric == "auc":
            return float(m.roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None
        return float(m.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))
    return float(m.log_loss(y, _matrix(probs, classes), labels=list(range(len(classes)))))


def windowed(joined: pd.DataFrame, metric: str, task: str, window: int, classes=None) -> list[dict]:
    """Tumbling windows of ``window`` labelled rows per (role, variant), in request-ts order.

    The trailing window with fewer rows is reported with ``partial: True``.
    """
    if joined.empty:
        return []
    if classes is None and task != "regression":
        classes = _classes(task, joined["label"], joined["prediction"])
    out = []
    for (role, variant), g in joined.groupby(["role", "variant"], sort=True):
        g = g.sort_values("ts", kind="stable")
        for start in range(0, len(g), window):
            w = g.iloc[start : start + window]
            out.append(
                {
                    "variant": variant,
                    "role": role,
                    "model_versions": sorted(w["model_version"].dropna().astype(str).unique().tolist()),
                    "start_ts": w["ts"].iloc[0].isoformat(),
                    "end_ts": w["ts"].iloc[-1].isoformat(),
                    "rows": int(len(w)),
                    "metric": metric,
                    "partial": len(w) < window,
                    "value": metric_value(metric, task, w["label"], w["prediction"], w["probability"], classes),
                }
            )
    return out


def worse(metric: str, value: float, floor: float) -> bool:
    """Whether ``value`` is worse than ``floor`` (below for auc/accuracy/f1/r2, above for losses)."""
    if metric in HIGHER_IS_WORSE:
        return value > floor
    if metric in LOWER_IS_WORSE:
        return value < floor
    raise ValueError(f"unknown metric {metric!r}")


def breaches(windows: list[dict], metric: str, floor: float | None) -> list[dict]:
    """Complete primary windows whose value is worse than ``floor`` (each with ``floor`` added)."""
    if floor is None:
        return []
    return [
        {**w, "floor": floor}
        for w in windows
        if w["role"] == "primary" and not w["partial"] and w["value"] is not None and worse(metric, w["value"], floor)
    ]


def summarize(windows: list[dict]) -> dict:
    """{role: {variant: {latest, mean, windows, rows}}} over complete windows (the partial one if alone)."""
    groups: dict[tuple, list[dict]] = {}
    for w in windows:
        groups.setdefault((w["role"], w["variant"]), []).append(w)
    out: dict = {}
    for (role, variant), ws in groups.items():
        use = [w for w in ws if not w["partial"]] or ws
        values = [w["value"] for w in use if w["value"] is not None]
        out.setdefault(role, {})[variant] = {
            "metric": ws[0]["metric"],
            "latest": values[-1] if values else None,
            "mean": float(np.mean(values)) if values else None,
            "windows": len(use),
            "rows": sum(w["rows"] for w in ws),
            "model_versions": sorted({v for w in ws for v in w["model_versions"]}),
        }
    return out
