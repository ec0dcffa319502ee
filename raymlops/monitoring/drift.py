"""Input and prediction drift of one model: detectors fitted at training time, saved with the run, loaded
by monitor actors and by the offline report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from raymlops.monitoring.detectors import ONLINE, Detector, fit_detector, load_detector
from raymlops.monitoring.detectors.base import SPEC_FILE
from raymlops.monitoring.effects import Profile, chunk_thresholds

INPUTS_DIR = "inputs"
PREDICTION_DIR = "prediction"
PREDICTION = "__prediction__"
INPUTS = "__inputs__"  # the name of a multivariate test over every input
PROFILED = ("ks", "chi2", "tabular", "cvm_online", "fet_online")  # per-feature detectors: effect sizes too


def family_wise(pvalues: dict[str, float], p_val: float, correction: str) -> tuple[float, set[str]]:
    """The tests of one window judged together: (the p-value threshold, the tests flagged).

    bonferroni: ``p_val / m`` (family-wise error rate <= ``p_val``); fdr: Benjamini-Hochberg's step-up cut-off
    (false discovery rate <= ``p_val``; with no drift at all, the same family-wise rate). With nothing
    significant the threshold is the one the smallest p-value had to beat, ``p_val / m``.
    """
    m = len(pvalues)
    if not m:
        return p_val, set()
    threshold = p_val / m
    if correction == "fdr":
        ordered = sorted(pvalues.values())
        passed = [p for i, p in enumerate(ordered) if p <= (i + 1) / m * p_val]
        threshold = passed[-1] if passed else threshold
    return threshold, {n for n, p in pvalues.items() if p <= threshold}


def min_effect(setting: float | dict[str, float] | None, feature: str) -> float | None:
    """The smallest effect size that makes a significant ``feature`` drift (None: any)."""
    if isinstance(setting, dict):
        return setting.get(feature)
    return setting


class _Column:  # the schema-column shape fit_detector reads
    def __init__(self, name: str, type: str):
        self.name, self.type = name, type


def settings_of(drift: dict) -> dict:
    """The detector settings. Online detectors with a prediction detector beside the inputs' share the
    false-alarm budget: each is calibrated to twice ``ert``, so that the overall verdict (either one
    alarming) has ``ert`` as its expected run time."""
    keys = ("p_val", "correction", "ert", "online_window", "n_bootstraps", "window", "min_effect", "reference")
    out = {k: drift.get(k) for k in keys}
    if drift.get("detector") in ONLINE and drift.get("predictions"):
        out["ert"] = 2 * drift["ert"]
    return out


def fit_inputs(reference: pd.DataFrame, schema_columns: list, drift: dict, out_dir: str | os.PathLike) -> list[str]:
    """Fits the configured detector on the reference inputs (in time order for ``reference: chunks``) and
    the columns' effect-size profile; saves them; returns the untested columns."""
    detector, untested = fit_detector(drift["detector"], reference, schema_columns, settings_of(drift))
    detector.save(Path(out_dir) / INPUTS_DIR)
    _fit_profile(
        detector,
        reference,
        drift,
        len(detector.encoder.columns) + bool(drift.get("predictions")),
        Path(out_dir) / INPUTS_DIR,
    )
    return untested


