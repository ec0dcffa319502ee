"""The second pass, with a label: per feature, the label's distribution in each bin (numeric features) or
top category, and the mutual information between feature and label from that contingency table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raymlops.explore.block import CATEGORICAL, NUMERIC

FEATURE_BINS = 16  # quantile bins per numeric feature, top categories per categorical one
MAX_CLASSES = 20  # a label with at most this many distinct values is a class label; else it is binned
OTHER, MISSING = "(other)", "(missing)"
SEP = "\x00"


def label_bins(columns: dict[str, dict], partials: dict, label: str) -> dict[str, Any]:
    """How pass 2 bins each feature and the label, from pass 1's sketches."""
    lab = columns[label]
    if lab["kind"] == CATEGORICAL:
        spec = {"mode": "classes", "values": [t["value"] for t in lab["top"][:MAX_CLASSES]]}
    elif lab["kind"] == NUMERIC and lab["distinct"] <= MAX_CLASSES:
        spec = {"mode": "classes", "values": None}  # the values themselves (few, found as they come)
    elif lab["kind"] == NUMERIC:
        spec = {"mode": "numeric", "edges": _edges(partials[label], 10)}
    else:
        spec = {"mode": "none"}
    features = {}
    for name, col in columns.items():
        if name == label:
            continue
        if col["kind"] == NUMERIC and col["count"]:
            features[name] = {"kind": NUMERIC, "edges": _edges(partials[name], FEATURE_BINS)}
        elif col["kind"] == CATEGORICAL and col["count"]:
            features[name] = {"kind": CATEGORICAL, "values": [t["value"] for t in col["top"][:FEATURE_BINS]]}
    return {"label": label, "spec": spec, "features": features}


def _edges(partial, bins: int) -> list[float]:
    qs = partial.kll.get_quantiles([i / bins for i in range(1, bins)])
    return sorted(set(float(q) for q in qs))


def _bin_numeric(values: np.ndarray, edges: list[float]) -> np.ndarray:
    out = np.searchsorted(np.asarray(edges), values, side="right")
    out[np.isnan(values)] = len(edges) + 1
    return out


