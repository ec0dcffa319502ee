"""Feature pipelines: a view's events computed from its source with Ray Data (transform, needed columns, UTC
times) and written to the offline store as a new version.

Window aggregates are not stored: retrieval computes them from these events as of each entity row's time
(`pit.py`), and materialization turns them into online tiles (`tiles.py`), so both are exact at the moment
they are asked for rather than as of the entity's last event.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from raymlops.config.models import FeatureViewConfig
from raymlops.errors import DataError
from raymlops.features.kernels import utc_array, utc_ns
from raymlops.features.offline import OfflineStore, Version, time_filter
from raymlops.features.partition import normalize_keys


def load_function(path: str):
    """A feature view's ``transform`` (``module:function``); DataError when it cannot be imported."""
    from raymlops.data.preprocessing import import_function

    return import_function(path)


def _transform(batch: pd.DataFrame, path: str) -> pd.DataFrame:
    out = load_function(path)(batch)
    if not isinstance(out, pd.DataFrame):
        raise DataError(f"transform {path!r} must return a pandas DataFrame; got {type(out).__name__}")
    return out


def _prepare(
    table: pa.Table, view: FeatureViewConfig, keys: list[str], columns: list[str], lo: int | None, hi: int | None
) -> pa.Table:
    """Needed columns only, timestamps as UTC, rows without a key or time dropped, rows outside [lo, hi) dropped."""
    table = normalize_keys(table.select(columns), keys)
    for c in filter(None, [view.timestamp, view.created_timestamp]):
        table = table.set_column(table.schema.get_field_index(c), c, utc_array(utc_ns(table.column(c))))
    ok = np.ones(table.num_rows, dtype=bool)
    for k in [*keys, view.timestamp]:
        ok &= ~np.asarray(table.column(k).is_null().to_numpy(zero_copy_only=False), dtype=bool)
    table = table.filter(pa.array(ok))
    return time_filter(table, view.timestamp, lo, hi)


def stored_columns(view: FeatureViewConfig, keys: list[str]) -> list[str]:
    """The columns a view's offline store holds (its events)."""
    return list(
        dict.fromkeys(
            [
                *keys,
                view.timestamp,
                *([view.created_timestamp] if view.created_timestamp else []),
                *view.fields,
                *(a.column for a in view.aggregations),
            ]
        )
    )


def build_view(
    source_ds,
    view: FeatureViewConfig,
    keys: list[str],
    store: OfflineStore,
    mode: str = "overwrite",
    start: int | None = None,
    end: int | None = None,
    info: dict | None = None,
    drop_pushed: bool = False,
) -> Version:
    """Computes ``view`` from its source dataset and commits it to ``store``.

    Args:
        mode: 'overwrite' (all rows), 'append' (rows after the previous version's latest time) or
            'backfill' (rows with ``start <= ts < end`` replace the stored ones in that range).
        drop_pushed: drop the pushed events too (they are kept by default: the source does not hold them).
    """
    if view.transform:
        source_ds = source_ds.map_batches(_transform, fn_kwargs={"path": view.transform}, batch_format="pandas")
    names = source_ds.schema().names
    needed = stored_columns(view, keys)
    missing = [c for c in needed if c not in names]
    if missing:
        raise DataError(
            f"feature view {view.name!r}: columns {missing} are not in source {view.source!r} "
            f"(after its transform); columns: {names}"
        )
    if mode == "append":
        prev = store.latest(view.name)
        last = None if prev is None else prev.manifest.get("built_max_ts", prev.manifest.get("max_ts"))
        if last is not None:
            start, end = last + 1, None
        else:
            mode = "overwrite"
    ds = source_ds.map_batches(
        _prepare,
        fn_kwargs={"view": view, "keys": keys, "columns": needed, "lo": start, "hi": end},
        batch_format="pyarrow",
    )
    return store.write(
        view.name, ds, view.timestamp, mode=mode, start=start, end=end, info=info, drop_pushed=drop_pushed
    )
