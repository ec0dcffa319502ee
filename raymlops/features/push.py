"""Push ingestion: new events written to a view without a stream processor.

`validate` turns rows into the view's stored columns, typed like the offline store's, or raises a PushError
naming every bad field; nothing is written then. `write_pushed` appends the events to the offline store as a
'push' version (so the next training set sees them; they survive rebuilds from the source), then updates the
online store at once: latest field values newer-wins, window tiles merged.
"""

from __future__ import annotations

import datetime as dt
import functools
import numbers
from typing import Any

import pandas as pd
import pyarrow as pa

from raymlops.config.models import FeatureViewConfig
from raymlops.errors import DataError
from raymlops.features.build import stored_columns
from raymlops.features.kernels import UTC_NS
from raymlops.features.materialize import _latest_per_key, _records, _tiles
from raymlops.features.offline import OfflineStore, Version
from raymlops.features.online import OnlineStore
from raymlops.features.partition import key_type
from raymlops.features.tiles import build_tiles, merge, tile_spec

COMPACT_AFTER = 64  # pushed files in a version before they are rewritten as one file per date


class PushError(DataError):
    """Rows that cannot be pushed; ``problems`` holds (row index or None, field, message) for each."""

    def __init__(self, problems: list[tuple[int | None, str, str]]):
        self.problems = problems
        shown = "; ".join(f"{'rows' if r is None else f'rows[{r}]'}.{f}: {m}" for r, f, m in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"nothing was pushed: {shown}{more}")


def validate(rows: Any, view: FeatureViewConfig, keys: list[str], schema: pa.Schema | None, now: int) -> pa.Table:
    """Rows (dicts, a pandas DataFrame or an Arrow table) as an Arrow table of the view's stored columns.

    Every stored column must be present (null allowed, except in join keys and the timestamp); the created
    timestamp, if the view has one, defaults to ``now``. Values must fit the offline store's column types.
    """
    if isinstance(rows, pa.Table):
        rows = rows.to_pylist()
    elif isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")  # NaN and NaT count as null below
    if not isinstance(rows, (list, tuple)) or not rows:
        raise PushError([(None, "rows", "must be a non-empty list of events")])
    columns = stored_columns(view, keys)
    created = view.created_timestamp
    problems: list[tuple[int | None, str, str]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append((i, "", f"must be an object of column values, got {type(row).__name__}"))
            continue
        problems += [
            (i, c, f"is not a column of view {view.name!r} (it has {columns})") for c in row if c not in columns
        ]
        problems += [(i, c, "is required") for c in columns if c not in row and c != created]
        problems += [(i, c, "must not be null") for c in [*keys, view.timestamp] if c in row and _null(row[c])]
    arrays = {}
    for c in columns:
        values = [row.get(c) if isinstance(row, dict) else None for row in rows]
        if c == created:
            values = [pd.Timestamp(now, tz="UTC") if _null(v) else v for v in values]
        target = (
            UTC_NS
            if c in (view.timestamp, created)
            else (schema.field(c).type if schema is not None and c in schema.names else None)
        )
        if c in keys:
            target = key_type(target) if target is not None else None
        arrays[c], bad = _typed(values, target)
        problems += [(i, c, why) for i, why in bad]
    if problems:
        raise PushError(sorted(problems, key=lambda p: (-1 if p[0] is None else p[0], p[1])))
    return pa.table(arrays)


def _null(v: Any) -> bool:
    return v is None or v is pd.NaT or (isinstance(v, float) and v != v)


def _typed(values: list, target: pa.DataType | None) -> tuple[pa.Array | None, list[tuple[int, str]]]:
    """The values as an Arrow array of ``target`` (inferred when None), or the rows that do not fit."""
    if target is not None and pa.types.is_timestamp(target):
        out, bad = [], []
        for i, v in enumerate(values):
            try:
                out.append(None if _null(v) else _timestamp(v))
            except (ValueError, TypeError) as e:
                bad.append((i, str(e)))
        return (pa.array(out, pa.int64()).cast(target) if not bad else None), bad
    if target is not None:
        check = _CHECKS.get(_family(target))
        bad = [
            (i, f"must be {_family(target)}, got {type(v).__name__} {v!r}"[:200])
            for i, v in enumerate(values)
            if not _null(v) and check is not None and not check(v)
        ]
        if bad:
            return None, bad
        if _family(target) == "an integer":  # JSON has one number type: 3.0 is the integer 3
            values = [int(v) if isinstance(v, float) and not _null(v) else v for v in values]
    try:
        return pa.array([None if _null(v) else v for v in values], type=target), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        return None, [(0, f"cannot be stored as {target or 'one type'}: {e}"[:200])]


def _timestamp(v: Any) -> int:
    """An ISO string, datetime or pandas Timestamp (naive = UTC) as UTC ns; epoch numbers are refused."""
    if isinstance(v, (numbers.Number, bool)) and not isinstance(v, dt.datetime):
        raise ValueError(f"must be a timestamp (ISO-8601 text or a datetime), got the number {v!r}")
    try:
        ts = pd.Timestamp(v)
    except (ValueError, TypeError) as e:
        raise ValueError(f"must be a timestamp (ISO-8601 text or a datetime), got {v!r}") from e
    if ts is pd.NaT:
        raise ValueError("must not be null")
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).value


def _family(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "a boolean"
    if pa.types.is_integer(t):
        return "an integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "a number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "a string"
    return str(t)


_CHECKS = {
    "a boolean": lambda v: isinstance(v, bool),
    "an integer": lambda v: (
        (isinstance(v, numbers.Integral) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "a number": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
    "a string": lambda v: isinstance(v, str),
}


def write_pushed(
    offline: OfflineStore, online: OnlineStore, view: FeatureViewConfig, keys: list[str], table: pa.Table
) -> dict:
    """Writes validated events: the offline store first (one 'push' version), then the online store."""
    version: Version = offline.write(view.name, table, view.timestamp, mode="push")
    if version.manifest.get("pushed_files", 0) > COMPACT_AFTER:
        version = offline.compact_pushed(view.name, view.timestamp) or version
    entities = 0
    if view.fields:
        entities = online.write(view.name, _records(_latest_per_key(table, view, keys), view, keys))
    tiles = 0
    spec = tile_spec(view)
    if spec is not None:
        built = build_tiles(table, spec, keys, view.timestamp, view.created_timestamp)
        tiles = online.write_tiles(view.name, _tiles(built, keys), merge=functools.partial(merge, spec=spec))
    return {
        "view": view.name,
        "rows": table.num_rows,
        "offline_version": version.number,
        "entities": entities,
        "tiles": tiles,
    }
