"""What the actors answer when asked how they stand (the router's GET routes, `raymlops monitor status`, the
console). TypedDicts: the answers stay the JSON the HTTP routes return and the CLI prints (tests and clients
index them), typed for mypy; the router validates them into `raymlops.serving.api`'s response models before
they leave the app."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class DriftStatus(TypedDict):
    """A variant monitor's latest drift test (`VariantMonitor.latest`; GET /drift without ``variant``)."""

    model_version: str
    window: int | None
    p_val: float | None
    detector: str | None
    rows_seen: int
    rows_pending: int
    windows_tested: int
    is_drift: bool | None
    features: dict[str, dict[str, Any]]
    tested_at: float | None
    prediction_drift: NotRequired[bool | None]  # these three once a window has been tested
    threshold: NotRequired[float | None]
    reference: NotRequired[str | None]


class MonitorStatus(TypedDict):
    """Everything a variant monitor knows (`VariantMonitor.status`)."""

    app: str
    variant: str
    model_version: str
    rows_seen: int
    restored: bool
    drift: DriftStatus
    quality: dict[str, Any] | None
    quality_windows: int
    history: list[dict[str, Any]]


class AppMonitorStatus(TypedDict):
    """Everything an app monitor knows (`AppMonitor.status`): recent events, alert counters per sink, live
    performance, skew, and the retrain records (`RetrainRun` in their JSON shape)."""

    app: str
    events: list[dict[str, Any]]
    alerts: dict[str, dict[str, Any]]
    performance: dict[str, Any] | None
    skew: dict[str, Any] | None
    retrains: list[dict[str, Any]]


class ReplicaHealth(TypedDict):
    """A model replica's answer to the router's health check."""

    variant: str
    model_version: str


class ReplicaStats(TypedDict):
    """A model replica's counters (tests and `serving status`)."""

    variant: str
    model_version: str
    batch_sizes: list[int]
    swaps: list[dict[str, Any]]
