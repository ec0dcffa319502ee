"""Per-partition kernels on Arrow/numpy: key codes, the as-of merge and the sliding-window aggregates.

Everything here works on one partition in memory (no Ray); `pit.py` and `build.py` distribute it.
Timestamps are int64 UTC nanoseconds throughout; a missing created timestamp sorts before any value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raymlops.errors import DataError

NAT = np.iinfo(np.int64).min
UTC_NS = pa.timestamp("ns", tz="UTC")


def utc_ns(col) -> np.ndarray:
    """A timestamp column (naive = UTC, or tz-aware; Arrow or pandas) as int64 UTC ns; nulls become NAT."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col, pa.Array) and pa.types.is_timestamp(col.type):
        # Arrow stores tz-aware timestamps as UTC instants, and naive ones are read as UTC.
        ints = col.cast(pa.timestamp("ns", tz=col.type.tz)).view(pa.int64())
        return np.asarray(ints.fill_null(NAT).to_numpy(zero_copy_only=False), dtype=np.int64)
    if isinstance(col, pa.Array):
        col = col.to_pandas()
    col = pd.Series(col)
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        # epoch numbers are ambiguous (s? ms? ns?): refuse rather than guess
        raise DataError(
            f"timestamp column {col.name!r} holds numbers ({col.dtype}); store timestamps, or "
            "convert epoch values with pandas.to_datetime(..., unit='s') first"
        )
    s = pd.to_datetime(col, utc=True)
    return s.dt.tz_convert(None).to_numpy("datetime64[ns]").view(np.int64)


def utc_array(ns: np.ndarray) -> pa.Array:
    """int64 UTC ns (NAT = null) as a UTC-aware Arrow timestamp array."""
    return pa.array(ns, type=UTC_NS, mask=ns == NAT)


def key_codes(left: list, right: list) -> tuple[np.ndarray, np.ndarray]:
    """Dense int64 codes for the join keys of two sides (same code = same key); -1 where a key is null.

    Codes come from Arrow dictionary encoding, so 64-bit integer ids never pass through floats.
    """
    n = len(left[0])
    per_column = []
    for a, b in zip(left, right):
        both = pa.concat_arrays([_arrow(a), _arrow(b).cast(_arrow(a).type)])
        enc = both.dictionary_encode()
        per_column.append(np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64))
    if len(per_column) == 1:
        codes = per_column[0]
    else:
        stacked = np.stack(per_column, axis=1)
        null = (stacked < 0).any(axis=1)
        _, codes = np.unique(stacked, axis=0, return_inverse=True)
        codes = np.where(null, -1, codes.reshape(-1)).astype(np.int64)
    return codes[:n], codes[n:]


