"""The `training` section: preprocessing, search spaces, the model, the split, tuning and the decision threshold;
and the tasks and metrics every section checks against."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator

from raymlops.config.base import IMPORT_PATH, Strict

# ------------------------------------------------------------- tasks and metrics

Task = Literal["binary", "multiclass", "regression"]
BinaryMetric = Literal["auc", "logloss", "accuracy", "f1"]
MulticlassMetric = Literal["logloss", "accuracy", "f1"]
RegressionMetric = Literal["rmse", "mae", "r2"]
Metric = Literal[BinaryMetric, MulticlassMetric, RegressionMetric]
MaximizedMetric = Literal["auc", "accuracy", "f1", "r2"]

TASKS: tuple[Task, ...] = get_args(Task)
METRICS: tuple[Metric, ...] = get_args(Metric)
# The first metric of a task is its default training.tune.metric.
TASK_METRICS: dict[Task, tuple[Metric, ...]] = {
    "binary": get_args(BinaryMetric),
    "multiclass": get_args(MulticlassMetric),
    "regression": get_args(RegressionMetric),
}
MAXIMIZE: frozenset[str] = frozenset(get_args(MaximizedMetric))


def metric_issue(metric: str | None, task: Task) -> str | None:
    """Why ``metric`` is not a metric of ``task`` (None when it is, or is unset): the one check of every
    metric setting (training.tune.metric, registry.promotion.metric, monitoring.performance.metric)."""
    if metric is None or metric in TASK_METRICS[task]:
        return None
    return f"got {metric!r}; task {task!r} supports {list(TASK_METRICS[task])}"


# ----------------------------------------------------------------- preprocessing


class _Columns(Strict):
    """A step over a list of columns."""

    columns: list[str] = Field(min_length=1, description="Columns the step applies to.")


class SelectStep(_Columns):
    """Keeps only `columns` as model inputs; every other input column is dropped."""

    type: Literal["select"] = Field(description="Step kind.")


class DropStep(_Columns):
    """Drops `columns` (those present) from the model inputs."""

    type: Literal["drop"] = Field(description="Step kind.")


class ImputeStep(_Columns):
    """Fills missing values of `columns` with a value fitted on the training split (or a constant)."""

    type: Literal["impute"] = Field(description="Step kind.")
    strategy: Literal["mean", "median", "most_frequent", "constant"] = Field(
        "mean",
        description="mean / median: of the column on the training split (numeric columns); most_frequent: "
        "its most frequent value; constant: `value`.",
    )
    value: float | int | str | bool | None = Field(None, description="Fill value for strategy 'constant'.")

    @model_validator(mode="after")
    def _constant_needs_value(self) -> ImputeStep:
        if self.strategy == "constant" and self.value is None:
            raise ValueError("strategy 'constant' needs a 'value'")
        return self


class StandardScaleStep(_Columns):
    """Scales numeric `columns` to (x - mean) / std, both from the training split (std 0 divides by 1)."""

    type: Literal["standard_scale"] = Field(description="Step kind.")


class MinMaxScaleStep(_Columns):
    """Scales numeric `columns` to (x - min) / (max - min), both from the training split (a constant column
    divides by 1)."""

    type: Literal["minmax_scale"] = Field(description="Step kind.")


class OneHotStep(_Columns):
    """Replaces each categorical column by one 0/1 column per category seen in the training split (missing
    values are a category of their own); unseen categories get zeros."""

    type: Literal["onehot"] = Field(description="Step kind.")
    max_categories: int | None = Field(None, ge=1, description="Keep the N most frequent categories.")


class OrdinalStep(_Columns):
    """Codes each categorical column as the position of its value among the training split's categories
    (sorted as text); unseen and missing values become NaN."""

    type: Literal["ordinal"] = Field(description="Step kind.")


class CustomStep(Strict):
    """Calls your own pandas function on every batch (training, batch scoring and serving alike)."""

    type: Literal["custom"] = Field(description="Step kind.")
    function: str = Field(description="'module:function' taking and returning a pandas DataFrame.")

    @field_validator("function")
    @classmethod
    def _import_path(cls, v: str) -> str:
        if not IMPORT_PATH.fullmatch(v):
            raise ValueError(f"got {v!r}; expected 'package.module:function'")
        return v


PreprocessStep = Annotated[
    SelectStep | DropStep | ImputeStep | StandardScaleStep | MinMaxScaleStep | OneHotStep | OrdinalStep | CustomStep,
    Field(discriminator="type"),
]

# ------------------------------------------------------------------ search space

RangeKind = Literal["uniform", "loguniform", "randint"]
FiniteKind = Literal["choice", "grid"]
SpaceKind = Literal[RangeKind, FiniteKind]
SPACE_KINDS: tuple[SpaceKind, ...] = get_args(SpaceKind)
RANGE_KINDS: tuple[RangeKind, ...] = get_args(RangeKind)
FINITE_KINDS: tuple[FiniteKind, ...] = get_args(FiniteKind)


class SearchSpace(Strict):
    """A tunable value: exactly one of uniform/loguniform/randint/choice/grid."""

    uniform: tuple[float, float] | None = Field(None, description="[low, high]: a float drawn uniformly.")
    loguniform: tuple[float, float] | None = Field(
        None, description="[low, high], both > 0: a float drawn uniformly on a log scale."
    )
    randint: tuple[int, int] | None = Field(
        None, description="[low, high]: an integer drawn uniformly, both bounds included."
    )
    choice: list[Any] | None = Field(
        None, min_length=1, description="One of these values, drawn at random (search: grid tries each)."
    )
    grid: list[Any] | None = Field(
        None, min_length=1, description="Every one of these values, each in its own trials (refused by search: optuna)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchSpace:
        set_ = [k for k in SPACE_KINDS if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"a search space needs exactly one of {', '.join(SPACE_KINDS)}; got {set_ or 'none'}")
        kind = set_[0]
        if kind in RANGE_KINDS:
            lo, hi = getattr(self, kind)
            if not lo < hi:
                raise ValueError(f"{kind}: lower bound must be < upper bound; got [{lo}, {hi}]")
            if kind == "loguniform" and lo <= 0:
                raise ValueError(f"loguniform: bounds must be > 0; got [{lo}, {hi}]")
        return self

    @property
    def kind(self) -> SpaceKind:
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
    """An XGBoost booster (objective from the task), trained in-process or data-parallel with Ray Train."""

    type: Literal["xgboost"] = Field(description="Model kind.")
    distributed: Literal["auto", "always", "never"] = Field(
        "auto",
        description="never: each Tune trial boosts in its own process on splits shared through the object "
        "store (no worker group to start). always: each trial drives a data-parallel Ray Train run of "
        "num_workers workers. auto: data-parallel when num_workers > 1 or the training split is larger than "
        "in_process_max_share of the smallest node's memory, else in-process.",
    )
    in_process_max_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="auto: the largest training split, as a share of the smallest node's memory, trained in-process.",
    )
    cpus_per_trial: float = Field(1, gt=0, description="In-process path: CPUs per trial (xgboost's nthread).")
    device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="cuda: xgboost trains on a GPU (device='cuda'); each in-process trial, or each Ray Train "
        "worker, requests one. Models are scored on CPU wherever they were trained.",
    )
    num_workers: int = Field(1, ge=1, description="Ray Train data-parallel workers per trial.")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs reserved by each training worker.")
    num_boost_round: int = Field(100, ge=1, description="Boosting rounds per trial (ASHA's rungs count them).")
    early_stopping_rounds: int | None = Field(
        None,
        ge=1,
        description="Stop boosting when the validation metric has "
        "not improved for this many rounds; the best "
        "round is kept. Unset: every round.",
    )
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="xgboost params; values may be search spaces."
    )

    @model_validator(mode="after")
    def _paths(self) -> XGBoostModel:
        if self.distributed == "never" and self.num_workers > 1:
            raise ValueError(
                f"distributed: never trains each trial in one process; num_workers must be 1, got {self.num_workers}"
            )
        return self


class SklearnModel(Strict):
    """A scikit-learn estimator, fitted once per Tune trial."""

    type: Literal["sklearn"] = Field(description="Model kind.")
    estimator: str = Field(
        description="Import path of a scikit-learn estimator, e.g. sklearn.ensemble.RandomForestClassifier."
    )
    cpus_per_trial: float = Field(1, gt=0, description="CPUs reserved by each trial.")
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="Estimator params; values may be search spaces."
    )

    @field_validator("estimator")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", v.replace(":", ".")):
            raise ValueError(f"got {v!r}; expected an import path like 'sklearn.linear_model.LogisticRegression'")
        return v


ModelConfig = Annotated[XGBoostModel | SklearnModel, Field(discriminator="type")]


class RandomSplit(Strict):
    """Holds out a random share of the rows for validation."""

    type: Literal["random"] = Field("random", description="Split kind.")
    fraction: float = Field(0.2, gt=0, lt=1, description="Share of rows held out for validation.")
    seed: int = Field(0, description="Seed of the row assignment: the same data and seed give the same split.")


class TimeSplit(Strict):
    """Holds out the latest rows by event time (the source's timestamp, or the labels' event timestamp)."""

    type: Literal["time"] = Field(description="Split kind.")
    fraction: float = Field(0.2, gt=0, lt=1, description="The latest share of rows (by timestamp) held out.")


SplitConfig = Annotated[RandomSplit | TimeSplit, Field(discriminator="type")]


class TuneConfig(Strict):
    """The hyperparameter search: Ray Tune trials over the model's search spaces."""

    num_samples: int = Field(1, ge=1, description="Trials to sample (each grid point is run num_samples times).")
    metric: str | None = Field(None, description="Metric to optimise; default auc / logloss / rmse by task.")
    mode: Literal["min", "max"] | None = Field(None, description="Default follows the metric.")
    search: Literal["random", "grid", "optuna"] = Field(
        "random",
        description="random: each trial samples every search space independently (grid values are all "
        "tried). grid: every combination of grid and choice values, num_samples times each (continuous spaces are "
        "refused). optuna: Tree-structured Parzen Estimator through Tune's Optuna integration, seeded by seed: each "
        "trial is suggested from the results so far (grid values are refused; use choice).",
    )
    scheduler: Literal["fifo", "asha"] = Field(
        "fifo",
        description="fifo: every trial runs to the end. asha: ASHA stops poorly scoring trials early at "
        "rungs of boosting rounds (xgboost reports every tenth of num_boost_round); a sklearn "
        "trial reports once, so it always runs to the end.",
    )
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Trials running at once; default as many as the cluster's CPUs fit."
    )
    seed: int | None = Field(
        0,
        description="Seeds the search algorithm, xgboost and an estimator's random_state "
        "(unless params set it); null: unseeded.",
    )


