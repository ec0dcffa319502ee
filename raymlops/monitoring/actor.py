"""The monitor actor of one served variant: drift and data-quality tests over windows of its traffic, a
history of results, checkpoints that survive restarts, Prometheus gauges and events for the app monitor."""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
import time
from collections import deque

import pandas as pd

from raymlops.artifacts.run import local_run
from raymlops.contracts.calls import Call
from raymlops.contracts.events import Event, EventKind
from raymlops.contracts.monitoring import HistoryRotation, MonitorSpec
from raymlops.contracts.status import DriftStatus, MonitorStatus
from raymlops.errors import RaymlopsError
from raymlops.storage.files import append_line, file_exists, join, move_aside, read_file, read_lines, write_file

log = logging.getLogger("raymlops.monitoring")

CHECKPOINT = "checkpoint.pkl"
HISTORY = "history.jsonl"


def rotation(spec: HistoryRotation | dict) -> tuple[int | None, int]:
    """(rotate_bytes, keep) of a monitor's JSON-lines history, from its spec (or the spec's two keys)."""
    if isinstance(spec, dict):
        spec = HistoryRotation.model_validate({k: v for k, v in spec.items() if k in HistoryRotation.model_fields})
    return spec.rotation()


def read_history(state_dir: str | os.PathLike, last: int | None = None, keep: int = 5) -> list[dict]:
    """Entries recorded under ``state_dir`` (oldest first, across rotated files); a torn line is skipped, and
    a result recorded twice (a crash between its history line and the checkpoint, then the window tested
    again) counts once."""
    out: dict = {}
    for i, line in enumerate(read_lines(join(state_dir, HISTORY), last and last + 8, keep)):
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        key = (e.get("kind"), e.get("model_version"), e.get("window")) if e.get("window") else i
        out.pop(key, None)
        out[key] = e
    entries = list(out.values())
    return entries[-last:] if last else entries


class _Window:
    """Rows waiting for a test: tumbling windows of ``size`` rows, in arrival order."""

    def __init__(self, size: int, columns: list[str]):
        self.size, self.columns = size, columns
        self.parts: list[pd.DataFrame] = []
        self.rows = 0

    def add(self, df: pd.DataFrame) -> None:
        present = [c for c in self.columns if c in df.columns]
        self.parts.append(df[present])
        self.rows += len(df)

    def full(self) -> list[pd.DataFrame]:
        out = []
        while self.rows >= self.size:
            buf = pd.concat(self.parts, ignore_index=True)
            out.append(buf.iloc[: self.size])
            rest = buf.iloc[self.size :]
            self.parts, self.rows = ([rest] if len(rest) else []), len(rest)
        return out


