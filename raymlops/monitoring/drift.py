"""Tabular drift detection with alibi-detect's TabularDrift (KS for numeric, chi-squared for categorical).

The detector is fitted once at training time on the reference sample and saved with the run; actors
load it. Inputs are encoded to the numeric matrix the detector expects by a JSON-persisted encoder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.data.stats import is_missing

ENCODER_FILE = "encoder.json"
DETECTOR_DIR = "detector"
NUMERIC = ("number", "integer")


def _numba_cache() -> None:
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "raymlops" / "numba"))


class DriftEncoder:
    """Maps input columns to the detector's float matrix.

    Numeric columns: missing values take the reference median. Categorical (string/boolean) columns:
    integer codes from the reference categories; missing and unseen values get their own codes.
    """

    def __init__(self, columns: list[dict[str, Any]]):
        self.columns = columns

    @classmethod
    def fit(cls, reference: pd.DataFrame, schema_columns: list) -> "DriftEncoder":
        cols = []
        for c in schema_columns:
            if c.type in NUMERIC:
                med = pd.to_numeric(reference[c.name], errors="coerce").median()
                cols.append({"name": c.name, "kind": "numeric", "fill": 0.0 if pd.isna(med) else float(med)})
            elif c.type in ("string", "boolean"):
                cats = sorted({str(v) for v in reference[c.name].dropna().unique()})
                cols.append({"name": c.name, "kind": "categorical", "categories": cats})
        return cls(cols)

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    def categorical_indices(self) -> dict[int, None]:
        return {i: None for i, c in enumerate(self.columns) if c["kind"] == "categorical"}

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(df), len(self.columns)), dtype=np.float32)
        for i, c in enumerate(self.columns):
            col = df[c["name"]]
            if c["kind"] == "numeric":
                out[:, i] = pd.to_numeric(col, errors="coerce").fillna(c["fill"]).to_numpy(dtype=np.float32)
            else:
                codes = {v: j for j, v in enumerate(c["categories"])}
                unseen, missing = len(codes), len(codes) + 1
                out[:, i] = [missing if is_missing(v) else codes.get(str(v), unseen) for v in col.tolist()]
        return out

    def to_json(self) -> str:
        return json.dumps({"columns": self.columns}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "DriftEncoder":
        return cls(json.loads(text)["columns"])


def fit_and_save(reference: pd.DataFrame, schema_columns: list, p_val: float, out_dir: str | os.PathLike) -> None:
    """Fits TabularDrift on the reference sample and saves it (with its encoder) to ``out_dir``."""
    _numba_cache()
    from alibi_detect.cd import TabularDrift
    from alibi_detect.saving import save_detector

    encoder = DriftEncoder.fit(reference, schema_columns)
    if not encoder.columns:
        raise ValueError("no numeric or categorical input columns to monitor for drift")
    detector = TabularDrift(encoder.encode(reference), p_val=p_val,
                            categories_per_feature=encoder.categorical_indices() or None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_detector(detector, str(out / DETECTOR_DIR))
    (out / ENCODER_FILE).write_text(encoder.to_json())


class DriftTester:
    """A loaded detector: tests one window of rows at a time."""

    def __init__(self, drift_dir: str | os.PathLike):
        _numba_cache()
        from alibi_detect.saving import load_detector

        self.encoder = DriftEncoder.from_json((Path(drift_dir) / ENCODER_FILE).read_text())
        self.detector = load_detector(str(Path(drift_dir) / DETECTOR_DIR))

    def test(self, window: pd.DataFrame) -> dict[str, Any]:
        pred = self.detector.predict(self.encoder.encode(window), drift_type="batch",
                                     return_p_val=True, return_distance=True)["data"]
        threshold = float(pred["threshold"])
        features = {}
        for i, c in enumerate(self.encoder.columns):
            p = float(pred["p_val"][i])
            features[c["name"]] = {"test": "ks" if c["kind"] == "numeric" else "chi2",
                                   "statistic": float(pred["distance"][i]), "p_value": p, "is_drift": p < threshold}
        return {"is_drift": bool(pred["is_drift"]), "threshold": threshold, "features": features}
