"""Typed contracts: every spec and record that crosses a process boundary (Ray actor and deployment
arguments, exported Serve configs, state files another process reads) is one of these pydantic models.

`raymlops.pipeline` builds them from a config; the receiving actor or deployment validates what arrives
(``Model.model_validate`` accepts the model itself or its JSON-shaped dump, as an exported Serve config
carries it). Defaults live here once, not on both sides of the boundary.
"""

from raymlops.contracts.base import Contract
from raymlops.contracts.calls import Call, Watch, import_object
from raymlops.contracts.events import CanaryEvent, Event, EventKind, Severity, make_event

__all__ = ["Call", "CanaryEvent", "Contract", "Event", "EventKind", "Severity", "Watch", "import_object", "make_event"]
