"""Monitoring for the console: per variant the drift statistic and p-value per feature over time (long series
downsampled, alarms kept), data-quality windows, late-label performance windows against the floor, the
alerts timeline and the retrain loop's records, all read from the app's monitoring folder in storage.

Histories are parsed once and then tailed: a page reads only the lines appended since the last one, so
50,000 recorded windows cost one parse per console process, not one per page."""

from __future__ import annotations

import json
import threading
import time
from array import array
from pathlib import Path

import numpy as np

from raymlops.console.schemas import MonitoringPage
from raymlops.monitoring.actor import HISTORY  # one per variant; the app's events file has the same name
from raymlops.monitoring.app_monitor import STATE
from raymlops.storage.files import is_uri, join, read_file, read_lines, tail_lines

ALERTS = "alerts.jsonl"  # the log alert sink's default file
MAX_ROTATED = 50  # rotated files looked for (``monitoring.history_keep`` is the writer's; 5 by default)
URI_TTL_S = 5.0  # an object-store history is re-listed at most this often
ALARMS = 5000  # windows whose verdict was drift, kept whole (never downsampled) per variant


def _compact(e: dict) -> dict | None:
    """The parts of a history entry the pages use (a drift window's per-feature numbers; a quality window's
    failures), so 50,000 windows stay small in memory."""
    kind = e.get("kind")
    if kind == "drift":
        return {
            "kind": kind,
            "ts": e.get("ts"),
            "window": e.get("window"),
            "model_version": e.get("model_version"),
            "rows": e.get("rows"),
            "is_drift": bool(e.get("is_drift")),
            "drifted": e.get("drifted") or [],
            "features": {
                f: (v.get("statistic"), v.get("p_value"), v.get("threshold"), bool(v.get("is_drift")))
                for f, v in (e.get("features") or {}).items()
            },
        }
    if kind == "data_quality":
        return {
            "kind": kind,
            "ts": e.get("ts"),
            "window": e.get("window"),
            "model_version": e.get("model_version"),
            "rows": e.get("rows"),
            "ok": e.get("ok", True),
            "failed": e.get("failed") or [],
            "issues": e.get("issues") or [],
        }
    return e


