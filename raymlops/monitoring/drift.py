"""Input and prediction drift of one model: detectors fitted at training time, saved with the run, loaded
by monitor actors and by the offline report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from raymlops.monitoring.detectors import ONLINE, Detector, fit_detector, load_detector

INPUTS_DIR = "inputs"
PREDICTION_DIR = "prediction"
PREDICTION = "__prediction__"


class _Column:  # the schema-column shape fit_detector reads
    def __init__(self, name: str, type: str):
        self.name, self.type = name, type


def settings_of(drift: dict) -> dict:
    keys = ("p_val", "correction", "ert", "online_window", "n_bootstraps")
    return {k: drift[k] for k in keys}


def fit_inputs(reference: pd.DataFrame, schema_columns: list, drift: dict, out_dir: str | os.PathLike) -> list[str]:
    """Fits the configured detector on the reference inputs; saves it; returns the untested columns."""
    detector, untested = fit_detector(drift["detector"], reference, schema_columns, settings_of(drift))
    detector.save(Path(out_dir) / INPUTS_DIR)
    return untested


def prediction_kind(detector: str, numeric: bool) -> str:
    """The detector for the model output: the configured one when it handles the output's kind."""
    if detector in ONLINE:
        return "cvm_online" if numeric else "fet_online"
    return "ks" if numeric else "chi2"


def fit_prediction(outputs: pd.Series, drift: dict, out_dir: str | os.PathLike) -> str:
    """Fits a detector on the model's outputs over the reference rows (probability or value when numeric,
    else the class); saves it; returns its kind."""
    numeric = pd.api.types.is_numeric_dtype(outputs) and not pd.api.types.is_bool_dtype(outputs)
    kind = prediction_kind(drift["detector"], numeric)
    frame = pd.DataFrame({PREDICTION: outputs if numeric else outputs.astype(str)})
    detector, _ = fit_detector(kind, frame, [_Column(PREDICTION, "number" if numeric else "string")],
                               settings_of(drift))
    detector.save(Path(out_dir) / PREDICTION_DIR)
    return kind


def has_detector(drift_dir: str | os.PathLike) -> bool:
    """Whether ``drift_dir`` holds detectors this version can load (runs trained before the detector
    interface have none)."""
    return (Path(drift_dir) / INPUTS_DIR / "detector.json").is_file()


class DriftTester:
    """A run's loaded detectors: ``test`` takes rows of inputs (plus ``__prediction__`` when the run has a
    prediction detector) and returns one result."""

    def __init__(self, drift_dir: str | os.PathLike):
        d = Path(drift_dir)
        self.inputs: Detector = load_detector(d / INPUTS_DIR)
        self.prediction: Detector | None = load_detector(d / PREDICTION_DIR) if (d / PREDICTION_DIR).is_dir() else None

    @property
    def kind(self) -> str:
        return self.inputs.kind

    @property
    def online(self) -> bool:
        return self.inputs.online

    @property
    def columns(self) -> list[str]:
        return self.inputs.encoder.names + ([PREDICTION] if self.prediction else [])

    def kinds(self) -> dict[str, str]:
        out = self.inputs.encoder.kinds()
        if self.prediction:
            out.update(self.prediction.encoder.kinds())
        return out

    def test(self, window: pd.DataFrame) -> dict[str, Any]:
        result = self.inputs.test(window)
        result.update(detector=self.inputs.kind, p_val=self.inputs.settings["p_val"],
                      correction=self.inputs.settings["correction"], rows=len(window))
        if self.prediction is not None and PREDICTION in window:
            pred = self.prediction.test(window)
            result["features"].update(pred["features"])
            result["prediction_drift"] = pred["is_drift"]
            result["is_drift"] = bool(result["is_drift"] or pred["is_drift"])
        return result

    def get_state(self) -> dict:
        return {"inputs": self.inputs.get_state(),
                "prediction": self.prediction.get_state() if self.prediction else None}

    def set_state(self, state: dict) -> None:
        if state.get("inputs") is not None:
            self.inputs.set_state(state["inputs"])
        if self.prediction is not None and state.get("prediction") is not None:
            self.prediction.set_state(state["prediction"])
