"""Alerts: a non-blocking dispatcher that filters, deduplicates and delivers events to sinks on worker threads."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from pydantic import TypeAdapter

from raymlops.config.monitoring import AlertConfig, WebhookAlert
from raymlops.monitoring.alerts.base import AlertSink, make_event, summary
from raymlops.monitoring.alerts.log import LogSink
from raymlops.monitoring.alerts.webhook import WebhookSink

__all__ = ["AlertSink", "Alerts", "LogSink", "WebhookSink", "make_event", "summary"]

logger = logging.getLogger("raymlops.alerts")

_STOP = object()
_alert_config = TypeAdapter(AlertConfig)


class _Lane:
    """One sink's bounded queue, worker thread, cooldown memory and counters."""

    def __init__(self, sink: AlertSink, name: str, queue_size: int, backoff_s: float, backoff_max_s: float):
        self.sink, self.name = sink, name
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.pending = 0
        self.last: dict[tuple, float] = {}
        self.stats = {"sent": 0, "failed": 0, "suppressed": 0, "dropped": 0, "retries": 0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"raymlops-alerts-{name}", daemon=True)
        self.thread.start()

    def offer(self, event: dict[str, Any], key: tuple, now: float) -> bool:
        """Apply the `on` filter and cooldown, then enqueue without blocking; True if accepted."""
        if event.get("type") not in self.sink.on:
            return False
        with self.lock:
            last = self.last.get(key)
            if last is not None and now - last < self.sink.cooldown_s:
                self.stats["suppressed"] += 1
                return False
            try:
                self.queue.put_nowait(event)
            except queue.Full:
                self.stats["dropped"] += 1
                return False
            self.pending += 1
            if len(self.last) >= 4096:
                self.last = {k: t for k, t in self.last.items() if now - t < self.sink.cooldown_s}
            self.last[key] = now
            return True

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            if event is _STOP or self.stop.is_set():
                return
            self._deliver(event)
            with self.lock:
                self.pending -= 1
                self.idle.notify_all()

    def _deliver(self, event: dict[str, Any]) -> None:
        for attempt in range(self.sink.retries + 1):
            try:
                self.sink.send(event)
            except Exception as e:  # any sink failure is retried, then counted
                if attempt == self.sink.retries:
                    with self.lock:
                        self.stats["failed"] += 1
                    logger.warning(
                        "alert sink %s failed after %d attempt(s): %s: %s", self.name, attempt + 1, summary(event), e
                    )
                    return
                with self.lock:
                    self.stats["retries"] += 1
                if self.stop.wait(min(self.backoff_s * 2**attempt, self.backoff_max_s)):
                    return
            else:
                with self.lock:
                    self.stats["sent"] += 1
                return

    def drained(self, deadline: float) -> bool:
        with self.lock:
            while self.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.idle.wait(left)
            return True


class Alerts:
    """Routes events to sinks; `emit` never blocks on delivery."""

    queue_size = 1000
    backoff_s = 0.5
    backoff_max_s = 30.0

    def __init__(
        self,
        sinks: list[AlertSink],
        queue_size: int | None = None,
        backoff_s: float | None = None,
        backoff_max_s: float | None = None,
    ):
        names: set[str] = set()
        self._lanes: list[_Lane] = []
        for sink in sinks:
            name, n = sink.name, 1
            while name in names:
                n += 1
                name = f"{sink.name}#{n}"
            names.add(name)
            self._lanes.append(
                _Lane(
                    sink,
                    name,
                    queue_size or self.queue_size,
                    self.backoff_s if backoff_s is None else backoff_s,
                    self.backoff_max_s if backoff_max_s is None else backoff_max_s,
                )
            )
        self._closed = False

    @classmethod
    def from_config(cls, configs: list, default_log_path: str, **kwargs: Any) -> Alerts:
        """Build sinks from WebhookAlert/LogAlert models or dicts with a 'type' key."""
        sinks: list[AlertSink] = []
        for c in configs:
            cfg = _alert_config.validate_python(c) if isinstance(c, dict) else c
            sinks.append(WebhookSink(cfg) if isinstance(cfg, WebhookAlert) else LogSink(cfg, default_log_path))
        return cls(sinks, **kwargs)

    @property
    def sinks(self) -> dict[str, AlertSink]:
        return {lane.name: lane.sink for lane in self._lanes}

    def emit(self, event: dict[str, Any]) -> bool:
        """Queue the event for every sink whose filter and cooldown let it through; True if any accepted it."""
        if self._closed:
            return False
        event = dict(event)
        subject = event.get("subject")
        key = (event.get("type"), event.get("app"), event.get("variant"), subject if subject is None else str(subject))
        now = time.time()  # wall clock: cooldowns are saved and restored across restarts
        accepted = [lane.offer(event, key, now) for lane in self._lanes]
        return any(accepted)

    def cooldowns(self) -> dict[str, list]:
        """Per sink name, [key, sent at] of the events still inside their cooldown (JSON-ready), for
        ``restore_cooldowns`` after a restart."""
        now = time.time()
        out = {}
        for lane in self._lanes:
            with lane.lock:
                out[lane.name] = [[list(k), t] for k, t in lane.last.items() if now - t < lane.sink.cooldown_s]
        return out

    def restore_cooldowns(self, saved: dict[str, list]) -> None:
        """Suppress what ``cooldowns`` had in cooldown when it was saved (sinks matched by name)."""
        for lane in self._lanes:
            with lane.lock:
                lane.last.update({tuple(k): float(t) for k, t in saved.get(lane.name, [])})

    def stats(self) -> dict[str, dict[str, int]]:
        """Per sink name: sent, failed, suppressed, dropped, retries."""
        out = {}
        for lane in self._lanes:
            with lane.lock:
                out[lane.name] = dict(lane.stats)
        return out

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is delivered or failed; False if `timeout` ran out first."""
        deadline = time.monotonic() + timeout
        return all(lane.drained(deadline) for lane in self._lanes)

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what `timeout` allows, then stop the workers; later emits return False."""
        self._closed = True
        self.flush(timeout)
        for lane in self._lanes:
            lane.stop.set()
            try:
                lane.queue.put_nowait(_STOP)
            except queue.Full:
                pass  # the worker sees `stop` after its current event
        for lane in self._lanes:
            lane.thread.join(timeout=0.5)
