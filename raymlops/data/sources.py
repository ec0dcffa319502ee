"""Reads configured sources as Ray Datasets (never loaded whole into the driver)."""

from __future__ import annotations

import glob
import os

from raymlops.config.models import SourceConfig
from raymlops.errors import DataError

_READERS = {"parquet": "read_parquet", "csv": "read_csv", "json": "read_json"}


def resolve_paths(path: str) -> list[str] | str:
    """Local paths become absolute (globs expanded); URIs pass through unchanged."""
    if "://" in path:
        return path
    if any(ch in path for ch in "*?["):
        found = sorted(os.path.abspath(p) for p in glob.glob(path, recursive=True))
        if not found:
            raise DataError(f"no files match {path!r}")
        return found
    if not os.path.exists(path):
        raise DataError(f"source path {path!r} does not exist (relative paths start at {os.getcwd()})")
    return os.path.abspath(path)


def read_source(src: SourceConfig):
    """Returns a lazy ``ray.data.Dataset`` for one source."""
    import ray.data

    reader = getattr(ray.data, _READERS[src.format])
    ds = reader(resolve_paths(src.path))
    if src.timestamp and src.timestamp not in ds.schema().names:
        raise DataError(f"timestamp column {src.timestamp!r} is not in {src.path!r}; columns: {ds.schema().names}")
    return ds
