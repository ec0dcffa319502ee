"""Deployments for the console: each app's traffic state and canary history (serving state in storage), and
request rates, error rates and latency percentiles per variant from the request log.

A request-log file never changes once it is renamed into place, so each file is summarized once per process
into per-minute counts and a latency histogram per (variant, role); a page merges the summaries. 10 million
logged rows therefore cost one read each, once, and a page afterwards only the files written since.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd

from raymlops.console.schemas import AppInfo, VariantTraffic
from raymlops.serving.compare import compare
from raymlops.serving.controller import read_events, read_state
from raymlops.storage import Storage

# Latency histogram: 0.1 ms .. ~100 s in 2% steps, so a percentile read from it is within 2% of the exact one.
EDGES = np.concatenate([[0.0], 0.1 * 1.02 ** np.arange(0, 700)])
LIVE_S = 300  # "live" rates cover the last 5 minutes of the log
SHADOW_ROWS = 100_000  # shadow agreement is computed over the newest files holding about this many rows
SHADOW_TTL_S = 15.0  # ... at most this often while new files arrive (~0.25 s per computation at 100,000 rows)
COLUMNS = ["ts", "row", "variant", "role", "status", "latency_ms"]


def _pct(hist: np.ndarray, q: float) -> float | None:
    n = hist.sum()
    if n == 0:
        return None
    i = int(np.searchsorted(np.cumsum(hist), q * n, side="left"))
    i = min(i, len(EDGES) - 2)
    return float((EDGES[i] + EDGES[i + 1]) / 2)


class LogSummaries:
    """Per-file summaries of one request log: ``frame`` has one row per (minute, variant, role) with
    ``requests``, ``errors``, ``rows`` and a latency histogram (index into ``hists``)."""

    def __init__(self):
        self._files: dict[str, tuple[pd.DataFrame, np.ndarray, int]] = {}
        self._merged: dict[str, tuple] = {}  # log -> (its files, their merge): pages between flushes reuse it
        self.shadow_cache: dict[str, tuple] = {}  # log -> (the files compared, the shadows' agreement)
        self._lock = threading.Lock()

    def _summarize(self, store: Storage, rel: str) -> tuple[pd.DataFrame, np.ndarray, int]:
        """One file's per-(minute, variant, role) rows, requests (a request's first row), 5xx requests and
        latency histogram, with numpy bincounts (~25 ms per 100,000 rows; no per-row Python)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with store.fs.open_input_file(store.path(*rel.split("/"))) as f:
            t = pq.read_table(f, columns=COLUMNS)
        variant, role = (pc.dictionary_encode(pc.fill_null(t[c].combine_chunks(), "")) for c in ("variant", "role"))
        vnames, rnames = variant.dictionary.to_pylist(), role.dictionary.to_pylist()
        v = variant.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        r = role.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        minute = t["ts"].combine_chunks().cast("int64").to_numpy(zero_copy_only=False) // 60_000_000 * 60
        first = t["row"].to_numpy(zero_copy_only=False) == 0  # one row per request (rows are written together)
        error = first & (t["status"].to_numpy(zero_copy_only=False) >= 500)
        nv, nr = max(len(vnames), 1), max(len(rnames), 1)
        keys, gid = np.unique((minute * nv + v) * nr + r, return_inverse=True)
        n = len(keys)
        bins = np.clip(np.searchsorted(EDGES, t["latency_ms"].to_numpy(zero_copy_only=False), side="right") - 1,
                       0, len(EDGES) - 2)
        hists = np.bincount(gid[first] * (len(EDGES) - 1) + bins[first],
                            minlength=n * (len(EDGES) - 1)).reshape(n, len(EDGES) - 1)
        frame = pd.DataFrame({"minute": keys // (nv * nr), "variant": [vnames[k] for k in (keys // nr) % nv],
                              "role": [rnames[k] for k in keys % nr],
                              "requests": np.bincount(gid, weights=first, minlength=n).astype(np.int64),
                              "errors": np.bincount(gid, weights=error, minlength=n).astype(np.int64),
                              "rows": np.bincount(gid, minlength=n)})
        return frame, hists.astype(np.int64), t.num_rows

    def files(self, store: Storage) -> list[str]:
        return [f for f in store.files() if f.endswith(".parquet") and not any(
            p.startswith((".", "_")) for p in f.split("/"))]

    def merged(self, store: Storage) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
        files = self.files(store)
        last = self._merged.get(store.url())
        if last is not None and last[0] == files:  # no new file since the last page
            return last[1]
        frames, hists, todo = [], [], files
        if last is not None and files[:len(last[0])] == last[0] and len(last[1][0]):  # only new files at the end
            frames, hists, todo = [last[1][0]], [last[1][1]], files[len(last[0]):]
        for rel in todo:
            got = self._files.get(store.url(rel))
            if got is None:
                got = self._summarize(store, rel)
                with self._lock:
                    self._files[store.url(rel)] = got
            frames.append(got[0])
            hists.append(got[1])
        if not frames:
            return pd.DataFrame(columns=["minute", "variant", "role", "requests", "errors", "rows"]), \
                np.zeros((0, len(EDGES) - 1), dtype=np.int64), files
        out = pd.concat(frames, ignore_index=True), np.concatenate(hists), files
        self._merged[store.url()] = (files, out)
        return out

    def rows_of(self, store: Storage, rel: str) -> int:
        got = self._files.get(store.url(rel))
        return got[2] if got else 0


