"""The drift monitor actor: receives served inputs in batches, tests every full window."""

from __future__ import annotations

import threading
import time
from typing import Any

import pandas as pd


class DriftMonitor:
    """Holds a loaded detector; ``observe`` is fire-and-forget for callers, ``latest`` reads the result.

    Windows are tumbling: each ``window`` rows are tested once, in arrival order.
    """

    def __init__(self, drift_dir: str, window: int, p_val: float, model_version: str):
        from raymlops.monitoring.drift import DriftTester

        self.tester = DriftTester(drift_dir)
        self.window, self.p_val, self.model_version = window, p_val, model_version
        self._lock = threading.Lock()
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self.rows_seen = 0
        self.windows_tested = 0
        self._latest: dict[str, Any] | None = None

    def observe(self, rows: pd.DataFrame) -> int:
        """Adds rows; tests each window that fills. Returns the windows tested so far."""
        with self._lock:
            self._pending.append(rows[self.tester.encoder.names])
            self._pending_rows += len(rows)
            self.rows_seen += len(rows)
            while self._pending_rows >= self.window:
                buf = pd.concat(self._pending, ignore_index=True)
                window, rest = buf.iloc[: self.window], buf.iloc[self.window:]
                self._pending, self._pending_rows = ([rest] if len(rest) else []), len(rest)
                result = self.tester.test(window)
                self.windows_tested += 1
                self._latest = {**result, "window_rows": len(window), "tested_at": time.time()}
            return self.windows_tested

    def swap(self, drift_dir: str, model_version: str) -> bool:
        """Switches to another model's reference (its replicas were swapped); windows start afresh."""
        from raymlops.monitoring.drift import DriftTester

        if model_version == self.model_version:
            return False
        tester = DriftTester(drift_dir)
        with self._lock:
            self.tester, self.model_version = tester, model_version
            self._pending, self._pending_rows, self.rows_seen, self.windows_tested = [], 0, 0, 0
            self._latest = None
        return True

    def latest(self) -> dict[str, Any]:
        with self._lock:
            base = {"model_version": self.model_version, "window": self.window, "p_val": self.p_val,
                    "rows_seen": self.rows_seen, "rows_pending": self._pending_rows,
                    "windows_tested": self.windows_tested}
            if self._latest is None:
                return {**base, "is_drift": None, "features": {}, "tested_at": None}
            return {**base, **self._latest}


def actor_name(app_name: str) -> str:
    return f"raymlops-drift-{app_name}"


def start_monitor(drift_dir: str, window: int, p_val: float, model_version: str, app_name: str, namespace: str,
                  wait: bool = True):
    """Starts (or replaces) the named, detached drift actor of a Serve app; returns its handle (once its
    detector has loaded, unless ``wait`` is False: then ``ray.get(handle.latest.remote())`` waits)."""
    import ray

    name = actor_name(app_name)
    deadline = time.time() + 30
    while True:  # ray.kill is asynchronous: wait until the old actor's name is free
        try:
            old = ray.get_actor(name, namespace=namespace)
        except ValueError:
            break
        if time.time() > deadline:
            raise RuntimeError(f"the previous drift actor {name!r} did not stop within 30 s")
        ray.kill(old)
        time.sleep(0.2)
    cls = ray.remote(num_cpus=0, max_concurrency=4)(DriftMonitor)
    handle = cls.options(name=name, namespace=namespace, lifetime="detached").remote(
        drift_dir, window, p_val, model_version)
    if wait:
        ray.get(handle.latest.remote())  # fail here, not in serving, if the detector cannot load
    return handle
