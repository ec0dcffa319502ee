"""Two profiles side by side: per shared column, both distributions on common bins, the sketches' KS
distance, and the drift verdict of the monitors' own 'tabular' detector (KS for numeric columns, chi-squared
for categorical ones, Bonferroni across columns) with its effect size, run on the two uniform samples."""

from __future__ import annotations

from typing import Any

import numpy as np

from raymlops.data.schema import Column
from raymlops.explore.block import CATEGORICAL, NUMERIC
from raymlops.explore.profile import HIST_BINS
from raymlops.explore.warnings import is_identifier

P_VAL = 0.05


def compare_profiles(
    a: dict[str, Any], b: dict[str, Any], sketches_a: dict, sketches_b: dict, p_val: float = P_VAL
) -> dict[str, Any]:
    """``a`` is the reference (e.g. the training source), ``b`` the data compared with it."""
    shared = [n for n in a["columns"] if n in b["columns"] and a["columns"][n]["kind"] == b["columns"][n]["kind"]]
    tested, skipped = [], {}
    for n in shared:
        ca, kind = a["columns"][n], a["columns"][n]["kind"]
        if n in (a.get("time"), b.get("time")) or kind not in (NUMERIC, CATEGORICAL):
            skipped[n] = "time column"
        elif is_identifier(ca):
            skipped[n] = "identifier (nearly every value distinct)"
        elif not ca["count"] or not b["columns"][n]["count"]:
            skipped[n] = "no values on one side"
        else:
            tested.append(n)
    verdicts = _drift(a["sample"], b["sample"], tested, a["columns"], p_val)
    columns: dict[str, Any] = {}
    for n in shared:
        ca, cb = a["columns"][n], b["columns"][n]
        entry: dict[str, Any] = {
            "kind": ca["kind"],
            "null_share": [ca["null_share"], cb["null_share"]],
            "distinct": [ca["distinct"], cb["distinct"]],
        }
        if ca["kind"] == NUMERIC and ca["count"] and cb["count"]:
            entry.update(
                mean=[ca["mean"], cb["mean"]],
                std=[ca["std"], cb["std"]],
                **_numeric_sides(sketches_a[n].kll, sketches_b[n].kll, ca, cb),
            )
        elif ca["kind"] == CATEGORICAL:
            entry["shares"] = _category_shares(ca, cb)
        if n in verdicts:
            entry["drift"] = verdicts[n]
        elif n in skipped:
            entry["not_tested"] = skipped[n]
        columns[n] = entry
    drifted = [n for n, v in verdicts.items() if v["is_drift"]]
    return {
        "reference": a["name"],
        "current": b["name"],
        "rows": [a["rows"], b["rows"]],
        "p_val": p_val,
        "test": "tabular (KS numeric, chi-squared categorical; Bonferroni)",
        "sample_rows": [len(a["sample"]), len(b["sample"])],
        "is_drift": bool(drifted),
        "drifted": drifted,
        "only_in_reference": [n for n in a["columns"] if n not in b["columns"]],
        "only_in_current": [n for n in b["columns"] if n not in a["columns"]],
        "columns": columns,
    }


def _drift(sample_a, sample_b, columns: list[str], kinds: dict, p_val: float) -> dict[str, dict]:
    if not columns:
        return {}
    from raymlops.monitoring.detectors import fit_detector
    from raymlops.monitoring.effects import Profile

    ref, cur = _frame(sample_a, columns), _frame(sample_b, columns)
    schema = [Column(n, "number" if kinds[n]["kind"] == NUMERIC else "string") for n in columns]
    detector, _ = fit_detector("tabular", ref, schema, {"p_val": p_val, "correction": "bonferroni", "window": len(cur)})
    result = detector.test(cur)
    effects = Profile.fit(detector.encoder.encode(ref), detector.encoder)
    distances = dict(zip(detector.encoder.names, effects.distances(detector.encoder.encode(cur))))
    metrics = dict(zip(detector.encoder.names, effects.metrics()))
    return {
        n: {**result["features"][n], "effect": distances[n], "effect_metric": metrics[n]}
        for n in columns
        if n in result["features"]
    }


def _frame(table, columns: list[str]):
    """The sample's columns as pandas; booleans as "true"/"false" by their Arrow type (nulls kept), so both
    sides encode alike whether or not one of them has nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.select(columns)
    for i, f in enumerate(table.schema):
        if pa.types.is_boolean(f.type):
            table = table.set_column(i, f.name, pc.if_else(table.column(i), "true", "false"))
    return table.replace_schema_metadata(None).to_pandas()  # no pandas dtypes restored over the strings


def _numeric_sides(kll_a, kll_b, ca: dict, cb: dict) -> dict[str, Any]:
    """Both histograms on one set of equal-width bins over the union range, and the KS distance between the
    two sketches (the largest CDF gap at either sketch's quantile points)."""
    lo, hi = min(ca["min"], cb["min"]), max(ca["max"], cb["max"])
    out: dict[str, Any] = {"quantiles": [ca["quantiles"], cb["quantiles"]]}
    edges = np.unique(np.linspace(lo, hi, HIST_BINS + 1))
    if len(edges) >= 3:
        out["edges"] = edges.tolist()
        out["shares"] = [_shares(kll_a, edges), _shares(kll_b, edges)]
    points = sorted(
        set(kll_a.get_quantiles(list(np.linspace(0, 1, 101)))) | set(kll_b.get_quantiles(list(np.linspace(0, 1, 101))))
    )
    cdf_a, cdf_b = np.asarray(kll_a.get_cdf(points, True)[:-1]), np.asarray(kll_b.get_cdf(points, True)[:-1])
    out["ks_distance"] = float(np.max(np.abs(cdf_a - cdf_b))) if points else 0.0
    return out


def _shares(kll, edges: np.ndarray) -> list[float]:
    cdf = np.asarray(kll.get_cdf(list(edges[1:-1]), False))  # [a, b) bins, as the profile's
    return np.diff(np.concatenate([[0.0], cdf[:-1], [1.0]])).tolist()


def _category_shares(ca: dict, cb: dict) -> dict[str, list[float]]:
    top_a, top_b = {t["value"]: t["share"] for t in ca["top"]}, {t["value"]: t["share"] for t in cb["top"]}
    values = sorted(set(top_a) | set(top_b), key=lambda v: -max(top_a.get(v, 0.0), top_b.get(v, 0.0)))
    return {v: [top_a.get(v, 0.0), top_b.get(v, 0.0)] for v in values}