class TrainingDatasetConfig(Strict):
    """A training set joined from the feature store: each label row gets its features as of its own time."""

    labels: str = Field(description="Source with the join keys, an event timestamp and the label.")
    features: list[str] = Field(min_length=1, description="Feature references 'view:feature' or 'view:*'.")
    event_timestamp: str | None = Field(None, description="Timestamp column of the labels; default its source's.")


class FailureConfig(Strict):
    """Fault tolerance of the search."""

    max_failures: int = Field(
        0,
        ge=-1,
        description="Retries of a trial whose worker dies (-1: unlimited); also "
        "retries the Ray Train worker group inside a trial.",
    )


class DecisionCost(Strict):
    """The cost of each kind of error, for `optimize: cost`."""

    false_positive: float = Field(1.0, ge=0, description="Cost of predicting the positive class for a negative row.")
    false_negative: float = Field(1.0, ge=0, description="Cost of predicting the negative class for a positive row.")


class DecisionConfig(Strict):
    """How a binary classifier turns P(positive) into a predicted class (stored with the model; serving, batch
    scoring and the report use it)."""

    threshold: Literal["auto"] | float = Field(
        "auto",
        description="auto: chosen to optimize `optimize` on out-of-fold scores of the training split (the "
        "best trial's params refitted on `folds` folds; the holdout is never used); or a fixed value in (0, 1).",
    )
    optimize: Literal["f1", "precision_at_recall", "cost"] = Field(
        "f1",
        description="f1: the highest F1. precision_at_recall: the highest precision with recall >= min_recall. "
        "cost: the lowest false_positive * FP + false_negative * FN.",
    )
    min_recall: float = Field(0.8, gt=0, le=1, description="precision_at_recall: the recall to keep.")
    cost: DecisionCost = Field(default_factory=DecisionCost, description="optimize: cost: the cost of each error.")
    folds: int = Field(5, ge=2, le=20, description="threshold: auto: cross-validation folds of the training split.")

    @field_validator("threshold", mode="before")
    @classmethod
    def _auto_or_share(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1):
            return v
        raise ValueError(f"must be 'auto' or a number in (0, 1), got {v!r}")


