"""The app monitor's event hub: its state file, the event history and the alert sinks."""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from raymlops.contracts.events import Event
from raymlops.contracts.monitoring import AppMonitorSpec
from raymlops.monitoring.actor import read_history
from raymlops.storage.files import append_line, join, read_file, write_file

EVENTS = "history.jsonl"  # every event, as received
STATE = "state.json"
RECENT = 200  # events kept in memory for `status`


class StateFile:
    """The app monitor's ``state.json``: one JSON document (retrain records, the canary-events offset, alert
    cooldowns, reported windows), rewritten whole and atomically under one lock. The app monitor is its one
    writer; the console reads it."""

    def __init__(self, state_dir: str):
        self.path = join(state_dir, STATE)
        self.lock = threading.RLock()
        self.doc: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(read_file(self.path))
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def save(self) -> None:
        with self.lock:
            write_file(self.path, json.dumps(self.doc, default=str).encode(), durable=True)


class EventHub:
    """Records every event (``history.jsonl``, appended before anything else so a restart loses none) and
    hands it to the alert sinks, whose cooldowns survive a restart through the state file."""

    def __init__(self, spec: AppMonitorSpec, state: StateFile):
        from raymlops.monitoring.alerts import Alerts

        self.spec, self.state = spec, state
        self.dir = spec.state_dir
        self.alerts = Alerts.from_config(list(spec.alerts), spec.alert_log)
        self.recent: deque = deque(read_history(self.dir, RECENT, spec.history_keep), maxlen=RECENT)
        self.alerts.restore_cooldowns(state.doc.get("cooldowns", {}))  # a restart does not re-alert

    def record(self, event: Event | dict[str, Any]) -> Event:
        """Validates, records and alerts on one event; returns it typed."""
        e = Event.model_validate(event)
        line = e.to_dict()
        with self.state.lock:
            append_line(join(self.dir, EVENTS), line, *self.spec.rotation())
            self.recent.append(line)
        if self.alerts.emit(line):
            with self.state.lock:
                self.state.doc["cooldowns"] = self.alerts.cooldowns()
                self.state.save()
        return e

    def alert_only(self, event: Event) -> None:
        """Sends an event to the sinks without recording it (retrain steps: they are in the retrain record)."""
        self.alerts.emit(event.to_dict())

    def events(self, n: int) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.recent)[-n:] if n > 0 else []
