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
KEEP_DAYS = 2  # date partitions of a log the console reads (the charts show its last day)
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
    """Summaries of request logs: per log, one row per (minute, variant, role) with ``requests``, ``errors``,
    ``rows`` and a latency histogram (a row of ``hists``). Each file is read once, folded in, and forgotten
    (its row count is kept for the shadow comparison); only the newest two days of a log are kept, so memory
    stays bounded however long the console runs."""

    def __init__(self):
        self._logs: dict[str, dict] = {}  # log -> {"files": set, "frame": DataFrame, "hists": array}
        self._rows: dict[str, int] = {}  # file URL -> its rows
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
        bins = np.clip(
            np.searchsorted(EDGES, t["latency_ms"].to_numpy(zero_copy_only=False), side="right") - 1, 0, len(EDGES) - 2
        )
        hists = np.bincount(gid[first] * (len(EDGES) - 1) + bins[first], minlength=n * (len(EDGES) - 1)).reshape(
            n, len(EDGES) - 1
        )
        frame = pd.DataFrame(
            {
                "minute": keys // (nv * nr),
                "variant": [vnames[k] for k in (keys // nr) % nv],
                "role": [rnames[k] for k in keys % nr],
                "requests": np.bincount(gid, weights=first, minlength=n).astype(np.int64),
                "errors": np.bincount(gid, weights=error, minlength=n).astype(np.int64),
                "rows": np.bincount(gid, minlength=n),
            }
        )
        return frame, hists.astype(np.int32), t.num_rows

    def files(self, store: Storage) -> list[str]:
        """The log's files in its newest two date partitions (``date=YYYY-MM-DD/``), oldest first."""
        days = [d for d in store.listdir() if d.startswith("date=")][-KEEP_DAYS:]
        return [
            f"{d}/{f}"
            for d in days
            for f in store.files(d)
            if f.endswith(".parquet") and not any(p.startswith((".", "_")) for p in f.split("/"))
        ]

    def merged(self, store: Storage) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
        """(frame, hists, files) of the log, folding in the files not seen before."""
        url, files = store.url(), self.files(store)
        with self._lock:
            log = self._logs.setdefault(
                url, {"files": set(), "frame": _EMPTY.copy(), "hists": np.zeros((0, len(EDGES) - 1), dtype=np.int32)}
            )
            new = [rel for rel in files if rel not in log["files"]]
            if new:
                frames, hists = [log["frame"]], [log["hists"]]
                for rel in new:
                    frame, h, rows = self._summarize(store, rel)
                    frames.append(frame)
                    hists.append(h)
                    self._rows[store.url(rel)] = rows
                log["frame"], log["hists"] = _fold(pd.concat(frames, ignore_index=True), np.concatenate(hists))
                current = set(files)
                log["files"] = current
                self._rows = {
                    k: n for k, n in self._rows.items() if not k.startswith(url + "/") or k[len(url) + 1 :] in current
                }
            return log["frame"], log["hists"], files

    def rows_of(self, store: Storage, rel: str) -> int:
        return self._rows.get(store.url(rel), 0)


_EMPTY = pd.DataFrame(
    {
        "minute": pd.Series(dtype=np.int64),
        "variant": pd.Series(dtype=object),
        "role": pd.Series(dtype=object),
        "requests": pd.Series(dtype=np.int64),
        "errors": pd.Series(dtype=np.int64),
        "rows": pd.Series(dtype=np.int64),
    }
)


def _fold(frame: pd.DataFrame, hists: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (minute, variant, role) (files of one flush overlap in minutes), the newest two days."""
    if not len(frame):
        return frame, hists
    keep = frame["minute"].to_numpy() >= frame["minute"].max() - KEEP_DAYS * 86400
    frame, hists = frame[keep].reset_index(drop=True), hists[keep]
    gid = frame.groupby(["minute", "variant", "role"], sort=True).ngroup().to_numpy()
    n = int(gid.max()) + 1
    out = np.zeros((n, hists.shape[1]), dtype=np.int32)
    np.add.at(out, gid, hists)
    sums = frame.groupby(gid)[["requests", "errors", "rows"]].sum()
    firsts = frame.groupby(gid)[["minute", "variant", "role"]].first()
    return pd.concat([firsts, sums], axis=1).reset_index(drop=True), out


def traffic(frame: pd.DataFrame, hists: np.ndarray, now: float) -> tuple[list[VariantTraffic], float, dict]:
    """Per (variant, role): requests, rate, error rate and p50/p99 over the last ``LIVE_S`` seconds when
    the log has traffic then, else over the whole log; plus per-minute series for the charts."""
    if not len(frame):
        return [], 0.0, {}
    minutes = frame["minute"].to_numpy()
    live = minutes > now - LIVE_S - 60  # minute buckets that overlap the last LIVE_S seconds
    use = live if live.any() else np.ones(len(frame), dtype=bool)
    # the seconds those buckets cover, up to now (or to the end of the last minute logged)
    span = max(60.0, (now if live.any() else float(minutes.max()) + 60) - float(minutes[use].min()))
    out = []
    sub = frame[use]
    for (variant, role), g in sub.groupby(["variant", "role"]):
        h = hists[g.index.to_numpy()].sum(axis=0)  # frame's index is its row position (concat ignore_index)
        n = int(g["requests"].sum())
        out.append(
            VariantTraffic(
                variant=variant,
                role=role,
                requests=n,
                rps=round(n / span, 3),
                error_rate=float(g["errors"].sum() / n) if n else 0.0,
                p50_ms=_pct(h, 0.50),
                p99_ms=_pct(h, 0.99),
            )
        )
    series: dict = {}
    last = frame["minute"].max()
    recent = frame[frame["minute"] >= last - 24 * 3600]  # the charts show the last day of logged traffic
    for (variant, role), g in recent.groupby(["variant", "role"]):
        g = g.groupby("minute")["requests"].sum()
        series[f"{variant} ({role})"] = {
            "t": [pd.Timestamp(int(m), unit="s").isoformat() for m in g.index],
            "requests": [int(x) for x in g.to_numpy()],
        }
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
            frames.append(
                pq.read_table(
                    f,
                    columns=[
                        "request_id",
                        "row",
                        "variant",
                        "role",
                        "status",
                        "latency_ms",
                        "model_version",
                        "prediction",
                        "probability",
                    ],
                ).to_pandas()
            )
    log = pd.concat(frames, ignore_index=True)
    out = []
    if (log["role"] == "shadow").any():
        out = [{"shadow": k, **v} for k, v in compare(log)["shadows"].items()]
    summaries.shadow_cache[store.url()] = (chosen, out, time.time())
    return out


def app_info(
    app: str, serving_dir: str | None, log_store: Storage | None, summaries: LogSummaries, now: float | None = None
) -> AppInfo:
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
