"""The app monitor actor: one per Serve app. It composes the event hub (history and alerts), the canary-event
reader and the retrain loop, and computes live performance from late labels and online/offline feature skew."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any

import pandas as pd

from raymlops.contracts.events import Event, EventKind, Severity
from raymlops.contracts.monitoring import AppMonitorSpec, PerformanceSpec
from raymlops.contracts.status import AppMonitorStatus
from raymlops.monitoring.actor import _kill
from raymlops.monitoring.canary_events import CanaryReader
from raymlops.monitoring.hub import EVENTS, STATE, EventHub, StateFile
from raymlops.monitoring.retrain import RetrainLoop
from raymlops.storage import Storage
from raymlops.storage.files import read_file

log = logging.getLogger("raymlops.monitoring")

__all__ = ["EVENTS", "STATE", "AppMonitor", "app_monitor_name", "start_app_monitor", "start_app_monitor_from"]

TICK_S = 1.0


def read_table(spec: dict, columns: list[str] | None = None, filter=None) -> pd.DataFrame:
    """A labels source ({format, path}) or request log (format parquet: a directory, file or URI) read with
    pandas; for Parquet only ``columns`` (those present) and the rows matching ``filter`` are read."""
    fmt, path = spec["format"], spec["path"]
    store = Storage(path)
    if not (store.exists() or store.isdir()):  # no label has arrived yet
        return pd.DataFrame()
    if fmt is None:
        from raymlops.data.reader import resolve

        fmt = resolve(path).format
    if fmt == "parquet":
        import pyarrow.dataset as pads

        dataset = pads.dataset(
            store.root,
            filesystem=store.fs,
            format="parquet",
            partitioning="hive",
            exclude_invalid_files=True,
            ignore_prefixes=[".", "_"],
        )
        if not dataset.files:  # nothing written yet (a first flush still under its hidden temporary name)
            return pd.DataFrame()
        cols = [c for c in columns if c in dataset.schema.names] if columns else None
        return dataset.to_table(columns=cols, filter=filter).to_pandas()
    from raymlops.data.reader import read_frame

    return read_frame(path, fmt)


def request_columns(performance: PerformanceSpec | dict) -> tuple[list[str], Any]:
    """(columns, filter) of the request log that the label join needs: answered rows only, and the inputs
    (the largest column) only to find entity keys."""
    import pyarrow.compute as pc

    cols = ["ts", "request_id", "row", "variant", "role", "model_version", "status", "prediction", "probability"]
    join = performance.join if isinstance(performance, PerformanceSpec) else performance.get("join")
    if join == "entity":
        cols.append("inputs")
    return cols, (pc.field("status") == 200) & pc.field("role").isin(["primary", "shadow"])


class AppMonitor:
    """``spec``: an `AppMonitorSpec` (or its JSON shape).

    Events are appended to ``history.jsonl`` before anything else, so a restart loses none; the retrain
    records, the canary-events offset and the alert cooldowns are in ``state.json``.
    """

    def __init__(self, spec: AppMonitorSpec):
        self.spec = spec = AppMonitorSpec.model_validate(spec)
        self.dir = spec.state_dir  # a path or URI in storage: this actor is its one writer
        self.state = StateFile(self.dir)
        self.hub = EventHub(spec, self.state)
        self.alerts = self.hub.alerts
        self.canary = CanaryReader(spec.app, spec.canary_events, self.state, self.event) if spec.canary_events else None
        self.retrain = (
            RetrainLoop(spec.app, spec.retrain, self.dir, self.state, self.hub.alert_only) if spec.retrain else None
        )
        self.performance: dict | None = None
        self._reported: dict[tuple, float] = {tuple(k): t for k, t in self.state.doc.get("reported", [])}
        self.skew: dict | None = None
        # label joins start at once; the skew check after one period (the log is empty at start)
        self._next = {"performance": 0.0, "skew": time.time() + (spec.skew.every_s if spec.skew else 0)}
        self._closed = threading.Event()
        threading.Thread(target=self._loop, daemon=True, name="app-monitor").start()

    def close(self, timeout: float = 0) -> None:
        """Stops the loop and the alert sinks (an in-process monitor; Ray kills the actor's process)."""
        self._closed.set()
        self.alerts.close(timeout=timeout)

    def event(self, event: Event | dict[str, Any]) -> None:
        """Records an event, alerts on it, and starts a retrain when the policy says so."""
        e = self.hub.record(event)
        if self.retrain is not None:
            self.retrain.maybe_start(e)

    # ------------------------------------------------------------------ performance

    def _performance(self) -> None:
        from raymlops.monitoring.performance import breaches, join_labels, row_note, summarize, windowed

        p = self.spec.performance
        assert p is not None
        labels = read_table(p.labels_source.model_dump())
        requests = read_table({"format": "parquet", "path": p.request_log}, *request_columns(p))
        if labels.empty or requests.empty:
            self.performance = {"labelled_rows": 0, "windows": [], "summary": {}, "at": time.time()}
            return
        section = p.model_dump()
        joined = join_labels(requests, labels, section)
        windows = windowed(joined, p.metric, p.task, p.window)
        note = row_note(joined, labels, section)
        if note and not (self.performance or {}).get("note"):
            log.warning("app monitor %s: %s", self.spec.app, note)
        self.performance = {
            "labelled_rows": int(len(joined)),
            "windows": windows[-50:],
            "summary": summarize(windows),
            "at": time.time(),
            **({"note": note} if note else {}),
        }
        with self.state.lock:  # the latest windows beside the floor, for readers of storage (the console)
            self.state.doc["performance"] = {
                "metric": p.metric,
                "floor": p.floor,
                "windows": windows[-50:],
                "at": self.performance["at"],
            }
            self.state.save()
        for w in breaches(windows, p.metric, p.floor):
            key = (w["variant"], w["start_ts"])
            if key in self._reported:
                continue
            self._reported[key] = time.time()
            with self.state.lock:  # before the event: a restart never reports this window again
                self.state.doc["reported"] = sorted(
                    ([list(k), t] for k, t in self._reported.items()), key=lambda kt: kt[1]
                )[-1000:]
                self.state.save()
            self.event(
                Event(
                    type=EventKind.PERFORMANCE,
                    app=self.spec.app,
                    variant=w["variant"],
                    subject=p.metric,
                    severity=Severity.CRITICAL,
                    message=f"{p.metric} {w['value']:.4f} below the floor {p.floor} over {w['rows']} "
                    f"labelled rows ({w['start_ts']} .. {w['end_ts']})",
                    details=w,
                )
            )

    # ------------------------------------------------------------------ skew

    def _skew(self) -> None:
        """Compares the rows served since the previous check with the offline store; a feature whose mismatch
        share is above ``max_rate`` raises one skew event naming it."""
        k = self.spec.skew
        assert k is not None
        since, until = self.state.doc.get("skew_since"), time.time()
        report = k.check(since, until, k.sample, k.tolerance)
        with self.state.lock:
            self.state.doc["skew_since"] = until
            self.state.save()
        over = {n: f for n, f in report["features"].items() if f["rate"] > k.max_rate}
        self.skew = {
            "rows": report["rows"],
            "since": report.get("since"),
            "at": until,
            "max_rate": report["max_rate"],
            "features": {n: {x: f[x] for x in ("rows", "mismatches", "rate")} for n, f in report["features"].items()},
        }
        if over:
            worst = max(over, key=lambda n: over[n]["rate"])
            self.event(
                Event(
                    type=EventKind.SKEW,
                    app=self.spec.app,
                    subject=worst,
                    message=f"online/offline skew: {len(over)} feature(s) above {k.max_rate:.1%}; {worst} differs in "
                    f"{over[worst]['mismatches']} of {over[worst]['rows']} served rows ({over[worst]['rate']:.1%})",
                    details={"features": over, "since": report.get("since")},
                )
            )

    def refresh_skew(self) -> dict | None:
        """Runs the skew check now (instead of at the next ``every_s``)."""
        if self.spec.skew:
            self._skew()
        return self.skew

    # ------------------------------------------------------------------ loop and reads

    def _loop(self) -> None:
        while not self._closed.wait(TICK_S):
            for name, fn in (("canary events", self._canary_events), ("retrain", self._advance_retrain)):
                try:
                    fn()
                except Exception:
                    log.warning("app monitor %s: %s", name, traceback.format_exc(limit=3))
            for name, fn in (("performance", self._performance), ("skew", self._skew)):
                section = getattr(self.spec, name)
                if section is not None and time.time() >= self._next[name]:
                    self._next[name] = time.time() + section.every_s
                    try:
                        fn()
                    except Exception:
                        log.warning("app monitor %s: %s", name, traceback.format_exc(limit=3))

    def _canary_events(self) -> None:
        if self.canary is not None:
            self.canary.read()

    def _advance_retrain(self) -> None:
        if self.retrain is not None:
            self.retrain.advance(self.canary.rollbacks() if self.canary else {})

    def refresh_performance(self) -> dict | None:
        """Joins the labels now (instead of at the next ``every_s``)."""
        if self.spec.performance:
            self._performance()
        return self.performance

    def status(self, events: int = 50) -> AppMonitorStatus:
        with self.state.lock:
            return {
                "app": self.spec.app,
                "events": self.hub.events(events),
                "alerts": self.alerts.stats(),
                "performance": self.performance,
                "skew": self.skew,
                "retrains": self.retrain.records() if self.retrain else [],
            }  # a snapshot, not live records

    def flush_alerts(self, timeout: float = 10.0) -> bool:
        return self.alerts.flush(timeout)


def app_monitor_name(app: str) -> str:
    return f"raymlops-appmonitor-{app}"


def start_app_monitor_from(path: str):
    """Starts the app monitor from a spec file: an exported Serve config names the file, so alert secrets
    (webhook URLs, headers) stay in storage rather than in the exported file."""
    return start_app_monitor(AppMonitorSpec.model_validate_json(read_file(path)))


def start_app_monitor(spec: AppMonitorSpec | dict):
    """Starts (or replaces) the app's named, detached monitor actor; it restarts when its process dies."""
    import ray

    spec = AppMonitorSpec.model_validate(spec)  # a bad spec fails here, not in the actor
    name = app_monitor_name(spec.app)
    _kill(name, spec.namespace)
    cls = ray.remote(num_cpus=0, max_concurrency=8, max_restarts=-1)(AppMonitor)
    handle = cls.options(name=name, namespace=spec.namespace, lifetime="detached").remote(spec)
    ray.get(handle.status.remote(0))
    return handle
