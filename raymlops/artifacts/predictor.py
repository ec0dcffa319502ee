"""Predictor: the fitted preprocessing plus the model of one run, applied to pandas DataFrames."""

from __future__ import annotations

import functools
import json
import os
import pickle

import numpy as np
import pandas as pd

from raymlops.artifacts import run as layout
from raymlops.data.plan import Plan, compile_plan
from raymlops.data.preprocessing import Preprocessor
from raymlops.data.schema import InputSchema, typed_frame
from raymlops.errors import DataError


class Predictor:
    """Applies exactly the transform fitted at training time, then the model.

    Attributes:
        run_dir: The run directory the predictor was loaded from.
        schema: Input columns and label metadata.
        meta: Model type, task, classes, feature columns, run id.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.location = str(run_dir)  # as given: a path, or the run's URI on an object store
        self.run_dir = layout.local_run(run_dir)
        self.meta = json.loads((self.run_dir / layout.META).read_text())
        self.schema = InputSchema.from_dict(json.loads((self.run_dir / layout.SCHEMA).read_text()))
        self.preprocessor = Preprocessor.from_json((self.run_dir / layout.PREPROCESSING).read_text())
        self.task: str = self.meta["task"]
        self.classes: list | None = self.meta.get("classes")
        self.features: list[str] = self.meta["feature_columns"]
        self.model_type: str = self.meta["model_type"]
        # Binary: P(positive) at or above it predicts the positive class (training.decision; 0.5 before it).
        self.threshold: float = float((self.meta.get("decision") or {}).get("threshold", 0.5))
        if self.model_type == "xgboost":
            import xgboost

            self.model = xgboost.Booster()
            self.model.load_model(str(self.run_dir / layout.XGB_MODEL))
            # Scored on CPU, one thread per replica, wherever it was trained (a cuda-trained booster too).
            self.model.set_param({"nthread": 1, "device": "cpu"})
        else:
            with open(self.run_dir / layout.SKLEARN_MODEL, "rb") as f:
                self.model = pickle.load(f)

    @functools.cached_property
    def version(self) -> str:
        """``NAME/VERSION`` when loaded from the registry, else the run id (``run.model_version``); read once
        (re-reading it cost ~3% of a replica's CPU on the request path)."""
        return layout.model_version(self.run_dir)

    def features_of(self, df: pd.DataFrame) -> np.ndarray:
        """Input rows -> the model's feature matrix."""
        missing = [c for c in self.schema.names if c not in df.columns]
        if missing:
            raise DataError(f"input is missing columns {missing}")
        out = self.preprocessor.transform(df[self.schema.names])
        absent = [c for c in self.features if c not in out.columns]
        if absent:
            raise DataError(f"preprocessing did not produce feature columns {absent}")
        # XGBoost trains on float32, scikit-learn trials on float64: score with what the model saw.
        dtype = np.float32 if self.model_type == "xgboost" else np.float64
        return out[self.features].to_numpy(dtype=dtype, na_value=np.nan)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        """Scores: P(positive) for binary, class probabilities for multiclass, values for regression."""
        if self.model_type == "xgboost":
            return np.asarray(self.model.inplace_predict(x))
        if self.task == "regression":
            return np.asarray(self.model.predict(x), dtype=np.float64)
        proba = np.asarray(self.model.predict_proba(x), dtype=np.float64)
        return proba[:, 1] if self.task == "binary" else proba

    @functools.cached_property
    def plan(self) -> Plan | None:
        """The preprocessing compiled for request rows (None with a custom step or a timestamp input, which
        keep the DataFrame path)."""
        if any(c.type == "timestamp" for c in self.schema.columns):
            return None
        return compile_plan(
            self.preprocessor,
            self.schema.names,
            self.features,
            np.float32 if self.model_type == "xgboost" else np.float64,
            {c.name: c.type for c in self.schema.columns},
        )

    def predict_rows(self, rows: list[dict]) -> tuple[list, list | None]:
        """``predict_with_proba`` of checked request rows (``check_records``), without a DataFrame when the
        preprocessing compiles: equal results (tests/unit/test_plan.py), a fraction of the time."""
        if self.plan is None:
            return self.predict_with_proba(typed_frame(rows, self.schema))
        return self._decide(self._raw(self.plan.matrix(rows)))

    def predict_with_proba(self, df: pd.DataFrame) -> tuple[list, list | None]:
        """Returns (predictions, probabilities); probabilities are None for regression.

        Binary: probability of ``classes[1]``; multiclass: one probability per class, in ``classes`` order.
        """
        return self._decide(self._raw(self.features_of(df)))

    def _decide(self, scores: np.ndarray) -> tuple[list, list | None]:
        if self.task == "regression":
            return scores.astype(np.float64).tolist(), None
        classes = np.asarray(self.classes, dtype=object)
        if self.task == "binary":
            return classes[(scores >= self.threshold).astype(int)].tolist(), scores.astype(np.float64).tolist()
        return classes[np.argmax(scores, axis=1)].tolist(), scores.astype(np.float64).tolist()

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted labels (classifiers) or values (regression) for each row."""
        preds, _ = self.predict_with_proba(df)
        return np.asarray(preds)

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            raise DataError("predict_proba is for classifiers; this is a regression model")
        return np.asarray(self.predict_with_proba(df)[1])


def load_predictor(run: str | os.PathLike, storage=None) -> Predictor:
    """Loads the predictor of a run (a run directory, or a run id under ``storage``). The public entry point is
    ``raymlops.load_model``, which also resolves ``models:/`` URIs and uses this for runs."""
    return Predictor(layout.find_run(run, storage))
