"""Online/offline skew: the feature values a model was served against the same features recomputed
point-in-time from the offline store at each request's time (`FeatureStore.get_historical_features` with
``as_served=True``, so windows start at the tile boundary the online store started them at)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

EXAMPLES = 5


def _null(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def difference(served: Any, offline: Any, tolerance: float) -> float | None:
    """0.0 when the values match (both null, equal, or numbers within ``tolerance`` relative, absolute below
    1); otherwise how far apart they are (|a - b| for numbers, inf for any other mismatch)."""
    if _null(served) and _null(offline):
        return 0.0
    if _null(served) or _null(offline):
        return math.inf
    if isinstance(served, (int, float)) and isinstance(offline, (int, float)) and not isinstance(served, bool):
        diff = abs(float(served) - float(offline))
        return 0.0 if diff <= tolerance * max(1.0, abs(float(offline))) else diff
    return 0.0 if served == offline else math.inf


def compare(
    served: pd.DataFrame, offline: pd.DataFrame, features: list[str], context: list[str], tolerance: float
) -> dict:
    """Per feature: rows compared, mismatches, their share and the largest differences (with ``context``
    columns of ``served`` to find the request). ``served`` and ``offline`` are aligned row by row."""
    out: dict[str, dict] = {}
    for name in features:
        a = served[name].tolist() if name in served else [None] * len(served)
        b = offline[name].tolist()
        diffs = [difference(x, _plain(y), tolerance) for x, y in zip(a, b)]
        bad = sorted((i for i, d in enumerate(diffs) if d), key=lambda i: -diffs[i])
        out[name] = {
            "rows": len(diffs),
            "mismatches": len(bad),
            "rate": len(bad) / len(diffs) if diffs else 0.0,
            "largest": [
                {
                    **{c: _plain(served[c].iloc[i]) for c in context},
                    "served": a[i],
                    "offline": _plain(b[i]),
                    "difference": None if math.isinf(diffs[i]) else diffs[i],
                }
                for i in bad[:EXAMPLES]
            ],
        }
    worst = max(out, key=lambda n: out[n]["rate"], default=None)
    return {"rows": len(served), "features": out, "worst": worst, "max_rate": out[worst]["rate"] if worst else 0.0}


def _plain(v: Any) -> Any:
    """numpy and pandas scalars as python values (for JSON reports)."""
    if _null(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v.item() if hasattr(v, "item") else v
