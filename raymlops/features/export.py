"""A feature view's offline version as a table Spark (or any engine) reads without raymlops: a Hive-partitioned
Parquet dataset or a Delta Lake table, partitioned by the event's UTC ``date``.

The offline store's own layout is not that: a version is the file list of its manifest, spread over the
directories of the writes that made it (``<view>/data/<write id>/date=.../``), so reading ``<view>/data``
with Spark would mix superseded rows in. The export streams the version's files, one at a time:

    parquet:  OUT/date=YYYY-MM-DD/part-NNNNN.parquet ... then OUT/_SUCCESS (Spark's commit marker, last);
              timestamps in microseconds, the finest Spark reads
    delta:    OUT/_delta_log/ + OUT/date=YYYY-MM-DD/*.parquet, one Delta commit per export, whose commit info
              names the offline version (raymlops.offline_version)

A local Parquet export is written beside OUT and renamed into place; an object store has no rename, so
readers there should wait for ``_SUCCESS`` (what Spark's own committers leave) or read the Delta table,
whose log commits atomically.
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from raymlops.errors import DataError
from raymlops.features.offline import DATE, OfflineStore

FORMATS = ("parquet", "delta")


def _batches(offline: OfflineStore, view: str, version):
    """The version's rows file by file, each with its ``date`` partition as a column."""
    schema = version.schema
    for f in version.files:
        table = pq.read_table(offline._dir(view, f["path"]), filesystem=offline.fs, partitioning=None)
        table = table.select(schema.names).cast(schema)
        day = next((seg.split("=", 1)[1] for seg in f["path"].split("/") if seg.startswith(f"{DATE}=")), None)
        yield table.append_column(pa.field(DATE, pa.string()), pa.array([day] * table.num_rows, pa.string()))


def export(offline: OfflineStore, view: str, out: str, fmt: str = "parquet", version: int | None = None) -> dict:
    """Writes ``view``'s offline ``version`` (default the latest) to ``out``; returns {view, version, format,
    rows, files, path}.

    Raises:
        DataError: an unknown format, a view with no offline data, or an existing non-empty local ``out``
        (parquet; a Delta export adds a new table version instead).
    """
    if fmt not in FORMATS:
        raise DataError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    v = offline._require(view, version)
    out = str(out)
    if fmt == "delta":
        return _delta(offline, view, v, out)
    return _parquet(offline, view, v, out)


def _parquet(offline: OfflineStore, view: str, v, out: str) -> dict:
    from raymlops.storage import Storage

    local = "://" not in out or out.startswith("file://")
    target = out.removeprefix("file://")
    if local and os.path.exists(target) and os.listdir(target):
        raise DataError(f"{target}: already exists and is not empty; export to a new path")
    work = f"{target.rstrip('/')}.{uuid.uuid4().hex[:8]}.partial" if local else target
    store = Storage(work)
    rows = files = 0
    try:
        for i, table in enumerate(_batches(offline, view, v)):
            day = table.column(DATE)[0].as_py() if table.num_rows else None
            body = table.drop_columns([DATE])
            buf = pa.BufferOutputStream()
            # microseconds: Spark reads no nanosecond timestamps (PARQUET_TYPE_ILLEGAL), nor does Delta store them
            pq.write_table(body, buf, coerce_timestamps="us", allow_truncated_timestamps=True)
            store.write_bytes(
                *([f"{DATE}={day}"] if day else []), f"part-{i:05d}.parquet", data=buf.getvalue().to_pybytes()
            )
            rows, files = rows + table.num_rows, files + 1
        store.write_bytes("_SUCCESS", data=b"")
        if local:
            os.replace(work, target)
    except BaseException:
        if local:
            shutil.rmtree(work, ignore_errors=True)
        raise
    return {"view": view, "version": v.number, "format": "parquet", "rows": rows, "files": files, "path": out}


def _delta(offline: OfflineStore, view: str, v, out: str) -> dict[str, Any]:
    from deltalake import CommitProperties, write_deltalake

    schema = v.schema.append(pa.field(DATE, pa.string()))
    reader = pa.RecordBatchReader.from_batches(
        schema, (b for t in _batches(offline, view, v) for b in t.cast(schema).to_batches())
    )
    write_deltalake(
        out,
        reader,
        partition_by=[DATE],
        mode="overwrite",
        schema_mode="overwrite",
        commit_properties=CommitProperties(
            custom_metadata={"raymlops.view": view, "raymlops.offline_version": str(v.number)}
        ),
    )
    return {"view": view, "version": v.number, "format": "delta", "rows": v.rows, "files": len(v.files), "path": out}
