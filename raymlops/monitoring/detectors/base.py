"""The detector interface: an input encoder, fitted detectors that test windows of rows, save and load."""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from raymlops.data.stats import is_missing

NUMERIC = ("number", "integer")
SPEC_FILE = "detector.json"


def numba_cache() -> None:
    """Points numba's JIT cache at a persistent directory (the first detector use compiles for ~30 s)."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "raymlops" / "numba"))


MIN_EXPECTED = 5  # Cochran's rule: every cell of a chi-squared test expects at least this many rows


class Encoder:
    """Maps input columns to a float matrix.

    Numeric columns: missing values take the reference median. Categorical (string/boolean) columns:
    integer codes from the reference categories, missing values their own code. Fitted with the window size,
    categories a window would expect fewer than ``MIN_EXPECTED`` rows of share one code with unseen values
    (the chi-squared distribution of the statistic is an approximation that needs expected counts of about 5 or
    more, Cochran's rule); that code joins the least frequent kept category when it is rare itself. An unseen
    category flooding a window still shows, as that code's share.
    """

    def __init__(self, columns: list[dict[str, Any]]):
        self.columns = columns

    @classmethod
    def fit(cls, reference: pd.DataFrame, schema_columns: list, window: int | None = None) -> Encoder:
        cols = []
        for c in schema_columns:
            if c.type in NUMERIC:
                values = pd.to_numeric(reference[c.name], errors="coerce")
                med = values.median()
                cols.append({"name": c.name, "kind": "numeric", "fill": 0.0 if pd.isna(med) else float(med)})
            elif c.type in ("string", "boolean"):
                col = reference[c.name].astype(object)
                values = col[~col.map(is_missing)].astype(str)
                counts = values.value_counts()
                mode = counts.index[0] if len(values) else None
                cols.append(
                    {
                        "name": c.name,
                        "kind": "categorical",
                        "mode": mode,
                        **_buckets(counts, len(col) - len(values), len(col), window),
                    }
                )
        return cls(cols)

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    def kinds(self) -> dict[str, str]:
        return {c["name"]: c["kind"] for c in self.columns}

    def subset(self, kinds: tuple[str, ...]) -> Encoder:
        return Encoder([c for c in self.columns if c["kind"] in kinds])

    def categorical_indices(self) -> dict[int, None]:
        """Categorical column indices (their codes are inferred from the reference, plus any new in a window)."""
        return {i: None for i, c in enumerate(self.columns) if c["kind"] == "categorical"}

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(df), len(self.columns)), dtype=np.float32)
        for i, c in enumerate(self.columns):
            col = df[c["name"]]
            if c["kind"] == "numeric":
                out[:, i] = pd.to_numeric(col, errors="coerce").fillna(c["fill"]).to_numpy(dtype=np.float32)
            else:
                codes = {v: j for j, v in enumerate(c["categories"])}
                other = c.get("other", len(codes))  # rare and unseen categories
                missing = c.get("missing", len(codes) + 1)
                out[:, i] = [missing if is_missing(v) else codes.get(str(v), other) for v in col.tolist()]
        return out

    def binarize(self, df: pd.DataFrame) -> np.ndarray:
        """Every column as 0/1: numeric above the reference median; categorical equal to the reference mode."""
        out = np.empty((len(df), len(self.columns)), dtype=np.float32)
        for i, c in enumerate(self.columns):
            col = df[c["name"]]
            if c["kind"] == "numeric":
                out[:, i] = (pd.to_numeric(col, errors="coerce").fillna(c["fill"]) > c["fill"]).to_numpy()
            else:
                out[:, i] = (col.astype(object).map(lambda v: not is_missing(v) and str(v) == c["mode"])).to_numpy()
        return out

    def to_dict(self) -> dict:
        return {"columns": self.columns}


def _buckets(counts: pd.Series, missing: int, n: int, window: int | None) -> dict[str, Any]:
    """A categorical column's codes: kept categories (sorted), then ``other`` (rare and unseen values) and
    ``missing``, each a code of its own or merged as the module docstring says. Without a window every
    category is kept and unseen and missing values have codes of their own."""
    need = MIN_EXPECTED * n / window if window else 0  # reference rows for MIN_EXPECTED expected in a window
    kept = sorted(str(v) for v, k in counts.items() if k >= need)
    rare = int(counts[counts < need].sum()) + (missing if missing < need else 0)
    other = len(kept)
    # Too rare (or never seen) for a bucket of its own: the least frequent kept category takes it, unless that
    # leaves fewer than 2 codes (a column that can no longer change, even when a window is all missing)
    fold = bool(window) and rare < need and len(kept) >= 2
    if fold:
        other = kept.index(min(kept, key=lambda v: (counts[v], v)))
    return {
        "categories": kept,
        "merged": sorted(str(v) for v in counts.index if str(v) not in kept),
        "other": other,
        "missing": other if fold and missing < need else len(kept) + 1,
    }


class Detector(ABC):
    """A fitted drift detector over some input columns.

    Batch detectors test a window of rows against the reference at once. Online detectors consume rows
    one at a time and raise an alarm when a statistic crosses a threshold calibrated (once, at fit time) to
    an expected run time between false alarms; ``test`` feeds a window through and reports its alarms.
    """

    kind: ClassVar[str]
    online: ClassVar[bool] = False
    handles: ClassVar[tuple[str, ...]] = ("numeric", "categorical")  # column kinds this detector tests

    def __init__(self, encoder: Encoder, settings: dict[str, Any], impl: Any):
        self.encoder, self.settings, self.impl = encoder, settings, impl

    @classmethod
    @abstractmethod
    def fit(cls, reference: pd.DataFrame, encoder: Encoder, settings: dict[str, Any]) -> Detector:
        """Fits (and calibrates) on the reference rows; ``encoder`` is already restricted to ``handles``."""

    @abstractmethod
    def test(self, window: pd.DataFrame) -> dict[str, Any]:
        """Tests rows; returns {is_drift, threshold, features: {name: {test, statistic, p_value, is_drift}}}."""

    def get_state(self) -> Any:
        """The running state of an online detector (checkpointed by actors); None for batch detectors."""
        return None

    def set_state(self, state: Any) -> None:
        """Restores ``get_state``'s value."""

    def reset(self) -> None:
        """Starts afresh (online detectors: after an alarm, or when the model changes)."""

    @abstractmethod
    def save_impl(self, out: Path) -> None:
        """Writes the backend's fitted object under ``out``."""

    @classmethod
    @abstractmethod
    def load_impl(cls, path: Path) -> Any:
        """Reads what ``save_impl`` wrote."""

    def save(self, out: str | os.PathLike) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.save_impl(out)
        spec = {"kind": self.kind, "settings": self.settings, "encoder": self.encoder.to_dict()}
        (out / SPEC_FILE).write_text(json.dumps(spec, indent=2))
