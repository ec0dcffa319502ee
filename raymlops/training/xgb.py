"""XGBoost trials on two paths: in-process (the Tune trial boosts on splits shared through the object store)
and data-parallel (the trial drives a Ray Train ``XGBoostTrainer`` run over sharded splits)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np
import pandas as pd

MODEL_FILE = "model.ubj"
CURVE_FILE = "curve.json"  # the validation metric per boosting round, beside the model in the checkpoint

# Our metric -> (xgboost eval_metric, maximize, transform of xgboost's value into ours).
_PER_ROUND = {
    ("binary", "auc"): ("auc", True, float),
    ("binary", "logloss"): ("logloss", False, float),
    ("binary", "accuracy"): ("error", False, lambda v: 1.0 - v),
    ("multiclass", "logloss"): ("mlogloss", False, float),
    ("multiclass", "accuracy"): ("merror", False, lambda v: 1.0 - v),
    ("regression", "rmse"): ("rmse", False, float),
    ("regression", "mae"): ("mae", False, float),
}
_FALLBACK = {"binary": "logloss", "multiclass": "logloss", "regression": "rmse"}


def xgb_params(spec, params: dict[str, Any], nthread: int = 1) -> tuple[dict[str, Any], str, bool]:
    """Full xgboost params for a fit with ``nthread`` threads (an explicit ``nthread`` param wins); returns
    (params, per-round eval metric, maximize)."""
    objective = {"binary": "binary:logistic", "multiclass": "multi:softprob", "regression": "reg:squarederror"}
    metric = spec.metric if (spec.task, spec.metric) in _PER_ROUND else _FALLBACK[spec.task]
    eval_metric, maximize, _ = _PER_ROUND[(spec.task, metric)]
    out = {
        "objective": objective[spec.task],
        "tree_method": "hist",
        "seed": spec.seed,
        "nthread": nthread,
        "device": getattr(spec.model, "device", "cpu"),
        **params,
        "eval_metric": eval_metric,
    }
    if out.get("scale_pos_weight") == "auto":  # negatives / positives of the training split (TrainSpec)
        out["scale_pos_weight"] = spec.scale_pos_weight
    if spec.task == "multiclass":
        out["num_class"] = spec.n_classes
    return out, metric, maximize


def _to_dmatrix(shard, spec):
    df = pd.concat(list(shard.iter_batches(batch_format="pandas", batch_size=None)), ignore_index=True)
    return _dmatrix(
        df[spec.feature_columns].to_numpy(dtype=np.float32, na_value=np.nan),
        df[spec.label].to_numpy(),
        spec,
        max(1, int(spec.model.cpus_per_worker)),
    )


def boost(spec, params: dict[str, Any], dtrain, dvalid, report, nthread: int) -> tuple[Any, dict, dict]:
    """Trains one booster with ``report(metrics)`` every ``spec.report_every`` rounds (for schedulers that
    prune); returns (booster, per-round validation history, final metrics without the model file)."""
    import xgboost

    full, metric, maximize = xgb_params(spec, params, nthread)
    _, _, convert = _PER_ROUND[(spec.task, metric)]

    class Report(xgboost.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            if (epoch + 1) % spec.report_every:
                return False
            value = evals_log["valid"][full["eval_metric"]][-1]
            # Reported under the tuned metric's name when xgboost computes it per round, so ASHA can prune.
            key = metric if metric == spec.metric else f"round_{metric}"
            report({key: convert(value), "round": epoch + 1})
            return False

    callbacks: list = [Report()] if spec.report_every else []
    if getattr(spec.model, "early_stopping_rounds", None):
        callbacks.append(
            xgboost.callback.EarlyStopping(
                rounds=spec.model.early_stopping_rounds,
                metric_name=full["eval_metric"],
                data_name="valid",
                maximize=maximize,
                save_best=True,
            )
        )
    history: dict = {}
    booster = xgboost.train(
        full,
        dtrain,
        num_boost_round=spec.model.num_boost_round,
        evals=[(dvalid, "valid")],
        callbacks=callbacks,
        verbose_eval=False,
        evals_result=history,
    )
    return booster, history, {"round": booster.num_boosted_rounds()}


def _final(spec, booster, history: dict, dvalid, out_dir: str) -> dict:
    """The validation metrics of a finished booster; writes the model and its curve to ``out_dir``."""
    from raymlops.training.metrics import evaluate

    booster.save_model(os.path.join(out_dir, MODEL_FILE))
    with open(os.path.join(out_dir, CURVE_FILE), "w") as f:
        json.dump({f"valid_{k}": [float(x) for x in v] for k, v in history.get("valid", {}).items()}, f)
    return {
        **evaluate(spec.task, dvalid.get_label(), booster.predict(dvalid), spec.n_classes),
        "model_file": MODEL_FILE,
    }


def train_worker(config: dict) -> None:
    """Runs on each Ray Train worker: trains on its shard, reports every round, checkpoints at the end."""
    import ray.train

    spec = config["spec"]
    dtrain = _to_dmatrix(ray.train.get_dataset_shard("train"), spec)
    dvalid = _to_dmatrix(ray.train.get_dataset_shard("valid"), spec)
    booster, history, final = boost(
        spec, config["params"], dtrain, dvalid, ray.train.report, max(1, int(spec.model.cpus_per_worker))
    )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            # The validation split is not sharded, so rank 0 scores all of it; Tune sees rank 0's metrics.
            final.update(_final(spec, booster, history, dvalid, tmp))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(final, checkpoint=checkpoint)


_SPLITS: dict[str, tuple[Any, Any]] = {}  # object ref -> (train, valid) DMatrix, in this trial process


def inprocess_trial(config: dict, data=None, spec=None) -> None:
    """A Tune trial that boosts in its own process on the splits (``data``: an object ref of
    ``split_arrays``' result, put in the object store once for every trial): no worker group to start."""
    import ray
    from ray import tune

    nthread = max(1, int(spec.model.cpus_per_trial))
    key = data[0].hex()
    if key not in _SPLITS:  # a reused trial process keeps the DMatrix of the splits it last trained on
        x, y, xv, yv = ray.get(data[0])
        _SPLITS.clear()
        _SPLITS[key] = (_dmatrix(x, y, spec, nthread), _dmatrix(xv, yv, spec, nthread))
    dtrain, dvalid = _SPLITS[key]
    booster, history, final = boost(spec, config, dtrain, dvalid, tune.report, nthread)
    with tempfile.TemporaryDirectory() as tmp:
        final.update(_final(spec, booster, history, dvalid, tmp))
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(tmp))


