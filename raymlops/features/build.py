"""Feature pipelines: a view's rows computed from its source with Ray Data, aggregated per entity as of
each row's event time, and written to the offline store as a new version."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pyarrow as pa

from raymlops.config.models import FeatureViewConfig, duration_seconds
from raymlops.errors import DataError
from raymlops.features.kernels import aggregate, key_codes, sort_order, utc_array, utc_ns, window_bounds
from raymlops.features.offline import OfflineStore, Version, time_filter
from raymlops.features.partition import PART, cluster_cpus, normalize_keys, partition_count, with_partition
from raymlops.features.shuffle import Side, shuffle_apply

SEC = 10**9


def load_function(path: str):
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise DataError(f"cannot import {path!r}: {e}") from None


def _transform(batch: pd.DataFrame, path: str) -> pd.DataFrame:
    out = load_function(path)(batch)
    if not isinstance(out, pd.DataFrame):
        raise DataError(f"transform {path!r} must return a pandas DataFrame; got {type(out).__name__}")
    return out


def _prepare(table: pa.Table, view: FeatureViewConfig, keys: list[str], columns: list[str], lo: int | None,
             hi: int | None) -> pa.Table:
    """Needed columns only, timestamps as UTC, rows without a key or time dropped, rows outside [lo, hi) dropped."""
    table = normalize_keys(table.select(columns), keys)
    for c in filter(None, [view.timestamp, view.created_timestamp]):
        table = table.set_column(table.schema.get_field_index(c), c, utc_array(utc_ns(table.column(c))))
    ok = np.ones(table.num_rows, dtype=bool)
    for k in [*keys, view.timestamp]:
        ok &= ~np.asarray(table.column(k).is_null().to_numpy(zero_copy_only=False), dtype=bool)
    table = table.filter(pa.array(ok))
    return time_filter(table, view.timestamp, lo, hi)


def compute_view(table: pa.Table, view: FeatureViewConfig, join_keys: list[str], start: int | None = None) -> pa.Table:
    """One partition (every row of the entities it holds): pass-through fields plus window aggregates,
    sorted by (key, time, created), keeping rows from ``start`` on."""
    keys = join_keys
    if PART in table.column_names:
        table = table.drop_columns([PART])
    code, _ = key_codes([table.column(k) for k in keys], [table.column(k).slice(0, 0) for k in keys])
    ts = utc_ns(table.column(view.timestamp))
    created = utc_ns(table.column(view.created_timestamp)) if view.created_timestamp else None
    order = sort_order(code, ts, created)
    table, code, ts = table.take(pa.array(order)), code[order], ts[order]
    base = [*keys, view.timestamp, *([view.created_timestamp] if view.created_timestamp else []), *view.fields]
    out = table.select(list(dict.fromkeys(base)))
    bounds: dict[str, tuple] = {}
    for agg in view.aggregations:
        if agg.window not in bounds:
            bounds[agg.window] = window_bounds(code, ts, duration_seconds(agg.window) * SEC)
        lo, hi = bounds[agg.window]
        out = out.append_column(agg.feature_name, aggregate(agg.function, table.column(agg.column).combine_chunks(),
                                                            lo, hi, code))
    return time_filter(out, view.timestamp, start, None)


def build_view(source_ds, view: FeatureViewConfig, keys: list[str], store: OfflineStore, mode: str = "overwrite",
               start: int | None = None, end: int | None = None, info: dict | None = None) -> Version:
    """Computes ``view`` from its source dataset and commits it to ``store``.

    Args:
        mode: 'overwrite' (all rows), 'append' (rows after the previous version's latest time) or
            'backfill' (rows with ``start <= ts < end`` replace the stored ones in that range).
    """
    if view.transform:
        source_ds = source_ds.map_batches(_transform, fn_kwargs={"path": view.transform}, batch_format="pandas")
    names = source_ds.schema().names
    needed = list(dict.fromkeys([*keys, view.timestamp, *([view.created_timestamp] if view.created_timestamp else []),
                                 *view.fields, *(a.column for a in view.aggregations)]))
    missing = [c for c in needed if c not in names]
    if missing:
        raise DataError(f"feature view {view.name!r}: columns {missing} are not in source {view.source!r} "
                        f"(after its transform); columns: {names}")
    if mode == "append":
        prev = store.latest(view.name)
        if prev is not None and prev.manifest.get("max_ts") is not None:
            start, end = prev.manifest["max_ts"] + 1, None
        else:
            mode = "overwrite"
    # Window aggregates at `start` need the rows of the longest window before it; and rows up to one
    # window after a backfilled range aggregate over it, so they are recomputed and replaced too.
    lookback = max((duration_seconds(a.window) for a in view.aggregations), default=0) * SEC
    if mode == "backfill" and end is not None:
        end += lookback
    read_lo = None if start is None else start - lookback
    ds = source_ds.map_batches(_prepare, fn_kwargs={"view": view, "keys": keys, "columns": needed, "lo": read_lo,
                                                    "hi": end}, batch_format="pyarrow")
    kwargs = {"view": view, "join_keys": keys, "start": start}
    if view.aggregations:
        parts = partition_count(source_ds.count(), cluster_cpus())
        side = Side(ds, with_partition, {"keys": keys, "partitions": parts})
        ds = shuffle_apply([side], compute_view, parts, kwargs)
    else:
        ds = ds.map_batches(compute_view, fn_kwargs=kwargs, batch_format="pyarrow")
    return store.write(view.name, ds, view.timestamp, mode=mode, start=start, end=end, info=info)
