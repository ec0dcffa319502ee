"""Train/validation splits that do not depend on how the data is partitioned."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLIT_COLUMN = "__raymlops_valid"


def random_mask(df: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """True for validation rows: a seeded hash of each row's content, so the split is reproducible
    whatever the block layout and needs no shuffle."""
    h = pd.util.hash_pandas_object(df, index=False).to_numpy(dtype=np.uint64)
    # pandas ignores hash_key for numeric columns, so the seed is mixed in here (splitmix64 finalizer).
    z = h ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / np.float64(2**53) < fraction


def to_datetime64(values) -> np.ndarray:
    """Timestamps (naive = UTC, or tz-aware) as UTC datetime64[ns]."""
    return pd.to_datetime(pd.Series(values), utc=True).dt.tz_convert(None).to_numpy("datetime64[ns]")


def time_cutoff(timestamps: np.ndarray, fraction: float):
    """The timestamp at or after which rows are validation rows (the latest ``fraction``)."""
    if len(timestamps) == 0:
        raise ValueError("cannot split an empty dataset")
    ts = np.sort(to_datetime64(timestamps))
    return ts[min(len(ts) - 1, int(np.floor(len(ts) * (1 - fraction))))]


def annotate(
    df: pd.DataFrame, kind: str, fraction: float, seed: int = 0, timestamp: str | None = None, cutoff=None
) -> pd.DataFrame:
    """Adds the boolean SPLIT_COLUMN to a batch."""
    df = df.copy()
    if kind == "time":
        df[SPLIT_COLUMN] = to_datetime64(df[timestamp]) >= np.datetime64(cutoff, "ns")
    else:
        df[SPLIT_COLUMN] = random_mask(df, fraction, seed)
    return df
