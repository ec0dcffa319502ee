"""What the routers and the traffic controller actor exchange (`TrafficView`, `VariantSamples`), and the
operator requests the console and the CLI append for it (`OperatorRequest`)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import Field

from raymlops.contracts.base import Contract
from raymlops.contracts.events import CanaryEvent

CanaryStatus = Literal["running", "paused", "rolled_back", "complete"]
Action = Literal["pause", "resume", "rollback"]


class CanaryState(Contract):
    """Where the canary stands."""

    variant: str = Field(description="The canary variant.")
    model: str | None = Field(None, description="The model version the canary judges (its requests only).")
    step: int = Field(ge=0, description="The schedule step (0-based).")
    percent: float = Field(ge=0, le=100, description="The canary's traffic share now.")
    status: CanaryStatus = Field(description="running, paused (by an operator), rolled_back or complete.")
    step_started: float | None = Field(None, description="When the step's interval began (epoch seconds).")
    reason: str | None = Field(None, description="Why it paused or rolled back.")


class TrafficView(Contract):
    """The controller's answer to a router: the weights of the plan it runs, versioned."""

    version: int = Field(ge=0, description="Bumped at every weight change; 0: no plan yet.")
    weights: dict[str, float] | None = Field(
        None, description="Percent per variant; None: the controller lost its plan (the router configures it again)."
    )
    canary: CanaryState | None = Field(None, description="Where the canary stands; unset: no canary.")
    plan: str | None = Field(None, description="The plan's fingerprint (weights, canary, model versions).")


class TrafficStatus(TrafficView):
    """The view with the canary's history and the current interval's figures per variant."""

    history: list[CanaryEvent] = Field(default_factory=list, description="The canary's events, oldest first.")
    window: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="The current interval's counts and p99 per variant."
    )


class VariantSamples(Contract):
    """A router's requests to one variant since its last sync: (latency ms, error 0/1[, the model version
    that answered, or None when unknown])."""

    samples: list[tuple[float, int, str | None] | tuple[float, int]] = Field(
        default_factory=list, description="One entry per request."
    )


class OperatorRequest(Contract):
    """One line of ``requests.jsonl``: an operator asks the controller to pause, resume or roll back. Read
    leniently (a line is a record, whoever wrote it): a request whose action the controller does not apply,
    or that names no time (so cannot be shown fresh), is recorded as ignored, with why."""

    id: str | None = Field(None, description="The request's id (an `ignored` record names it).")
    action: str = Field(description="pause, resume or rollback (`new` checks it).")
    by: str | None = Field(None, description="Who asked.")
    reason: str | None = Field(None, description="The operator's reason, kept in the canary history.")
    ts: float = Field(0.0, description="When it was asked (epoch seconds); older than the TTL: ignored.")

    @classmethod
    def new(cls, action: Action, by: str, reason: str | None = None) -> OperatorRequest:
        """A request made now, with a fresh id."""
        if action not in ("pause", "resume", "rollback"):
            raise ValueError(f"action must be pause, resume or rollback; got {action!r}")
        return cls(id=uuid.uuid4().hex[:12], action=action, by=by, reason=reason, ts=time.time())
