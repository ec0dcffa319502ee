"""Pydantic models that mirror the pipeline YAML key for key."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


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
    format: Literal["parquet", "csv", "json"] = Field(description="File format read by Ray Data.")
    path: str = Field(description="Local path, glob, directory or URI (s3://, gs://, ...).")
    timestamp: str | None = Field(None, description="Event-time column (enables time-based splits).")


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
    num_workers: int = Field(1, ge=1, description="Ray Train data-parallel workers per trial.")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs reserved by each training worker.")
    num_boost_round: int = Field(100, ge=1)
    early_stopping_rounds: int | None = Field(None, ge=1)
    params: dict[str, ParamValue] = Field(default_factory=dict, description="xgboost params; values may be search spaces.")


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
    scheduler: Literal["fifo", "asha"] = "fifo"
    max_concurrent_trials: int | None = Field(None, ge=1)
    seed: int | None = 0


class TrainingConfig(Strict):
    source: str = Field(description="Name of a source under 'sources'.")
    label: str = Field(description="Label column.")
    task: Literal["binary", "multiclass", "regression"]
    exclude: list[str] = Field(default_factory=list, description="Columns never used as features (ids, ...).")
    preprocessing: list[PreprocessStep] = Field(default_factory=list)
    split: SplitConfig = Field(default_factory=RandomSplit)
    model: ModelConfig
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="after")
    def _default_metric(self) -> "TrainingConfig":
        if self.tune.metric is None:
            self.tune.metric = TASK_METRICS[self.task][0]
        if self.tune.mode is None:
            self.tune.mode = "max" if self.tune.metric in MAXIMIZE else "min"
        return self


# ----------------------------------------------------------------------- serving


class ServingConfig(Strict):
    app_name: str | None = Field(None, description="Serve application name; defaults to the pipeline name.")
    route_prefix: str = Field("/", description="HTTP route prefix, e.g. /churn.")
    host: str = Field("127.0.0.1", description="Bind address of the HTTP proxy.")
    port: int = Field(8000, ge=1, le=65535)
    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(0.5, ge=0, description="CPUs per replica.")
    max_ongoing_requests: int = Field(32, ge=1)
    max_batch_rows: int = Field(10_000, ge=1, description="Largest 'instances' list accepted by /predict.")

    @field_validator("route_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f'got "{v}"; route_prefix must start with "/"')
        if len(v) > 1 and v.endswith("/"):
            raise ValueError(f'got "{v}"; route_prefix must not end with "/"')
        return v


# -------------------------------------------------------------------- monitoring


class DriftConfig(Strict):
    window: int = Field(500, ge=10, description="Rows per tested window.")
    p_val: float = Field(0.05, gt=0, lt=1, description="Significance level (Bonferroni-corrected across features).")
    reference_size: int = Field(2000, ge=50, description="Rows of the training split kept as the drift reference.")
    features: list[str] | None = Field(None, description="Input columns to test; default every input column.")


class MonitoringConfig(Strict):
    drift: DriftConfig | None = None


# ------------------------------------------------------------------------- root


class PipelineConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Pipeline name (letters, digits, _ . -).")
    storage: str = Field("./.raymlops", description="Local or shared directory holding runs.")
    ray: RayConfig = Field(default_factory=RayConfig)
    sources: dict[str, SourceConfig] = Field(min_length=1)
    training: TrainingConfig | None = None
    serving: ServingConfig | None = None
    monitoring: MonitoringConfig | None = None


def cross_field_issues(cfg: PipelineConfig) -> list[tuple[tuple, str]]:
    """Checks that span sections; returns (key path, message) pairs."""
    out: list[tuple[tuple, str]] = []
    if "://" in cfg.storage and not cfg.storage.startswith("file://"):
        out.append((("storage",), f"got {cfg.storage!r}; runs are stored on local or shared (NFS) paths for now, "
                                  "remote URIs are not supported yet (sources may be URIs)"))
    t = cfg.training
    if t is not None:
        if t.source not in cfg.sources:
            out.append((("training", "source"), f"unknown source {t.source!r}; defined: {sorted(cfg.sources)}"))
        elif isinstance(t.split, TimeSplit) and not cfg.sources[t.source].timestamp:
            out.append((("training", "split", "type"), f"'time' needs sources.{t.source}.timestamp to be set"))
        if t.tune.metric not in TASK_METRICS[t.task]:
            out.append((("training", "tune", "metric"),
                        f"got {t.tune.metric!r}; task {t.task!r} supports {list(TASK_METRICS[t.task])}"))
    if cfg.serving is not None and t is None:
        out.append((("serving",), "serving needs a 'training' section (the model to serve)"))
    if cfg.monitoring is not None and cfg.monitoring.drift is not None and t is None:
        out.append((("monitoring", "drift"), "drift monitoring needs a 'training' section (its reference data)"))
    return out
