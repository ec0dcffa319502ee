"""Hive-style partitions (``date=2024-01-01/region=north/part-0.parquet``, as Spark writes them): the values
each file's directories carry, typed as Spark infers them, and pruning by a filter before any file is read."""

from __future__ import annotations

import posixpath
import re
from typing import Any
from urllib.parse import unquote

from raymlops.config.models import FILTER_OPS
from raymlops.errors import DataError

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # Spark's directory name for a null partition value
OPS = FILTER_OPS  # the config's `sources.<name>.filter` operators
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?$")


def file_partitions(files: list[str], base: str) -> dict[str, dict[str, str | None]]:
    """Each file's ``key=value`` directory segments under ``base`` ({} for every file when there are none).

    Raises:
        DataError: files under different partition keys (a layout no writer produces).
    """
    out: dict[str, dict[str, str | None]] = {}
    for f in files:
        rel = posixpath.relpath(f.replace("\\", "/"), base.replace("\\", "/"))
        kv: dict[str, str | None] = {}
        for seg in rel.split("/")[:-1]:
            if "=" in seg:
                k, v = seg.split("=", 1)
                kv[unquote(k)] = None if v == HIVE_NULL else unquote(v)
        out[f] = kv
    keys = {tuple(kv) for kv in out.values()}
    if len(keys) > 1:
        shown = " vs ".join("/".join(k) or "(none)" for k in sorted(keys)[:2])
        raise DataError(f"{base}: files sit under different partition keys ({shown}); expected one Hive layout")
    return out if keys and keys != {()} else {}


def infer_types(partitions: dict[str, dict[str, str | None]]):
    """Each partition column's Arrow type from all its values, as Spark infers them: integers, then
    decimals, dates (yyyy-MM-dd), timestamps, booleans, else strings."""
    import pyarrow as pa

    columns: dict[str, list[str]] = {}
    for kv in partitions.values():
        for k, v in kv.items():
            columns.setdefault(k, [])
            if v is not None:
                columns[k].append(v)
    types = {}
    for k, values in columns.items():
        if values and all(_INT.match(v) for v in values):
            types[k] = pa.int64()
        elif values and all(_FLOAT.match(v) for v in values):
            types[k] = pa.float64()
        elif values and all(_DATE.match(v) for v in values):
            types[k] = pa.date32()
        elif values and all(_TIMESTAMP.match(v) for v in values):
            types[k] = pa.timestamp("us")
        elif values and all(v.lower() in ("true", "false") for v in values):
            types[k] = pa.bool_()
        else:
            types[k] = pa.string()
    return types


def typed_value(v: str | None, t) -> Any:
    import datetime as dt

    import pyarrow as pa

    if v is None:
        return None
    if pa.types.is_integer(t):
        return int(v)
    if pa.types.is_floating(t):
        return float(v)
    if pa.types.is_date(t):
        return dt.date.fromisoformat(v)
    if pa.types.is_timestamp(t):
        return dt.datetime.fromisoformat(v.replace(" ", "T"))
    if pa.types.is_boolean(t):
        return v.lower() == "true"
    return v


def prune(partitions: dict[str, dict[str, str | None]], types, filters: list, where: str) -> list[str]:
    """The files whose partition values pass every ``(column, op, value)`` filter (a conjunction).

    Raises:
        DataError: a filter on a column that is not a partition column, or a value of the wrong type.
    """
    known = sorted(types)
    checks = []
    for i, (column, op, value) in enumerate(filters):
        if column not in types:
            raise DataError(f"{where}[{i}]: {column!r} is not a partition column; partition columns: {known or 'none'}")
        try:
            wanted = (
                [typed_value(str(x), types[column]) for x in value]
                if op in ("in", "not in")
                else typed_value(str(value), types[column])
            )
        except (TypeError, ValueError):
            raise DataError(
                f"{where}[{i}]: value {value!r} does not match partition column {column!r} of type {types[column]}"
            ) from None
        checks.append((column, op, wanted))
    kept = []
    for f, kv in partitions.items():
        if all(_passes(typed_value(kv.get(c), types[c]), op, w) for c, op, w in checks):
            kept.append(f)
    return kept


def _passes(v: Any, op: str, w: Any) -> bool:
    if op == "in":
        return v in w
    if op == "not in":
        return v not in w
    if v is None:  # SQL semantics: a null partition value passes no comparison
        return False
    return {"==": v == w, "!=": v != w, "<": v < w, "<=": v <= w, ">": v > w, ">=": v >= w}[op]


def add_columns(table, file_of, partitions: dict[str, dict[str, str | None]], types):
    """``table`` with the partition columns of the file each row came from (``file_of``: one path per row)."""
    import pyarrow as pa

    for k, t in types.items():
        if k in table.column_names:  # the data carries the column itself: the data wins
            continue
        values = {f: typed_value(kv.get(k), t) for f, kv in partitions.items()}
        table = table.append_column(pa.field(k, t), pa.array([values[f] for f in file_of], type=t))
    return table
