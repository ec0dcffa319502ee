"""Pydantic models that mirror the pipeline YAML key for key: the root, `ray`, `sources` and `registry`
here; the other sections in their own modules (re-exported here); and the checks that span sections."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from raymlops.config.base import Issue, Strict
from raymlops.config.features import (
    AGG_FUNCTIONS,
    AggregationConfig,
    Duration,
    EntityConfig,
    FeaturesConfig,
    FeatureServerConfig,
    FeatureViewConfig,
    OfflineStoreConfig,
    OnlineStoreConfig,
    RedisOnlineStoreConfig,
    SqliteOnlineStoreConfig,
    duration_seconds,
    feature_ref_issue,
)
from raymlops.config.monitoring import MonitoringConfig, monitoring_issues
from raymlops.config.serving import ServingConfig, serving_issues
from raymlops.config.training import (
    MAXIMIZE,
    METRICS,
    SPACE_KINDS,
    TASK_METRICS,
    TASKS,
    CustomStep,
    DecisionConfig,
    DecisionCost,
    DropStep,
    FailureConfig,
    ImputeStep,
    MinMaxScaleStep,
    ModelConfig,
    OneHotStep,
    OrdinalStep,
    ParamValue,
    PreprocessStep,
    RandomSplit,
    SearchSpace,
    SelectStep,
    SklearnModel,
    SplitConfig,
    StandardScaleStep,
    TimeSplit,
    TrainingConfig,
    TrainingDatasetConfig,
    TuneConfig,
    XGBoostModel,
    metric_issue,
    training_issues,
)

__all__ = [  # the modules' names importable from here, as when every section lived in this module
    "AGG_FUNCTIONS",
    "FILE_FORMATS",
    "FILTER_OPS",
    "MAXIMIZE",
    "METRICS",
    "SPACE_KINDS",
    "TABLE_FORMATS",
    "TASKS",
    "TASK_METRICS",
    "AggregationConfig",
    "CustomStep",
    "DecisionConfig",
    "DecisionCost",
    "DropStep",
    "Duration",
    "EntityConfig",
    "FailureConfig",
    "FeatureServerConfig",
    "FeatureViewConfig",
    "FeaturesConfig",
    "ImputeStep",
    "MinMaxScaleStep",
    "ModelConfig",
    "MonitoringConfig",
    "OfflineStoreConfig",
    "OneHotStep",
    "OnlineStoreConfig",
    "OrdinalStep",
    "ParamValue",
    "PipelineConfig",
    "PreprocessStep",
    "PromotionConfig",
    "RandomSplit",
    "RayConfig",
    "RedisOnlineStoreConfig",
    "RegistryConfig",
    "SearchSpace",
    "SelectStep",
    "ServingConfig",
    "SklearnModel",
    "SourceConfig",
    "SplitConfig",
    "SqliteOnlineStoreConfig",
    "StandardScaleStep",
    "TimeSplit",
    "TrainingConfig",
    "TrainingDatasetConfig",
    "TuneConfig",
    "XGBoostModel",
    "cross_field_issues",
    "duration_seconds",
    "feature_ref_issue",
    "metric_issue",
]

# --------------------------------------------------------------------------- ray


class RayConfig(Strict):
    """The Ray cluster to run on, or the local Ray to start."""

    address: str | None = Field(
        None, description="Ray cluster address ('auto', 'ray://host:10001'); unset starts a local Ray."
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray (ignored when address is set).")
    object_store_memory_mb: int | None = Field(None, ge=64, description="Object store size for a local Ray.")
    namespace: str = Field("raymlops", description="Ray namespace for named actors.")


# ----------------------------------------------------------------------- sources

FileFormat = Literal["parquet", "csv", "json"]
TableFormat = Literal["delta", "iceberg"]
SourceFormat = Literal[FileFormat, TableFormat]
FilterOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
FILE_FORMATS: tuple[FileFormat, ...] = get_args(FileFormat)
TABLE_FORMATS: tuple[TableFormat, ...] = get_args(TableFormat)
FILTER_OPS: tuple[FilterOp, ...] = get_args(FilterOp)


class SourceConfig(Strict):
    """A table the pipeline reads: files (Parquet, CSV, JSON) or a Delta Lake / Iceberg table."""

    format: SourceFormat | None = Field(
        None,
        description="File format; default: from the files' extension, else their content (Parquet's magic "
        "bytes, a JSON object, else CSV). delta: a Delta Lake table at path; iceberg: the Iceberg "
        "table path names (namespace.table) in `catalog`.",
    )
    path: str = Field(
        description="Local path, glob, directory or URI (s3://, gs://, ...); for delta the table's "
        "root, for iceberg the table identifier (namespace.table)."
    )
    version: int | None = Field(
        None, ge=0, description="delta: the table version to read (time travel); default the latest."
    )
    snapshot: int | None = Field(None, description="iceberg: the snapshot id to read; default the current one.")
    as_of: str | None = Field(
        None, description="delta / iceberg: read the version current at this ISO time (UTC unless it has an offset)."
    )
    catalog: dict[str, str] | None = Field(
        None,
        description="iceberg: pyiceberg catalog properties, e.g. {type: sql, uri: 'sqlite:///cat.db', "
        "warehouse: 'file:///wh'} or {type: rest, uri: ...}.",
    )
    timestamp: str | None = Field(None, description="Event-time column (enables time-based splits).")
    filter: list[tuple[str, FilterOp, Any]] | None = Field(
        None,
        description="Partition filters of a Hive-partitioned directory (as Spark writes them), each "
        "[column, op, value] (a list of values for in / not in), all of which must hold: files "
        "of other partitions are never read.",
    )

    @model_validator(mode="after")
    def _table_settings(self) -> SourceConfig:
        fmt = self.format
        if self.version is not None and fmt != "delta":
            raise ValueError(f"version is for format: delta, got format {fmt!r}")
        if (self.snapshot is not None or self.catalog is not None) and fmt != "iceberg":
            raise ValueError(f"snapshot and catalog are for format: iceberg, got format {fmt!r}")
        if self.as_of is not None:
            if fmt not in TABLE_FORMATS:
                raise ValueError(f"as_of is for format: delta or iceberg, got format {fmt!r}")
            import datetime as dt

            try:
                dt.datetime.fromisoformat(self.as_of.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(
                    f"as_of must be an ISO time such as 2024-06-01T00:00:00Z, got {self.as_of!r}"
                ) from None
            if self.version is not None or self.snapshot is not None:
                raise ValueError("set as_of or a version/snapshot, not both")
        if fmt == "iceberg" and not self.catalog:
            raise ValueError("format: iceberg needs catalog (pyiceberg catalog properties)")
        if self.filter and fmt in TABLE_FORMATS:
            raise ValueError(f"filter prunes Hive partitions of files; format {fmt} tables are read whole")
        return self


# ---------------------------------------------------------------------- registry

_ALIAS = r"^[A-Za-z0-9_-]+$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class PromotionConfig(Strict):
    """The gate a newly registered version passes to take `alias` (else it takes `otherwise`)."""

    alias: str = Field("champion", pattern=_ALIAS, description="Alias a passing version takes.")
    otherwise: str | None = Field(
        "challenger", pattern=_ALIAS, description="Alias a version that fails a gate takes (null: none)."
    )
    metric: str | None = Field(None, description="Gate metric; default training.tune.metric.")
    min: float | None = Field(None, description="The metric must be >= min.")
    max: float | None = Field(None, description="The metric must be <= max.")
    beat_champion_by: float | None = Field(
        0.0,
        description="The metric must beat the current holder of 'alias', scored on the same holdout, by at "
        "least this much (in the metric's better direction; 0.0 lets a tie pass; null: no "
        "comparison).",
    )


class RegistryConfig(Strict):
    """MLflow tracking of runs and the model registry."""

    enabled: bool = Field(True, description="Track runs in MLflow and register models.")
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else "
        "sqlite:///<storage>/mlflow.db with artifacts under storage.",
    )
    experiment: str | None = Field(None, description="MLflow experiment; default the pipeline name.")
    model_name: str | None = Field(None, pattern=_NAME, description="Registered model name; default the pipeline name.")
    promotion: PromotionConfig = Field(default_factory=PromotionConfig, description="Which alias a new version takes.")


# ------------------------------------------------------------------------- root


class PipelineConfig(Strict):
    """One pipeline: its sources, and optionally features, training, serving and monitoring."""

    name: str = Field(pattern=_NAME, description="Pipeline name (letters, digits, _ . -).")
    storage: str = Field(
        "./.raymlops",
        description="Where all state lives: a local or shared-mount directory, "
        "file://, s3://bucket/prefix or gs://bucket/prefix. Every "
        "node of a cluster must reach it (see README, 'Running on "
        "a cluster').",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Filesystem options for 'storage' (s3: endpoint_url, region, "
        "access_key, secret_key, ...); credentials and endpoint default to the "
        "standard environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
        "...).",
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Where the pipeline runs.")
    sources: dict[str, SourceConfig] = Field(
        min_length=1, description="Input tables by name; other sections refer to them by that name."
    )
    features: FeaturesConfig | None = Field(
        None, description="The feature store: entities, feature views and their online and offline stores."
    )
    training: TrainingConfig | None = Field(None, description="The model to train and tune.")
    serving: ServingConfig | None = Field(None, description="The HTTP endpoint (Ray Serve) that serves the model.")
    monitoring: MonitoringConfig | None = Field(
        None,
        description="Drift, data quality, performance and skew checks on the served traffic; alerts and retraining.",
    )
    registry: RegistryConfig = Field(
        default_factory=RegistryConfig, description="MLflow tracking and the model registry."
    )
    cache: bool = Field(True, description="Skip steps whose inputs are unchanged (see `raymlops run --no-cache`).")

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.name


def _features_issues(cfg: PipelineConfig) -> list[Issue]:
    f = cfg.features
    if f is None:
        return []
    out: list[Issue] = []
    entities = [e.name for e in f.entities]
    for i, name in enumerate(entities):
        if entities.index(name) != i:
            out.append((("features", "entities", i, "name"), f"entity {name!r} is declared twice"))
    views = [v.name for v in f.views]
    for i, v in enumerate(f.views):
        where: tuple[str | int, ...] = ("features", "views", i)
        if views.index(v.name) != i:
            out.append((where + ("name",), f"view {v.name!r} is declared twice"))
        if v.entity not in entities:
            out.append((where + ("entity",), f"unknown entity {v.entity!r}; defined: {entities}"))
        if v.source not in cfg.sources:
            out.append((where + ("source",), f"unknown source {v.source!r}; defined: {sorted(cfg.sources)}"))
        keys = set(f.entity(v.entity).join_keys) if v.entity in entities else set()
        reserved = keys | {v.timestamp} | ({v.created_timestamp} if v.created_timestamp else set())
        for j, field in enumerate(v.fields):
            if field in reserved:
                out.append((where + ("fields", j), f"{field!r} is a join key or timestamp, not a feature"))
    return out


def _training_data_issues(cfg: PipelineConfig, t: TrainingConfig) -> list[Issue]:
    """The training data exists: its source, or the dataset's labels and features; a time split has a timestamp."""
    out: list[Issue] = []
    if t.dataset is not None:
        d = t.dataset
        if d.labels not in cfg.sources:
            out.append(
                (("training", "dataset", "labels"), f"unknown source {d.labels!r}; defined: {sorted(cfg.sources)}")
            )
        elif not (d.event_timestamp or cfg.sources[d.labels].timestamp):
            out.append(
                (
                    ("training", "dataset", "event_timestamp"),
                    f"set it, or sources.{d.labels}.timestamp: the time each label row is observed",
                )
            )
        for i, ref in enumerate(d.features):
            why = feature_ref_issue(ref, cfg.features)
            if why:
                out.append((("training", "dataset", "features", i), why))
        if (
            isinstance(t.split, TimeSplit)
            and d.labels in cfg.sources
            and not cfg.sources[d.labels].timestamp
            and not d.event_timestamp
        ):
            out.append((("training", "split", "type"), "'time' needs the labels' event timestamp"))
    elif t.source not in cfg.sources:
        out.append((("training", "source"), f"unknown source {t.source!r}; defined: {sorted(cfg.sources)}"))
    elif isinstance(t.split, TimeSplit) and not cfg.sources[t.source].timestamp:
        out.append((("training", "split", "type"), f"'time' needs sources.{t.source}.timestamp to be set"))
    return out


