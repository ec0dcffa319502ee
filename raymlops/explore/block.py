"""One block's partial profile (built in a Ray task) and the merge of partials (in the driver, one at a time,
so driver memory does not grow with the row count).

A partial holds, per column, counts, moments and mergeable sketches; for the table, a HyperLogLog of row
hashes (duplicate rows), Pearson sufficient statistics of the numeric columns over their pairwise-complete
rows, rows per day of the time column, and a bottom-k uniform sample (the rows with the k smallest random
keys, so merged samples stay uniform) that ``compare`` tests with the drift detectors.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raymlops.explore.sketches import KLL_K, TOP_K, HyperLogLog, Moments, hash_values

NUMERIC, CATEGORICAL, TIME = "numeric", "categorical", "time"
DAY_US = 86_400 * 10**6
SAMPLE_ROWS = 5_000  # rows kept for compare's drift tests (the detectors' windows are hundreds of rows)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))  # splitmix64's finalizer


def kind_of(arrow_type) -> str | None:
    """numeric | categorical | time for a pyarrow type; None for types a profile skips (lists, structs)."""
    import pyarrow.types as pt

    if pt.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pt.is_integer(arrow_type) or pt.is_floating(arrow_type) or pt.is_decimal(arrow_type):
        return NUMERIC
    if pt.is_string(arrow_type) or pt.is_large_string(arrow_type) or pt.is_boolean(arrow_type):
        return CATEGORICAL
    if pt.is_timestamp(arrow_type) or pt.is_date(arrow_type):
        return TIME
    return None


@dataclass
class Layout:
    """What is profiled: columns with their kinds, the numeric ones in correlation order, and the time column."""

    kinds: dict[str, str]
    time: str | None = None
    seed: int = 0

    @property
    def numeric(self) -> list[str]:
        return [n for n, k in self.kinds.items() if k == NUMERIC]


@dataclass
class ColumnPartial:
    kind: str
    count: int = 0  # non-missing values
    nulls: int = 0  # null, NaN or NaT
    zeros: int = 0
    min: Any = None
    max: Any = None
    moments: Moments = field(default_factory=Moments)
    hll: HyperLogLog = field(default_factory=HyperLogLog)
    kll: Any = None  # datasketches.kll_doubles_sketch (numeric values; string lengths)
    items: Any = None  # datasketches.frequent_strings_sketch (categorical)
    lengths: Moments = field(default_factory=Moments)  # string lengths
    length_min: int | None = None
    length_max: int | None = None

    def merge(self, o: "ColumnPartial") -> None:
        self.count += o.count
        self.nulls += o.nulls
        self.zeros += o.zeros
        if o.min is not None:
            self.min = o.min if self.min is None else min(self.min, o.min)
            self.max = o.max if self.max is None else max(self.max, o.max)
        self.moments.merge(o.moments)
        self.lengths.merge(o.lengths)
        if o.length_min is not None:
            self.length_min = o.length_min if self.length_min is None else min(self.length_min, o.length_min)
            self.length_max = o.length_max if self.length_max is None else max(self.length_max, o.length_max)
        self.hll.merge(o.hll)
        if o.kll is not None:
            if self.kll is None:
                self.kll = o.kll
            else:
                self.kll.merge(o.kll)
        if o.items is not None:
            if self.items is None:
                self.items = o.items
            else:
                self.items.merge(o.items)

    # datasketches objects travel as their own serialized bytes
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["kll"] = None if self.kll is None else self.kll.serialize()
        state["items"] = None if self.items is None else self.items.serialize()
        return state

    def __setstate__(self, state: dict) -> None:
        from datasketches import frequent_strings_sketch, kll_doubles_sketch

        if state["kll"] is not None:
            state["kll"] = kll_doubles_sketch.deserialize(state["kll"])
        if state["items"] is not None:
            state["items"] = frequent_strings_sketch.deserialize(state["items"])
        self.__dict__.update(state)


@dataclass
class Partial:
    rows: int = 0
    columns: dict[str, ColumnPartial] = field(default_factory=dict)
    row_hll: HyperLogLog = field(default_factory=HyperLogLog)
    pairs: np.ndarray | None = None  # (4, k, k): n, sum x, sum x^2, sum x*y over pairwise-complete rows
    days: dict[int, int] = field(default_factory=dict)  # day number since the epoch -> rows
    sample_keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample: Any = None  # pyarrow.Table of the sampled rows

    def merge(self, o: "Partial") -> None:
        import pyarrow as pa

        self.rows += o.rows
        for name, col in o.columns.items():
            if name in self.columns:
                self.columns[name].merge(col)
            else:
                self.columns[name] = col
        self.row_hll.merge(o.row_hll)
        if o.pairs is not None:
            self.pairs = o.pairs.copy() if self.pairs is None else self.pairs + o.pairs
        for day, n in o.days.items():
            self.days[day] = self.days.get(day, 0) + n
        if o.sample is not None:
            if self.sample is None:
                self.sample_keys, self.sample = o.sample_keys, o.sample
            else:
                keys = np.concatenate([self.sample_keys, o.sample_keys])
                rows = pa.concat_tables([self.sample, o.sample], promote_options="permissive")
                keep = np.argsort(keys, kind="stable")[:SAMPLE_ROWS]
                self.sample_keys, self.sample = keys[keep], rows.take(keep)


def profile_block(table, layout: Layout) -> Partial:
    """The partial profile of one pyarrow block."""
    import pyarrow.compute as pc

    out = Partial(rows=table.num_rows)
    row_hash = np.zeros(table.num_rows, dtype=np.uint64)
    numeric = layout.numeric
    matrix = np.full((table.num_rows, len(numeric)), np.nan)
    for name, kind in layout.kinds.items():
        col = table.column(name)
        if col.type.__class__.__name__ == "DictionaryType":
            col = col.cast(col.type.value_type)
        if kind == NUMERIC:
            values = _float_values(col)
            out.columns[name], hashes = _numeric(values)
            matrix[:, numeric.index(name)] = values
        elif kind == CATEGORICAL:
            out.columns[name], hashes = _categorical(col)
        else:
            out.columns[name], hashes, micros = _time(col)
            if name == layout.time:
                days, counts = np.unique(micros // DAY_US, return_counts=True)
                out.days = dict(zip(days.tolist(), counts.tolist()))
        row_hash = _mix(row_hash * _MIX[0] ^ hashes)
    out.row_hll.update_hashes(row_hash)
    out.pairs = _pair_sums(matrix) if numeric else None
    # The sample's random keys are seeded by the block's own rows: the same data gives the same sample (and the
    # same compare verdicts) on every run, and different blocks draw independent keys.
    content = int(np.bitwise_xor.reduce(row_hash[:4096])) if len(row_hash) else 0
    rng = np.random.default_rng([layout.seed, content & 0xFFFFFFFF, content >> 32, table.num_rows])
    keys = rng.random(table.num_rows)
    keep = np.argsort(keys, kind="stable")[:SAMPLE_ROWS]
    out.sample_keys, out.sample = keys[keep], table.take(keep)
    return out


def _float_values(col) -> np.ndarray:
    """float64 values with NaN for nulls (decimals and integers included)."""
    import pyarrow.compute as pc

    return pc.cast(col, "float64").to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _numeric(values: np.ndarray) -> tuple[ColumnPartial, np.ndarray]:
    from datasketches import kll_doubles_sketch

    ok = ~np.isnan(values)
    x = values[ok]
    part = ColumnPartial(NUMERIC, count=len(x), nulls=int(len(values) - len(x)), zeros=int((x == 0).sum()))
    if len(x):
        part.min, part.max = float(x.min()), float(x.max())
    part.moments = Moments.of(x)
    part.kll = kll_doubles_sketch(KLL_K)
    part.kll.update(x)
    hashes = np.zeros(len(values), dtype=np.uint64)
    hashes[ok] = hash_values(x + 0.0)  # + 0.0: -0.0 hashes as 0.0
    part.hll.update_hashes(hashes[ok])
    return part, hashes


def _categorical(col) -> tuple[ColumnPartial, np.ndarray]:
    """Counts, distinct values and top items from the block's dictionary: one Python call per distinct value
    of the block, not per row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasketches import frequent_strings_sketch

    is_bool = pa.types.is_boolean(col.type)
    encoded = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    dictionary = encoded.dictionary.to_pylist()
    labels = [str(v).lower() if is_bool else v for v in dictionary]
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    valid = ~np.asarray(encoded.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    codes = np.where(valid, indices, 0).astype(np.intp) if len(indices) else np.empty(0, np.intp)
    counts = np.bincount(codes[valid], minlength=len(dictionary))
    part = ColumnPartial(CATEGORICAL, count=int(valid.sum()), nulls=int((~valid).sum()))
    value_hashes = hash_values(np.array(labels, dtype=object)) if labels else np.empty(0, np.uint64)
    part.hll.update_hashes(value_hashes[counts > 0])
    part.items = frequent_strings_sketch(int(np.log2(TOP_K * 4)))
    for label, n in zip(labels, counts.tolist()):
        if n:
            part.items.update(label, n)
    if labels:
        order = np.argsort(np.array(labels, dtype=object).astype(str))
        part.min, part.max = labels[order[0]], labels[order[-1]]
        if not is_bool:
            lengths = np.array([len(v) for v in labels], dtype=np.float64)
            per_row = np.repeat(lengths, counts)
            part.lengths = Moments.of(per_row)
            seen = lengths[counts > 0]
            part.length_min, part.length_max = int(seen.min()), int(seen.max())
            part.zeros = int(counts[lengths == 0].sum())  # empty strings
    hashes = np.zeros(len(indices), dtype=np.uint64)
    if len(value_hashes):
        hashes[valid] = value_hashes[codes[valid]]
    return part, hashes


def _time(col) -> tuple[ColumnPartial, np.ndarray, np.ndarray]:
    """A time column's partial, its row hashes and its present values in microseconds since the epoch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ints = pc.cast(pc.cast(col, pa.timestamp("us"), safe=False), "int64")
    valid = ~np.asarray(ints.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    values = ints.to_numpy(zero_copy_only=False)
    x = np.asarray(values[valid], dtype=np.int64)
    part = ColumnPartial(TIME, count=len(x), nulls=int((~valid).sum()))
    if len(x):
        part.min, part.max = int(x.min()), int(x.max())
    hashes = np.zeros(len(values), dtype=np.uint64)
    hashes[valid] = hash_values(x)
    part.hll.update_hashes(hashes[valid])
    return part, hashes, x


def _mix(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z = z * _MIX[0]
    z = z ^ (z >> np.uint64(27))
    z = z * _MIX[1]
    return z ^ (z >> np.uint64(31))


def _pair_sums(matrix: np.ndarray) -> np.ndarray:
    """n, sum x, sum x^2 and sum x*y of every column pair over the rows where both are present."""
    present = (~np.isnan(matrix)).astype(np.float64)
    x = np.nan_to_num(matrix, nan=0.0)
    return np.stack([present.T @ present, x.T @ present, (x * x).T @ present, x.T @ x])


def dumps(part: Partial) -> bytes:
    return pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Partial:
    return pickle.loads(data)