def _arrow(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    if isinstance(col, pa.Array):
        return col
    arr = np.asarray(col)
    return pa.array(arr, from_pandas=True) if arr.dtype != object else pa.array(list(arr), from_pandas=True)


def _dense_rank(*arrays: np.ndarray) -> list[np.ndarray]:
    """Ranks of int64 values within the union of the arrays (so (code, rank) packs into one int64)."""
    uniq = np.unique(np.concatenate(arrays))
    return [np.searchsorted(uniq, a).astype(np.int64) for a in arrays]


def _pack(code: np.ndarray, rank: np.ndarray) -> np.ndarray:
    return (code << np.int64(32)) | rank


def sort_order(code: np.ndarray, ts: np.ndarray, created: np.ndarray | None) -> np.ndarray:
    """Row order by (key, event time, created time)."""
    keys = (ts, code) if created is None else (created, ts, code)
    return np.lexsort(keys)


def asof_indices(
    e_code: np.ndarray,
    e_ts: np.ndarray,
    f_code: np.ndarray,
    f_ts: np.ndarray,
    f_created: np.ndarray | None,
    ttl_ns: int | None,
) -> np.ndarray:
    """For each entity row, the feature row that is its value as of that time, or -1.

    The candidates share the key and have ``T - ttl <= ts <= T`` (no lower bound without a ttl); the latest
    ``ts`` wins and ties go to the latest created time (then to the last row in input order).

    One stable lexsort of both sides by (key, time, side, created), features before entities at equal
    (key, time): the last feature row at or before each entity row's position is its candidate.
    """
    nf, ne = len(f_code), len(e_code)
    f_code = np.where(f_ts == NAT, -1, f_code)  # a feature row without a time never matches
    code = np.concatenate([f_code, e_code])
    ts = np.concatenate([f_ts, e_ts])
    side = np.concatenate([np.zeros(nf, np.int8), np.ones(ne, np.int8)])
    created = np.concatenate([f_created if f_created is not None else np.zeros(nf, np.int64), np.zeros(ne, np.int64)])
    order = np.lexsort((created, side, ts, code))
    is_feature = order < nf
    last = np.maximum.accumulate(np.where(is_feature, np.arange(len(order)), -1)) if len(order) else order
    pos = np.flatnonzero(~is_feature)
    hit = last[pos]
    e_idx = order[pos] - nf
    f_idx = np.where(hit >= 0, order[np.maximum(hit, 0)], 0)
    ok = (hit >= 0) & (e_code[e_idx] >= 0) & (e_ts[e_idx] != NAT)
    if nf:
        ok &= f_code[f_idx] == e_code[e_idx]
        if ttl_ns is not None:
            ok &= f_ts[f_idx] >= e_ts[e_idx] - ttl_ns
    out = np.full(ne, -1, np.int64)
    out[e_idx] = np.where(ok, f_idx, -1)
    return out


def take_or_null(table: pa.Table, idx: np.ndarray) -> pa.Table:
    """Rows of ``table`` at ``idx``; -1 gives a row of nulls."""
    return table.take(pa.array(idx, mask=idx < 0, type=pa.int64()))


# ------------------------------------------------------------------------ windows


def window_bounds(code: np.ndarray, ts: np.ndarray, window_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (code, ts): [start, end) of the rows with the same key and ``T - w < ts <= T``.

    Rows with equal (key, ts) get the same window (every tie is as of the same instant). Both bounds are
    non-decreasing over the sorted rows.
    """
    return window_ranges(code, ts, code, ts, window_ns)


def window_ranges(
    f_code: np.ndarray,
    f_ts: np.ndarray,
    q_code: np.ndarray,
    q_ts: np.ndarray,
    window_ns: int,
    align_ns: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For event rows sorted by (code, ts) and queries (code, T): [start, end) of the events with the query's
    key and ``T - w < ts <= T``. A query with a null key (code -1) or time gets an empty range; for queries
    sorted by (code, T) both bounds are non-decreasing.

    ``align_ns`` moves each window's old edge up to the next multiple of it, as the online tiles do.
    """
    lo = q_ts - window_ns
    if align_ns:
        lo = -((-lo) // align_ns) * align_ns
    r_f, r_hi, r_lo = _dense_rank(f_ts, q_ts, lo)
    packed = _pack(f_code, r_f)
    end = np.searchsorted(packed, _pack(q_code, r_hi), side="right")
    start = np.searchsorted(packed, _pack(q_code, r_lo), side="right")
    empty = (q_code < 0) | (q_ts == NAT)
    return start, np.where(empty, start, np.maximum(end, start))


def aggregate(function: str, values, start: np.ndarray, end: np.ndarray, code: np.ndarray | None = None) -> pa.Array:
    """One window aggregate per query over ``values[start:end]`` (nulls are skipped; ``values`` sorted by
    (key, time); one query per value row in the feature pipelines, one per entity row in retrieval).

    ``code`` (the sorted key codes of the values) lets ``std`` centre each entity's values on that entity's
    mean. Empty windows: 0 for count, distinct_count and sum; null for the others.
    """
    arr = values if isinstance(values, pa.Array) else pa.array(values)
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    nq = len(start)
    if function == "last":
        if not len(valid):
            return pa.nulls(nq, arr.type)
        idx = np.where(valid, np.arange(len(valid)), -1)
        last = np.maximum.accumulate(idx)
        pick = last[np.maximum(end - 1, 0)]
        pick = np.where((end > start) & (pick >= start), pick, -1)
        return arr.take(pa.array(pick, mask=pick < 0, type=pa.int64()))
    if function == "distinct_count":
        return pa.array(_distinct_counts(arr, valid, start, end), type=pa.int64())
    if function == "count":
        c = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)])
        return pa.array(c[end] - c[start], type=pa.int64())
    x = np.asarray(pc.cast(arr, pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    n = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)])
    n = n[end] - n[start]
    if function in ("min", "max"):
        out = _range_extreme(np.where(valid, x, np.nan), start, end, np.fmin if function == "min" else np.fmax)
    else:
        # Window sums by reduceat over (start, end) pairs: exact sequential sums, no prefix-sum cancellation.
        s = _window_sums(np.where(valid, x, 0.0), start, end)
        if function == "sum":
            out = s
        elif function == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                out = s / n
        else:  # std, sample (ddof=1); centred per entity to keep the squares well conditioned
            xc = np.where(valid, x - _group_means(x, valid, code), 0.0)
            sc, q = _window_sums(xc, start, end), _window_sums(xc * xc, start, end)
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.sqrt(np.maximum(q - sc * sc / n, 0.0) / (n - 1))
            out = np.where(n > 1, out, np.nan)
    if function == "sum":  # a window without values sums to 0 (as pandas, and as issue 16 states), never null
        return pa.array(out, type=pa.float64())
    out = np.where(n > 0, out, np.nan)
    return pa.array(out, mask=np.isnan(out), type=pa.float64())