def _dmatrix(x: np.ndarray, y: np.ndarray, spec, nthread: int):
    import xgboost

    # As many threads as the trial has CPUs (xgboost's default is every core: two 1-CPU trials would contend).
    return xgboost.DMatrix(x, label=y, feature_names=spec.feature_columns, nthread=nthread)


def split_arrays(train_ds, valid_ds, spec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y) of both splits as float32 matrices and labels, in the datasets' row order (run as a task:
    the arrays go to the object store, not through the driver)."""
    out = []
    for ds in (train_ds, valid_ds):
        df = ds.to_pandas()
        out += [df[spec.feature_columns].to_numpy(dtype=np.float32, na_value=np.nan), df[spec.label].to_numpy()]
    return tuple(out)  # type: ignore[return-value]


def trial(config: dict, train_ds=None, valid_ds=None, spec=None) -> None:
    """A Tune trial: one Ray Train run with this trial's params; its reports reach Tune through
    TuneReportCallback (the final one carries the validation metrics and the checkpoint path)."""
    import ray.train
    from ray import tune
    from ray.train.xgboost import XGBoostTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    # Train runs (and their checkpoints) live beside Tune's state, under the run's storage.
    storage = f"{spec.storage_dir}/train"
    trainer = XGBoostTrainer(
        train_worker,
        train_loop_config={"spec": spec, "params": config},
        datasets={"train": train_ds, "valid": valid_ds},
        # Only the training split is sharded, and only across several workers: every worker evaluates on
        # the whole validation split, and each split costs a coordinator actor.
        dataset_config=ray.train.DataConfig(
            datasets_to_split=["train"] if spec.model.num_workers > 1 else [], execution_options=_ordered()
        ),
        scaling_config=ray.train.ScalingConfig(
            num_workers=spec.model.num_workers,
            resources_per_worker={"CPU": spec.model.cpus_per_worker},
            use_gpu=getattr(spec.model, "device", None) == "cuda",
        ),
        run_config=ray.train.RunConfig(
            name=tune.get_context().get_trial_id(),
            storage_path=storage,
            storage_filesystem=spec.storage_fs,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=spec.max_failures),
        ),
    )
    trainer.fit()


def _ordered():
    """Shards keep the dataset's row order: the same data and seed must give the same model bytes."""
    from ray.data import ExecutionOptions

    opts = ExecutionOptions()
    opts.preserve_order = True
    return opts
