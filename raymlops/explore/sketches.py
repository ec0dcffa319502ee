"""Mergeable summaries of one column: exact moments, and Apache DataSketches' HyperLogLog (distinct counts),
KLL (quantiles) and frequent-items sketches. Every summary is built per block in a Ray task and merged in any
order.

DataSketches' ``hll_sketch`` takes one Python call per value: 0.11 s per million values on this machine, after
0.035 s to hash them with ``pd.util.hash_array`` (``benchmarks/explore_bench.py --sketch-costs``), cheap enough
not to hand-write a vectorised sketch. Values are fed as 64-bit hashes, so equal values of any type count once
and one code path serves numbers, strings and row hashes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

HLL_LG_K = 16  # 65,536 buckets: relative standard error about 1.04 / sqrt(2**16) = 0.41%
HLL_ERROR = 1.04 / math.sqrt(2**HLL_LG_K)
KLL_K = 400  # KLL's accuracy parameter; the rank error it implies is kll_error() (DataSketches' own figure)
TOP_K = 64  # frequent-items sketch size (map size; items above ~N/TOP_K are never missed)


def kll_error() -> float:
    """The KLL sketch's normalized rank error for one quantile query (99% confidence), as DataSketches states."""
    from datasketches import kll_doubles_sketch

    return float(kll_doubles_sketch.get_normalized_rank_error(KLL_K, False))


def hash_values(values: np.ndarray) -> np.ndarray:
    """uint64 hashes of a 1-d array (numbers, strings, booleans): equal values hash equal across blocks."""
    return pd.util.hash_array(values, categorize=False)


class HyperLogLog:
    """Distinct counts: a DataSketches HLL sketch fed 64-bit hashes, merged through ``hll_union``."""

    def __init__(self, sketch=None):
        from datasketches import hll_sketch, tgt_hll_type

        self.sketch = sketch if sketch is not None else hll_sketch(HLL_LG_K, tgt_hll_type.HLL_8)

    def update_hashes(self, hashes: np.ndarray) -> None:
        update = self.sketch.update
        for h in hashes.view(np.int64).tolist():
            update(h)

    def merge(self, other: HyperLogLog) -> None:
        from datasketches import hll_union, tgt_hll_type

        union = hll_union(HLL_LG_K)
        union.update(self.sketch)
        union.update(other.sketch)
        self.sketch = union.get_result(tgt_hll_type.HLL_8)

    def estimate(self) -> float:
        return float(self.sketch.get_estimate())

    def __getstate__(self) -> bytes:
        return self.sketch.serialize_compact()

    def __setstate__(self, state: bytes) -> None:
        from datasketches import hll_sketch

        self.sketch = hll_sketch.deserialize(state)


@dataclass
class Moments:
    """Count, mean and central moment sums (M2, M3) of the non-missing values, merged exactly (Chan/Pébay)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        if not len(x):
            return cls()
        mean = float(x.mean())
        d = x - mean
        d2 = d * d
        return cls(len(x), mean, float(d2.sum()), float((d2 * d).sum()))

    def merge(self, o: Moments) -> None:
        if not o.n:
            return
        if not self.n:
            self.n, self.mean, self.m2, self.m3 = o.n, o.mean, o.m2, o.m3
            return
        n = self.n + o.n
        delta = o.mean - self.mean
        m3 = (
            self.m3
            + o.m3
            + delta**3 * self.n * o.n * (self.n - o.n) / n**2
            + 3 * delta * (self.n * o.m2 - o.n * self.m2) / n
        )
        self.m2 += o.m2 + delta * delta * self.n * o.n / n
        self.m3 = m3
        self.mean += delta * o.n / n
        self.n = n

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1), as pandas' ``describe`` reports it."""
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    @property
    def skew(self) -> float:
        """Adjusted Fisher-Pearson skewness (pandas' ``skew``); 0 for fewer than 3 values or no spread."""
        n = self.n
        if n < 3 or self.m2 <= 0:
            return 0.0
        g1 = math.sqrt(n) * self.m3 / self.m2**1.5
        return g1 * math.sqrt(n * (n - 1)) / (n - 2)
