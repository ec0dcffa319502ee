"""Reads configured sources as Ray Datasets (never loaded whole into the driver)."""

from __future__ import annotations

from raymlops.config.models import SourceConfig
from raymlops.data.reader import read_dataset, resolve
from raymlops.errors import DataError


def read_source(src: SourceConfig):
    """Returns a lazy ``ray.data.Dataset`` for one source (``data.reader``: any extension, format by content
    when the config names none; Hive partition columns typed, ``filter`` pruning partitions)."""
    from raymlops.data import tables

    ds = tables.read(src) if tables.is_table(src) else read_dataset(resolve(src.path, src.format, src.filter))
    if src.timestamp and src.timestamp not in ds.schema().names:
        raise DataError(
            f"{src.path}: timestamp column {src.timestamp!r} is not in the data; columns: {ds.schema().names}"
        )
    return ds
