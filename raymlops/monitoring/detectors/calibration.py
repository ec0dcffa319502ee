"""Fast null trajectories of the online detectors' statistics, for calibrating their thresholds.

Each function returns what alibi-detect's own ``_simulate_streams`` returns for the same random draws (unit
tests compare them), so alibi-detect's threshold search runs unchanged on it.

CVM: alibi-detect simulates each bootstrap stream with an (n + t) x (n + t) comparison matrix: O(n^2) per
stream, ~100 s for a 2,000-row reference at ERT 1000 on 2 cores. The statistic depends only on ranks, so each stream
needs one sort and, per time step, the sorted ranks of one window: O((n + t) log n + t w log w), including
alibi-detect's exact choice of points at each step.

FET: alibi-detect evaluates the hypergeometric cdf once per stream and step (n_bootstraps x t_max per
feature, ~80,000 x 99 at ERT 1000 over 20 streams); a window's count takes only ws + 1 values, so the cdf
is evaluated once per value and looked up.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Normalise = Callable[[np.ndarray, int, int], np.ndarray]


def _s1(x: np.ndarray) -> np.ndarray:
    return x * (x + 1) / 2


def _s2(x: np.ndarray) -> np.ndarray:
    return x * (x + 1) * (2 * x + 1) / 6


def _ref_ranks(xs: np.ndarray, n: int) -> np.ndarray:
    """For every point of each row (reference = the first n): how many reference points are <= it."""
    order = np.argsort(xs, axis=1, kind="stable")
    below = np.cumsum(order < n, axis=1)
    out = np.empty_like(below)
    np.put_along_axis(out, order, below, axis=1)
    return out


def _batch_stats(xs: np.ndarray, n: int, t_max: int, window_sizes: np.ndarray, normalise: Normalise) -> np.ndarray:
    b = xs.shape[0]
    r = _ref_ranks(xs, n)[:, n - 1 :].astype(np.float64)  # q_j: the last reference point, then the stream
    q = xs[:, n - 1 :]
    stats = np.full((b, t_max, len(window_sizes)), np.nan)
    for k, ws in enumerate(int(w) for w in window_sizes):
        # Term 1, at each reference point (k-th smallest: F_ref = k/n) against the window's cdf, summed in
        # closed form over the runs of reference ranks between consecutive sorted window ranks.
        wr = np.sort(sliding_window_view(r[:, 1:], ws, axis=1), axis=-1)  # (b, t_max-ws+1, ws)
        zeros = np.zeros(wr.shape[:-1] + (1,))
        lo = np.concatenate([zeros, wr], axis=-1)  # segment m: ranks lo+1 .. hi
        hi = np.concatenate([wr, np.full_like(zeros, n)], axis=-1)
        c = np.arange(ws + 1) / ws
        term1 = ((_s2(hi) - _s2(lo)) / (n * n) - 2 * c * (_s1(hi) - _s1(lo)) / n + (hi - lo) * c * c).sum(-1)
        # Term 2, at the ws points before the window's newest (alibi-detect's indexing) against the
        # window's cdf: ranks within the ws + 1 points spanning both.
        v = sliding_window_view(q, ws + 1, axis=1)  # (b, t_max-ws+1, ws+1)
        rank = np.argsort(np.argsort(v, axis=-1, kind="stable"), axis=-1, kind="stable")
        g = (rank[..., :ws] + 1 - (rank[..., :1] <= rank[..., :ws])) / ws
        f = sliding_window_view(r, ws + 1, axis=1)[..., :ws] / n
        term2 = ((f - g) ** 2).sum(-1)
        stats[:, ws - 1 :, k] = normalise(term1 + term2, n, ws)
    return stats


def cvm_streams(
    n: int, t_max: int, window_sizes, n_bootstraps: int, batch_size: int, normalise: Normalise
) -> np.ndarray:
    """Null CVM statistics, shape (n_bootstraps, t_max, n_windows), NaN before a window is full;
    ``normalise(stats, n, ws)`` is the detector's own normalisation. Draws
    ``np.random.randn(len(batch), n + t_max)`` per batch exactly as alibi-detect does."""
    window_sizes = np.asarray(window_sizes)
    stats = np.zeros((n_bootstraps, t_max, len(window_sizes)))
    n_batches = int(np.ceil(n_bootstraps / batch_size))
    for idx in np.array_split(np.arange(n_bootstraps), n_batches):
        xs = np.random.randn(len(idx), n + t_max)
        stats[idx] = _batch_stats(xs, n, t_max, window_sizes, normalise)
    return stats


def fet_streams(
    x_ref: np.ndarray,
    t_max: int,
    window_sizes,
    n_bootstraps: int,
    alternative: str,
    smooth: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Null (smoothed) FET statistics of one binary feature, shape (n_bootstraps, t_max, n_windows), NaN
    before a window is full; ``smooth`` is the detector's moving average. Draws as alibi-detect does."""
    from scipy.stats import hypergeom

    n = len(x_ref)
    stats = np.full((n_bootstraps, t_max, len(window_sizes)), np.nan, dtype=np.float32)
    p, sum_ref = np.mean(x_ref), np.sum(x_ref)
    x_stream = np.random.choice([False, True], (n_bootstraps, t_max), p=[1 - p, p])
    cumsums = np.concatenate([np.zeros((n_bootstraps, 1), dtype=np.int64), np.cumsum(x_stream, axis=-1)], axis=-1)
    for k, ws in enumerate(int(w) for w in window_sizes):
        counts = cumsums[:, ws:] - cumsums[:, :-ws]
        values = np.arange(ws + 1)
        if alternative == "greater":
            p_val = hypergeom.cdf(sum_ref, n + ws, sum_ref + values, n)
        else:
            p_val = hypergeom.cdf(values, n + ws, sum_ref + values, ws)
        stats[:, ws - 1 :, k] = smooth(1 - p_val[counts])
    return stats