def _group_means(x: np.ndarray, valid: np.ndarray, code: np.ndarray | None) -> np.ndarray:
    """Each row's entity mean over valid values (rows sorted by code; one group without codes)."""
    if code is None or not len(x):
        return np.full(len(x), x[valid].mean() if valid.any() else 0.0)
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    sums = np.add.reduceat(np.where(valid, x, 0.0), starts)
    counts = np.add.reduceat(valid.astype(np.int64), starts)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return np.repeat(means, np.diff(np.r_[starts, len(x)]))


def _window_sums(x: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """sum(x[start[i]:end[i]]) for every i (empty windows give 0)."""
    if not len(x):
        return np.zeros(len(start))
    idx = np.empty(2 * len(start), dtype=np.int64)
    idx[0::2], idx[1::2] = start, end
    sums = np.add.reduceat(np.append(x, 0.0), idx)[0::2]
    return np.where(end > start, sums, 0.0)


def _range_extreme(x: np.ndarray, start: np.ndarray, end: np.ndarray, op) -> np.ndarray:
    """min/max over [start, end) for every row with a sparse table (O(n log n), NaN-skipping)."""
    length = end - start
    out = np.full(len(start), np.nan)
    if not len(x) or length.max(initial=0) == 0:
        return out
    levels = [x]
    while (1 << len(levels)) <= length.max():
        prev, half = levels[-1], 1 << (len(levels) - 1)
        levels.append(op(prev[:-half], prev[half:]) if len(prev) > half else prev[:0])
    has = length > 0
    k = np.zeros(len(start), dtype=np.int64)
    k[has] = np.floor(np.log2(length[has])).astype(np.int64)
    for lvl in np.unique(k[has]):
        rows = np.flatnonzero(has & (k == lvl))
        table = levels[lvl]
        out[rows] = op(table[start[rows]], table[end[rows] - (1 << lvl)])
    return out


def _distinct_counts(arr: pa.Array, valid: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distinct non-null values in each window; two pointers (both bounds only move forward)."""
    vals, _ = pd.factorize(pd.Series(arr.to_pandas()), use_na_sentinel=True)
    counts: dict[int, int] = {}
    out = np.zeros(len(start), dtype=np.int64)
    lo = hi = 0
    for i in range(len(start)):
        s, e = int(start[i]), int(end[i])
        while hi < e:
            if valid[hi]:
                counts[vals[hi]] = counts.get(vals[hi], 0) + 1
            hi += 1
        while lo < s:
            if valid[lo]:
                c = counts[vals[lo]] - 1
                if c:
                    counts[vals[lo]] = c
                else:
                    del counts[vals[lo]]
            lo += 1
        out[i] = len(counts)
    return out
