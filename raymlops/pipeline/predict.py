"""Batch scoring on Ray Data: a pool of actors, each holding the run's Predictor."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from raymlops.artifacts import Predictor, find_run
from raymlops.config.models import SourceConfig
from raymlops.data.sources import read_source
from raymlops.errors import DataError


class _Scorer:
    """Ray Data callable class: loads the model once per actor."""

    def __init__(self, run_dir: str):
        self.predictor = Predictor(run_dir)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        preds, probs = self.predictor.predict_with_proba(batch)
        out = batch.copy()
        out["prediction"] = preds
        if probs is not None and self.predictor.task == "binary":
            out["probability"] = np.asarray(probs, dtype=np.float64)
        elif probs is not None:
            p = np.asarray(probs, dtype=np.float64)
            for i, c in enumerate(self.predictor.classes):
                out[f"probability_{c}"] = p[:, i]
        out["model_version"] = self.predictor.version
        return out


def _format_of(path: str) -> str:
    p = path.rstrip("/").lower()
    for fmt in ("parquet", "csv", "json"):
        if p.endswith(f".{fmt}") or p.endswith(f".{fmt}l") or f".{fmt}" in Path(p).suffixes:
            return fmt
    return "parquet"


def score(run: str, input_path: str, output_path: str, storage: str | None = None, fmt: str | None = None,
          actors: int = 1, batch_size: int = 4096) -> int:
    """Scores ``input_path`` with a run's model and writes Parquet to ``output_path`` atomically.

    Returns the number of rows written.
    """
    import ray.data

    if "://" in output_path:
        raise DataError(f"--output {output_path!r}: scoring writes to a local or shared path; URIs are not supported yet")
    run_dir = str(find_run(run, storage))
    ds = read_source(SourceConfig(format=fmt or _format_of(input_path), path=input_path))
    scored = ds.map_batches(_Scorer, fn_constructor_args=(run_dir,), batch_format="pandas", batch_size=batch_size,
                            compute=ray.data.ActorPoolStrategy(size=actors))
    out = Path(output_path).resolve()
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    scored.write_parquet(str(tmp))
    rows = ray.data.read_parquet(str(tmp)).count()
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(tmp, out)
    return rows
