"""Runs the hyperparameter search with Ray Tune and picks the best trial."""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from raymlops.config.training import METRICS, ModelConfig, SklearnModel, XGBoostModel
from raymlops.errors import RaymlopsError
from raymlops.training.xgb import CURVE_FILE

_MODEL: TypeAdapter[XGBoostModel | SklearnModel] = TypeAdapter(ModelConfig)


@dataclass
class TrainSpec:
    """Everything a trial needs besides its params (shipped to trials and Train workers)."""

    task: str
    label: str
    feature_columns: list[str]
    n_classes: int | None
    model: XGBoostModel | SklearnModel  # the model section (its JSON shape is validated into it)
    metric: str
    mode: str
    seed: int | None = 0
    storage_dir: str = ""
    storage_fs: Any = None  # pyarrow filesystem of storage_dir (None: local or shared disk)
    report_every: int = 0  # report intermediate results every N boosting rounds (0: only the final one)
    max_failures: int = 0  # retries of a trial (Tune) and of its worker group (Ray Train)
    path: str = ""  # xgboost: "in-process" or "data-parallel" (chosen by run_search)
    scale_pos_weight: float | None = None  # xgboost, binary: negatives / positives of the training split

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = _MODEL.validate_python(self.model)


@dataclass
class SearchResult:
    best_params: dict[str, Any]
    best_metrics: dict[str, float]
    model_path: str  # in the best trial's checkpoint, on ``model_fs`` (None: this machine's disk)
    trials: list[dict[str, Any]] = field(default_factory=list)
    model_fs: Any = None

    def copy_model(self, dst: str | os.PathLike) -> None:
        """Copies the best model to a local file (from the checkpoint wherever the trial stored it)."""
        import pyarrow.fs as pafs

        local = pafs.LocalFileSystem()
        pafs.copy_files(
            self.model_path, str(dst), source_filesystem=self.model_fs or local, destination_filesystem=local
        )


class TrainingError(RaymlopsError):
    """Every trial failed."""


_KEEP = METRICS


def _clean(metrics: dict) -> dict[str, float]:
    return {k: float(metrics[k]) for k in _KEEP if k in metrics and metrics[k] is not None}


def _completed(r, metric: str) -> bool:
    """A trial that ran to the end: its last result carries the metric and the model (ASHA-stopped trials
    carry only intermediate metrics)."""
    m = r.metrics or {}
    return (
        r.error is None
        and metric in m
        and not math.isnan(float(m[metric]))
        and "model_file" in m
        and ("checkpoint_path" in m or r.checkpoint is not None)
    )