class TrainingConfig(Strict):
    """What to train: the data (a source or a feature-store dataset), preprocessing, the model and its search."""

    source: str | None = Field(None, description="Name of a source under 'sources' (or use 'dataset').")
    dataset: TrainingDatasetConfig | None = Field(
        None, description="A point-in-time-correct training set: labels joined with features as of each row's time."
    )
    label: str = Field(description="Label column.")
    task: Task = Field(
        description="binary / multiclass classification, or regression; sets the objective and the metrics."
    )
    positive_class: str | int | bool | None = Field(
        None,
        description="Binary task: the label value that is the positive class (what `probability` and the "
        "auc/f1 metrics are about). Default: the larger of the two values in sort order (1 over 0, "
        "True over False, 'Yes' over 'No'); set it for labels like 'bad'/'good'.",
    )
    exclude: list[str] = Field(default_factory=list, description="Columns never used as features (ids, ...).")
    preprocessing: list[PreprocessStep] = Field(
        default_factory=list,
        description="Steps fitted in order on the training split's input columns, saved with "
        "the model and applied the same way in batch scoring and serving.",
    )
    split: SplitConfig = Field(default_factory=RandomSplit, description="How the validation holdout is chosen.")
    model: ModelConfig = Field(description="The model and its params (search spaces allowed), by `type`.")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="The hyperparameter search.")
    decision: DecisionConfig | None = Field(
        None,
        description="Binary task: the decision threshold (default: a fixed 0.5). Trials are still compared "
        "on their metrics at 0.5; the holdout's accuracy and f1 use the chosen threshold.",
    )
    failure: FailureConfig = Field(default_factory=FailureConfig, description="Retries of failed trials.")
    explore: bool = Field(
        False,
        description="Profile the training split (`raymlops explore`: distributions, "
        "label associations, warnings) into the run's explore/ folder and "
        "MLflow, as HTML and JSON.",
    )

    @field_validator("positive_class")
    @classmethod
    def _binary_only(cls, v: str | int | bool | None, info: ValidationInfo) -> str | int | bool | None:
        if v is not None and info.data.get("task") != "binary":
            raise ValueError(
                f"got {v!r}; positive_class is for task 'binary' only, this task is {info.data.get('task')!r}"
            )
        return v

    @model_validator(mode="after")
    def _default_metric(self) -> TrainingConfig:
        if (self.source is None) == (self.dataset is None):
            raise ValueError("set exactly one of 'source' (a table) or 'dataset' (labels + features)")
        if self.tune.metric is None:
            self.tune.metric = TASK_METRICS[self.task][0]
        if self.tune.mode is None:
            self.tune.mode = "max" if self.tune.metric in MAXIMIZE else "min"
        return self


def training_issues(t: TrainingConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """The decision threshold and params fit the task, and every search space fits the search algorithm (the
    metric is checked with the other metric settings: ``metric_issue``)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    if t.decision is not None and t.task != "binary":
        out.append((("training", "decision"), f"a decision threshold is for task 'binary'; this task is {t.task!r}"))
    for key, v in t.model.params.items():
        if key == "scale_pos_weight" and v == "auto" and (t.task != "binary" or t.model.type != "xgboost"):
            out.append(
                (
                    ("training", "model", "params", key),
                    "auto (negatives / positives of the training split) "
                    f"is for xgboost on task 'binary'; this is {t.model.type} on {t.task!r}",
                )
            )
        if not isinstance(v, SearchSpace):
            continue
        where = ("training", "model", "params", key, v.kind)
        if t.tune.search == "grid" and v.kind not in FINITE_KINDS:
            out.append(
                (
                    where,
                    f"search: grid tries every combination of finite values; got a {v.kind} range; "
                    "use grid: [...] or choice: [...], or search: random | optuna",
                )
            )
        if t.tune.search == "optuna" and v.kind == "grid":
            out.append((where, "search: optuna suggests each value from the results so far; grid must be choice here"))
    return out