def _bin_categorical(col, values: list) -> np.ndarray:
    """Index of each row's value among ``values``; len(values) for others, len(values) + 1 when missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    is_bool = pa.types.is_boolean(col.type)
    encoded = pc.dictionary_encode(col)
    lookup = {v: i for i, v in enumerate(values)}
    dictionary = [str(v).lower() if is_bool else v for v in encoded.dictionary.to_pylist()]
    codes = np.array([lookup.get(v, len(values)) for v in dictionary] + [len(values) + 1], dtype=np.intp)
    indices = encoded.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False).astype(np.intp)
    return codes[indices]


def _float(col) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def label_block(table, bins: dict[str, Any]) -> dict[str, np.ndarray]:
    """Contingency counts of one block: key 'feature SEP class' -> rows per feature bin (numeric labels:
    classes are the label's bins, plus the label's sum per feature bin under 'feature SEP __sum__')."""
    spec = bins["spec"]
    lab = table.column(bins["label"])
    if spec["mode"] == "none":
        return {}
    if spec["mode"] == "numeric":
        y = _float(lab)
        keep = ~np.isnan(y)
        classes = _bin_numeric(y, spec["edges"])
        names = [str(i) for i in range(len(spec["edges"]) + 1)]
    elif spec["values"] is None:  # a numeric label with few values: each value is a class
        y = _float(lab)
        keep = ~np.isnan(y)
        uniq, classes = np.unique(np.where(keep, y, 0.0), return_inverse=True)
        names = [_class_name(v) for v in uniq]
    else:
        classes = _bin_categorical(lab, spec["values"])
        keep = classes <= len(spec["values"])
        names = [*spec["values"], OTHER]
    out: dict[str, np.ndarray] = {}
    for name, f in bins["features"].items():
        col = table.column(name)
        if f["kind"] == NUMERIC:
            fb, size = _bin_numeric(_float(col), f["edges"]), len(f["edges"]) + 2
        else:
            fb, size = _bin_categorical(col, f["values"]), len(f["values"]) + 2
        fb = fb[keep]
        for c in np.unique(classes[keep]):
            out[f"{name}{SEP}{names[c]}"] = np.bincount(fb[classes[keep] == c], minlength=size).astype(np.int64)
        if spec["mode"] == "numeric":
            out[f"{name}{SEP}__sum__"] = np.bincount(fb, weights=y[keep], minlength=size)
    return out


def _class_name(v: float) -> str:
    """A numeric class's name, exact (1000000 and 1000001 stay two classes)."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def association(bins: dict[str, Any], counts: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per feature: bin labels, rows per bin, the label per bin (positive share, class shares or mean) and
    the mutual information (bits, Miller-Madow corrected) with its share of the label's entropy."""
    spec = bins["spec"]
    out: dict[str, Any] = {}
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for k, v in counts.items():
        feature, cls = k.split(SEP, 1)
        if cls != "__sum__":
            grouped.setdefault(feature, {})[cls] = v
    for name, f in bins["features"].items():
        per_class = grouped.get(name, {})
        if not per_class:
            continue
        classes = sorted(per_class)
        table = np.stack([per_class[c] for c in classes], axis=1).astype(np.float64)  # bins x classes
        labels = _bin_labels(f)
        rows = table.sum(axis=1)
        used = rows > 0
        entry: dict[str, Any] = {
            "bins": [b for b, u in zip(labels, used) if u],
            "rows": rows[used].astype(int).tolist(),
        }
        if spec["mode"] == "numeric":
            sums = counts.get(f"{name}{SEP}__sum__")
            entry["label_mean"] = [float(s / r) for s, r in zip(sums[used], rows[used])] if sums is not None else None
        else:
            positive = _positive(classes, table.sum(axis=0))
            if positive is not None:
                entry["positive"] = positive
                entry["positive_rate"] = (table[used, classes.index(positive)] / rows[used]).tolist()
            else:
                entry["class_shares"] = {c: (table[used, i] / rows[used]).tolist() for i, c in enumerate(classes)}
        mi, h = _mutual_information(table[used])
        entry["mutual_information"] = mi
        entry["label_entropy"] = h
        entry["uncertainty"] = mi / h if h > 0 else 0.0  # Theil's U: the share of the label's entropy explained
        out[name] = entry
    return out


def _positive(classes: list[str], totals: np.ndarray) -> str | None:
    """The class a binary label's rate is reported for: 1 / true, else the rarer of the two."""
    if len(classes) != 2:
        return None
    for pos in ("1", "true", "yes"):
        if pos in classes:
            return pos
    return classes[int(np.argmin(totals))]


def _bin_labels(f: dict) -> list[str]:
    if f["kind"] == NUMERIC:
        e = f["edges"]
        inner = [f"< {e[0]:.4g}"] + [f"[{a:.4g}, {b:.4g})" for a, b in zip(e, e[1:])] + [f">= {e[-1]:.4g}"]
        return [*inner, MISSING]
    return [*f["values"], OTHER, MISSING]


def _mutual_information(table: np.ndarray) -> tuple[float, float]:
    n = table.sum()
    if n <= 0:
        return 0.0, 0.0
    px, py = table.sum(axis=1) / n, table.sum(axis=0) / n
    p = table / n
    nz = p > 0
    mi = float((p[nz] * np.log2(p[nz] / np.outer(px, py)[nz])).sum())
    bias = (np.count_nonzero(px) - 1) * (np.count_nonzero(py) - 1) / (2 * n * math.log(2))
    h = float(-(py[py > 0] * np.log2(py[py > 0])).sum())
    return max(mi - bias, 0.0), h
