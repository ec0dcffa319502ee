"""Point-in-time-correct historical retrieval as a distributed as-of join on Ray Data.

Both sides are hash-partitioned by the view's join keys (one Ray Data shuffle over their union); each
partition then runs the sorted as-of merge in `kernels.asof_indices` for plain fields, and computes every
window aggregate over exactly ``T - window < ts <= T`` of each entity row's time T from the view's events
(`kernels.window_ranges`). Only the entity rows with their features come back to the caller; feature data
never passes through the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raymlops.errors import DataError
from raymlops.features.kernels import (
    NAT,
    aggregate,
    asof_indices,
    key_codes,
    sort_order,
    take_or_null,
    utc_array,
    utc_ns,
    window_ranges,
)
from raymlops.features.partition import PART, check_key_types, cluster_cpus, partition_count, with_partition
from raymlops.features.shuffle import Side, shuffle_apply

ROW = "__raymlops_row"
ET = "__raymlops_et"


@dataclass(frozen=True)
class ViewJoin:
    """What one view contributes: its keys, time columns, ttl, the plain fields (stored name -> output name)
    and the window aggregates (output name -> (function, source column, window in ns))."""

    view: str
    keys: list[str]
    timestamp: str
    created: str | None
    ttl_ns: int | None
    features: dict[str, str]
    windows: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    align_ns: int | None = None  # windows start at a multiple of this (the online tile), as served online

    @property
    def window_columns(self) -> list[str]:
        return list(dict.fromkeys(col for _, col, _ in self.windows.values()))


def _entity_side(table: pa.Table, keys: list[str], event_timestamp: str, partitions: int) -> pa.Table:
    table = with_partition(table, keys, partitions)
    ts = utc_ns(table.column(event_timestamp))
    i = table.schema.get_field_index(event_timestamp)
    table = table.set_column(i, event_timestamp, utc_array(ts))
    return table.append_column(ET, pa.array(ts))


def _feature_side(table: pa.Table, join: ViewJoin, partitions: int) -> pa.Table:
    table = with_partition(table, join.keys, partitions)
    cols = {f"__f_{c}": table.column(c) for c in join.features}
    cols.update({f"__a_{c}": table.column(c) for c in join.window_columns})
    cols.update({k: table.column(k) for k in join.keys})
    cols["__f_ts"] = pa.array(utc_ns(table.column(join.timestamp)))
    if join.created:
        cols["__f_created"] = pa.array(utc_ns(table.column(join.created)))
    cols[PART] = table.column(PART)
    return pa.table(cols)


def _asof_group(ents: pa.Table, feats: pa.Table, join: ViewJoin, entity_columns: list[str]) -> pa.Table:
    """One partition: entity rows with the fields as of their time and the windows ending at their time."""
    ec, fc = key_codes([ents.column(k) for k in join.keys], [feats.column(k) for k in join.keys])
    created = feats.column("__f_created").to_numpy() if join.created else None
    e_ts, f_ts = ents.column(ET).to_numpy(), feats.column("__f_ts").to_numpy()
    out = ents.select(entity_columns)
    if join.features:
        idx = asof_indices(ec, e_ts, fc, f_ts, created, join.ttl_ns)
        picked = take_or_null(feats.select([f"__f_{c}" for c in join.features]), idx)
        for stored, name in join.features.items():
            out = out.append_column(name, picked.column(f"__f_{stored}"))
    for name, column in _windows(ec, e_ts, fc, f_ts, created, feats, join).items():
        out = out.append_column(name, column)
    return out


def _windows(
    ec: np.ndarray,
    e_ts: np.ndarray,
    fc: np.ndarray,
    f_ts: np.ndarray,
    created: np.ndarray | None,
    feats: pa.Table,
    join: ViewJoin,
) -> dict[str, pa.Array]:
    """Each window aggregate for every entity row, in the entity rows' order (null where the row has no key or
    no time; the function's empty value where its window holds no event)."""
    if not join.windows:
        return {}
    order = sort_order(fc, f_ts, created)
    fc_s, fts_s = fc[order], f_ts[order]
    q = np.lexsort((e_ts, ec))
    back = np.empty_like(q)
    back[q] = np.arange(len(q))
    unknown = pa.array((ec < 0) | (e_ts == NAT))
    ranges: dict[int, tuple] = {}
    sorted_cols: dict[str, pa.Array] = {}
    out = {}
    for name, (function, column, window_ns) in join.windows.items():
        if window_ns not in ranges:
            ranges[window_ns] = window_ranges(fc_s, fts_s, ec[q], e_ts[q], window_ns, join.align_ns)
        if column not in sorted_cols:
            sorted_cols[column] = feats.column(f"__a_{column}").combine_chunks().take(pa.array(order))
        start, end = ranges[window_ns]
        got = aggregate(function, sorted_cols[column], start, end, fc_s).take(pa.array(back))
        out[name] = pc.if_else(unknown, pa.nulls(len(got), got.type), got)
    return out


