"""Events: what a variant monitor, the traffic controller and the app monitor tell each other and the
alert sinks. One model for every kind, named by an Enum."""

from __future__ import annotations

import time
from enum import Enum
from typing import Any, Literal

from pydantic import ConfigDict, Field

from raymlops.contracts.base import Contract


class EventKind(str, Enum):
    """What an event is about; alert sinks and ``monitoring.retrain.on`` select events by it (the config's
    ``Event`` literal lists the same values: a unit test keeps them equal)."""

    DRIFT = "drift"
    DATA_QUALITY = "data_quality"
    PERFORMANCE = "performance"
    CANARY = "canary"
    RETRAIN = "retrain"
    SKEW = "skew"


class Severity(str, Enum):
    """How urgent an event is."""

    WARNING = "warning"
    CRITICAL = "critical"


class Event(Contract):
    """One event: handed to the app monitor (an actor call), appended to its ``history.jsonl`` and sent to
    the alert sinks (as ``model_dump(mode="json")``)."""

    type: EventKind = Field(description="What the event is about.")
    app: str = Field(description="The Serve app.")
    message: str = Field(description="One human-readable line.")
    variant: str | None = Field(None, description="The variant or shadow it concerns; None for the whole app.")
    subject: str | None = Field(
        None,
        description="What in it (a feature, a metric, a retrain step): alert "
        "cooldowns are per (type, variant, subject).",
    )
    severity: Severity = Field(Severity.WARNING, description="How urgent it is.")
    details: dict[str, Any] = Field(default_factory=dict, description="Kind-specific figures (JSON values).")
    ts: float = Field(default_factory=time.time, description="When it happened (epoch seconds).")

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape alert sinks and history files carry. A detail JSON cannot hold (a NumPy integer, an
        array) is written as its ``str``, as the history files always did: an event is never lost to it."""
        return self.model_dump(mode="json", fallback=str)


def make_event(
    type: str | EventKind,
    app: str,
    message: str,
    variant: str | None = None,
    subject: str | None = None,
    severity: str | Severity = Severity.WARNING,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An event in its JSON shape, validated (an unknown ``type`` or ``severity`` raises ValueError)."""
    return Event(
        type=EventKind(type),
        app=app,
        message=message,
        variant=variant,
        subject=subject,
        severity=Severity(severity),
        details=dict(details or {}),
    ).to_dict()


CanaryStep = Literal["start", "step", "hold", "complete", "rollback", "pause", "resume", "ignored"]


class CanaryEvent(Contract):
    """One line of a Serve app's ``events.jsonl``: written by the traffic controller (its one writer),
    tailed by the app monitor and read by the console. A line is history: one written by another version of
    the controller, with keys this one does not know, is still read (its rollback still vetoes a promotion),
    so unknown keys are ignored here rather than refused."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["canary"] = Field("canary", description="Always 'canary' (the app monitor's event kind).")
    app: str | None = Field(None, description="The Serve app.")
    at: float | None = Field(None, description="When it happened (epoch seconds).")
    event: CanaryStep = Field(
        description="What the canary did, or 'ignored' for an operator request that did not apply."
    )
    variant: str | None = Field(None, description="The canary variant.")
    model: str | None = Field(None, description="The model the canary serves (NAME/VERSION or a run id).")
    step: int | None = Field(None, description="The schedule step reached.")
    percent: float | None = Field(None, description="The canary's traffic share then, in percent.")
    weights: dict[str, float] | None = Field(None, description="Every variant's weight after the event.")
    stats: dict[str, Any] | None = Field(None, description="The interval's figures the decision was made on.")
    reason: str | None = Field(None, description="Why (a breach, an operator's reason).")
    request: str | None = Field(None, description="The operator request's id, for 'ignored'.")
