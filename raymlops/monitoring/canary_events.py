"""Reads the traffic controller's canary events (``events.jsonl``) for the app monitor: each rollback or
completion becomes a canary event, and a rollback names the model the retrain loop must not promote."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from pydantic import ValidationError

from raymlops.contracts.events import CanaryEvent, Event, EventKind, Severity
from raymlops.monitoring.hub import StateFile
from raymlops.storage.files import tail_lines

ROLLBACKS_KEPT = 50

log = logging.getLogger("raymlops.monitoring")


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


class CanaryReader:
    """Tails ``path`` from the offset saved in the state file; ``emit`` receives the events."""

    def __init__(self, app: str, path: str, state: StateFile, emit: Callable[[Event], None]):
        self.app, self.path, self.state, self.emit = app, path, state, emit

    def rollbacks(self) -> dict[str, str]:
        """{model: why} of the canaries that rolled back (the latest ``ROLLBACKS_KEPT``)."""
        with self.state.lock:
            return dict(self.state.doc.get("canary_rollbacks", {}))

    def read(self) -> None:
        offset0 = self.state.doc.get("canary_offset", 0)
        lines, offset = tail_lines(self.path, offset0)
        for line in lines:
            try:
                e = CanaryEvent.model_validate_json(line)
            except ValidationError as err:
                if not _is_json(line):  # a line cut short by a crash mid-append
                    continue
                log.warning("%s: skipping a canary event this version cannot read: %s", self.path, err)
                continue
            if e.event not in ("rollback", "complete"):
                continue
            rollback = e.event == "rollback"
            if rollback and e.model:  # a retrain's canary that rolls back is never promoted
                with self.state.lock:
                    rolled = self.state.doc.setdefault("canary_rollbacks", {})
                    rolled[e.model] = e.reason or "rolled back"
                    self.state.doc["canary_rollbacks"] = dict(list(rolled.items())[-ROLLBACKS_KEPT:])
            # The subject names the model: a new model's rollback is not inside the last one's cooldown.
            self.emit(
                Event(
                    type=EventKind.CANARY,
                    app=self.app,
                    variant=e.variant,
                    subject=f"{e.event} {e.model}" if e.model else e.event,
                    severity=Severity.CRITICAL if rollback else Severity.WARNING,
                    message=f"canary {e.variant}"
                    + (f" ({e.model})" if e.model else "")
                    + (f" rolled back: {e.reason}" if rollback else " completed: it takes all its traffic"),
                    details=e.model_dump(mode="json", exclude_unset=True),  # the line as written
                )
            )
        if offset != offset0:
            with self.state.lock:
                self.state.doc["canary_offset"] = offset
                self.state.save()
