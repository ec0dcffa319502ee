"""Point-in-time-correct historical retrieval as a distributed as-of join on Ray Data.

Both sides are hash-partitioned by the view's join keys (one Ray Data shuffle over their union); each
partition then runs the sorted as-of merge in `kernels.asof_indices`. Only the entity rows with their
features come back to the caller; feature data never passes through the driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from raymlops.errors import DataError
from raymlops.features.kernels import asof_indices, key_codes, take_or_null, utc_array, utc_ns
from raymlops.features.partition import PART, check_key_types, cluster_cpus, partition_count, with_partition
from raymlops.features.shuffle import Side, shuffle_apply

ROW = "__raymlops_row"
ET = "__raymlops_et"


@dataclass(frozen=True)
class ViewJoin:
    """What one view contributes: its keys, time columns, ttl and the features (stored name -> output name)."""

    view: str
    keys: list[str]
    timestamp: str
    created: str | None
    ttl_ns: int | None
    features: dict[str, str]


def _entity_side(table: pa.Table, keys: list[str], event_timestamp: str, partitions: int) -> pa.Table:
    table = with_partition(table, keys, partitions)
    ts = utc_ns(table.column(event_timestamp))
    i = table.schema.get_field_index(event_timestamp)
    table = table.set_column(i, event_timestamp, utc_array(ts))
    return table.append_column(ET, pa.array(ts))


def _feature_side(table: pa.Table, join: ViewJoin, partitions: int) -> pa.Table:
    table = with_partition(table, join.keys, partitions)
    cols = {f"__f_{c}": table.column(c) for c in join.features}
    cols.update({k: table.column(k) for k in join.keys})
    cols["__f_ts"] = pa.array(utc_ns(table.column(join.timestamp)))
    if join.created:
        cols["__f_created"] = pa.array(utc_ns(table.column(join.created)))
    cols[PART] = table.column(PART)
    return pa.table(cols)


def _asof_group(ents: pa.Table, feats: pa.Table, join: ViewJoin, entity_columns: list[str]) -> pa.Table:
    """One partition: entity rows with the feature values as of their time."""
    ec, fc = key_codes([ents.column(k) for k in join.keys], [feats.column(k) for k in join.keys])
    created = feats.column("__f_created").to_numpy() if join.created else None
    idx = asof_indices(ec, ents.column(ET).to_numpy(), fc, feats.column("__f_ts").to_numpy(), created, join.ttl_ns)
    picked = take_or_null(feats.select([f"__f_{c}" for c in join.features]), idx)
    out = ents.select(entity_columns)
    for stored, name in join.features.items():
        out = out.append_column(name, picked.column(f"__f_{stored}"))
    return out


def join_view(entities, features, join: ViewJoin, event_timestamp: str, partitions: int | None = None):
    """Ray Dataset of entity rows (with ROW ids) -> the same rows plus this view's features (any order).

    ``features`` is the view's offline FileSet: each shuffle map task reads its group of files itself.
    """
    ent_schema = entities.schema().base_schema
    feat_schema = features.schema
    check_key_types(join.keys, ent_schema, feat_schema, f"feature view {join.view!r}")
    clash = [n for n in join.features.values() if n in ent_schema.names]
    if clash:
        raise DataError(f"features {clash} of view {join.view!r} have the same names as entity columns; "
                        "rename those columns or use full_feature_names=True")
    if partitions is None:
        partitions = partition_count(features.rows + entities.count(), cluster_cpus())
    entity_columns = list(ent_schema.names)
    sides = [Side(entities, _entity_side, {"keys": join.keys, "event_timestamp": event_timestamp,
                                           "partitions": partitions}),
             Side(None, _feature_side, {"join": join, "partitions": partitions}, files=features)]
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
        raise DataError(f"the entity rows lack columns {missing} (they have {list(names)}); pass "
                        "event_timestamp=... if the time column has another name")


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
