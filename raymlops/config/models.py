"""Pydantic models that mirror the pipeline YAML key for key."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from raymlops.config.base import Strict
from raymlops.config.features import (  # noqa: F401  (re-exported: the features section lives there)
    AGG_FUNCTIONS,
    AggregationConfig,
    Duration,
    EntityConfig,
    FeatureServerConfig,
    FeatureViewConfig,
    FeaturesConfig,
    OfflineStoreConfig,
    OnlineStoreConfig,
    RedisOnlineStoreConfig,
    SqliteOnlineStoreConfig,
    duration_seconds,
    feature_ref_issue,
)
from raymlops.config.monitoring import MonitoringConfig, monitoring_issues
from raymlops.config.serving import ServingConfig, serving_issues


# --------------------------------------------------------------------------- ray


class RayConfig(Strict):
    address: str | None = Field(
        None, description="Ray cluster address ('auto', 'ray://host:10001'); unset starts a local Ray."
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray (ignored when address is set).")
    object_store_memory_mb: int | None = Field(None, ge=64, description="Object store size for a local Ray.")
    namespace: str = Field("raymlops", description="Ray namespace for named actors.")


# ----------------------------------------------------------------------- sources


class SourceConfig(Strict):
    format: Literal["parquet", "csv", "json", "delta", "iceberg"] | None = Field(
        None, description="File format; default: from the files' extension, else their content (Parquet's magic "
                          "bytes, a JSON object, else CSV). delta: a Delta Lake table at path; iceberg: the Iceberg "
                          "table path names (namespace.table) in `catalog`.")
    path: str = Field(description="Local path, glob, directory or URI (s3://, gs://, ...); for delta the table's "
                                  "root, for iceberg the table identifier (namespace.table).")
    version: int | None = Field(None, ge=0, description="delta: the table version to read (time travel); default "
                                                        "the latest.")
    snapshot: int | None = Field(None, description="iceberg: the snapshot id to read; default the current one.")
    as_of: str | None = Field(None, description="delta / iceberg: read the version current at this ISO time "
                                                "(UTC unless it has an offset).")
    catalog: dict[str, str] | None = Field(
        None, description="iceberg: pyiceberg catalog properties, e.g. {type: sql, uri: 'sqlite:///cat.db', "
                          "warehouse: 'file:///wh'} or {type: rest, uri: ...}.")
    timestamp: str | None = Field(None, description="Event-time column (enables time-based splits).")
    filter: list[tuple[str, Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"], Any]] | None = Field(
        None, description="Partition filters of a Hive-partitioned directory (as Spark writes them), each "
                          "[column, op, value] (a list of values for in / not in), all of which must hold: files "
                          "of other partitions are never read.")

    @model_validator(mode="after")
    def _table_settings(self) -> "SourceConfig":
        fmt = self.format
        if self.version is not None and fmt != "delta":
            raise ValueError(f"version is for format: delta, got format {fmt!r}")
        if (self.snapshot is not None or self.catalog is not None) and fmt != "iceberg":
            raise ValueError(f"snapshot and catalog are for format: iceberg, got format {fmt!r}")
        if self.as_of is not None:
            if fmt not in ("delta", "iceberg"):
                raise ValueError(f"as_of is for format: delta or iceberg, got format {fmt!r}")
            import datetime as dt

            try:
                dt.datetime.fromisoformat(self.as_of.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"as_of must be an ISO time such as 2024-06-01T00:00:00Z, got {self.as_of!r}") from None
            if self.version is not None or self.snapshot is not None:
                raise ValueError("set as_of or a version/snapshot, not both")
        if fmt == "iceberg" and not self.catalog:
            raise ValueError("format: iceberg needs catalog (pyiceberg catalog properties)")
        if self.filter and fmt in ("delta", "iceberg"):
            raise ValueError(f"filter prunes Hive partitions of files; format {fmt} tables are read whole")
        return self



# ----------------------------------------------------------------- preprocessing


class _Columns(Strict):
    columns: list[str] = Field(min_length=1, description="Columns the step applies to.")


class SelectStep(_Columns):
    type: Literal["select"]


class DropStep(_Columns):
    type: Literal["drop"]


class ImputeStep(_Columns):
    type: Literal["impute"]
    strategy: Literal["mean", "median", "most_frequent", "constant"] = "mean"
    value: float | int | str | bool | None = Field(None, description="Fill value for strategy 'constant'.")

    @model_validator(mode="after")
    def _constant_needs_value(self) -> "ImputeStep":
        if self.strategy == "constant" and self.value is None:
            raise ValueError("strategy 'constant' needs a 'value'")
        return self


class StandardScaleStep(_Columns):
    type: Literal["standard_scale"]


class MinMaxScaleStep(_Columns):
    type: Literal["minmax_scale"]


class OneHotStep(_Columns):
    type: Literal["onehot"]
    max_categories: int | None = Field(None, ge=1, description="Keep the N most frequent categories.")


class OrdinalStep(_Columns):
    type: Literal["ordinal"]


class CustomStep(Strict):
    type: Literal["custom"]
    function: str = Field(description="'module:function' taking and returning a pandas DataFrame.")

    @field_validator("function")
    @classmethod
    def _import_path(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError(f"got {v!r}; expected 'package.module:function'")
        return v


PreprocessStep = Annotated[
    Union[
        SelectStep, DropStep, ImputeStep, StandardScaleStep, MinMaxScaleStep, OneHotStep, OrdinalStep, CustomStep
    ],
    Field(discriminator="type"),
]

# ------------------------------------------------------------------ search space

SPACE_KINDS = ("uniform", "loguniform", "randint", "choice", "grid")


class SearchSpace(Strict):
    """A tunable value: exactly one of uniform/loguniform/randint/choice/grid."""

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    choice: list[Any] | None = Field(None, min_length=1)
    grid: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> "SearchSpace":
        set_ = [k for k in SPACE_KINDS if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"a search space needs exactly one of {', '.join(SPACE_KINDS)}; got {set_ or 'none'}")
        kind = set_[0]
        if kind in ("uniform", "loguniform", "randint"):
            lo, hi = getattr(self, kind)
            if not lo < hi:
                raise ValueError(f"{kind}: lower bound must be < upper bound; got [{lo}, {hi}]")
            if kind == "loguniform" and lo <= 0:
                raise ValueError(f"loguniform: bounds must be > 0; got [{lo}, {hi}]")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in SPACE_KINDS if getattr(self, k) is not None)


def _parse_param(v: Any) -> Any:
    """A param is a plain value, or a one-key mapping that declares a search space."""
    if not isinstance(v, dict):
        return v
    try:
        return SearchSpace.model_validate(v)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown search space {where!r}; expected one of {', '.join(SPACE_KINDS)}"
            where = ""
        raise ValueError(f"{where}: {msg}" if where else msg) from None


ParamValue = Annotated[Any, AfterValidator(_parse_param)]

# ------------------------------------------------------------------------ models


class XGBoostModel(Strict):
    type: Literal["xgboost"]
    distributed: Literal["auto", "always", "never"] = Field(
        "auto", description="never: each Tune trial boosts in its own process on splits shared through the object "
        "store (no worker group to start). always: each trial drives a data-parallel Ray Train run of "
        "num_workers workers. auto: data-parallel when num_workers > 1 or the training split is larger than "
        "in_process_max_share of the smallest node's memory, else in-process.")
    in_process_max_share: float = Field(0.25, gt=0, le=1, description="auto: the largest training split, as a share "
                                                                     "of the smallest node's memory, trained in-process.")
    cpus_per_trial: float = Field(1, gt=0, description="In-process path: CPUs per trial (xgboost's nthread).")
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="cuda: xgboost trains on a GPU (device='cuda'); each in-process trial, or each Ray Train "
        "worker, requests one. Models are scored on CPU wherever they were trained.")
    num_workers: int = Field(1, ge=1, description="Ray Train data-parallel workers per trial.")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs reserved by each training worker.")
    num_boost_round: int = Field(100, ge=1)
    early_stopping_rounds: int | None = Field(None, ge=1)
    params: dict[str, ParamValue] = Field(default_factory=dict, description="xgboost params; values may be search spaces.")

    @model_validator(mode="after")
    def _paths(self) -> "XGBoostModel":
        if self.distributed == "never" and self.num_workers > 1:
            raise ValueError(f"distributed: never trains each trial in one process; num_workers must be 1, got "
                             f"{self.num_workers}")
        return self


class SklearnModel(Strict):
    type: Literal["sklearn"]
    estimator: str = Field(description="Import path of a scikit-learn estimator, e.g. sklearn.ensemble.RandomForestClassifier.")
    cpus_per_trial: float = Field(1, gt=0)
    params: dict[str, ParamValue] = Field(default_factory=dict, description="Estimator params; values may be search spaces.")

    @field_validator("estimator")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", v.replace(":", ".")):
            raise ValueError(f"got {v!r}; expected an import path like 'sklearn.linear_model.LogisticRegression'")
        return v


ModelConfig = Annotated[Union[XGBoostModel, SklearnModel], Field(discriminator="type")]


class RandomSplit(Strict):
    type: Literal["random"] = "random"
    fraction: float = Field(0.2, gt=0, lt=1, description="Share of rows held out for validation.")
    seed: int = 0


class TimeSplit(Strict):
    type: Literal["time"]
    fraction: float = Field(0.2, gt=0, lt=1, description="The latest share of rows (by timestamp) held out.")


SplitConfig = Annotated[Union[RandomSplit, TimeSplit], Field(discriminator="type")]

TASK_METRICS = {
    "binary": ("auc", "logloss", "accuracy", "f1"),
    "multiclass": ("logloss", "accuracy", "f1"),
    "regression": ("rmse", "mae", "r2"),
}
MAXIMIZE = {"auc", "accuracy", "f1", "r2"}


class TuneConfig(Strict):
    num_samples: int = Field(1, ge=1, description="Trials to sample (each grid point is run num_samples times).")
    metric: str | None = Field(None, description="Metric to optimise; default auc / logloss / rmse by task.")
    mode: Literal["min", "max"] | None = Field(None, description="Default follows the metric.")
    search: Literal["random", "grid", "optuna"] = Field(
        "random", description="random: each trial samples every search space independently (grid values are all "
        "tried). grid: every combination of grid and choice values, num_samples times each (continuous spaces are "
        "refused). optuna: Tree-structured Parzen Estimator through Tune's Optuna integration, seeded by seed: each "
        "trial is suggested from the results so far (grid values are refused; use choice).")
    scheduler: Literal["fifo", "asha"] = "fifo"
    max_concurrent_trials: int | None = Field(None, ge=1)
    seed: int | None = 0


class TrainingDatasetConfig(Strict):
    labels: str = Field(description="Source with the join keys, an event timestamp and the label.")
    features: list[str] = Field(min_length=1, description="Feature references 'view:feature' or 'view:*'.")
    event_timestamp: str | None = Field(None, description="Timestamp column of the labels; default its source's.")


class FailureConfig(Strict):
    max_failures: int = Field(0, ge=-1, description="Retries of a trial whose worker dies (-1: unlimited); also "
                                                     "retries the Ray Train worker group inside a trial.")


class DecisionCost(Strict):
    false_positive: float = Field(1.0, ge=0, description="Cost of predicting the positive class for a negative row.")
    false_negative: float = Field(1.0, ge=0, description="Cost of predicting the negative class for a positive row.")


class DecisionConfig(Strict):
    """How a binary classifier turns P(positive) into a predicted class (stored with the model; serving, batch
    scoring and the report use it)."""

    threshold: Literal["auto"] | float = Field(
        "auto", description="auto: chosen to optimize `optimize` on out-of-fold scores of the training split (the "
        "best trial's params refitted on `folds` folds; the holdout is never used); or a fixed value in (0, 1).")
    optimize: Literal["f1", "precision_at_recall", "cost"] = Field(
        "f1", description="f1: the highest F1. precision_at_recall: the highest precision with recall >= min_recall. "
        "cost: the lowest false_positive * FP + false_negative * FN.")
    min_recall: float = Field(0.8, gt=0, le=1, description="precision_at_recall: the recall to keep.")
    cost: DecisionCost = Field(default_factory=DecisionCost, description="optimize: cost: the cost of each error.")
    folds: int = Field(5, ge=2, le=20, description="threshold: auto: cross-validation folds of the training split.")

    @field_validator("threshold", mode="before")
    @classmethod
    def _auto_or_share(cls, v):
        if v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1):
            return v
        raise ValueError(f"must be 'auto' or a number in (0, 1), got {v!r}")


class TrainingConfig(Strict):
    source: str | None = Field(None, description="Name of a source under 'sources' (or use 'dataset').")
    dataset: TrainingDatasetConfig | None = Field(
        None, description="A point-in-time-correct training set: labels joined with features as of each row's time.")
    label: str = Field(description="Label column.")
    task: Literal["binary", "multiclass", "regression"]
    positive_class: str | int | bool | None = Field(
        None, description="Binary task: the label value that is the positive class (what `probability` and the "
                          "auc/f1 metrics are about). Default: the larger of the two values in sort order (1 over 0, "
                          "True over False, 'Yes' over 'No'); set it for labels like 'bad'/'good'.")
    exclude: list[str] = Field(default_factory=list, description="Columns never used as features (ids, ...).")
    preprocessing: list[PreprocessStep] = Field(default_factory=list)
    split: SplitConfig = Field(default_factory=RandomSplit)
    model: ModelConfig
    tune: TuneConfig = Field(default_factory=TuneConfig)
    decision: DecisionConfig | None = Field(
        None, description="Binary task: the decision threshold (default: a fixed 0.5). Trials are still compared "
                          "on their metrics at 0.5; the holdout's accuracy and f1 use the chosen threshold.")
    failure: FailureConfig = Field(default_factory=FailureConfig)
    explore: bool = Field(False, description="Profile the training split (`raymlops explore`: distributions, "
                                             "label associations, warnings) into the run's explore/ folder and "
                                             "MLflow, as HTML and JSON.")

    @field_validator("positive_class")
    @classmethod
    def _binary_only(cls, v, info):
        if v is not None and info.data.get("task") != "binary":
            raise ValueError(f"got {v!r}; positive_class is for task 'binary' only, this task is "
                             f"{info.data.get('task')!r}")
        return v

    @model_validator(mode="after")
    def _default_metric(self) -> "TrainingConfig":
        if (self.source is None) == (self.dataset is None):
            raise ValueError("set exactly one of 'source' (a table) or 'dataset' (labels + features)")
        if self.tune.metric is None:
            self.tune.metric = TASK_METRICS[self.task][0]
        if self.tune.mode is None:
            self.tune.mode = "max" if self.tune.metric in MAXIMIZE else "min"
        return self


# ---------------------------------------------------------------------- registry

class PromotionConfig(Strict):
    alias: str = Field("champion", pattern=r"^[A-Za-z0-9_-]+$", description="Alias a passing version takes.")
    otherwise: str | None = Field("challenger", pattern=r"^[A-Za-z0-9_-]+$",
                                  description="Alias a version that fails a gate takes (null: none).")
    metric: str | None = Field(None, description="Gate metric; default training.tune.metric.")
    min: float | None = Field(None, description="The metric must be >= min.")
    max: float | None = Field(None, description="The metric must be <= max.")
    beat_champion_by: float | None = Field(
        0.0, description="The metric must beat the current holder of 'alias', scored on the same holdout, by at "
                         "least this much (in the metric's better direction; 0.0 lets a tie pass; null: no "
                         "comparison).")


class RegistryConfig(Strict):
    enabled: bool = Field(True, description="Track runs in MLflow and register models.")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else "
                                                        "sqlite:///<storage>/mlflow.db with artifacts under storage.")
    experiment: str | None = Field(None, description="MLflow experiment; default the pipeline name.")
    model_name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                   description="Registered model name; default the pipeline name.")
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)


# ------------------------------------------------------------------------- root


class PipelineConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Pipeline name (letters, digits, _ . -).")
    storage: str = Field("./.raymlops", description="Where all state lives: a local or shared-mount directory, "
                                                     "file://, s3://bucket/prefix or gs://bucket/prefix. Every "
                                                     "node of a cluster must reach it (see README, 'Running on "
                                                     "a cluster').")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="Filesystem options for 'storage' (s3: endpoint_url, region, "
                                          "access_key, secret_key, ...); credentials and endpoint default to the "
                                          "standard environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                                          "...).")
    ray: RayConfig = Field(default_factory=RayConfig)
    sources: dict[str, SourceConfig] = Field(min_length=1)
    features: FeaturesConfig | None = None
    training: TrainingConfig | None = None
    serving: ServingConfig | None = None
    monitoring: MonitoringConfig | None = None
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    cache: bool = Field(True, description="Skip steps whose inputs are unchanged (see `raymlops run --no-cache`).")

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.name


def _features_issues(cfg: PipelineConfig) -> list[tuple[tuple, str]]:
    f = cfg.features
    if f is None:
        return []
    out: list[tuple[tuple, str]] = []
    entities = [e.name for e in f.entities]
    for i, name in enumerate(entities):
        if entities.index(name) != i:
            out.append((("features", "entities", i, "name"), f"entity {name!r} is declared twice"))
    views = [v.name for v in f.views]
    for i, v in enumerate(f.views):
        where = ("features", "views", i)
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


def _tune_issues(t: TrainingConfig) -> list[tuple[tuple, str]]:
    """The tuned metric fits the task, and every search space fits the search algorithm."""
    out: list[tuple[tuple, str]] = []
    if t.tune.metric not in TASK_METRICS[t.task]:
        out.append((("training", "tune", "metric"),
                    f"got {t.tune.metric!r}; task {t.task!r} supports {list(TASK_METRICS[t.task])}"))
    if t.decision is not None and t.task != "binary":
        out.append((("training", "decision"), f"a decision threshold is for task 'binary'; this task is {t.task!r}"))
    for key, v in t.model.params.items():
        if key == "scale_pos_weight" and v == "auto" and (t.task != "binary" or t.model.type != "xgboost"):
            out.append((("training", "model", "params", key), "auto (negatives / positives of the training split) "
                        f"is for xgboost on task 'binary'; this is {t.model.type} on {t.task!r}"))
        if not isinstance(v, SearchSpace):
            continue
        where = ("training", "model", "params", key, v.kind)
        if t.tune.search == "grid" and v.kind not in ("grid", "choice"):
            out.append((where, f"search: grid tries every combination of finite values; got a {v.kind} range; "
                               "use grid: [...] or choice: [...], or search: random | optuna"))
        if t.tune.search == "optuna" and v.kind == "grid":
            out.append((where, "search: optuna suggests each value from the results so far; grid must be choice "
                               "here"))
    return out


def cross_field_issues(cfg: PipelineConfig) -> list[tuple[tuple, str]]:
    """Checks that span sections; returns (key path, message) pairs."""
    out: list[tuple[tuple, str]] = []
    if "://" in cfg.storage:
        scheme, _, rest = cfg.storage.partition("://")
        if not scheme.isidentifier() or (scheme != "file" and not rest.strip("/")):
            out.append((("storage",), f"got {cfg.storage!r}; expected a path, file:///path, s3://bucket[/prefix] "
                                      "or gs://bucket[/prefix]"))
    out += _features_issues(cfg)
    t = cfg.training
    if t is not None and t.dataset is not None:
        d = t.dataset
        if d.labels not in cfg.sources:
            out.append((("training", "dataset", "labels"), f"unknown source {d.labels!r}; defined: {sorted(cfg.sources)}"))
        elif not (d.event_timestamp or cfg.sources[d.labels].timestamp):
            out.append((("training", "dataset", "event_timestamp"),
                        f"set it, or sources.{d.labels}.timestamp: the time each label row is observed"))
        for i, ref in enumerate(d.features):
            why = feature_ref_issue(ref, cfg.features)
            if why:
                out.append((("training", "dataset", "features", i), why))
        if isinstance(t.split, TimeSplit) and d.labels in cfg.sources and not cfg.sources[d.labels].timestamp \
                and not d.event_timestamp:
            out.append((("training", "split", "type"), "'time' needs the labels' event timestamp"))
    elif t is not None:
        if t.source not in cfg.sources:
            out.append((("training", "source"), f"unknown source {t.source!r}; defined: {sorted(cfg.sources)}"))
        elif isinstance(t.split, TimeSplit) and not cfg.sources[t.source].timestamp:
            out.append((("training", "split", "type"), f"'time' needs sources.{t.source}.timestamp to be set"))
    if t is not None:
        out += _tune_issues(t)
    if cfg.serving is not None and cfg.serving.features and (t is None or t.dataset is None):
        out.append((("serving", "features"), "fetching features online needs 'training.dataset' (its feature list)"))
    p = cfg.registry.promotion
    if t is not None and p.metric is not None and p.metric not in TASK_METRICS[t.task]:
        out.append((("registry", "promotion", "metric"),
                    f"got {p.metric!r}; task {t.task!r} supports {list(TASK_METRICS[t.task])}"))
    if p.min is not None and p.max is not None and p.min > p.max:
        out.append((("registry", "promotion", "min"), f"min {p.min} is above max {p.max}"))
    if p.otherwise is not None and p.otherwise == p.alias:
        out.append((("registry", "promotion", "otherwise"), f"must differ from alias {p.alias!r}"))
    if cfg.serving is not None and not cfg.registry.enabled:
        s = cfg.serving
        refs = [(("serving", "model"), s.model)]
        refs += [(("serving", "variants", i, "model"), v.model) for i, v in enumerate(s.variants or [])]
        refs += [(("serving", "shadow", i, "model"), v.model) for i, v in enumerate(s.shadow)]
        out += [(where, "serving a registered model needs registry.enabled: true")
                for where, ref in refs if (ref or "").startswith("models:/")]
    unnamed = cfg.serving is not None and (not cfg.serving.variants or any(
        m.model is None for m in [*cfg.serving.variants, *cfg.serving.shadow]))
    if cfg.serving is not None and t is None and cfg.serving.model is None and unnamed:
        out.append((("serving",), "serving needs a 'training' section (the model to serve)"))
    out += serving_issues(cfg.serving)
    out += monitoring_issues(cfg.monitoring, t is not None, sorted(cfg.sources))
    if cfg.monitoring is not None and cfg.monitoring.skew is not None:
        s = cfg.serving
        if s is None or not s.features or s.request_log is None:
            out.append((("monitoring", "skew"), "the skew check compares the features served by entity key, as "
                                                "the request log records them: it needs serving.features: true "
                                                "and serving.request_log"))
    out += _loop_issues(cfg)
    perf = cfg.monitoring.performance if cfg.monitoring else None
    if t is not None and perf is not None and perf.metric not in TASK_METRICS[t.task]:
        out.append((("monitoring", "performance", "metric"),
                    f"got {perf.metric!r}; task {t.task!r} supports {list(TASK_METRICS[t.task])}"))
    return out


def _loop_issues(cfg: PipelineConfig) -> list[tuple[tuple, str]]:
    """Performance needs the request log; retraining needs the challenger to meet traffic."""
    m, s = cfg.monitoring, cfg.serving
    out: list[tuple[tuple, str]] = []
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
            out.append((("monitoring", "retrain", "deploy"), f"'shadow' needs a serving.shadow entry with model: "
                                                             f"{challenger}"))
        if m.retrain.deploy == "canary" and canary_model != challenger:
            out.append((("monitoring", "retrain", "deploy"), f"'canary' needs serving.canary on a variant with "
                                                             f"model: {challenger}"))
    return out
