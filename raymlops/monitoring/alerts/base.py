"""Alert events and the sink interface every alert destination implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from raymlops.contracts.events import Severity, make_event

SEVERITIES = tuple(s.value for s in Severity)
__all__ = ["SEVERITIES", "AlertSink", "make_event", "summary"]


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
