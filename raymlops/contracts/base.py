"""The base of every contract model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """A spec or record crossing a process boundary: unknown keys are refused (a sender newer than its
    receiver fails on arrival, naming the key, rather than being silently half-read)."""

    model_config = ConfigDict(extra="forbid")
