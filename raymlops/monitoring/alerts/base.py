"""Alert events and the sink interface every alert destination implements."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

from raymlops.config.monitoring import EVENTS

SEVERITIES = ("warning", "critical")


def make_event(type: str, app: str, message: str, variant: str | None = None, subject: str | None = None,
               severity: str = "warning", details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build an alert event; `message` is one human-readable line."""
    if type not in EVENTS:
        raise ValueError(f"unknown event type {type!r}; expected one of {EVENTS}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; expected one of {SEVERITIES}")
    return {"type": type, "app": app, "variant": variant, "subject": subject, "severity": severity,
            "message": message, "details": dict(details or {}), "ts": time.time()}


def summary(event: dict[str, Any]) -> str:
    """One line: '[type] app/variant: message'."""
    where = event.get("app", "?") if event.get("variant") is None else f"{event.get('app', '?')}/{event['variant']}"
    return f"[{event.get('type')}] {where}: {event.get('message', '')}"


class AlertSink(ABC):
    """A destination for events; `send` delivers one event or raises."""

    name: str
    on: set[str]
    cooldown_s: float
    retries: int = 0

    @abstractmethod
    def send(self, event: dict[str, Any]) -> None:
        """Deliver one event; raise on failure (the dispatcher retries)."""
