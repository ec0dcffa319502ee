"""The `monitoring` section: drift detectors, data quality, late-label performance, alerts, retraining."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator

from raymlops.config.base import Issue, Strict

BatchDetector = Literal["ks", "chi2", "tabular"]  # per-feature tests of a window; what reference: chunks needs
OnlineDetector = Literal["cvm_online", "fet_online"]
Detector = Literal[BatchDetector, OnlineDetector, "mmd"]
Event = Literal["drift", "data_quality", "performance", "canary", "retrain", "skew"]
RetrainTrigger = Literal["drift", "performance", "data_quality"]

DETECTORS: tuple[Detector, ...] = get_args(Detector)
BATCH_DETECTORS: tuple[BatchDetector, ...] = get_args(BatchDetector)
ONLINE_DETECTORS: tuple[OnlineDetector, ...] = get_args(OnlineDetector)
EVENTS: tuple[Event, ...] = get_args(Event)
_DEFAULT_TRIGGERS: tuple[RetrainTrigger, ...] = ("drift", "performance")


class AlertAfterConfig(Strict):
    """How persistent drift must be before it raises an event: `windows` drifted among the latest `of`."""

    windows: int = Field(2, ge=1, description="Drifted windows needed among the latest `of` tested windows.")
    of: int = Field(3, ge=1, description="How many of the latest tested windows are looked at.")

    @model_validator(mode="after")
    def _windows_of(self) -> AlertAfterConfig:
        if self.windows > self.of:
            raise ValueError(f"windows must be <= of; got windows={self.windows}, of={self.of}")
        return self


class DriftConfig(Strict):
    """Drift detection on serving traffic: detectors fitted on the training split at training time, saved with
    the run, and run on windows of served rows."""

    detector: Detector = Field(
        "tabular",
        description="ks: Kolmogorov-Smirnov per feature; chi2: chi-squared per feature (categorical "
        "codes); tabular: KS for numeric and chi-squared for categorical features; "
        "cvm_online / fet_online: online Cramer-von Mises / Fisher exact tests calibrated "
        "to an expected run time; mmd: maximum mean discrepancy (needs the 'mmd' extra: torch).",
    )
    p_val: float = Field(0.05, gt=0, lt=1, description="Significance level of a batch test (after correction).")
    correction: Literal["bonferroni", "fdr"] = Field(
        "bonferroni", description="Multiple-testing correction across features (batch detectors)."
    )
    window: int = Field(
        500, ge=10, description="Rows per tested window (batch detectors); rows per recorded result (online detectors)."
    )
    ert: int = Field(1000, ge=10, description="Online detectors: expected run time (rows) between false alarms.")
    online_window: int = Field(50, ge=5, description="Online detectors: rows in the sliding test window.")
    n_bootstraps: int = Field(
        3000,
        ge=100,
        description="Online detectors: bootstrap samples used to calibrate thresholds once at training time.",
    )
    reference_size: int | None = Field(
        None,
        ge=50,
        description="Rows of the training split kept as the drift reference. Default: 10 x window (at "
        "least 2,000) for batch detectors, so the reference adds at most a tenth to a window's own sampling noise "
        "(a two-sample statistic's variance goes as 1/rows_window + 1/rows_reference); 2,000 for online ones "
        "(their calibration grows with it); chunks x window with reference: chunks.",
    )
    reference: Literal["sample", "chunks"] = Field(
        "sample",
        description="sample: tests judge each window by p-values against a uniform sample of the "
        "training split (they assume windows are shuffled samples). chunks: each feature's threshold on its "
        "effect size is learned from consecutive `window`-row chunks of the training split in time order (as "
        "NannyML does), so ordinary within-period variation of ordered traffic is no alarm (batch detectors "
        "ks, chi2, tabular).",
    )
    chunks: int = Field(20, ge=3, description="reference: chunks; how many consecutive chunks are learned from.")
    min_effect: float | dict[str, float] | None = Field(
        None,
        description="The smallest effect size (wasserstein_norm for numeric features, jensen_shannon for "
        "categorical ones; see /drift) that makes a significant feature drift: one number for every feature, or "
        "a number per feature (others: any). A significant shift below it is reported, not alerted. 0.1 is "
        "Evidently's default threshold for both. Saved with the run's detectors, as p_val: a change applies "
        "from the next training.",
    )
    features: Literal["all"] | list[str] = Field("all", description="Input columns to test ('all' or a list).")
    predictions: bool = Field(True, description="Also test the model's output (prediction drift).")
    alert_after: AlertAfterConfig = Field(
        default_factory=AlertAfterConfig,
        description="Persistence before action: a drift event (alerts, "
        "retraining) needs `windows` drifted windows among the latest `of`; every window's verdict stays in "
        "/drift and the history. {windows: 1, of: 1} raises one for every drifted window.",
    )

    @field_validator("min_effect")
    @classmethod
    def _non_negative(cls, v: float | dict[str, float] | None) -> float | dict[str, float] | None:
        values: list[tuple[str | None, float | None]] = list(v.items()) if isinstance(v, dict) else [(None, v)]
        for name, x in values:
            if x is not None and x < 0:
                raise ValueError(f"must be >= 0, got {x}" + (f" for {name!r}" if name else ""))
        return v

    @model_validator(mode="after")
    def _reference_mode(self) -> DriftConfig:
        if self.reference == "chunks" and self.detector not in BATCH_DETECTORS:
            raise ValueError(
                f"reference: chunks learns per-feature thresholds for the batch detectors ks, chi2 "
                f"and tabular; got detector {self.detector!r}"
            )
        return self

    def reference_rows(self) -> int:
        """The reference's rows (see ``reference_size``)."""
        if self.reference_size is not None:
            return self.reference_size
        if self.reference == "chunks":
            return self.chunks * self.window
        return 2000 if self.detector in ONLINE_DETECTORS else max(2000, 10 * self.window)