class _Tail:
    """One JSON-lines log (with its rotated files), parsed once and tailed after that."""

    def __init__(self, loc: str, compact=_compact):
        self.loc, self.compact = loc, compact
        self.entries: dict = {}
        self.version = 0  # bumped whenever lines were added: a page built from the same versions is reused
        # Drift windows as columns, appended as lines arrive (a page reads them without walking every entry):
        # feature -> {ts, window, statistic, p_value, threshold (float arrays, nan for null), drift (0/1)}.
        self.per: dict[str, dict[str, array]] = {}
        self.alarms: list[list] = []  # [window, smallest p-value, ts] of each window whose verdict was drift
        self._stale = False  # a duplicate replaced an entry: the columns are rebuilt from the entries
        self.cursor = None
        self.inode: int | None = None  # of the live file when last read (a rotation renames it)
        self._sig: tuple | None = None  # object stores: (lines, last line) of the last read
        self.loaded_at = 0.0
        self.lock = threading.Lock()

    def _add(self, lines: list[str]) -> None:
        if lines:
            self.version += 1
        for i, line in enumerate(lines):
            try:
                e = json.loads(line)
            except ValueError:  # a torn line
                continue
            c = self.compact(e)
            if c is None:
                continue
            # a result recorded twice (a crash between its line and the checkpoint) counts once
            key = (
                (e.get("kind"), e.get("model_version"), e.get("window")) if e.get("window") else (len(self.entries), i)
            )
            if self.entries.pop(key, None) is not None:
                self._stale = True
            self.entries[key] = c
            if c.get("kind") == "drift" and not self._stale:
                self._columns(c)

    def _columns(self, c: dict) -> None:
        nan = float("nan")
        for f, (stat, p, thr, is_drift) in c["features"].items():
            cols = self.per.get(f)
            if cols is None:
                cols = self.per[f] = {k: array("d") for k in ("ts", "window", "statistic", "p_value", "threshold")}
                cols["drift"] = array("b")
            for k, v in (
                ("ts", c["ts"]),
                ("window", c["window"]),
                ("statistic", stat),
                ("p_value", p),
                ("threshold", thr),
            ):
                cols[k].append(nan if v is None else float(v))
            cols["drift"].append(1 if is_drift else 0)
        if c["is_drift"]:
            ps = [p for _, p, _, _ in c["features"].values() if p is not None]
            self.alarms.append([c["window"], min(ps) if ps else None, _chart_time(c["ts"])])

    def series(self, points: int) -> tuple[dict, list]:
        """(feature -> downsampled series, alarms) of the drift windows read so far, built under the lock (the
        columns grow while other requests read them)."""
        with self.lock:
            if self._stale:
                self.per, self.alarms, self._stale = {}, [], False
                for c in self.entries.values():
                    if c.get("kind") == "drift":
                        self._columns(c)
            return {f: downsample(cols, points) for f, cols in self.per.items()}, [list(a) for a in self.alarms]

    def read(self) -> list[dict]:
        with self.lock:
            if is_uri(self.loc):
                if time.time() - self.loaded_at > URI_TTL_S:
                    lines = read_lines(self.loc, None, MAX_ROTATED)
                    sig = (len(lines), lines[-1] if lines else None)
                    if sig != self._sig:  # re-read whole (no append on an object store): start from nothing
                        self.entries, self.per, self.alarms, self._stale, self._sig = {}, {}, [], False, sig
                        self._add(lines)
                    self.loaded_at = time.time()
            else:
                self._read_local()
            return list(self.entries.values())

    def _read_local(self) -> None:
        """Tails the live file; after a rotation, first finishes the file it was tailing (found by its inode
        among ``.1 .. .N``) and reads the newer rotated files whole, so no line is skipped or read twice."""
        path = Path(self.loc)
        rotated = [path.with_name(f"{path.name}.{i}") for i in range(1, MAX_ROTATED + 1)]
        if self.cursor is None:  # the first read: the rotated files, oldest first, then the live one
            for p in reversed(rotated):
                if p.is_file():
                    self._add(p.read_text().splitlines())
            self.cursor = 0
        try:
            inode = path.stat().st_ino
        except FileNotFoundError:
            return
        if self.inode is not None and inode != self.inode:
            k = next((i for i, p in enumerate(rotated) if p.is_file() and p.stat().st_ino == self.inode), None)
            if k is not None:
                with open(rotated[k], "rb") as f:
                    f.seek(self.cursor)
                    self._add(f.read().decode().splitlines())
                for p in reversed(rotated[:k]):
                    self._add(p.read_text().splitlines())
            self.cursor = 0
        self.inode = inode
        lines, self.cursor = tail_lines(self.loc, self.cursor)
        self._add(lines)


class Histories:
    """The tails of every history and alert log the console has read (one per file, per process)."""

    def __init__(self):
        self._tails: dict[str, _Tail] = {}
        self._lock = threading.Lock()
        self.pages: dict[tuple, tuple] = {}  # (app folder, points) -> (what it was built from, the page)

    def read(self, loc: str) -> list[dict]:
        with self._lock:
            t = self._tails.setdefault(loc, _Tail(loc))
        return t.read()

    def version(self, loc: str) -> int:
        return self._tails[loc].version if loc in self._tails else -1

    def series(self, loc: str, points: int) -> tuple[dict, list]:
        self.read(loc)
        return self._tails[loc].series(points)


