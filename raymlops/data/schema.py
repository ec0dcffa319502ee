"""The model's input schema: inferred from the training data, enforced on every online request."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from raymlops.data.stats import is_missing
from raymlops.errors import DataError

KINDS = ("number", "integer", "boolean", "string", "timestamp")
# The int64 range as OpenAPI documents give it, rounded inward to the nearest doubles: clients (and fuzzers)
# that carry JSON numbers as doubles turn 2**63 - 1 into 2**63, outside the range.
INT64_DOC = 2**63 - 1024
# ISO-8601 timestamps as OpenAPI documents describe them: years 1700-2259 (inside pandas' nanosecond range,
# which validation enforces) and days 01-28 (every month has them), so that every matching string parses.
ISO_TIMESTAMP_PATTERN = (
    r"^(1[7-9][0-9]{2}|2[01][0-9]{2}|22[0-5][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$"
)


def doc_type(kind: str, nullable: bool) -> tuple[Any, dict[str, Any]]:
    """(Python type, pydantic ``Field`` constraints) that OpenAPI documents give a value of schema ``kind``,
    as the checks accept it: finite numbers, integers within INT64_DOC, ISO_TIMESTAMP_PATTERN timestamps."""
    py: Any = {"number": float, "integer": int, "boolean": bool, "string": str, "timestamp": str}[kind]
    extra: dict[str, Any] = {
        "number": {"allow_inf_nan": False},
        "integer": {"ge": -INT64_DOC, "le": INT64_DOC},
        "timestamp": {"pattern": ISO_TIMESTAMP_PATTERN},
    }.get(kind, {})
    return (py | None if nullable else py), dict(extra)


@dataclass
class Column:
    name: str
    type: str
    nullable: bool = True


@dataclass
class InputSchema:
    """Input columns, with their types; also carries the task's label metadata."""

    columns: list[Column]
    label: str | None = None
    task: str | None = None
    classes: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InputSchema:
        d = dict(d)
        d["columns"] = [Column(**c) for c in d["columns"]]
        return cls(**d)


def arrow_kind(t) -> str:
    """Maps a pyarrow type to a schema kind."""
    import pyarrow.types as pt

    if pt.is_boolean(t):
        return "boolean"
    if pt.is_integer(t):
        return "integer"
    if pt.is_floating(t) or pt.is_decimal(t):
        return "number"
    if pt.is_string(t) or pt.is_large_string(t) or pt.is_dictionary(t):
        return "string"
    if pt.is_timestamp(t) or pt.is_date(t):
        return "timestamp"
    raise DataError(f"unsupported column type {t}; expected numbers, booleans, strings or timestamps")


def input_columns(all_columns: list[str], excluded: set[str], steps: list) -> list[str]:
    """The raw columns a request must carry: features after the leading select/drop steps.

    A custom step can read any column, so narrowing stops at the first one.
    """
    cols = [c for c in all_columns if c not in excluded]
    for s in steps:
        if s.type == "select":
            cols = [c for c in s.columns if c in cols]
        elif s.type == "drop":
            cols = [c for c in cols if c not in s.columns]
        elif s.type == "custom":
            break
    return cols


# ------------------------------------------------------------------ requests


