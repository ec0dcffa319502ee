"""What `raymlops.pipeline.serve` hands the monitor actors (`MonitorSpec`, `AppMonitorSpec`), and the
records the retrain loop keeps (`RetrainRun` in the app monitor's ``state.json``, `RetrainResult` written
by the retrain job for the app monitor to read)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field

from raymlops.config.monitoring import (
    AlertConfig,
    DataQualityConfig,
    DriftConfig,
    PerformanceConfig,
    RetrainConfig,
    SkewConfig,
)
from raymlops.contracts.base import Contract
from raymlops.contracts.calls import Call


class HistoryRotation(Contract):
    """How a monitor's append-only history files rotate."""

    history_rotate_mb: float | None = Field(None, gt=0, description="Rotate past this size; unset: never.")
    history_keep: int = Field(5, ge=1, description="Rotated files kept.")

    def rotation(self) -> tuple[int | None, int]:
        """(bytes before a rotation or None, files kept): `raymlops.storage.files.append_line`'s arguments."""
        mb = self.history_rotate_mb
        return (int(mb * 1024 * 1024) if mb else None), self.history_keep


class MonitorSpec(HistoryRotation):
    """A variant's (or shadow's) monitor actor: drift and data-quality checks on its served rows."""

    app: str = Field(description="The Serve application's name.")
    variant: str = Field(description="The variant or shadow monitored.")
    namespace: str = Field(description="Ray namespace of the app's actors.")
    run_dir: str | Call = Field(description="The model's run (its reference data and profile).")
    model_version: str = Field(description="The model served (NAME/VERSION or a run id).")
    state_dir: str = Field(description="The monitor's checkpoint and history: a path or URI.")
    drift: DriftConfig | None = Field(None, description="monitoring.drift; unset: no drift tests.")
    quality: DataQualityConfig | None = Field(
        None, description="monitoring.data_quality; unset: no data-quality checks."
    )
    history: int = Field(ge=1, description="Results kept in memory for `latest`/`history`.")
    checkpoint_s: float = Field(gt=0, description="Seconds between checkpoints.")
    app_monitor: str | None = Field(None, description="The app monitor actor's name; events go there.")
    started: float | None = Field(
        None, description="Set when the actor is started: tells its restart from a new deployment."
    )


class LabelsSource(Contract):
    """Where late labels arrive."""

    format: str | None = Field(description="A source format; None: from the path's extension.")
    path: str = Field(description="A file, directory or URI.")


class PerformanceSpec(PerformanceConfig):
    """``monitoring.performance`` with what the join needs resolved."""

    label: str = Field(description="Labels' label column.")
    task: str = Field(description="The training task (how the metric is computed).")
    labels_source: LabelsSource = Field(description="Where the late labels arrive.")
    request_log: str = Field(description="The app's request log: a path or URI.")


class SkewSpec(SkewConfig):
    """``monitoring.skew`` with the check to call."""

    check: Call = Field(description="Called with (since, until, sample, tolerance); returns the skew report.")


class RetrainSpec(RetrainConfig):
    """``monitoring.retrain`` with the pipeline calls the retrain loop makes."""

    submit: Call = Field(description="Called with (job id, result path); submits the retrain job, returns its id.")
    promote: Call = Field(description="Called with (version); returns a `PromotionOutcome`'s fields.")


class AppMonitorSpec(HistoryRotation):
    """The app monitor actor: events, alerts, live performance, skew and retraining of one Serve app."""

    app: str = Field(description="The Serve application's name.")
    namespace: str = Field(description="Ray namespace of the app's actors.")
    state_dir: str = Field(description="Its state and event history: a path or URI (it is the one writer).")
    alerts: list[AlertConfig] = Field(default_factory=list, description="monitoring.alerts: the sinks events go to.")
    alert_log: str = Field(description="Where every alert sent is appended.")
    canary_events: str | None = Field(None, description="The traffic controller's events.jsonl, tailed.")
    performance: PerformanceSpec | None = Field(None, description="Live performance from late labels; unset: off.")
    skew: SkewSpec | None = Field(None, description="Online/offline feature skew checks; unset: off.")
    retrain: RetrainSpec | None = Field(None, description="Drift-triggered retraining; unset: off.")


class RetrainStatus(str, Enum):
    """Where a retrain stands. SUBMITTED -> RUNNING -> OBSERVING -> PROMOTED | KEPT; FAILED from any
    unfinished state."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    OBSERVING = "observing"
    PROMOTED = "promoted"
    KEPT = "kept"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (RetrainStatus.SUBMITTED, RetrainStatus.RUNNING, RetrainStatus.OBSERVING)


class RetrainStep(Contract):
    """One step of a retrain, as recorded."""

    step: str = Field(description="What happened (triggered, job_submitted, job_running, challenger_registered, ...).")
    at: float = Field(description="When (epoch seconds).")
    detail: Any = Field(None, description="The step's detail (a job id, a reason, the challenger).")


class PromotionOutcome(Contract):
    """What the gate decided about a challenger (`raymlops.pipeline.loop.promote_challenger`)."""

    promoted: bool = Field(description="Whether the champion alias moved to the challenger.")
    version: int = Field(description="The challenger's registry version.")
    reason: str = Field(description="Why, with the gate's lines.")


class RetrainResult(Contract):
    """Written by the retrain job (`raymlops retrain --result PATH`) once its challenger is registered."""

    model: str = Field(description="The registered model's name.")
    version: int = Field(ge=1, description="The challenger's registry version.")
    run_id: str = Field(description="The training run.")
    gate_passed: bool = Field(description="Whether the challenger passed its registry gate when trained.")


class RetrainRun(Contract):
    """One retrain, from trigger to outcome, in the app monitor's ``state.json``."""

    id: str = Field(description="Also the Ray job's submission id.")
    trigger: dict[str, Any] = Field(description="The triggering event's type, variant, subject and message.")
    started: float = Field(description="When it was triggered (epoch seconds).")
    status: RetrainStatus = Field(description="Where it stands (a record without one is unreadable, not active).")
    steps: list[RetrainStep] = Field(default_factory=list, description="Every step, in order.")
    job_id: str | None = Field(None, description="The Ray job's id once submitted.")
    result_path: str | None = Field(None, description="Where the job writes its `RetrainResult`.")
    status_errors: int = Field(0, description="Consecutive failed job-status reads.")
    version: int | None = Field(None, description="The challenger's registry version, once registered.")
    run_id: str | None = Field(None, description="The challenger's training run, once registered.")
    model: str | None = Field(None, description="NAME/VERSION, as canary events name it.")
    observe_until: float | None = Field(
        None, description="When the observation of the challenger ends (epoch seconds)."
    )
    outcome: PromotionOutcome | None = Field(None, description="The gate's decision, once taken.")
    error: str | None = Field(None, description="Why it failed, when it did.")
