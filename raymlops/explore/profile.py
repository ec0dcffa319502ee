"""`explore`: a one-pass profile of a Ray Dataset (two passes with a label), merged in the driver one block
partial at a time, so driver memory depends on the column count, not the row count."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pyarrow as pa

from raymlops.errors import DataError
from raymlops.explore.block import CATEGORICAL, NUMERIC, TIME, Layout, Partial, dumps, kind_of, loads, profile_block
from raymlops.explore.label import association, label_bins, label_block
from raymlops.explore.sketches import HLL_ERROR, TOP_K, kll_error
from raymlops.explore.warnings import warnings_of

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HIST_BINS = 20
TOP_SHOWN = 20  # categories listed per column (the sketch tracks more)
# Rows per profiling task. Ray Data splits files into small blocks (16 files of 62,500 rows became 144 blocks of
# 6,944): one partial per block took 7.7 s for 1M rows x 20 columns on 2 CPUs, mostly per-task overhead and
# 1.5 MB of sketches per partial; bundling blocks into batches of this size makes 8 tasks.
BATCH_ROWS = 131_072
MAX_DAYS = 1_000  # rows-per-day points before the series switches to weeks, months or years


def profile_dataset(
    ds, *, label: str | None = None, time_column: str | None = None, name: str = "data", seed: int = 0
) -> tuple[dict[str, Any], dict]:
    """The profile of a Ray Dataset as a JSON-able dict (see ``raymlops.explore.Profile``; its "sample" is a
    pyarrow Table) and the merged column partials (their sketches, for ``compare``)."""
    t0 = time.perf_counter()
    schema = ds.schema()
    if schema is None or not schema.names:
        raise DataError(f"{name}: no columns to profile")
    types = dict(zip(schema.names, schema.types))
    if not all(isinstance(t, pa.DataType) for t in types.values()):  # pandas blocks (ray.data.from_pandas)
        types = dict(zip(schema.names, ds.take_batch(10_000, batch_format="pyarrow").schema.types))
    for what, col in (("label", label), ("time", time_column)):
        if col is not None and col not in types:
            raise DataError(f"{name}: {what} column {col!r} is not in the data; columns: {schema.names}")
    kinds = {n: k for n, t in types.items() if (k := kind_of(t)) is not None}
    if time_column is not None and kinds.get(time_column) != TIME:
        raise DataError(
            f"{name}: time column {time_column!r} must be a timestamp or date column, got {types[time_column]}"
        )
    if label is not None and label not in kinds:
        raise DataError(
            f"{name}: label column {label!r} has type {types[label]}; expected numbers, strings or booleans"
        )
    if time_column is None:
        time_column = next((n for n, k in kinds.items() if k == TIME), None)
    layout = Layout(kinds, time_column, seed)
    merged = _merge(
        ds.map_batches(
            _partial_fn(profile_block, layout), batch_format="pyarrow", zero_copy_batch=True, batch_size=BATCH_ROWS
        )
    )
    if merged.rows == 0:
        raise DataError(f"{name}: no rows to profile")
    out = {
        "name": name,
        "rows": merged.rows,
        "columns": {n: _column(merged.columns[n], str(types[n]), merged.rows) for n in kinds},
        "skipped": [n for n in schema.names if n not in kinds],
        "table": _table(merged, layout),
        "label": label,
        "time": time_column,
        "errors": {"quantile_rank": kll_error(), "distinct_relative": HLL_ERROR},
    }
    if label is not None:
        bins = label_bins(out["columns"], merged.columns, label)
        counts = _merge_counts(
            ds.map_batches(
                _partial_fn(label_block, bins), batch_format="pyarrow", zero_copy_batch=True, batch_size=BATCH_ROWS
            )
        )
        out["associations"] = association(bins, counts)
    out["warnings"] = warnings_of(out)
    out["sample"] = merged.sample
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out, merged.columns


def _partial_fn(build, spec):
    """The Ray task body of a pass: a batch's partial (``build(batch, spec)``), pickled into a one-row table."""
    import pyarrow as pa

    def fn(table):
        return pa.table({"partial": pa.array([dumps(build(table, spec))], pa.large_binary())})

    return fn


def _partials(ds):
    """The partials as they stream in (the driver never holds more than Ray's prefetched batches). A file that
    cannot be read fails as the DataError naming it, not as Ray's wrapped Arrow error."""
    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=2):
            for data in batch.column("partial").to_pylist():
                yield loads(data)
    except (pa.ArrowInvalid, OSError) as e:  # Ray's task errors subclass the error they wrap
        raise DataError(f"cannot read the data: {str(e).splitlines()[-1][:500]}") from None


def _merge(ds) -> Partial:
    total = Partial()
    for part in _partials(ds):
        total.merge(part)
    return total


