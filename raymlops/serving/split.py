"""Traffic splitting: picks a variant by weight, at random or by a stable hash of a sticky key."""

from __future__ import annotations

import bisect
import hashlib
import random
from typing import Any


def stable_unit(value: Any) -> float:
    """A value in [0, 1) that depends only on ``str(value)`` (the same in every process and every run)."""
    digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Splitter:
    """Maps a draw in [0, 1) onto the variants' cumulative weight shares.

    Variants with weight 0 never receive traffic. A sticky key maps to one fixed point of [0, 1), so the same
    key keeps its variant for as long as the weights stay the same.
    """

    def __init__(self, weights: dict[str, float]):
        live = [(name, float(w)) for name, w in weights.items() if w > 0]
        if not live:
            raise ValueError(f"no variant has a weight above 0: {weights}")
        total = sum(w for _, w in live)
        self.names = [name for name, _ in live]
        self.bounds, acc = [], 0.0
        for _, w in live:
            acc += w / total
            self.bounds.append(acc)
        self.bounds[-1] = 1.0
        self.weights = dict(weights)

    def pick(self, key: Any = None) -> str:
        u = random.random() if key is None else stable_unit(key)
        return self.names[min(bisect.bisect_right(self.bounds, u), len(self.names) - 1)]
