"""A hash shuffle over Ray Data blocks: map tasks split every block by key hash, one reduce task per
partition receives its pieces from every side and applies a kernel.

Ray Data's own groupby shuffle starts aggregator actors (~8-10 s of fixed cost per shuffle on a small
cluster); this runs as plain Ray tasks on the blocks of the input Datasets and returns a Ray Dataset,
so nothing but object references passes through the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from raymlops.features.partition import PART


@dataclass
class Side:
    """One input and the per-block function that must add the PART column.

    The input is a Ray Dataset (its blocks are split), or ``files``: groups of Parquet files that each map
    task reads itself (read, prepare and split fused into one task, no intermediate dataset).
    """

    dataset: Any
    prepare: Callable[..., pa.Table]
    kwargs: dict = field(default_factory=dict)
    files: Any = None  # a raymlops.features.offline.FileSet


def _split_files(
    paths: list[str], filesystem, columns: list[str], schema: pa.Schema, prepare, kwargs: dict, partitions: int
):
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, columns=columns, filesystem=filesystem, partitioning=None).cast(schema) for p in paths]
    return _split(pa.concat_tables(tables) if tables else schema.empty_table(), prepare, kwargs, partitions)


def _split(block: pa.Table, prepare, kwargs: dict, partitions: int):
    table = prepare(block, **kwargs)
    part = table.column(PART).to_numpy()
    order = np.argsort(part, kind="stable")
    counts = np.bincount(part, minlength=partitions)
    table = table.drop_columns([PART]).take(pa.array(order))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    pieces = tuple(table.slice(int(offsets[i]), int(counts[i])) for i in range(partitions))
    return pieces if partitions > 1 else pieces[0]


def _reduce(kernel, kwargs: dict, sizes: tuple, *pieces: pa.Table) -> pa.Table:
    tables, i = [], 0
    for n in sizes:
        side = list(pieces[i : i + n])
        i += n
        tables.append(pa.concat_tables(side, promote_options="permissive") if len(side) > 1 else side[0])
    return kernel(*tables, **kwargs)


def shuffle_apply(sides: list[Side], kernel: Callable[..., pa.Table], partitions: int, kwargs: dict | None = None):
    """Hash-partitions every side and runs ``kernel(side0_part, side1_part, ..., **kwargs)`` per partition.

    Returns:
        A Ray Dataset of the kernel's outputs (one block per partition).
    """
    import ray
    import ray.data

    split = ray.remote(_split).options(num_returns=partitions)
    split_files = ray.remote(_split_files).options(num_returns=partitions)
    per_side: list[list] = []
    for side in sides:
        if side.files is not None:
            fs = side.files
            groups = fs.groups or [[]]
            outs = [
                split_files.remote(g, fs.filesystem, fs.columns, fs.schema, side.prepare, side.kwargs, partitions)
                for g in groups
            ]
        else:
            blocks = side.dataset.to_arrow_refs()
            if not blocks:  # an empty dataset still needs a (typed, empty) piece per partition
                blocks = [ray.put(side.dataset.schema().base_schema.empty_table())]
            outs = [split.remote(b, side.prepare, side.kwargs, partitions) for b in blocks]
        per_side.append([o if partitions > 1 else [o] for o in outs])
    reduce = ray.remote(_reduce).options(scheduling_strategy="SPREAD")
    results = []
    for p in range(partitions):
        pieces = [outs[p] for side in per_side for outs in side]
        sizes = tuple(len(side) for side in per_side)
        results.append(reduce.remote(kernel, kwargs or {}, sizes, *pieces))
    return ray.data.from_arrow_refs(results)