def _default_concurrency(cpus_per_trial: float, keep_free: int) -> int:
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int((cpus - keep_free) // max(cpus_per_trial, 1e-9)))


def _check_gpus(model: XGBoostModel | SklearnModel) -> None:
    """device: cuda on a cluster without GPUs would leave every trial pending forever: refuse it now."""
    import ray

    if getattr(model, "device", "cpu") == "cuda" and ray.cluster_resources().get("GPU", 0) < 1:
        raise TrainingError(
            "training.model.device is 'cuda' but this Ray cluster has no GPU; set device: cpu, or "
            "start Ray on a machine with one"
        )


def xgboost_path(model: XGBoostModel | dict[str, Any], train_ds) -> str:
    """ "data-parallel" or "in-process" for an xgboost search (see XGBoostModel.distributed)."""
    if isinstance(model, dict):  # the section's JSON shape
        model = XGBoostModel.model_validate({"type": "xgboost", **model})
    if model.distributed == "always" or model.num_workers > 1:
        return "data-parallel"
    if model.distributed == "never":
        return "in-process"
    import ray

    memory = [n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")]
    limit = model.in_process_max_share * min(memory or [0])
    return "data-parallel" if train_ds.size_bytes() > limit else "in-process"


def _checkpoint(r, spec) -> tuple[str | None, Any]:
    """(path, filesystem) of a trial's final checkpoint: the Train run's (xgboost, reported through
    TuneReportCallback) or the Tune trial's own (scikit-learn)."""
    if r.checkpoint is not None:
        return r.checkpoint.path, r.checkpoint.filesystem
    path = (r.metrics or {}).get("checkpoint_path")
    return path, spec.storage_fs


def _read_text(path: str, fs) -> str | None:
    import pyarrow.fs as pafs

    fs = fs or pafs.LocalFileSystem()
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode()
    except (OSError, FileNotFoundError):
        return None


def _history(r, time_attr: str, spec=None) -> dict[str, list[tuple[int, float]]]:
    """Every metric a trial reported, per step (boosting round or iteration), plus the full validation
    curve a finished xgboost trial saved beside its model."""
    out: dict[str, list[tuple[int, float]]] = {}
    df = r.metrics_dataframe
    if df is not None and len(df) and time_attr in df:
        for col in df.columns:
            if col in _KEEP or col.startswith("round_"):
                pts = [(int(s), float(v)) for s, v in zip(df[time_attr], df[col]) if v == v and s == s]
                if pts:
                    out[col] = pts
    ckpt, fs = _checkpoint(r, spec) if spec is not None else (None, None)
    text = _read_text(f"{ckpt}/{CURVE_FILE}", fs) if ckpt else None
    if text:
        for k, vals in json.loads(text).items():
            out[k] = [(i + 1, v) for i, v in enumerate(vals)]
    return out


def run_search(
    spec: TrainSpec,
    tune_cfg,
    params: dict[str, Any],
    train_ds,
    valid_ds,
    storage_dir: str,
    progress: bool = True,
    resume: bool = False,
    storage_fs=None,
) -> SearchResult:
    """Runs ``tune_cfg.num_samples`` trials and returns the best one by ``spec.metric``.

    Args:
        spec: Task, columns and model settings.
        tune_cfg: The ``training.tune`` section.
        params: Model params as configured (values may be SearchSpace).
        train_ds: Preprocessed training split (Ray Dataset with feature and label columns).
        valid_ds: Preprocessed validation split.
        storage_dir: Where Tune keeps its experiment state: an absolute local (or shared) directory, or a
            path on ``storage_fs``; every node writes there (trial results, Train checkpoints).
        progress: Print Tune's progress table.
        resume: Restore the search already under ``storage_dir`` (Tuner.restore): finished trials are kept,
            unfinished and errored ones run again.
        storage_fs: pyarrow filesystem of ``storage_dir`` (an object store), or None.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    # Tune's settings (strict metric checking off, state saved every 2 s): raymlops.data.ray_env.SETTINGS.
    from raymlops.data.ray_env import SETTINGS
    from raymlops.training import sk, xgb
    from raymlops.training.space import to_tune

    for k in ("TUNE_DISABLE_STRICT_METRIC_CHECKING", "TUNE_GLOBAL_CHECKPOINT_S"):
        os.environ.setdefault(k, SETTINGS[k])
    data = {"train_ds": train_ds, "valid_ds": valid_ds}
    _check_gpus(spec.model)
    keep_free = 0
    if spec.model.type == "xgboost":
        spec.path = xgboost_path(spec.model, train_ds)
        # One past the last round: an intermediate report at max_t would make ASHA stop the trial before
        # its final report (metrics + model) arrives.
        max_t = spec.model.num_boost_round + 1
        if spec.path == "in-process":
            fn = xgb.inprocess_trial
            resources = {"cpu": spec.model.cpus_per_trial, **({"gpu": 1} if spec.model.device == "cuda" else {})}
            per_trial = spec.model.cpus_per_trial
            # Both splits as arrays in the object store, once: every trial reads them zero-copy.
            import ray

            data = {"data": [ray.remote(xgb.split_arrays).remote(train_ds, valid_ds, spec)]}
        else:
            fn = xgb.trial
            # The trial only drives a Train run; the workers hold the CPUs.
            # A zero-CPU bundle: a fractional CPU here would leave Ray Data less than the whole CPU its tasks
            # need and deadlock the Train run on a small machine.
            resources = {"cpu": 0, "memory": 64 * 1024 * 1024}
            per_trial = spec.model.num_workers * spec.model.cpus_per_worker
            # Keep one CPU free: Ray Data feeds the training workers and needs CPU of its own, and two Train
            # runs holding every CPU deadlock waiting for it.
            keep_free = 1
    else:
        fn = sk.trial
        resources = {"cpu": spec.model.cpus_per_trial}
        per_trial = spec.model.cpus_per_trial
        max_t = 1
        keep_free = 1  # the trial reads its splits with Ray Data
    spec.storage_dir, spec.storage_fs = storage_dir, storage_fs
    if tune_cfg.scheduler == "asha":
        spec.report_every = max(1, max_t // 10)
    trainable = tune.with_resources(tune.with_parameters(fn, spec=spec, **data), resources)
    # ASHA's rungs count boosting rounds (every xgboost report carries "round"); sklearn reports once.
    scheduler = (
        ASHAScheduler(
            time_attr="round" if spec.model.type == "xgboost" else "training_iteration",
            max_t=max_t,
            grace_period=max(1, spec.report_every),
        )
        if tune_cfg.scheduler == "asha"
        else FIFOScheduler()
    )
    path = f"{storage_dir}/search"
    if resume and tune.Tuner.can_restore(path, storage_filesystem=storage_fs):
        tuner = tune.Tuner.restore(
            path, trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=storage_fs
        )
        with _terminal(progress):
            grid = tuner.fit()
        return _collect(grid, spec)
    concurrency = tune_cfg.max_concurrent_trials or _default_concurrency(per_trial, keep_free)
    tuner = tune.Tuner(
        trainable,
        param_space=to_tune(params, grid=tune_cfg.search == "grid"),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            num_samples=tune_cfg.num_samples,
            scheduler=scheduler,
            search_alg=_searcher(tune_cfg, spec, concurrency),
            # A trial process kept for the next trial: a new one costs ~1.2 s of imports (xgboost, sklearn)
            # against ~0.05 s of boosting on the quickstart. The Train path's trials only start Train runs.
            reuse_actors=spec.path != "data-parallel",
        ),
        run_config=tune.RunConfig(
            name="search",
            storage_path=storage_dir,
            storage_filesystem=storage_fs,
            verbose=1 if progress else 0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        ),
    )
    with _terminal(progress):
        grid = tuner.fit()
    return _collect(grid, spec)


def _searcher(tune_cfg, spec: TrainSpec, concurrency: int):
    """Tune's search algorithm for ``training.tune.search``."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if tune_cfg.search != "optuna":
        return BasicVariantGenerator(random_state=tune_cfg.seed, max_concurrent=concurrency)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise
    # The TPE sampler is seeded; with several trials at once, which results it has seen when it suggests the
    # next one depends on their finishing order, so only a search with one trial at a time repeats exactly.
    sampler = optuna.samplers.TPESampler(seed=tune_cfg.seed)
    return ConcurrencyLimiter(
        OptunaSearch(metric=spec.metric, mode=spec.mode, sampler=sampler), max_concurrent=concurrency
    )


@contextmanager
def _terminal(progress: bool):
    """Tune's hold on the terminal, limited to the search: its SIGINT handler is left out (the first Ctrl-C
    stops the command at once; the experiment state saved every TUNE_GLOBAL_CHECKPOINT_S lets ``--resume``
    go on) and whatever handler it installs is put back after; without ``progress``, its new output engine,
    which prints the experiment's table whatever ``verbose`` says, gives way to the legacy one, which
    honours ``verbose=0``."""
    import signal

    env = {"TUNE_DISABLE_SIGINT_HANDLER": "1", **({} if progress else {"RAY_AIR_NEW_OUTPUT": "0"})}
    saved_env = {k: os.environ.get(k) for k in env}
    saved = signal.getsignal(signal.SIGINT)
    os.environ.update(env)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _collect(grid, spec: TrainSpec) -> SearchResult:
    """The best finished trial of a result grid, and a record of every trial."""
    time_attr = "round" if spec.model.type == "xgboost" else "training_iteration"
    trials, errors = [], []
    for r in grid:
        ok = _completed(r, spec.metric)
        m = r.metrics or {}
        # When it ran (unix seconds of its last report, and its running time): shows how trials overlapped.
        timing = (
            {"ended": float(m["timestamp"]), "seconds": round(float(m["time_total_s"]), 3)}
            if "timestamp" in m and "time_total_s" in m
            else {}
        )
        trials.append(
            {
                "params": r.config,
                "metrics": _clean(m),
                "trial_id": m.get("trial_id"),
                **timing,
                "history": _history(r, time_attr, spec),
                "status": "ok" if ok else ("failed" if r.error else "stopped"),
                **({"error": str(r.error).splitlines()[-1] if r.error else "no final metrics"} if not ok else {}),
            }
        )
        if r.error is not None:
            errors.append(r.error)
    finished = [r for r in grid if _completed(r, spec.metric)]
    if not finished:
        first = errors[0] if errors else "no trial reported the metric"
        raise TrainingError(f"all {len(trials)} trials failed; first error:\n{first}")
    best = (max if spec.mode == "max" else min)(finished, key=lambda r: float(r.metrics[spec.metric]))
    ckpt, fs = _checkpoint(best, spec)
    return SearchResult(
        best_params=best.config,
        best_metrics=_clean(best.metrics),
        trials=trials,
        model_path=f"{ckpt}/{best.metrics['model_file']}",
        model_fs=fs,
    )