def _merge_counts(ds) -> dict[str, np.ndarray]:
    total: dict[str, np.ndarray] = {}
    for part in _partials(ds):
        for k, v in part.items():
            total[k] = total[k] + v if k in total else v
    return total


def _column(p, arrow_type: str, rows: int) -> dict[str, Any]:
    """A column's figures from its merged partial."""
    distinct = min(round(p.hll.estimate()), p.count)
    out: dict[str, Any] = {
        "kind": p.kind,
        "type": arrow_type,
        "count": p.count,
        "nulls": p.nulls,
        "null_share": p.nulls / rows if rows else 0.0,
        "distinct": distinct,
    }
    if p.kind == NUMERIC:
        out.update(
            zeros=p.zeros,
            zero_share=p.zeros / p.count if p.count else 0.0,
            infinite=p.infinite,
            min=p.min,
            max=p.max,
            mean=p.moments.mean if p.count else None,
            std=p.moments.std if p.count else None,
            skew=p.moments.skew if p.count else None,
            quantiles={f"{q:g}": float(p.kll.get_quantile(q)) for q in QUANTILES} if p.count else {},
            histogram=_histogram(p),
        )
    elif p.kind == CATEGORICAL:
        out.update(top=_top(p), empty=p.zeros)
        if p.lengths.n:
            out["length"] = {"min": p.length_min, "max": p.length_max, "mean": p.lengths.mean, "std": p.lengths.std}
    else:
        out.update(min=_iso(p.min), max=_iso(p.max))
    return out


def _histogram(p) -> dict[str, list] | None:
    """Equal-width bins [a, b) (the last [a, b]) from min to max, counts from the KLL sketch's CDF (each edge's
    rank is within the sketch's rank error, so a bin's count is within 2 x error x count)."""
    if not p.count:
        return None
    if p.min == p.max:
        return {"edges": [p.min, p.max], "counts": [p.count]}
    edges = np.unique(np.linspace(p.min, p.max, HIST_BINS + 1))  # unique: huge values have coarse floats
    if len(edges) < 3:
        return {"edges": [p.min, p.max], "counts": [p.count]}
    cdf = np.asarray(p.kll.get_cdf(list(edges[1:-1]), False))  # P(X < edge): numpy's [a, b) bins
    shares = np.diff(np.concatenate([[0.0], cdf[:-1], [1.0]]))
    counts = np.maximum(np.round(shares * p.count), 0).astype(int)
    return {"edges": [float(e) for e in edges], "counts": counts.tolist()}


def _top(p) -> list[dict[str, Any]]:
    from datasketches import frequent_items_error_type

    items = p.items.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES) if p.items else []
    top = sorted(items, key=lambda t: (-t[1], t[0]))[:TOP_SHOWN]
    # bounds only where the sketch had to evict items (more distinct values than it tracks): else counts are exact
    return [
        {
            "value": v,
            "count": int(est),
            "share": est / p.count if p.count else 0.0,
            **({} if lo == hi else {"lower": int(lo), "upper": int(hi)}),
        }
        for v, est, lo, hi in top
    ]


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    import pandas as pd

    return pd.Timestamp(us, unit="us").isoformat()


def _table(merged: Partial, layout: Layout) -> dict[str, Any]:
    distinct_rows = min(round(merged.row_hll.estimate()), merged.rows)
    out: dict[str, Any] = {
        "rows": merged.rows,
        "duplicate_rows": max(merged.rows - distinct_rows, 0),
        "duplicate_rows_error": round(2 * HLL_ERROR * distinct_rows),  # about 2 standard errors
        "correlation": _correlation(merged.pairs, layout.correlated),
    }
    if merged.days:
        first, last = min(merged.days), max(merged.days)
        # Dense per day up to MAX_DAYS; a longer span (or one sentinel date far away) in wider buckets
        step = next(b for b in (1, 7, 30, 365, 10**9) if (last - first) // b < MAX_DAYS)
        counts: dict[int, int] = {}
        for d, k in merged.days.items():
            counts[(d - first) // step] = counts.get((d - first) // step, 0) + k
        out["rows_per_day"] = {
            "first": _day(first),
            "bucket_days": step,
            "counts": [counts.get(i, 0) for i in range((last - first) // step + 1)],
        }
    return out


def _day(day: int) -> str:
    import datetime as dt

    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _correlation(pairs, names: list[str]) -> dict[str, Any] | None:
    """Pearson's r of every numeric pair over the rows where both are present (None where undefined)."""
    if pairs is None or len(names) < 2:
        return None
    r = np.clip(pairs.r(), -1.0, 1.0)
    return {"columns": names, "r": [[None if not math.isfinite(v) else round(float(v), 6) for v in row] for row in r]}


__all__ = ["HIST_BINS", "QUANTILES", "TOP_K", "profile_dataset"]
