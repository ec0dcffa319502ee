"""The fitted preprocessing compiled to NumPy: validated request rows straight to the model's feature matrix.

``Preprocessor.transform`` builds a pandas DataFrame per call: ~3 ms for one row of the quickstart, where
the model itself takes tens of microseconds. A ``Plan`` applies the same fitted steps (same state, same
semantics: nulls, unseen categories, float64 arithmetic) column by column on NumPy arrays; the property test
holds it equal to the DataFrame path. A ``custom`` step (any ``module:function`` on a DataFrame) has no
compiled form: ``compile_plan`` then returns None and callers keep the DataFrame path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raymlops.data.preprocessing import MISSING_CATEGORY, Preprocessor, Step, _safe_name
from raymlops.errors import DataError

Columns = dict[str, np.ndarray]


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def column(values: Sequence[Any], kind: str | None = None) -> np.ndarray:
    """One input column as pandas holds it: int64 for integers without nulls (unless the schema says
    ``number``: float64, as ``typed_frame`` makes it), float64 (nulls as NaN) for other numbers and bools,
    else an object array (nulls as None). The dtype matters for values past 2^53: int64 -> float32 rounds
    once, int64 -> float64 -> float32 can round twice."""
    if kind != "number" and values and all(type(v) is int and -(2**63) <= v < 2**63 for v in values):
        return np.array(values, dtype=np.int64)
    if all(_is_null(v) or (isinstance(v, (int, float)) and not isinstance(v, str)) for v in values):
        return np.array([np.nan if _is_null(v) else float(v) for v in values], dtype=np.float64)
    return np.array([None if _is_null(v) else v for v in values], dtype=object)


def _floats(a: np.ndarray) -> np.ndarray:
    if a.dtype != object:
        return a.astype(np.float64, copy=False)
    return np.array([np.nan if _is_null(v) else float(v) for v in a], dtype=np.float64)


def _impute(cols: Columns, step: Step) -> Columns:
    for c, v in step.state["fill"].items():
        if v is None or c not in cols:
            continue
        a = cols[c]
        if a.dtype.kind in "iu":  # no nulls to fill
            continue
        if a.dtype == object:
            a = a.copy()
            a[[_is_null(x) for x in a]] = v
            cols[c] = column(list(a)) if isinstance(v, (int, float)) and not isinstance(v, bool) else a
        elif isinstance(v, (int, float)):
            cols[c] = np.where(np.isnan(a), float(v), a)
        else:  # a text fill in a numeric column: pandas makes it an object column
            cols[c] = np.array([v if math.isnan(x) else x for x in a], dtype=object)
    return cols


def _scale(cols: Columns, step: Step) -> Columns:
    for c, s in step.state.items():
        x = _floats(cols[c])
        if step.kind == "standard_scale":
            cols[c] = (x - s["mean"]) / (s["std"] if s["std"] > 0 else 1.0)
        else:
            span = s["max"] - s["min"]
            cols[c] = (x - s["min"]) / (span if span > 0 else 1.0)
    return cols


def _onehot(cols: Columns, step: Step) -> Columns:
    new = {}
    for c, cats in step.state.items():
        a = cols[c]
        values = np.array([MISSING_CATEGORY if _is_null(v) else v for v in a], dtype=object)
        for cat in cats:
            new[_safe_name(c, cat)] = (values == cat).astype(np.float64)
    out = {k: v for k, v in cols.items() if k not in step.state}
    out.update(new)
    return out


def _ordinal(cols: Columns, step: Step) -> Columns:
    for c, cats in step.state.items():
        codes = {v: float(i) for i, v in enumerate(cats)}
        cols[c] = np.array([np.nan if _is_null(v) else codes.get(v, np.nan) for v in cols[c]], dtype=np.float64)
    return cols


def _check(cols: Columns, step: Step) -> None:
    missing = [c for c in step.columns if c not in cols]
    if missing:
        raise DataError(f"{step.kind}: columns {missing} are not in the data (have {list(cols)})")


def _select(cols: Columns, step: Step) -> Columns:
    return {c: cols[c] for c in step.columns}


def _drop(cols: Columns, step: Step) -> Columns:
    return {c: v for c, v in cols.items() if c not in step.columns}


KERNELS = {
    "select": _select,
    "drop": _drop,
    "impute": _impute,
    "standard_scale": _scale,
    "minmax_scale": _scale,
    "onehot": _onehot,
    "ordinal": _ordinal,
}


class Plan:
    """Rows -> feature matrix for one fitted preprocessing and one model's feature order."""

    def __init__(
        self, steps: list[Step], inputs: list[str], features: list[str], dtype, types: Mapping[str, str] | None = None
    ):
        self.steps, self.inputs, self.features, self.dtype = steps, list(inputs), list(features), dtype
        self.types = dict(types or {})  # column -> schema type (``number`` columns are float64 even when whole)

    def columns(self, rows: Sequence[Mapping[str, Any]]) -> Columns:
        """The transformed columns (name -> array) of ``rows`` (dicts holding every input column)."""
        missing = [c for c in self.inputs if rows and c not in rows[0]]
        if missing:
            raise DataError(f"input is missing columns {missing}")
        cols: Columns = {c: column([r.get(c) for r in rows], self.types.get(c)) for c in self.inputs}
        for step in self.steps:
            if step.kind not in ("drop",):
                _check(cols, step)
            cols = KERNELS[step.kind](cols, step)
        return cols

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The model's feature matrix (``features`` order, ``dtype``) for ``rows``."""
        cols = self.columns(rows)
        absent = [f for f in self.features if f not in cols]
        if absent:
            raise DataError(f"preprocessing did not produce feature columns {absent}")
        out = np.empty((len(rows), len(self.features)), dtype=self.dtype)
        with np.errstate(over="ignore"):  # 1e300 in a float32 model is inf, as pandas makes it
            for j, f in enumerate(self.features):
                a = cols[f]
                out[:, j] = a if a.dtype.kind in "iu" else _floats(a)  # integers cast once, as pandas does
        return out


def compile_plan(
    pre: Preprocessor, inputs: list[str], features: list[str], dtype=np.float32, types: Mapping[str, str] | None = None
) -> Plan | None:
    """The compiled form of ``pre`` (``types``: the schema type of each input), or None when a step has none
    (``custom``)."""
    if any(s.kind not in KERNELS for s in pre.steps):
        return None
    return Plan(pre.steps, inputs, features, dtype, types)
