"""Drift detectors behind one interface; backends are registered by explicit import (alibi-detect first)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from raymlops.monitoring.detectors.base import SPEC_FILE, Detector, Encoder

ONLINE = ("cvm_online", "fet_online")


def _backends() -> dict[str, type[Detector]]:
    from raymlops.monitoring.detectors.alibi import BACKENDS

    return BACKENDS


def fit_detector(
    kind: str, reference: pd.DataFrame, schema_columns: list, settings: dict
) -> tuple[Detector, list[str]]:
    """Fits a ``kind`` detector on the reference rows of ``schema_columns``; returns it and the columns it
    leaves untested (those of a kind it does not handle, e.g. categorical columns under 'ks')."""
    cls = _backends()[kind]
    full = Encoder.fit(reference, schema_columns, None if kind in ONLINE else settings.get("window"))
    encoder = full.subset(cls.handles)
    untested = [n for n in full.names if n not in encoder.names]
    if not encoder.columns:
        raise ValueError(
            f"drift detector {kind!r} tests {' and '.join(cls.handles)} columns; the monitored "
            f"columns {full.names} have none"
        )
    return cls.fit(reference, encoder, {"kind": kind, **settings}), untested


def load_detector(path: str | os.PathLike) -> Detector:
    spec = json.loads((Path(path) / SPEC_FILE).read_text())
    cls = _backends()[spec["kind"]]
    return cls(Encoder(spec["encoder"]["columns"]), spec["settings"], cls.load_impl(Path(path)))


__all__ = ["Detector", "Encoder", "ONLINE", "fit_detector", "load_detector"]
