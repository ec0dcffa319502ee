"""The OnlineStore contract (latest feature values per entity key) and the key/value codecs every backend shares.

A backend keeps, per feature view and entity key, the record with the greatest version (event_ts, created_ts):
a write replaces the stored record only if its version is >= the stored one (created_ts None sorts before any
value), so re-materializing a window is idempotent and an older window never overwrites newer values.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from raymlops.errors import DataError, RaymlopsError


class OnlineStoreError(RaymlopsError):
    """The online store backend failed (server unreachable, store closed, database error)."""


@dataclass(frozen=True, slots=True)
class OnlineRecord:
    """The feature values of one entity in one view.

    Attributes:
        values: Feature name -> JSON-compatible value (None allowed).
        event_ts: Event time, UTC epoch nanoseconds.
        created_ts: Created/ingested time, UTC epoch nanoseconds; None sorts before any value.
    """

    values: dict[str, Any]
    event_ts: int
    created_ts: int | None = None


Row = tuple[tuple, OnlineRecord]
Tile = tuple[tuple, int, int, int, str]  # (entity key, level, index, expires at (UTC ns), partial JSON)
Slot = tuple[int, int]  # (level, index)
Merge = Callable[[str | None, str], str]


class OnlineStore(ABC):
    """Latest feature values per (view, entity key), plus a little metadata. Thread-safe; use as a context manager.

    A backend is a subclass named for its config ``type`` in ``raymlops.features.online.ONLINE_STORES``.
    """

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: Any, storage: str, namespace: str) -> OnlineStore:
        """Opens the store a ``features.online_store`` config section describes.

        Args:
            cfg: The backend's config section (None: the backend's defaults).
            storage: The pipeline's storage path (where a local backend keeps its file by default).
            namespace: The pipeline name (a shared backend's default key prefix).

        Raises:
            OnlineStoreError: The store cannot be opened or reached.
        """

    @abstractmethod
    def write(self, view: str, rows: Iterable[Row]) -> int:
        """Upserts records with the newer-wins rule (see the module docstring).

        Args:
            view: Feature view name.
            rows: (entity key tuple, record) pairs; may be a lazy iterator. Later duplicates of a key in the same
                call are applied in order.

        Returns:
            The number of rows applied: inserted, or replacing a record with a version <= theirs (so an identical
            re-write counts); rows older than the stored record are not counted.
        """

    @abstractmethod
    def read(self, view: str, keys: Sequence[tuple]) -> list[OnlineRecord | None]:
        """Looks up many entity keys in one round trip; returns records in the order of keys, None where not found."""

    @abstractmethod
    def write_tiles(self, view: str, tiles: Iterable[Tile], merge: Merge | None = None) -> int:
        """Stores window-aggregate tiles (see `raymlops.features.tiles`).

        Args:
            tiles: (entity key, level, index, expires, partial JSON); a tile whose ``expires`` has passed is skipped.
            merge: None: each tile replaces the stored one (materialization recomputes whole tiles). Otherwise
                ``merge(stored or None, new)`` is stored, atomically per tile against concurrent writers (push).

        Returns:
            The number of tiles stored.
        """

    @abstractmethod
    def read_tiles(self, view: str, keys: Sequence[tuple], slots: Sequence[Slot]) -> list[dict[Slot, str]]:
        """For each entity key, in order: {(level, index): partial JSON} of the stored tiles among ``slots``."""

    @abstractmethod
    def expire_tiles(self, view: str, now: int) -> int:
        """Deletes the view's tiles whose expiry is at or before ``now``; returns how many (0 where the backend
        expires them itself)."""

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """Returns a small metadata value (watermark, history JSON), or None if never set."""

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Stores a small metadata value, replacing any previous one."""

    @abstractmethod
    def delete_view(self, view: str) -> None:
        """Deletes every record of the view (its metadata keys are left alone)."""

    @abstractmethod
    def count(self, view: str) -> int:
        """Returns the number of entity keys stored for the view."""

    @abstractmethod
    def close(self) -> None:
        """Releases connections; the store cannot be used afterwards. Idempotent."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def slot_runs(slots: Sequence[Slot]) -> list[tuple[int, int, int]]:
    """Slots as (level, first index, last index) runs of consecutive indexes (a window's tiles form few runs)."""
    runs: list[list[int]] = []
    for level, index in sorted(set(slots)):
        if runs and runs[-1][0] == level and runs[-1][2] == index - 1:
            runs[-1][2] = index
        else:
            runs.append([level, index, index])
    return [(a, b, c) for a, b, c in runs]


def version(record: OnlineRecord) -> tuple[int, int, int]:
    """The newer-wins sort key of a record: (event_ts, has created_ts, created_ts)."""
    cts = record.created_ts
    return (record.event_ts, 0, 0) if cts is None else (record.event_ts, 1, cts)


def check_ts(value: Any, what: str) -> int:
    """Returns value as a python int (UTC epoch ns); raises DataError unless it is an int64-range integer."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and -(2**63) <= value < 2**63:
        return int(value)
    raise DataError(f"{what} must be a 64-bit integer of UTC epoch nanoseconds, got {type(value).__name__} {value!r}")


def encode_key(key: tuple) -> str:
    """Canonical, type-stable text of an entity key.

    numpy scalars encode like their python values, integral floats like ints (a pandas int key column with
    missing values becomes float64), strings are JSON-quoted so ("1",) and (1,) differ, bools are true/false.

    Raises:
        DataError: The key is not a non-empty tuple/list of str, int, float or bool, or has a null/non-finite part.
    """
    if not isinstance(key, (tuple, list)) or not key:
        raise DataError(f"an entity key must be a non-empty tuple of join-key values, got {key!r}")
    return ",".join([_key_part(p, key) for p in key])


def _key_part(p: Any, key: tuple) -> str:
    t = type(p)
    if t is int:
        return str(p)
    if t is str:
        return json.dumps(p, ensure_ascii=False)
    if isinstance(p, (bool, np.bool_)):
        return "true" if p else "false"
    if isinstance(p, (int, np.integer)):
        return str(int(p))
    if isinstance(p, str):
        return json.dumps(str(p), ensure_ascii=False)
    if isinstance(p, (float, np.floating)):
        f = float(p)
        if not math.isfinite(f):
            raise DataError(f"entity key {key!r} has a null or non-finite part {p!r}")
        return str(int(f)) if f.is_integer() else repr(f)
    if p is None:
        raise DataError(f"entity key {key!r} has a null part")
    raise DataError(f"entity key {key!r}: unsupported join-key type {type(p).__name__} (use str, int or float)")


def encode_values(values: Mapping[str, Any]) -> str:
    """Compact JSON of feature values, normalized with to_json_value (NaN -> null, numpy -> python, ...).

    Raises:
        DataError: A value is not JSON-compatible (bytes, arbitrary objects).
    """
    try:
        return _ENCODER.encode(values)
    except ValueError:  # a NaN/inf somewhere: normalize the slow way
        return _ENCODER.encode({k: json_ready(v) for k, v in values.items()})


def decode_values(text: str) -> dict[str, Any]:
    """Inverse of encode_values."""
    return json.loads(text)


def json_ready(v: Any) -> Any:
    """``v`` with NaN and infinities as None, numpy values as Python ones, recursively: what strict JSON takes."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {k: json_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_ready(x) for x in v]
    if isinstance(v, np.ndarray):
        return [json_ready(x) for x in v.tolist()]
    return v if isinstance(v, (str, int, bool, type(None))) else json_ready(to_json_value(v))


def to_json_value(v: Any) -> Any:
    """One value as JSON-compatible python.

    numpy scalars -> python, NaN/inf/NaT/pd.NA -> None, datetimes (python, numpy, pandas) -> ISO-8601 UTC strings
    (naive ones are taken as UTC), dates -> ISO dates, arrays -> lists.

    Raises:
        DataError: bytes or another type with no JSON form.
    """
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (bytes, bytearray, memoryview)):
        raise DataError(
            f"feature value {bytes(v)[:20]!r}...: bytes are not supported in the online store; "
            "store text (e.g. base64) instead"
        )
    import pandas as pd

    if v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, np.datetime64):
        v = pd.Timestamp(v)
        if v is pd.NaT:
            return None
    if isinstance(v, datetime):
        ts = pd.Timestamp(v)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert(UTC)
        return ts.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.str_):
        return str(v)
    if isinstance(v, np.ndarray):
        return [to_json_value(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [to_json_value(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): to_json_value(x) for k, x in v.items()}
    raise DataError(f"feature value {v!r} of type {type(v).__name__} has no JSON form for the online store")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=to_json_value)