def downsample(cols: dict[str, array], points: int) -> dict[str, list]:
    """At most ``points`` windows of a feature's columns: each of ``points`` equal buckets keeps its most
    extreme window (a drift verdict first, then the smallest p-value), so no alarm disappears."""
    n = len(cols["window"])
    p = np.nan_to_num(np.frombuffer(cols["p_value"], dtype=np.float64), nan=1.0)
    if n <= points:
        idx = np.arange(n)
    else:
        key = np.where(np.frombuffer(cols["drift"], dtype=np.int8) == 1, 0.0, 2.0) + p
        edges = (np.arange(points + 1) * n) // points
        idx = np.array([a + int(key[a:b].argmin()) for a, b in zip(edges[:-1], edges[1:]) if b > a])
    out: dict[str, list] = {}
    for k in ("ts", "window", "statistic", "p_value", "threshold"):
        v = np.frombuffer(cols[k], dtype=np.float64)[idx]
        out[k] = [None if x != x else x for x in v.tolist()]  # nan (a null) back to None
    out["window"] = [int(w) for w in out["window"]]
    out["drift"] = [bool(x) for x in np.frombuffer(cols["drift"], dtype=np.int8)[idx].tolist()]
    out["ts"] = [_chart_time(t) for t in out["ts"]]
    return out


def page(app: str, root: str, variants: list[str], histories: Histories, points: int = 500) -> MonitoringPage:
    """The monitoring page of ``app``; built again only when a history it reads has new lines (50,000 windows
    of 10 features cost ~0.5 s to turn into series; an unchanged history costs its tail check)."""
    locs = [join(root, v, HISTORY) for v in variants] + [join(root, HISTORY)]
    for loc in locs:
        histories.read(loc)
    try:
        state_raw = read_file(join(root, STATE))
    except FileNotFoundError:
        state_raw = b""
    key = (tuple(variants), tuple(histories.version(loc) for loc in locs), hash(state_raw))
    last = histories.pages.get((root, points))
    if last is not None and last[0] == key:
        return last[1]
    got = _build(app, root, variants, histories, points, state_raw)
    histories.pages[(root, points)] = (key, got)
    return got


def _build(
    app: str, root: str, variants: list[str], histories: Histories, points: int, state_raw: bytes
) -> MonitoringPage:
    drift: dict = {}
    verdicts: dict = {}
    quality: dict = {}
    windows: dict = {}
    alarms: dict = {}
    for v in variants:
        loc = join(root, v, HISTORY)
        entries = histories.read(loc)
        d = [e for e in entries if e.get("kind") == "drift"]
        windows[v] = len(d)
        drift[v], alarmed = histories.series(loc, points)
        alarms[v] = alarmed[-ALARMS:]
        verdicts[v] = [
            {"ts": _iso(e["ts"]), "window": e["window"], "model_version": e["model_version"], "drifted": e["drifted"]}
            for e in d
            if e["is_drift"]
        ][-200:][::-1]
        quality[v] = [
            {"ts": _iso(e["ts"]), "window": e["window"], "failed": e["failed"], "issues": e["issues"]}
            for e in entries
            if e.get("kind") == "data_quality" and not e.get("ok", True)
        ][-200:][::-1]
    events = histories.read(join(root, HISTORY))
    alerts = [dict(e, ts=_iso(e.get("ts"))) for e in events][-300:][::-1]
    try:
        state = json.loads(state_raw) if state_raw else {}
    except ValueError:
        state = {}
    perf = state.get("performance") or {}
    performance: dict = {}
    for w in perf.get("windows") or []:
        performance.setdefault(w.get("variant", "default"), []).append(
            {**w, "floor": perf.get("floor"), "metric": perf.get("metric")}
        )
    variants = variants + sorted(v for v in performance if v not in variants)  # labelled, without a drift monitor
    return MonitoringPage(
        app=app,
        variants=variants,
        windows=windows,
        drift=drift,
        alarms=alarms,
        verdicts=verdicts,
        quality=quality,
        performance=performance,
        alerts=alerts,
        retrains=list(reversed(state.get("retrains") or [])),
        points=points,
    )


def _chart_time(ts) -> str | None:
    """UTC time to the millisecond, as plotly's date axis reads it (windows can be tested within a second)."""
    if ts is None:
        return None
    t = float(ts)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _iso(ts) -> str | None:
    if ts is None:
        return None
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(ts)))
    except (TypeError, ValueError):
        return str(ts)