class VariantMonitor:
    """Receives batches of served inputs (with the model output as ``__prediction__``) through ``observe``,
    which callers never wait on, and tests every full window.

    ``spec``: a `MonitorSpec` (or its JSON shape).
    State (pending rows, counters, online detectors' running state, latest results) is checkpointed after
    every tested window and every ``checkpoint_s``; results are appended to ``history.jsonl`` as they are
    made. A restarted actor resumes from its checkpoint: at most the rows of one unfinished window are lost.
    """

    def __init__(self, spec: MonitorSpec):
        self.spec = spec = MonitorSpec.model_validate(spec)
        self.state_dir = spec.state_dir  # a path or URI in storage: this actor is its one writer
        self._lock = threading.RLock()
        self._load(spec.run_dir, spec.model_version)
        self.history: deque = deque(read_history(self.state_dir, spec.history, spec.history_keep), maxlen=spec.history)
        self.restored = self._restore()
        self._gauges = _Gauges(spec.app, spec.variant)
        self._dirty = False
        threading.Thread(target=self._checkpoint_loop, daemon=True, name="monitor-checkpoint").start()

    # ------------------------------------------------------------------ model

    def _load(self, run_dir: str | Call, model_version: str) -> None:
        from raymlops.data.quality import DataProfile
        from raymlops.monitoring.drift import DriftTester, has_detector

        d, q = self.spec.drift, self.spec.quality
        local = local_run(run_dir)  # a location: this node's copy of a run on an object store or registry
        drift_dir = local / "drift"
        self.tester = DriftTester(drift_dir) if d and has_detector(drift_dir) else None
        if d and self.tester is None:
            log.warning(
                "run %s has no drift detectors this version can load: drift is not monitored (retrain it to fit them)",
                run_dir,
            )
        quality_file = local / "quality.json"
        self.profile = DataProfile.load(quality_file) if q and quality_file.is_file() else None
        self.run_dir, self.model_version = run_dir, model_version
        self.drift_window = _Window(d.window, self.tester.columns) if d and self.tester else None
        self.quality_window = _Window(q.window, [c.name for c in self.profile.columns]) if q and self.profile else None
        self.rows_seen = self.windows_tested = self.quality_windows = 0
        self.alert_after = (d.alert_after.windows, d.alert_after.of) if d else (1, 1)
        self.verdicts: deque = deque(maxlen=self.alert_after[1])  # the latest windows' verdicts
        self.latest_drift: dict | None = None
        self.latest_quality: dict | None = None

    def swap(self, run_dir: str, model_version: str) -> bool:
        """Switches to another model's reference (its replicas swapped); windows start afresh."""
        if model_version == self.model_version:
            return False
        with self._lock:
            self._load(run_dir, model_version)
            self._checkpoint()
        return True

    # ------------------------------------------------------------------ traffic

    def observe(self, rows: pd.DataFrame) -> int:
        """Adds served rows; tests each window that fills. Returns the drift windows tested so far."""
        with self._lock:
            self.rows_seen += len(rows)
            self._dirty = True
            if self.drift_window is not None:
                self.drift_window.add(rows)
                for window in self.drift_window.full():
                    self._test_drift(window)
            if self.quality_window is not None:
                self.quality_window.add(rows)
                for window in self.quality_window.full():
                    self._check_quality(window)
            return self.windows_tested

    def _test_drift(self, window: pd.DataFrame) -> None:
        result = self.tester.test(window)
        self.windows_tested += 1
        result.update(window=self.windows_tested, window_rows=len(window), tested_at=time.time())
        self.latest_drift = result
        drifted = sorted(n for n, f in result["features"].items() if f["is_drift"])
        self._record(
            {
                "kind": "drift",
                "ts": result["tested_at"],
                "window": self.windows_tested,
                "rows": len(window),
                "is_drift": result["is_drift"],
                "drifted": drifted,
                "features": result["features"],
                "detections": result.get("detections"),
            }
        )
        self._gauges.drift(result)
        self.verdicts.append(bool(result["is_drift"]))
        need, of = self.alert_after
        if result["is_drift"] and sum(self.verdicts) >= need:  # persistence before action
            seen = (
                f"{sum(self.verdicts)} of the last {len(self.verdicts)} windows"
                if need > 1
                else f"window {self.windows_tested}"
            )
            self._event(
                "drift",
                f"drift in {seen} (window {self.windows_tested}: {len(window)} rows) on "
                f"{', '.join(drifted) or 'the inputs'}",
                subject=None,
                details={
                    "features": {n: result["features"][n] for n in drifted},
                    "detector": result["detector"],
                    "alert_after": [need, of],
                    "drifted_windows": sum(self.verdicts),
                },
            )

    def _check_quality(self, window: pd.DataFrame) -> None:
        from raymlops.data.quality import check

        report = check(window, self.profile, self.spec.quality.model_dump() if self.spec.quality else {})
        self.quality_windows += 1
        doc = {**report.to_dict(), "window": self.quality_windows, "tested_at": time.time()}
        self.latest_quality = doc
        self._record(
            {
                "kind": "data_quality",
                "ts": doc["tested_at"],
                "window": self.quality_windows,
                "rows": len(window),
                "ok": report.ok,
                "failed": report.failed,
                "issues": [i for i in report.issues if i["severity"] == "error"],
            }
        )
        self._gauges.quality(report)
        if not report.ok:
            cols = sorted({i["column"] for i in report.issues if i["severity"] == "error" and i["column"]})
            self._event(
                "data_quality",
                f"data quality failed ({', '.join(report.failed)}) on {', '.join(cols)}",
                subject=None,
                details={"issues": doc["issues"]},
            )

    # ------------------------------------------------------------------ history, events, checkpoints

    def _record(self, entry: dict) -> None:
        entry = {"model_version": self.model_version, **entry}
        self.history.append(entry)
        append_line(join(self.state_dir, HISTORY), entry, *self.spec.rotation())
        self._checkpoint()

    def _event(self, kind: str, message: str, subject: str | None, details: dict) -> None:
        """Hands an event to the app monitor (alerts deduplicate it per variant within their cooldown)."""
        name = self.spec.app_monitor
        if not name:
            return
        import ray

        event = Event(
            type=EventKind(kind),
            app=self.spec.app,
            variant=self.spec.variant,
            subject=subject,
            message=message,
            details=details,
        )
        try:
            ray.get_actor(name, namespace=self.spec.namespace).event.remote(event)  # never waited on
        except Exception as e:  # the app monitor is restarting: the event is in the history anyway
            log.warning("app monitor %s unreachable: %s", name, e)

    def _state(self) -> dict:
        return {
            "started": self.spec.started,
            "model_version": self.model_version,
            "run_dir": self.run_dir,
            "rows_seen": self.rows_seen,
            "windows_tested": self.windows_tested,
            "quality_windows": self.quality_windows,
            "latest_drift": self.latest_drift,
            "latest_quality": self.latest_quality,
            "verdicts": list(self.verdicts),
            "drift_pending": self.drift_window.parts if self.drift_window else [],
            "quality_pending": self.quality_window.parts if self.quality_window else [],
            "detector": self.tester.get_state() if self.tester else None,
            "saved_at": time.time(),
        }

    def _checkpoint(self) -> None:
        write_file(
            join(self.state_dir, CHECKPOINT),
            pickle.dumps(self._state(), protocol=pickle.HIGHEST_PROTOCOL),
            durable=True,
        )
        self._dirty = False

    def _checkpoint_loop(self) -> None:
        while True:
            time.sleep(self.spec.checkpoint_s)
            with self._lock:
                if self._dirty:
                    try:
                        self._checkpoint()
                    except OSError as e:
                        log.warning("monitor checkpoint failed: %s", e)

    def _restore(self) -> bool:
        """Resumes from the checkpoint: always after a restart of this deployment's actor (a swap made
        since then included), and after a redeploy when the model is the same."""
        path = join(self.state_dir, CHECKPOINT)
        if not file_exists(path):
            return False
        try:
            return self._apply(pickle.loads(read_file(path)))
        except Exception as e:  # unreadable, or from another version of the code: keep it aside, start afresh
            log.warning("monitor checkpoint %s unusable (%s: %s); starting afresh", path, type(e).__name__, e)
            move_aside(path, ".bad")
            self._load(self.spec.run_dir, self.spec.model_version)
            return False

    def _apply(self, state: dict) -> bool:
        restart = state.get("started") is not None and state.get("started") == self.spec.started
        if restart and state["model_version"] != self.model_version:
            try:
                self._load(state["run_dir"], state["model_version"])  # the model swapped before the restart
            except (OSError, ValueError, RaymlopsError) as e:
                log.warning(
                    "monitor: the model swapped in before the restart is gone (%s); keeping %s", e, self.model_version
                )
        if state["model_version"] != self.model_version:
            return False
        self.rows_seen, self.windows_tested = state["rows_seen"], state["windows_tested"]
        self.quality_windows = state["quality_windows"]
        self.latest_drift, self.latest_quality = state["latest_drift"], state["latest_quality"]
        self.verdicts.extend(state.get("verdicts", []))
        for window, parts in (
            (self.drift_window, state["drift_pending"]),
            (self.quality_window, state["quality_pending"]),
        ):
            if window is not None:
                window.parts, window.rows = list(parts), sum(len(p) for p in parts)
        if self.tester is not None and state["detector"] is not None:
            self.tester.set_state(state["detector"])
        return True

    # ------------------------------------------------------------------ reads

    def latest(self) -> DriftStatus:
        """The latest drift test (the shape of GET /drift)."""
        with self._lock:
            d = self.spec.drift
            base = {
                "model_version": self.model_version,
                "window": d.window if d else None,
                "p_val": d.p_val if d else None,
                "detector": self.tester.kind if self.tester else None,
                "rows_seen": self.rows_seen,
                "rows_pending": self.drift_window.rows if self.drift_window else 0,
                "windows_tested": self.windows_tested,
            }
            if self.latest_drift is None:
                return {**base, "is_drift": None, "features": {}, "tested_at": None}
            return {**base, **{k: v for k, v in self.latest_drift.items() if k != "window"}}

    def status(self, history: int = 50) -> MonitorStatus:
        """Everything this monitor knows: latest drift and quality results and the newest history."""
        with self._lock:
            return {
                "app": self.spec.app,
                "variant": self.spec.variant,
                "model_version": self.model_version,
                "rows_seen": self.rows_seen,
                "restored": self.restored,
                "drift": self.latest(),
                "quality": self.latest_quality,
                "quality_windows": self.quality_windows,
                "history": list(self.history)[-history:] if history > 0 else [],
            }

    def pid(self) -> int:
        return os.getpid()

    def started_with(self) -> MonitorSpec:
        """The spec this monitor was started with."""
        return self.spec


