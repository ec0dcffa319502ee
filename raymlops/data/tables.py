"""Table formats as sources: Delta Lake (``format: delta``, the deltalake package) and Apache Iceberg
(``format: iceberg``, pyiceberg with any catalog it supports), each read at a pinned version: the one named
(``version`` / ``snapshot``), the one current at ``as_of``, else the latest, resolved once per read so the
step cache and the run's lineage record which version a run trained on."""

from __future__ import annotations

import datetime as dt
from typing import Any

from raymlops.config.models import TABLE_FORMATS
from raymlops.errors import DataError


def is_table(src) -> bool:
    return src.format in TABLE_FORMATS


def _as_of(src) -> dt.datetime:
    t = dt.datetime.fromisoformat(str(src.as_of).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _delta(src):
    try:
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError
    except ImportError:  # pragma: no cover - a dependency of raymlops
        raise DataError("format: delta needs the deltalake package (pip install deltalake)") from None
    try:
        table = DeltaTable(src.path, version=src.version)
        if src.as_of is not None:
            table.load_as_version(_as_of(src))
    except TableNotFoundError:
        raise DataError(f"{src.path}: not a Delta table (no _delta_log)") from None
    except (DeltaError, ValueError, OSError) as e:
        raise DataError(f"{src.path}: cannot open the Delta table at the requested version: {e}") from None
    return table


def _iceberg(src):
    try:
        from pyiceberg.catalog import load_catalog
        from pyiceberg.exceptions import NoSuchTableError
    except ImportError:  # pragma: no cover - a dependency of raymlops
        raise DataError("format: iceberg needs the pyiceberg package (pip install 'pyiceberg[sql-sqlite]')") from None
    try:
        table = load_catalog("raymlops", **(src.catalog or {})).load_table(src.path)
    except NoSuchTableError:
        raise DataError(f"{src.path}: no such Iceberg table in the catalog") from None
    except Exception as e:  # a catalog that cannot be reached or configured: the user's settings to fix
        raise DataError(f"{src.path}: cannot load the Iceberg table: {type(e).__name__}: {e}") from None
    if src.snapshot is not None:
        snap = table.snapshot_by_id(src.snapshot)
        if snap is None:
            raise DataError(
                f"{src.path}: no snapshot {src.snapshot}; snapshots: {[s.snapshot_id for s in table.snapshots()]}"
            )
    elif src.as_of is not None:
        snap = table.snapshot_as_of_timestamp(int(_as_of(src).timestamp() * 1000))
        if snap is None:
            raise DataError(f"{src.path}: no snapshot at or before {src.as_of}")
    else:
        snap = table.current_snapshot()
        if snap is None:
            raise DataError(f"{src.path}: the Iceberg table has no snapshot (no data)")
    return table, snap


def version(src) -> dict[str, Any]:
    """The table version a read of ``src`` sees now: {format, table, version|snapshot, files}."""
    if src.format == "delta":
        table = _delta(src)
        return {"format": "delta", "table": src.path, "version": table.version(), "files": len(table.file_uris())}
    table, snap = _iceberg(src)
    files = len(list(table.scan(snapshot_id=snap.snapshot_id).plan_files()))
    return {"format": "iceberg", "table": src.path, "snapshot": snap.snapshot_id, "files": files}


def schema(src):
    """The table's Arrow schema at the version read."""
    import pyarrow as pa

    if src.format == "delta":
        arrow = _delta(src).schema().to_arrow()
        return pa.schema(arrow) if not isinstance(arrow, pa.Schema) else arrow
    table, snap = _iceberg(src)
    schemas = table.schemas()  # {schema id: schema}; a snapshot names the schema it was written with
    return (schemas.get(snap.schema_id) or table.schema()).as_arrow()


def read(src):
    """The table as a lazy Ray Dataset at its version: the one ``src`` names (a run pins it), else the one
    resolved now (``as_of``, or the latest)."""
    import ray.data

    # opened (and checked) at that version; its files are listed by Ray's reader, not here a second time
    at = _delta(src).version() if src.format == "delta" else _iceberg(src)[1].snapshot_id
    if src.format == "delta":
        return ray.data.read_delta(src.path, version=at)
    return ray.data.read_iceberg(
        table_identifier=src.path, snapshot_id=at, catalog_kwargs={"name": "raymlops", **(src.catalog or {})}
    )