def _metric_issues(cfg: PipelineConfig, t: TrainingConfig) -> list[Issue]:
    """Every metric setting names a metric of the training task, whichever way the training data comes."""
    perf = cfg.monitoring.performance if cfg.monitoring else None
    settings: list[tuple[tuple[str | int, ...], str | None]] = [
        (("training", "tune", "metric"), t.tune.metric),
        (("registry", "promotion", "metric"), cfg.registry.promotion.metric),
        (("monitoring", "performance", "metric"), perf.metric if perf else None),
    ]
    return [(where, why) for where, metric in settings if (why := metric_issue(metric, t.task))]


def _registry_issues(cfg: PipelineConfig) -> list[Issue]:
    out: list[Issue] = []
    p = cfg.registry.promotion
    if p.min is not None and p.max is not None and p.min > p.max:
        out.append((("registry", "promotion", "min"), f"min {p.min} is above max {p.max}"))
    if p.otherwise is not None and p.otherwise == p.alias:
        out.append((("registry", "promotion", "otherwise"), f"must differ from alias {p.alias!r}"))
    s = cfg.serving
    if s is not None and not cfg.registry.enabled:
        refs: list[tuple[tuple[str | int, ...], str | None]] = [(("serving", "model"), s.model)]
        refs += [(("serving", "variants", i, "model"), v.model) for i, v in enumerate(s.variants or [])]
        refs += [(("serving", "shadow", i, "model"), v.model) for i, v in enumerate(s.shadow)]
        out += [
            (where, "serving a registered model needs registry.enabled: true")
            for where, ref in refs
            if (ref or "").startswith("models:/")
        ]
    return out