class _Gauges:
    """Per-feature drift scores and data-quality failures as Prometheus gauges (Ray's metrics export)."""

    def __init__(self, app: str, variant: str):
        self.tags = {"app": app, "variant": variant}
        try:
            from ray.util.metrics import Gauge

            keys = ("app", "variant")
            self.score = Gauge(
                "raymlops_drift_score", "Drift test statistic per feature (latest window)", tag_keys=keys + ("feature",)
            )
            self.p_value = Gauge(
                "raymlops_drift_p_value",
                "Drift test p-value per feature (batch detectors)",
                tag_keys=keys + ("feature",),
            )
            self.effect = Gauge(
                "raymlops_drift_effect",
                "Drift effect size per feature (latest window): wasserstein_norm or jensen_shannon",
                tag_keys=keys + ("feature",),
            )
            self.is_drift = Gauge("raymlops_drift_detected", "1 when the latest window drifted", tag_keys=keys)
            self.failed = Gauge(
                "raymlops_data_quality_failed_checks", "Failed data-quality checks (latest window)", tag_keys=keys
            )
        except Exception as e:  # metrics are an extra: never fail monitoring for them
            log.warning("drift gauges unavailable: %s", e)
            self.score = None

    def drift(self, result: dict) -> None:
        if self.score is None:
            return
        self.is_drift.set(float(result["is_drift"]), tags=self.tags)
        for name, f in result["features"].items():
            tags = {**self.tags, "feature": name}
            if f.get("statistic") is not None:
                self.score.set(float(f["statistic"]), tags=tags)
            if f.get("p_value") is not None:
                self.p_value.set(float(f["p_value"]), tags=tags)
            if f.get("effect") is not None:
                self.effect.set(float(f["effect"]), tags=tags)

    def quality(self, report) -> None:
        if self.score is not None:
            self.failed.set(float(len(report.failed)), tags=self.tags)