def traffic(frame: pd.DataFrame, hists: np.ndarray, now: float) -> tuple[list[VariantTraffic], float, dict]:
    """Per (variant, role): requests, rate, error rate and p50/p99 over the last ``LIVE_S`` seconds when
    the log has traffic then, else over the whole log; plus per-minute series for the charts."""
    if not len(frame):
        return [], 0.0, {}
    live = frame["minute"].to_numpy() >= now - LIVE_S - 60
    use = live if live.any() else np.ones(len(frame), dtype=bool)
    span = LIVE_S if live.any() else max(60.0, float(frame["minute"].max() - frame["minute"].min() + 60))
    out = []
    sub = frame[use]
    for (variant, role), g in sub.groupby(["variant", "role"]):
        h = hists[g.index.to_numpy()].sum(axis=0)  # frame's index is its row position (concat ignore_index)
        n = int(g["requests"].sum())
        out.append(VariantTraffic(variant=variant, role=role, requests=n, rps=round(n / span, 3),
                                  error_rate=float(g["errors"].sum() / n) if n else 0.0,
                                  p50_ms=_pct(h, 0.50), p99_ms=_pct(h, 0.99)))
    series: dict = {}
    last = frame["minute"].max()
    recent = frame[frame["minute"] >= last - 24 * 3600]  # the charts show the last day of logged traffic
    for (variant, role), g in recent.groupby(["variant", "role"]):
        g = g.groupby("minute")["requests"].sum()
        series[f"{variant} ({role})"] = {"t": [pd.Timestamp(int(m), unit="s").isoformat() for m in g.index],
                                         "requests": [int(x) for x in g.to_numpy()]}
    return out, float(span), series


def shadows(store: Storage, files: list[str], summaries: LogSummaries) -> list[dict]:
    """Shadow agreement over the newest files holding about ``SHADOW_ROWS`` rows."""
    import pyarrow.parquet as pq

    chosen, n = [], 0
    for rel in reversed(sorted(files)):  # date=YYYY-MM-DD/part-HHMMSS-...: newest last
        chosen.append(rel)
        n += summaries.rows_of(store, rel)
        if n >= SHADOW_ROWS:
            break
    if not chosen:
        return []
    last = summaries.shadow_cache.get(store.url())
    if last is not None and (last[0] == chosen or time.time() - last[2] < SHADOW_TTL_S):
        return last[1]  # the same files as the last page, or computed moments ago: the same agreement
    frames = []
    for rel in chosen:
        with store.fs.open_input_file(store.path(*rel.split("/"))) as f:
            frames.append(pq.read_table(f, columns=["request_id", "row", "variant", "role", "status", "latency_ms",
                                                   "model_version", "prediction", "probability"]).to_pandas())
    log = pd.concat(frames, ignore_index=True)
    out = []
    if (log["role"] == "shadow").any():
        out = [{"shadow": k, **v} for k, v in compare(log)["shadows"].items()]
    summaries.shadow_cache[store.url()] = (chosen, out, time.time())
    return out


def app_info(app: str, serving_dir: str | None, log_store: Storage | None, summaries: LogSummaries,
             now: float | None = None) -> AppInfo:
    """An app's page data: weights, canary and history from its serving state; traffic from its log."""
    now = time.time() if now is None else now
    info = AppInfo(app=app)
    if serving_dir is not None:
        state = read_state(serving_dir) or {}
        s = state.get("state") or {}
        info.models, info.weights = state.get("models") or {}, s.get("weights") or {}
        info.canary, info.canary_history = s.get("canary"), s.get("history") or []
        info.saved_at = state.get("saved_at")
        info.events = list(reversed(read_events(serving_dir)))[:200]
    if log_store is not None and log_store.isdir():
        frame, hists, files = summaries.merged(log_store)
        info.traffic, info.window_s, info.series = traffic(frame, hists, now)
        info.shadows = shadows(log_store, files, summaries)
    primary = [t for t in info.traffic if t.role == "primary"]
    if not primary:
        info.health = "no traffic" if log_store is not None else "unknown"
    else:
        canary = info.canary or {}
        bad = canary.get("status") == "rolled_back" or any(t.error_rate > 0.02 for t in primary)
        info.health = "degraded" if bad else "ok"
    return info
