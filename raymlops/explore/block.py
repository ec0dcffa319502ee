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
MAX_CORRELATED = 200
SAMPLE_ROWS = 5_000  # rows kept for compare's drift tests (the detectors' windows are hundreds of rows)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))  # splitmix64's finalizer


def _merged(mine: Any, other: Any) -> Any:
    """``mine`` merged with ``other`` (either may be None: a sketch a block did not need)."""
    if other is None:
        return mine
    if mine is None:
        return other
    mine.merge(other)
    return mine


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

    @property
    def correlated(self) -> list[str]:
        """The numeric columns correlated with each other: the first MAX_CORRELATED (the pairwise moments
        cost 4 x rows x columns floats per task and columns^2 per partial)."""
        return self.numeric[:MAX_CORRELATED]


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
    infinite: int = 0  # +-inf values (numeric)

    def merge(self, o: ColumnPartial) -> None:
        self.count += o.count
        self.nulls += o.nulls
        self.zeros += o.zeros
        self.infinite += o.infinite
        if o.min is not None:
            self.min = o.min if self.min is None else min(self.min, o.min)
            self.max = o.max if self.max is None else max(self.max, o.max)
        self.moments.merge(o.moments)
        self.lengths.merge(o.lengths)
        if o.length_min is not None:
            self.length_min = o.length_min if self.length_min is None else min(self.length_min, o.length_min)
            self.length_max = o.length_max if self.length_max is None else max(self.length_max, o.length_max)
        self.hll.merge(o.hll)
        self.kll = _merged(self.kll, o.kll)
        self.items = _merged(self.items, o.items)

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
    pairs: PairMoments | None = None  # Pearson's co-moments of the correlated columns
    days: dict[int, int] = field(default_factory=dict)  # day number since the epoch -> rows
    sample_keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample: Any = None  # pyarrow.Table of the sampled rows

    def merge(self, o: Partial) -> None:
        import pyarrow as pa

        self.rows += o.rows
        for name, col in o.columns.items():
            if name in self.columns:
                self.columns[name].merge(col)
            else:
                self.columns[name] = col
        self.row_hll.merge(o.row_hll)
        self.pairs = _merged(self.pairs, o.pairs)
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

    out = Partial(rows=table.num_rows)
    row_hash = np.zeros(table.num_rows, dtype=np.uint64)
    matrix = np.full((table.num_rows, len(layout.correlated)), np.nan)
    for name, kind in layout.kinds.items():
        col = table.column(name)
        if col.type.__class__.__name__ == "DictionaryType":
            col = col.cast(col.type.value_type)
        if kind == NUMERIC:
            values = _float_values(col)
            out.columns[name], hashes = _numeric(values, _int_values(col))
            if name in layout.correlated:
                matrix[:, layout.correlated.index(name)] = np.where(np.isfinite(values), values, np.nan)
        elif kind == CATEGORICAL:
            out.columns[name], hashes = _categorical(col)
        else:
            out.columns[name], hashes, micros = _time(col)
            if name == layout.time:
                days, counts = np.unique(micros // DAY_US, return_counts=True)
                out.days = dict(zip(days.tolist(), counts.tolist()))
        row_hash = _mix(row_hash * _MIX[0] ^ hashes)
    out.row_hll.update_hashes(row_hash)
    out.pairs = PairMoments.of(matrix) if layout.correlated else None
    # The sample's random keys are seeded by the block's own rows: the same data gives the same sample (and the
    # same compare verdicts) on every run, and different blocks draw independent keys.
    content = int(np.bitwise_xor.reduce(row_hash[:4096])) if len(row_hash) else 0
    rng = np.random.default_rng([layout.seed, content & 0xFFFFFFFF, content >> 32, table.num_rows])
    keys = rng.random(table.num_rows)
    keep = np.argsort(keys, kind="stable")[:SAMPLE_ROWS]
    out.sample_keys, out.sample = keys[keep], table.select(list(layout.kinds)).take(keep)
    return out


def _float_values(col) -> np.ndarray:
    """float64 values with NaN for nulls (decimals and integers included)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # unsafe: integers past 2**53 (64-bit ids, hashes) lose low digits, which statistics do not need
    return pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _int_values(col) -> np.ndarray | None:
    """An integer column's exact values (nulls as 0) for hashing: floats merge 64-bit ids 256 apart."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_integer(col.type):
        return None
    return pc.fill_null(col, 0).to_numpy(zero_copy_only=False)


def _numeric(values: np.ndarray, ints: np.ndarray | None = None) -> tuple[ColumnPartial, np.ndarray]:
    """Counts, moments, quantiles and distinct values of the finite values; NaN and null count as missing,
    +-inf as ``infinite`` (and are left out of everything else, which they would make inf or NaN)."""
    from datasketches import kll_doubles_sketch

    nan = np.isnan(values)
    ok = np.isfinite(values)
    x = values[ok]
    part = ColumnPartial(
        NUMERIC, count=len(x), nulls=int(nan.sum()), zeros=int((x == 0).sum()), infinite=int((~ok & ~nan).sum())
    )
    if len(x):
        part.min, part.max = float(x.min()), float(x.max())
    part.moments = Moments.of(x)
    part.kll = kll_doubles_sketch(KLL_K)
    part.kll.update(x)
    hashes = np.zeros(len(values), dtype=np.uint64)
    hashes[ok] = hash_values(ints[ok] if ints is not None else x + 0.0)  # + 0.0: -0.0 hashes as 0.0
    hashes[~ok & ~nan] = hash_values(values[~ok & ~nan])  # inf and -inf are row values too
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


@dataclass
class PairMoments:
    """For every pair (i, j) of columns, over the rows where both are present: n, the mean of i, the sum of
    squared deviations of i, and the co-moment of i and j; merged with Chan's formulas. Each block is centred
    on its own column means first, so columns whose mean dwarfs their spread (epoch seconds, sensor levels)
    keep their digits, which raw sums (n * sum xy - sum x * sum y) lose."""

    n: np.ndarray
    mean: np.ndarray  # mean[i, j]: column i's mean over the rows where i and j are present
    m2: np.ndarray
    c: np.ndarray

    @classmethod
    def of(cls, matrix: np.ndarray) -> PairMoments:
        present = ~np.isnan(matrix)
        cnt = present.sum(axis=0)
        shift = np.where(present, matrix, 0.0).sum(axis=0) / np.maximum(cnt, 1)
        x = np.where(present, matrix - shift, 0.0)
        p = present.astype(np.float64)
        n = p.T @ p
        s = x.T @ p  # s[i, j]: sum of column i over the rows where j is present
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_shifted = np.where(n > 0, s / n, 0.0)
            m2 = (x * x).T @ p - np.where(n > 0, s * s / n, 0.0)
            c = x.T @ x - np.where(n > 0, s * s.T / n, 0.0)
        return cls(n, mean_shifted + shift[:, None], m2, c)

    def merge(self, o: PairMoments) -> None:
        n = self.n + o.n
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(n > 0, self.n * o.n / n, 0.0)
            d = o.mean - self.mean
            self.c = self.c + o.c + d * d.T * w
            self.m2 = self.m2 + o.m2 + d * d * w
            self.mean = np.where(n > 0, self.mean + d * np.where(n > 0, o.n / n, 0.0), self.mean)
        self.n = n

    def r(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.c / np.sqrt(self.m2 * self.m2.T)


def dumps(part: Partial) -> bytes:
    return pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Partial:
    return pickle.loads(data)
