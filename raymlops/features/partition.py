"""Hash partitioning by join keys, shared by the feature pipelines, the point-in-time join and materialization."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from raymlops.errors import DataError

PART = "__raymlops_part"


def key_type(t: pa.DataType) -> pa.DataType:
    """The type both sides of a join cast a key column to (so equal keys hash equally)."""
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return pa.int64()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return pa.string()
    if pa.types.is_null(t):
        return pa.int64()
    return t


def check_key_types(keys: list[str], left: pa.Schema, right: pa.Schema, what: str) -> None:
    for k in keys:
        a, b = key_type(left.field(k).type), key_type(right.field(k).type)
        if pa.types.is_null(left.field(k).type) or pa.types.is_null(right.field(k).type):
            continue
        if a != b:
            raise DataError(
                f"join key {k!r} is {left.field(k).type} in the entity rows but {right.field(k).type} "
                f"in {what}; cast one side so both are integers or both strings"
            )


def normalize_keys(table: pa.Table, keys: list[str]) -> pa.Table:
    for k in keys:
        i = table.schema.get_field_index(k)
        col = table.column(i)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        want = key_type(col.type)
        if col.type != want:
            table = table.set_column(i, k, col.cast(want))
    return table


def with_partition(table: pa.Table, keys: list[str], partitions: int) -> pa.Table:
    """Adds PART = stable hash of the join keys modulo ``partitions`` (nulls hash too; they never match)."""
    table = normalize_keys(table, keys)
    frame = pd.DataFrame({k: _hashable(table.column(k)) for k in keys})
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    return table.append_column(PART, pa.array((h % np.uint64(partitions)).astype(np.int64)))


def _hashable(col) -> np.ndarray:
    """Key values to hash, never widened to float (an int column with a null must hash like one without;
    null keys never match, so where they land does not matter)."""
    if pa.types.is_integer(col.type):
        return np.asarray(col.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return col.to_pandas().to_numpy()


def partition_count(rows: int, cpus: int, rows_per_partition: int = 1_000_000) -> int:
    """Enough partitions to use every CPU and keep each one around ``rows_per_partition`` rows."""
    return max(1, cpus, -(-rows // rows_per_partition))


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))