class DataQualityConfig(Strict):
    """Data quality checks of serving traffic against the training split's schema and statistics."""

    schema_check: bool = Field(True, alias="schema", description="Missing columns and wrong types.")
    nulls: bool = Field(True, description="Null rate above the training null rate + null_tolerance.")
    ranges: bool = Field(True, description="Numeric values outside the training [min, max].")
    unseen_categories: bool = Field(True, description="Categorical values never seen in training.")
    null_tolerance: float = Field(0.05, ge=0, le=1, description="Allowed rise of a column's null rate.")
    range_tolerance: float = Field(0.01, ge=0, le=1, description="Allowed share of out-of-range values.")
    unseen_tolerance: float = Field(0.01, ge=0, le=1, description="Allowed share of unseen categories.")
    window: int = Field(500, ge=10, description="Rows per check on serving traffic.")

    model_config = {**Strict.model_config, "populate_by_name": True}


class PerformanceConfig(Strict):
    """Model performance on live traffic: late labels joined to the logged requests, scored per window."""

    labels: str = Field(description="The source (in `sources`) of late labels.")
    join: Literal["request_id", "entity"] = Field(
        "request_id",
        description="request_id: labels carry the request id; entity: labels carry entity key "
        "columns (also model inputs) and a timestamp, and join the latest request for "
        "that key at or before it.",
    )
    request_id: str = Field(
        "request_id",
        description="Labels' request id column (join: request_id). A request "
        "that scored several rows also needs a `row` column (the "
        "row's 0-based position in the request); without it a "
        "label covers every row of its request.",
    )
    keys: list[str] = Field(default_factory=list, description="Entity key columns (join: entity).")
    timestamp: str | None = Field(None, description="Labels' observation time column (join: entity).")
    max_delay_s: float = Field(
        30 * 86400, gt=0, description="join: entity; a label older than the request by more than this is not joined."
    )
    label: str | None = Field(None, description="Labels' label column; default training.label.")
    metric: str = Field("auc", description="Metric per window (a training task metric).")
    window: int = Field(1000, ge=10, description="Labelled rows per window.")
    floor: float | None = Field(None, description="A window whose metric is below this raises a performance event.")
    every_s: float = Field(60, gt=0, description="How often the monitor joins new labels.")


class SkewConfig(Strict):
    """Online/offline skew: served feature values against the same features recomputed from the offline store."""

    every_s: float = Field(3600, gt=0, description="How often the monitor recomputes served features offline.")
    sample: int = Field(
        1000,
        ge=1,
        description="Logged requests (rows) compared per check, drawn at random from those since the previous check.",
    )
    max_rate: float = Field(
        0.01, ge=0, le=1, description="A feature whose share of mismatching rows is above this raises a skew event."
    )
    tolerance: float = Field(
        1e-6, ge=0, description="Numbers within this relative (and absolute, below 1) difference match."
    )


class WebhookAlert(Strict):
    """An alert sink that POSTs each event as JSON to a URL (Slack-compatible)."""

    type: Literal["webhook"] = Field(description="Sink kind.")
    url: str = Field(pattern=r"^https?://", description="Receives a JSON POST (with a Slack-compatible 'text').")
    on: list[Event] = Field(default_factory=lambda: list(EVENTS), description="Event types sent to this sink.")
    cooldown_s: float = Field(
        300, ge=0, description="The same event (type, app, variant, subject) is sent once per cooldown."
    )
    timeout_s: float = Field(5, gt=0, description="Seconds one POST may take.")
    retries: int = Field(3, ge=0, description="Retries with exponential backoff after a failed send.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers (e.g. Authorization).")


