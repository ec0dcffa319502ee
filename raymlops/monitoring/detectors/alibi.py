"""alibi-detect backends: KS, chi-squared and Tabular batch tests, CVM and FET online tests, MMD (torch).

alibi-detect is BSL-licensed and pins numpy<2; it is imported only here, so another backend can replace
it. Fitted detectors are pickled (online ones carry their calibrated thresholds, which alibi-detect's own
config-based saving would recompute on load).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.monitoring.detectors.base import Detector, Encoder, numba_cache

IMPL_FILE = "detector.pkl"


class _Pickled(Detector):
    def save_impl(self, out: Path) -> None:
        tmp = out / f".{IMPL_FILE}.tmp"
        tmp.write_bytes(pickle.dumps(self.impl, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(out / IMPL_FILE)

    @classmethod
    def load_impl(cls, path: Path) -> Any:
        numba_cache()
        return pickle.loads((path / IMPL_FILE).read_bytes())


class _Univariate(_Pickled):
    """Batch tests per feature with a multiple-testing correction."""

    test_names: dict[str, str] = {"numeric": "ks", "categorical": "chi2"}

    @classmethod
    def _build(cls, x_ref: np.ndarray, encoder: Encoder, settings: dict) -> Any:
        raise NotImplementedError

    @classmethod
    def fit(cls, reference: pd.DataFrame, encoder: Encoder, settings: dict) -> Detector:
        numba_cache()
        return cls(encoder, settings, cls._build(encoder.encode(reference), encoder, settings))

    def test(self, window: pd.DataFrame) -> dict[str, Any]:
        pred = self.impl.predict(
            self.encoder.encode(window), drift_type="batch", return_p_val=True, return_distance=True
        )["data"]
        threshold = float(np.max(pred["threshold"]))  # fdr with nothing significant: the largest cut-off
        features = {}
        for i, c in enumerate(self.encoder.columns):
            p = float(pred["p_val"][i])
            features[c["name"]] = {
                "test": self.test_names[c["kind"]],
                "statistic": float(pred["distance"][i]),
                "p_value": p,
                "is_drift": bool(pred["is_drift"]) and p <= threshold,
            }
        return {"is_drift": bool(pred["is_drift"]), "threshold": threshold, "features": features}


class KS(_Univariate):
    kind, handles = "ks", ("numeric",)

    @classmethod
    def _build(cls, x_ref, encoder, settings):
        from alibi_detect.cd import KSDrift

        return KSDrift(x_ref, p_val=settings["p_val"], correction=settings["correction"])


class ChiSquared(_Univariate):
    kind, handles = "chi2", ("categorical",)

    @classmethod
    def _build(cls, x_ref, encoder, settings):
        from alibi_detect.cd import ChiSquareDrift

        return ChiSquareDrift(x_ref, p_val=settings["p_val"], correction=settings["correction"])


class Tabular(_Univariate):
    kind = "tabular"

    @classmethod
    def _build(cls, x_ref, encoder, settings):
        from alibi_detect.cd import TabularDrift

        return TabularDrift(
            x_ref,
            p_val=settings["p_val"],
            correction=settings["correction"],
            categories_per_feature=encoder.categorical_indices() or None,
        )


class MMD(_Pickled):
    """Maximum mean discrepancy over all features at once (standardized codes); a permutation test."""

    kind = "mmd"

    @classmethod
    def fit(cls, reference, encoder, settings):
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise ImportError("drift detector 'mmd' needs torch: pip install 'raymlops[mmd]'")
        from alibi_detect.cd import MMDDrift

        x = encoder.encode(reference)
        scale = x.std(axis=0)
        settings = {**settings, "center": x.mean(axis=0).tolist(), "scale": np.where(scale > 0, scale, 1).tolist()}
        impl = MMDDrift(
            cls._standardize(x, settings), backend="pytorch", p_val=settings["p_val"], n_permutations=100, device="cpu"
        )
        return cls(encoder, settings, impl)

    @staticmethod
    def _standardize(x: np.ndarray, settings: dict) -> np.ndarray:
        return ((x - np.asarray(settings["center"])) / np.asarray(settings["scale"])).astype(np.float32)

    def test(self, window):
        pred = self.impl.predict(
            self._standardize(self.encoder.encode(window), self.settings), return_p_val=True, return_distance=True
        )["data"]
        return {
            "is_drift": bool(pred["is_drift"]),
            "threshold": float(pred["threshold"]),
            "p_value": float(pred["p_val"]),
            "statistic": float(pred["distance"]),
            "features": {},
        }


class _Online(_Pickled):
    """Feeds rows one at a time; after an alarm the detector restarts (a new run towards the next one)."""

    online = True
    test_name = ""

    def _matrix(self, df: pd.DataFrame) -> np.ndarray:
        return self.encoder.encode(df)

    @staticmethod
    def _bootstraps(settings: dict, n_features: int) -> int:
        """Enough bootstrap streams to estimate the per-feature threshold quantile 1 - beta, where
        beta = 1 - (1 - 1/ert)^(1/d) (alibi-detect's correction across d features)."""
        beta = 1 - (1 - 1 / settings["ert"]) ** (1 / n_features)
        return max(settings["n_bootstraps"], int(np.ceil(4 / beta)))

    def _columns(self) -> list[str]:
        """The feature name of each matrix column."""
        return self.encoder.names

    def test(self, window: pd.DataFrame) -> dict[str, Any]:
        x = self._matrix(window)
        names = self._columns()
        stat_max = np.full(len(names), -np.inf)
        flagged: set[str] = set()
        detections: list[dict] = []
        threshold = None
        for i in range(len(x)):
            data = self.impl.predict(x[i], return_test_stat=True)["data"]
            stats = np.nanmax(data["test_stat"], axis=0) if np.isfinite(data["test_stat"]).any() else None
            threshold = np.asarray(data["threshold"], dtype=float).ravel()
            if stats is not None:
                stat_max = np.fmax(stat_max, stats)
            if data["is_drift"]:
                # FET breaks ties at the threshold at random (discrete statistics): ties count.
                over = (
                    []
                    if stats is None
                    else [j for j in range(len(names)) if stats[j] >= threshold[min(j, len(threshold) - 1)]]
                )
                hit = sorted({names[j] for j in over})
                flagged.update(hit)
                detections.append({"row": i, "run_length": int(data["time"]), "features": hit})
                self.impl.reset_state()
        self._trim()
        thr = None if threshold is None else float(threshold.max())
        best: dict[str, float] = {}
        for j, n in enumerate(names):  # a feature may span several columns (FET: both directions)
            if np.isfinite(stat_max[j]):
                best[n] = max(best.get(n, -np.inf), float(stat_max[j]))
        features = {
            n: {
                "test": self.test_name,
                "statistic": best.get(n),
                "p_value": None,
                "threshold": thr,
                "is_drift": n in flagged,
            }
            for n in self.encoder.names
        }
        return {
            "is_drift": bool(detections),
            "threshold": thr,
            "features": features,
            "detections": detections,
            "run_length": int(self.impl.t),
            "ert": self.settings["ert"],
        }

    def _trim(self) -> None:
        """alibi-detect appends every statistic to its state; keep only the last (memory stays flat)."""
        self.impl.test_stats = self.impl.test_stats[-1:]
        self.impl.drift_preds = self.impl.drift_preds[-1:]
        self.impl.xs = self.impl.xs[-max(self.impl.window_sizes) :]  # only the latest window is read

    def get_state(self) -> Any:
        return {k: getattr(self.impl, k) for k in self.impl.online_state_keys}

    def set_state(self, state: Any) -> None:
        for k, v in state.items():
            setattr(self.impl, k, v)

    def reset(self) -> None:
        self.impl.reset_state()


_FAST = ("FastCVMDriftOnline", "FastFETDriftOnline")


def _fast(name: str) -> type:
    """alibi-detect's online detectors with their null streams simulated by ``calibration`` (the same
    statistics for the same draws, much faster). Built on first use (importing alibi-detect compiles numba);
    module attributes, so pickled detectors load in any process."""
    if name not in globals():
        from raymlops.monitoring.detectors._compat import fast_online_classes

        globals().update(fast_online_classes(__name__))
    return globals()[name]


def __getattr__(name: str) -> Any:  # unpickling a detector fitted in another process
    if name in _FAST:
        return _fast(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CVMOnline(_Online):
    kind, handles, test_name = "cvm_online", ("numeric",), "cvm"

    @classmethod
    def fit(cls, reference, encoder, settings):
        numba_cache()
        settings = {**settings, "n_bootstraps": cls._bootstraps(settings, len(encoder.columns))}
        impl = _fast("FastCVMDriftOnline")(
            encoder.encode(reference),
            ert=settings["ert"],
            window_sizes=[settings["online_window"]],
            n_bootstraps=settings["n_bootstraps"],
            verbose=False,
        )
        return cls(encoder, settings, impl)


class FETOnline(_Online):
    """Every feature as a binary stream (numeric: above the reference median; categorical: the mode), tested
    in both directions (the stream and its complement: alibi-detect's FET tests for a rising share)."""

    kind, test_name = "fet_online", "fet"

    @staticmethod
    def _both(b: np.ndarray) -> np.ndarray:
        return np.hstack([b, 1 - b])

    def _matrix(self, df):
        return self._both(self.encoder.binarize(df))

    def _columns(self) -> list[str]:
        return self.encoder.names * 2

    @classmethod
    def fit(cls, reference, encoder, settings):
        numba_cache()
        settings = {**settings, "n_bootstraps": cls._bootstraps(settings, 2 * len(encoder.columns))}
        impl = _fast("FastFETDriftOnline")(
            cls._both(encoder.binarize(reference)),
            ert=settings["ert"],
            window_sizes=[settings["online_window"]],
            n_bootstraps=settings["n_bootstraps"],
            verbose=False,
        )
        return cls(encoder, settings, impl)


BACKENDS: dict[str, type[Detector]] = {c.kind: c for c in (KS, ChiSquared, Tabular, MMD, CVMOnline, FETOnline)}