def cross_field_issues(cfg: PipelineConfig) -> list[Issue]:
    """Checks that span sections; returns (key path, message) pairs."""
    out: list[Issue] = []
    if "://" in cfg.storage:
        scheme, _, rest = cfg.storage.partition("://")
        if not scheme.isidentifier() or (scheme != "file" and not rest.strip("/")):
            out.append(
                (
                    ("storage",),
                    f"got {cfg.storage!r}; expected a path, file:///path, s3://bucket[/prefix] or gs://bucket[/prefix]",
                )
            )
    out += _features_issues(cfg)
    t = cfg.training
    if t is not None:
        out += _training_data_issues(cfg, t)
        out += _metric_issues(cfg, t)
        out += training_issues(t)
    s = cfg.serving
    if s is not None and s.features and (t is None or t.dataset is None):
        out.append((("serving", "features"), "fetching features online needs 'training.dataset' (its feature list)"))
    out += _registry_issues(cfg)
    unnamed = s is not None and (
        not s.variants or any(ref is None for ref in [*(v.model for v in s.variants), *(x.model for x in s.shadow)])
    )
    if s is not None and t is None and s.model is None and unnamed:
        out.append((("serving",), "serving needs a 'training' section (the model to serve)"))
    out += serving_issues(s)
    out += monitoring_issues(cfg.monitoring, t is not None, sorted(cfg.sources))
    if cfg.monitoring is not None and cfg.monitoring.skew is not None:
        if s is None or not s.features or s.request_log is None:
            out.append(
                (
                    ("monitoring", "skew"),
                    "the skew check compares the features served by entity key, as "
                    "the request log records them: it needs serving.features: true "
                    "and serving.request_log",
                )
            )
    out += _loop_issues(cfg)
    return out


