"""scikit-learn trials: any estimator, fitted inside a Tune function trainable."""

from __future__ import annotations

import inspect
import os
import pickle
import tempfile

import numpy as np

MODEL_FILE = "model.pkl"


def build_estimator(path: str, params: dict, seed: int | None):
    """Imports and instantiates an estimator; sets ``random_state`` from the seed when it has one."""
    from raymlops.data.preprocessing import import_function

    cls = import_function(path)
    params = dict(params)
    if seed is not None and "random_state" in inspect.signature(cls).parameters and "random_state" not in params:
        params["random_state"] = seed
    return cls(**params)


def trial(config: dict, train_ds=None, valid_ds=None, spec=None) -> None:
    """Fits one estimator on the (materialized) training split and reports validation metrics."""
    from ray import tune

    from raymlops.training.metrics import evaluate

    est = build_estimator(spec.model.estimator, config, spec.seed)
    train = train_ds.to_pandas()
    x = train[spec.feature_columns].to_numpy(dtype=np.float64, na_value=np.nan)
    est.fit(x, train[spec.label].to_numpy())
    ys, ss = [], []
    for batch in valid_ds.iter_batches(batch_format="pandas", batch_size=65536):
        xv = batch[spec.feature_columns].to_numpy(dtype=np.float64, na_value=np.nan)
        if spec.task == "regression":
            ss.append(est.predict(xv))
        else:
            proba = est.predict_proba(xv)
            ss.append(proba[:, 1] if spec.task == "binary" else proba)
        ys.append(batch[spec.label].to_numpy())
    # The model travels as the trial's checkpoint, persisted to Tune's storage (the trial may run on another
    # node than the driver that picks the best one).
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, MODEL_FILE), "wb") as f:
            pickle.dump(est, f)
        tune.report(
            {**evaluate(spec.task, np.concatenate(ys), np.concatenate(ss), spec.n_classes), "model_file": MODEL_FILE},
            checkpoint=tune.Checkpoint.from_directory(tmp),
        )