def actor_name(app: str, variant: str) -> str:
    return f"raymlops-monitor-{app}-{variant}"


def start_monitor(spec: MonitorSpec | dict, wait: bool = True):
    """Starts (or replaces) the named, detached monitor actor of a variant; returns its handle (once its
    detectors have loaded, unless ``wait`` is False: then ``ray.get(handle.latest.remote())`` waits).
    The actor restarts when its process dies and resumes from its checkpoint."""
    import ray

    spec = MonitorSpec.model_validate(spec)  # a bad spec fails here, not in the actor
    name = actor_name(spec.app, spec.variant)
    _kill(name, spec.namespace)
    spec = spec.model_copy(update={"started": time.time()})  # tells a restart of this actor from a new deployment
    cls = ray.remote(num_cpus=0, max_concurrency=4, max_restarts=-1)(VariantMonitor)
    handle = cls.options(name=name, namespace=spec.namespace, lifetime="detached").remote(spec)
    if wait:
        ray.get(handle.latest.remote())  # fail here, not in serving, if a detector cannot load
    return handle


def _same_spec(a: MonitorSpec | dict, b: MonitorSpec | dict) -> bool:
    def norm(spec: MonitorSpec | dict) -> str:
        return MonitorSpec.model_validate(spec).model_copy(update={"started": None}).model_dump_json()

    return norm(a) == norm(b)


def ensure_monitor(spec: MonitorSpec | dict) -> None:
    """Starts the variant's monitor unless one is running with the same spec (`serve deploy` of an exported
    file: an app rebuilt by Serve keeps its monitors and their windows; new settings or a new model replace
    it). A monitor that is busy (still loading its detectors) is kept."""
    import ray
    from ray.exceptions import GetTimeoutError

    spec = MonitorSpec.model_validate(spec)
    name = actor_name(spec.app, spec.variant)
    try:
        handle = ray.get_actor(name, namespace=spec.namespace)
    except ValueError:  # not running
        start_monitor(spec, wait=False)
        return
    try:
        if _same_spec(ray.get(handle.started_with.remote(), timeout=60), spec):
            return
    except GetTimeoutError:
        log.warning("monitor %s is busy; keeping it", name)
        return
    except Exception as e:  # dead for good, or from an older version of the code: replace it
        log.warning("monitor %s unusable (%s); starting a new one", name, e)
    start_monitor(spec, wait=False)


def _kill(name: str, namespace: str, timeout_s: float = 30) -> None:
    """Kills a named actor (for good) and waits until its name is free."""
    import ray

    deadline = time.time() + timeout_s
    while True:  # ray.kill is asynchronous
        try:
            old = ray.get_actor(name, namespace=namespace)
        except ValueError:
            return
        if time.time() > deadline:
            raise RuntimeError(f"the previous actor {name!r} did not stop within {timeout_s:g} s")
        ray.kill(old, no_restart=True)
        time.sleep(0.2)
