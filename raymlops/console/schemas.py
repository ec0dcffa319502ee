"""The console's JSON contract: one pydantic model per page (the `/api/...` twins), so OpenAPI is exact."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Panel(BaseModel):
    """A section that could not be read: shown in place of its data, never as a 500 for the whole page."""

    source: str = Field(description="what was being read (a path, a URI or 'MLflow')")
    error: str = Field(description="the reader's error message")


class RunSummary(BaseModel):
    """One committed run, as the runs list shows it."""

    pipeline: str
    run_id: str
    created: str | None = None
    task: str | None = None
    model_type: str | None = None
    status: Literal["ok", "partial", "failed"] = Field(
        description="ok: every trial ended ok; partial: some failed; failed: none ended ok"
    )
    metric: str | None = Field(None, description="the search's metric")
    metrics: dict[str, float] = Field(default_factory=dict, description="the best trial's validation metrics")
    holdout: dict[str, float] = Field(default_factory=dict, description="evaluation at the stored threshold")
    params: dict[str, Any] = Field(default_factory=dict, description="the best trial's parameters")
    trials: int = 0
    rows: dict[str, int] = Field(default_factory=dict)
    mlflow_run_id: str | None = None


class RunsPage(BaseModel):
    """A page of runs after filtering and sorting."""

    total: int = Field(description="runs matching the filter")
    page: int
    per_page: int
    pipelines: list[str]
    runs: list[RunSummary]
    panels: list[Panel] = Field(default_factory=list)


class Trial(BaseModel):
    trial_id: str | None = None
    status: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    seconds: float | None = None
    curve: dict[str, list[float]] = Field(default_factory=dict, description="validation metric per round")


class RunDetail(BaseModel):
    summary: RunSummary
    threshold: float | None = None
    trials: list[Trial]
    lineage: dict[str, Any] = Field(default_factory=dict)
    report_files: list[str] = Field(default_factory=list)
    importance: dict[str, float] = Field(default_factory=dict)
    config_yaml: str | None = None
    mlflow_url: str | None = Field(None, description="the run in the MLflow UI, when the tracking server has one")


class Diff(BaseModel):
    key: str
    values: list[Any] = Field(description="one per compared run, in order")
    differs: bool


class Compare(BaseModel):
    runs: list[RunSummary]
    params: list[Diff]
    metrics: list[Diff]
    holdout: list[Diff]
    curves: dict[str, dict[str, list[float]]] = Field(description="run id -> the best trial's curves")


class AliasMove(BaseModel):
    alias: str
    version: int
    previous: int | None = None
    at: str
    forced: bool = False
    reason: str = ""
    by: str = ""
    gate: list[str] = Field(default_factory=list)


class ModelVersionInfo(BaseModel):
    version: int
    aliases: list[str]
    run: str | None = None
    metrics: dict[str, float]
    created: str


class ModelInfo(BaseModel):
    name: str
    aliases: dict[str, int]
    versions: list[ModelVersionInfo] = Field(description="newest first")
    history: list[AliasMove] = Field(default_factory=list, description="alias moves, newest first")
    gate: dict[str, Any] | None = None


class ModelsPage(BaseModel):
    tracking_uri: str
    models: list[ModelInfo]
    panels: list[Panel] = Field(default_factory=list)


class PromoteRequest(BaseModel):
    """A promotion through the console; a forced one must say why."""

    version: int = Field(ge=1)
    alias: str = Field("champion", min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    force: bool = False
    reason: str = Field("", max_length=500)
    by: str = Field("", max_length=100)


class RollbackRequest(BaseModel):
    """Moves ``alias`` back to the version it held before its latest move."""

    alias: str = Field("champion", min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    reason: str = Field("", max_length=500)
    by: str = Field("", max_length=100)


class CanaryRequest(BaseModel):
    """An operator's action on an app's canary, applied by its traffic controller at its next tick."""

    action: Literal["pause", "resume", "rollback"]
    reason: str = Field("", max_length=500)
    by: str = Field("", max_length=100)


class CanaryRequested(BaseModel):
    id: str
    action: str
    by: str
    reason: str | None = None
    ts: float


class ViewInfo(BaseModel):
    pipeline: str
    name: str
    entity: str | None = None
    join_keys: list[str] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)
    ttl: str | None = None
    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    offline_version: int | None = None
    offline_rows: int = 0
    details: dict[str, Any] = Field(
        default_factory=dict, description="schema, windows, versions, freshness (the view page)"
    )
    online: Literal["reachable", "unreachable", "unknown"] = "unknown"
    online_error: str | None = None
    sample: dict[str, Any] | None = Field(None, description="online values for the asked entity key")


class FeaturesPage(BaseModel):
    views: list[ViewInfo]
    panels: list[Panel] = Field(default_factory=list)


class DatasetInfo(BaseModel):
    """One training set: the exact inputs (source files by content hash, feature view versions) runs read."""

    fingerprint: str
    pipeline: str
    label: str | None = None
    sources: dict[str, Any]
    feature_views: dict[str, Any]
    rows: dict[str, int]
    time_range: list[str | None] = Field(default_factory=list)
    runs: list[str] = Field(description="run ids that trained on it, newest first")
    profiled_run: str | None = Field(
        None,
        description="the newest of those runs with a profile of its training split (training.explore): its Data page",
    )


class DatasetsPage(BaseModel):
    datasets: list[DatasetInfo]


class ProfileWarning(BaseModel):
    kind: str
    column: str | None = None
    message: str


class DataProfile(BaseModel):
    """A run's training-split profile (``training.explore``; the same document ``raymlops explore`` writes)."""

    pipeline: str
    run_id: str
    rows: int
    columns: int
    warnings: list[ProfileWarning]
    profile: dict[str, Any] = Field(description="the whole profile, as in explore/training.json")
    panels: list[Panel] = Field(default_factory=list)