def _fit_profile(detector: Detector, reference: pd.DataFrame, drift: dict, tests: int, out: Path) -> None:
    """The reference profile for effect sizes; with ``reference: chunks`` also each column's threshold, at
    ``p_val`` shared by the window's ``tests`` (Bonferroni)."""
    if detector.kind not in PROFILED:
        return
    x = detector.encoder.encode(reference)
    profile = Profile.fit(x, detector.encoder)
    if drift.get("reference") == "chunks":
        profile.thresholds, _ = chunk_thresholds(x, detector.encoder, drift["window"], drift["p_val"] / tests)
    profile.save(out)


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
    detector, _ = fit_detector(
        kind, frame, [_Column(PREDICTION, "number" if numeric else "string")], settings_of(drift)
    )
    detector.save(Path(out_dir) / PREDICTION_DIR)
    inputs = json.loads((Path(out_dir) / INPUTS_DIR / SPEC_FILE).read_text())["encoder"]["columns"]  # not unpickled
    _fit_profile(detector, frame, drift, len(inputs) + 1, Path(out_dir) / PREDICTION_DIR)
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
        self.profiles = (Profile.load(d / INPUTS_DIR), Profile.load(d / PREDICTION_DIR) if self.prediction else None)

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
        """One window's verdict. Batch detectors: every p-value of the window (each input feature's, or the
        multivariate test's, and the prediction's) is judged under one correction, so the verdict's
        false-alarm rate is ``p_val`` and each flag agrees with it. (Before, the prediction test ran at the
        full ``p_val`` beside the corrected inputs: about 2 x ``p_val`` in all.)"""
        result = self.inputs.test(window)
        p_val, correction = self.inputs.settings["p_val"], self.inputs.settings["correction"]
        result.update(
            detector=self.inputs.kind,
            p_val=p_val,
            correction=correction,
            rows=len(window),
            reference=self.inputs.settings.get("reference") or "sample",
        )
        pred = self.prediction.test(window) if self.prediction is not None and PREDICTION in window else None
        if pred is not None:
            result["features"].update(pred["features"])
        if not self.online:
            tests = {n: f["p_value"] for n, f in result["features"].items() if f.get("p_value") is not None}
            if result.get("p_value") is not None:  # a multivariate test (mmd): one p-value for every input
                tests[INPUTS] = result["p_value"]
            threshold, flagged = family_wise(tests, p_val, correction)
            for name, f in result["features"].items():
                f.update(threshold=threshold, is_drift=name in flagged)
            result.update(threshold=threshold, is_drift=bool(flagged))
            if INPUTS in tests:
                result["inputs_drift"] = INPUTS in flagged
            if pred is not None:
                result["prediction_drift"] = PREDICTION in flagged
        elif pred is not None:
            result.update(
                prediction_drift=pred["is_drift"],
                prediction_detections=pred.get("detections") or [],
                is_drift=bool(result["is_drift"] or pred["is_drift"]),
            )
        self._effects(window, result)
        return result

    def _effects(self, window: pd.DataFrame, result: dict[str, Any]) -> None:
        """Adds each feature's effect size and turns significance into drift: under ``reference: chunks`` a
        feature is significant when its effect is above its learned threshold (p-values are then reported,
        not used); a feature is drift when significant and its effect reaches ``min_effect``."""
        pairs = [(self.inputs, self.profiles[0])]
        if self.prediction is not None and PREDICTION in window:
            pairs.append((self.prediction, self.profiles[1]))
        settings = self.inputs.settings
        features = result["features"]
        for detector, profile in pairs:
            if profile is None:
                continue
            names = detector.encoder.names
            thresholds = profile.thresholds or [None] * len(names)
            for name, metric, effect, limit in zip(
                names, profile.metrics(), profile.distances(detector.encoder.encode(window)), thresholds
            ):
                f = features.get(name)
                if f is None:
                    continue
                f.update(effect=effect, effect_metric=metric)
                if limit is not None:
                    f.update(effect_threshold=limit, is_drift=effect is not None and effect > limit)
        for name, f in features.items():
            floor = min_effect(settings.get("min_effect"), name)
            f["significant"] = bool(f.get("is_drift"))
            if floor is not None and f.get("effect") is not None:
                f.update(min_effect=floor, is_drift=f["significant"] and f["effect"] >= floor)
        if not any(p is not None for p in self.profiles):
            return  # a run trained before effect sizes: its verdict stands
        # Alarms no feature's statistic explains (online), and mmd's one test over every input, still count.
        unnamed = self.online and (
            (
                bool(result.get("detections"))
                and not any(f["significant"] for n, f in features.items() if n != PREDICTION)
            )
            or (bool(result.get("prediction_detections")) and not features.get(PREDICTION, {}).get("significant"))
        )
        result["is_drift"] = bool(
            unnamed or result.get("inputs_drift") or any(f["is_drift"] for f in features.values())
        )
        if PREDICTION in features:
            result["prediction_drift"] = features[PREDICTION]["is_drift"]

    def get_state(self) -> dict:
        return {
            "inputs": self.inputs.get_state(),
            "prediction": self.prediction.get_state() if self.prediction else None,
        }

    def set_state(self, state: dict) -> None:
        if state.get("inputs") is not None:
            self.inputs.set_state(state["inputs"])
        if self.prediction is not None and state.get("prediction") is not None:
            self.prediction.set_state(state["prediction"])
