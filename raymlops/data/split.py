"""Train/validation splits that do not depend on how the data is partitioned."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLIT_COLUMN = "__raymlops_valid"


def random_mask(df: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """True for validation rows: a seeded hash of each row's content, so the split is reproducible
    whatever the block layout and needs no shuffle."""
    key = f"raymlops{seed:08d}"[-16:]
    h = pd.util.hash_pandas_object(df, index=False, hash_key=key).to_numpy(dtype=np.uint64)
    return (h / np.float64(2**64)) < fraction


def to_datetime64(values) -> np.ndarray:
    """Timestamps (naive = UTC, or tz-aware) as UTC datetime64[ns]."""
    return pd.to_datetime(pd.Series(values), utc=True).dt.tz_convert(None).to_numpy("datetime64[ns]")


def time_cutoff(timestamps: np.ndarray, fraction: float):
    """The timestamp at or after which rows are validation rows (the latest ``fraction``)."""
    if len(timestamps) == 0:
        raise ValueError("cannot split an empty dataset")
    ts = np.sort(to_datetime64(timestamps))
    return ts[min(len(ts) - 1, int(np.floor(len(ts) * (1 - fraction))))]


def annotate(df: pd.DataFrame, kind: str, fraction: float, seed: int = 0, timestamp: str | None = None,
             cutoff=None) -> pd.DataFrame:
    """Adds the boolean SPLIT_COLUMN to a batch."""
    df = df.copy()
    if kind == "time":
        df[SPLIT_COLUMN] = to_datetime64(df[timestamp]) >= np.datetime64(cutoff, "ns")
    else:
        df[SPLIT_COLUMN] = random_mask(df, fraction, seed)
    return df