class LogAlert(Strict):
    """An alert sink that appends each event as a JSON line to a file."""

    type: Literal["log"] = Field(description="Sink kind.")
    path: str | None = Field(None, description="JSON-lines file; default <storage>/monitoring/<app>/alerts.jsonl.")
    on: list[Event] = Field(default_factory=lambda: list(EVENTS), description="Event types written to this sink.")
    cooldown_s: float = Field(
        300, ge=0, description="The same event (type, app, variant, subject) is written once per cooldown."
    )
    rotate_mb: float | None = Field(64, gt=0, description="The file becomes <path>.1 at this size; null: never.")
    keep: int = Field(5, ge=1, description="Rotated files kept.")


AlertConfig = Annotated[WebhookAlert | LogAlert, Field(discriminator="type")]


class RetrainConfig(Strict):
    """Retraining on monitoring events: a Ray job retrains and registers a challenger, which meets traffic (the
    serving section's shadow or canary) for observe_s before the registry's gate decides its promotion."""

    on: list[RetrainTrigger] = Field(
        default_factory=lambda: list(_DEFAULT_TRIGGERS), description="Events that trigger retraining."
    )
    min_interval_s: float = Field(3600, ge=0, description="At most one retrain per this many seconds.")
    deploy: Literal["shadow", "canary"] = Field(
        "shadow",
        description="How the challenger meets traffic: the serving section's shadow or canary that "
        "follows models:/NAME@challenger (a canary restarts its schedule for the new "
        "version).",
    )
    observe_s: float = Field(
        60,
        ge=0,
        description="Time the challenger is shadowed/canaried before the gate; in "
        "canary mode a rollback of its canary meanwhile keeps the champion.",
    )
    timeout_s: float = Field(
        7200,
        gt=0,
        description="A retrain job still running after this is stopped and "
        "recorded as failed (the next trigger may start another).",
    )
    address: str | None = Field(None, description="Ray Jobs address; default the cluster the monitor runs on.")


class MonitoringConfig(Strict):
    """What watches the served model: monitors run as Ray actors beside the endpoint."""

    drift: DriftConfig | None = Field(
        None, description="Drift of the model's inputs (and outputs) from the training split."
    )
    data_quality: DataQualityConfig | None = Field(
        None, description="Schema, null, range and category checks of the served rows."
    )
    performance: PerformanceConfig | None = Field(None, description="The model's metric on late labels.")
    alerts: list[AlertConfig] = Field(default_factory=list, description="Where events are sent, by sink `type`.")
    retrain: RetrainConfig | None = Field(None, description="Retrain when events fire.")
    skew: SkewConfig | None = Field(
        None,
        description="Online/offline skew: the feature values served by entity "
        "key, recomputed point-in-time from the offline store.",
    )
    checkpoint_s: float = Field(10, gt=0, description="How often monitor actors checkpoint their state.")
    history: int = Field(500, ge=1, description="Results kept per monitor (older ones stay in history.jsonl).")
    history_rotate_mb: float | None = Field(
        64,
        gt=0,
        description="Each history.jsonl (a monitor's results, the "
        "app's events) becomes history.jsonl.1 at this "
        "size; null: never rotated.",
    )
    history_keep: int = Field(5, ge=1, description="Rotated history files kept (.1 newest); older ones are deleted.")


def monitoring_issues(m: MonitoringConfig | None, has_training: bool, sources: list[str]) -> list[Issue]:
    """Checks across the monitoring section: what it needs from training, sources and itself."""
    if m is None:
        return []
    out: list[Issue] = []
    for key in ("drift", "data_quality", "performance", "retrain"):
        if getattr(m, key) is not None and not has_training:
            out.append((("monitoring", key), f"monitoring.{key} needs a 'training' section (its reference data)"))
    if m.performance is not None:
        p = m.performance
        if p.labels not in sources:
            out.append((("monitoring", "performance", "labels"), f"unknown source {p.labels!r}; defined: {sources}"))
        if p.join == "entity" and (not p.keys or not p.timestamp):
            out.append((("monitoring", "performance", "join"), "join: entity needs 'keys' and 'timestamp'"))
    if m.retrain is not None:
        if "performance" in m.retrain.on and m.performance is None:
            out.append((("monitoring", "retrain", "on"), "retraining on 'performance' needs monitoring.performance"))
        if "drift" in m.retrain.on and m.drift is None:
            out.append((("monitoring", "retrain", "on"), "retraining on 'drift' needs monitoring.drift"))
    return out