def join_view(entities, features, join: ViewJoin, event_timestamp: str, partitions: int | None = None):
    """Ray Dataset of entity rows (with ROW ids) -> the same rows plus this view's features (any order).

    ``features`` is the view's offline FileSet: each shuffle map task reads its group of files itself.
    """
    ent_schema = entities.schema().base_schema
    feat_schema = features.schema
    check_key_types(join.keys, ent_schema, feat_schema, f"feature view {join.view!r}")
    clash = [n for n in [*join.features.values(), *join.windows] if n in ent_schema.names]
    if clash:
        raise DataError(
            f"features {clash} of view {join.view!r} have the same names as entity columns; "
            "rename those columns or use full_feature_names=True"
        )
    if partitions is None:
        partitions = partition_count(features.rows + entities.count(), cluster_cpus())
    entity_columns = list(ent_schema.names)
    sides = [
        Side(entities, _entity_side, {"keys": join.keys, "event_timestamp": event_timestamp, "partitions": partitions}),
        Side(None, _feature_side, {"join": join, "partitions": partitions}, files=features),
    ]
    return shuffle_apply(sides, _asof_group, partitions, {"join": join, "entity_columns": entity_columns})


# ----------------------------------------------------------------- row identity


def _add_row_ids(table: pa.Table, offset: int) -> pa.Table:
    return table.append_column(ROW, pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64)))


def with_row_ids(entity_df, event_timestamp: str, keys: list[str]):
    """The entity rows as a Ray Dataset with a ROW column holding each row's input position."""
    import ray
    import ray.data

    if isinstance(entity_df, pd.DataFrame):
        _check_columns(list(entity_df.columns), keys, event_timestamp)
        table = pa.Table.from_pandas(entity_df.reset_index(drop=True), preserve_index=False)
        table = _add_row_ids(table, 0)
        step = max(50_000, -(-table.num_rows // max(1, cluster_cpus() * 2)))
        return ray.data.from_arrow([table.slice(i, step) for i in range(0, max(table.num_rows, 1), step)])
    _check_columns(entity_df.schema().names, keys, event_timestamp)
    refs = entity_df.to_arrow_refs()
    counts = ray.get([_num_rows.remote(r) for r in refs])
    offsets = np.concatenate([[0], np.cumsum(counts)])[:-1]
    return ray.data.from_arrow_refs([_add_ids.remote(r, int(o)) for r, o in zip(refs, offsets)])


def _check_columns(names: list[str], keys: list[str], event_timestamp: str) -> None:
    missing = [c for c in [*keys, event_timestamp] if c not in names]
    if missing:
        raise DataError(
            f"the entity rows lack columns {missing} (they have {list(names)}); pass "
            "event_timestamp=... if the time column has another name"
        )


class _Lazy:
    """Defers ray.remote until first use (importing this module must not need Ray)."""

    def __init__(self, fn):
        self.fn, self.remote_fn = fn, None

    def remote(self, *args):
        if self.remote_fn is None:
            import ray

            self.remote_fn = ray.remote(self.fn)
        return self.remote_fn.remote(*args)


_num_rows = _Lazy(lambda t: t.num_rows)
_add_ids = _Lazy(_add_row_ids)