def _loop_issues(cfg: PipelineConfig) -> list[Issue]:
    """Performance needs the request log; retraining needs the challenger to meet traffic."""
    m, s = cfg.monitoring, cfg.serving
    out: list[Issue] = []
    if m is None:
        return out
    if m.performance is not None and (s is None or s.request_log is None):
        out.append((("monitoring", "performance"), "joining late labels needs serving.request_log"))
    if m.retrain is not None:
        if not cfg.registry.enabled:
            out.append((("monitoring", "retrain"), "retraining registers challengers: needs registry.enabled: true"))
        challenger = f"models:/{cfg.model_name}@challenger"
        shadows = [x.model for x in (s.shadow if s else [])]
        canary = s.canary.variant if s and s.canary else None
        canary_model = next((v.model for v in (s.variants or []) if v.name == canary), None) if s else None
        if m.retrain.deploy == "shadow" and challenger not in shadows:
            out.append(
                (("monitoring", "retrain", "deploy"), f"'shadow' needs a serving.shadow entry with model: {challenger}")
            )
        if m.retrain.deploy == "canary" and canary_model != challenger:
            out.append(
                (
                    ("monitoring", "retrain", "deploy"),
                    f"'canary' needs serving.canary on a variant with model: {challenger}",
                )
            )
    return out