class RecordErrors(DataError):
    """Request rows that do not fit the schema; ``errors`` follow FastAPI's 422 format."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))


FLOAT32_MAX = 3.4028234e38


def _finite(v: Any) -> bool:
    """A JSON number the model can take: finite and within float32 (the feature matrix's type)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v)) and abs(float(v)) <= FLOAT32_MAX
    except OverflowError:
        return False


_CHECKS = {
    "number": (_finite, "a finite number within float32 range"),
    "integer": (lambda v: _finite(v) and float(v).is_integer() and -(2**63) <= v < 2**63, "an integer"),
    "boolean": (lambda v: isinstance(v, bool), "a boolean"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "timestamp": (lambda v: isinstance(v, str) and not pd.isna(_timestamps([v])[0]), "an ISO-8601 timestamp string"),
}


def _timestamps(values: list) -> pd.Series:
    """ISO-8601 strings (any offset) as naive UTC timestamps, as training batches see them."""
    parsed = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce", format="ISO8601")
    return parsed.dt.tz_convert(None)


def records_to_frame(
    records: list[Any], schema: InputSchema, loc_prefix: tuple = ("body", "instances"), max_errors: int = 20
) -> pd.DataFrame:
    """Checks request rows against the schema and returns them as a typed DataFrame.

    Raises:
        RecordErrors: naming each bad field as ``loc`` (FastAPI's error format).
    """
    check_records(records, schema, loc_prefix, max_errors)
    return typed_frame(records, schema)


def check_records(
    records: list[Any], schema: InputSchema, loc_prefix: tuple = ("body", "instances"), max_errors: int = 20
) -> None:
    """Checks request rows against the schema (every column present, typed, null only where nullable).

    Raises:
        RecordErrors: naming each bad field as ``loc`` (FastAPI's error format).
    """
    errors: list[dict] = []

    def err(loc: tuple, msg: str, kind: str) -> None:
        if len(errors) < max_errors:
            errors.append({"loc": list(loc_prefix + loc), "msg": msg, "type": kind})

    for i, row in enumerate(records):
        if not isinstance(row, dict):
            err((i,), f"expected an object of column values, got {type(row).__name__}", "dict_type")
            continue
        for col in schema.columns:
            if col.name not in row:
                err((i, col.name), "field required", "missing")
                continue
            v = row[col.name]
            if is_missing(v):
                if not col.nullable:
                    err((i, col.name), "null is not allowed for this column", "null_not_allowed")
                continue
            ok, expected = _CHECKS[col.type]
            if not ok(v):
                err((i, col.name), f"expected {expected}, got {type(v).__name__} {v!r}"[:200], f"{col.type}_type")
    if errors:
        raise RecordErrors(errors)


def typed_frame(records: list[dict], schema: InputSchema) -> pd.DataFrame:
    """Checked rows as the DataFrame training batches would give: numbers float64 (int64 without nulls),
    booleans bool (object with nulls), timestamps naive UTC, the rest object."""
    data = {}
    for col in schema.columns:
        values = [row.get(col.name) for row in records]
        has_null = any(is_missing(v) for v in values)
        if col.type in ("number", "integer"):
            dtype = "int64" if col.type == "integer" and not has_null else "float64"
            data[col.name] = np.array([np.nan if is_missing(v) else v for v in values], dtype=dtype)
        elif col.type == "timestamp":
            data[col.name] = _timestamps(values)
        elif col.type == "boolean" and not has_null:
            data[col.name] = np.array(values, dtype=bool)
        else:
            data[col.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data)


def frame_errors(df: pd.DataFrame, schema: InputSchema) -> list[str]:
    """Columns of a batch DataFrame that are missing (for offline scoring)."""
    return [c for c in schema.names if c not in df.columns]


_FITS = {
    "number": {"number", "integer"},
    "integer": {"integer", "number"},
    "boolean": {"boolean"},
    "string": {"string"},
    "timestamp": {"timestamp", "string"},
}


def arrow_problems(arrow, schema: InputSchema) -> dict[str, str]:
    """Model input columns that a batch's Arrow schema lacks or types differently, as {column: problem}
    (checked from a file's footer or first block, before any row is scored)."""
    import pyarrow.types as pt

    names = set(arrow.names)
    out: dict[str, str] = {}
    for col in schema.columns:
        if col.name not in names:
            out[col.name] = "missing column"
            continue
        t = arrow.field(col.name).type
        if pt.is_null(t):  # a CSV/JSON block with only nulls: nothing to say yet
            continue
        try:
            kind = arrow_kind(t)
        except DataError:
            out[col.name] = f"type {t} is not supported; expected {col.type} values"
            continue
        if kind not in _FITS[col.type]:
            hint = (
                "the column holds text: numbers written as text, or values that are not numbers; "
                "`raymlops check` shows which"
                if kind == "string" and col.type in ("number", "integer")
                else ""
            )
            out[col.name] = f"expected {col.type} values, got {t}" + (f" ({hint})" if hint else "")
    return out