class VariantTraffic(BaseModel):
    variant: str
    role: str
    requests: int
    rps: float
    error_rate: float
    p50_ms: float | None = None
    p99_ms: float | None = None


class AppInfo(BaseModel):
    app: str
    models: dict[str, str] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)
    canary: dict[str, Any] | None = None
    canary_history: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    saved_at: float | None = None
    traffic: list[VariantTraffic] = Field(default_factory=list)
    window_s: float = Field(0, description="the request-log window the traffic figures cover")
    shadows: list[dict[str, Any]] = Field(default_factory=list, description="agreement per shadow")
    series: dict[str, Any] = Field(default_factory=dict, description="requests and p99 per minute per variant")
    health: Literal["ok", "degraded", "no traffic", "unknown"] = "unknown"
    panels: list[Panel] = Field(default_factory=list)


class DeploymentsPage(BaseModel):
    apps: list[AppInfo]
    panels: list[Panel] = Field(default_factory=list)


class MonitoringPage(BaseModel):
    app: str
    variants: list[str]
    windows: dict[str, int] = Field(description="drift windows recorded per variant")
    drift: dict[str, dict[str, Any]] = Field(
        description="variant -> feature -> {ts, statistic, p_value, "
        "threshold, drift} series (downsampled to at most `points`)"
    )
    alarms: dict[str, list[list[Any]]] = Field(
        default_factory=dict,
        description="variant -> [window, smallest "
        "p-value, time] of every window whose verdict was drift (the "
        "newest 5,000), never downsampled",
    )
    verdicts: dict[str, list[dict[str, Any]]] = Field(description="variant -> the newest 200 windows that alarmed")
    quality: dict[str, list[dict[str, Any]]] = Field(description="variant -> windows with data-quality issues")
    performance: dict[str, list[dict[str, Any]]] = Field(description="variant -> late-label windows")
    alerts: list[dict[str, Any]]
    retrains: list[dict[str, Any]]
    points: int
    panels: list[Panel] = Field(default_factory=list)


class Overview(BaseModel):
    storage: str
    tracking_uri: str | None
    pipelines: dict[str, int] = Field(description="pipeline -> committed runs")
    latest_runs: list[RunSummary]
    apps: list[AppInfo]
    alerts: list[dict[str, Any]]
    models: list[ModelInfo]
    panels: list[Panel] = Field(default_factory=list)
