"""Materialization: from the offline store into the online store, each entity's latest row of a time window
(plain fields) and the tiles of its window aggregates (`tiles.py`)."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa

from raymlops.config.models import FeatureViewConfig
from raymlops.features.kernels import NAT, key_codes, sort_order, utc_ns
from raymlops.features.offline import OfflineStore, iso, time_filter
from raymlops.features.online import OnlineRecord, OnlineStore
from raymlops.features.partition import cluster_cpus, partition_count, with_partition
from raymlops.features.shuffle import Side, shuffle_apply
from raymlops.features.tiles import EXPIRY_GRACE_NS, build_tiles, tile_spec

WRITE_BATCH = 10_000


def meta_key(view: str) -> str:
    return f"materialize:{view}"


def _latest_per_key(table: pa.Table, view: FeatureViewConfig, join_keys: list[str]) -> pa.Table:
    """One partition: the last row (by time, then created time) of every key."""
    keys = join_keys
    code, _ = key_codes([table.column(k) for k in keys], [table.column(k).slice(0, 0) for k in keys])
    ts = utc_ns(table.column(view.timestamp))
    created = utc_ns(table.column(view.created_timestamp)) if view.created_timestamp else None
    order = sort_order(code, ts, created)
    order = order[code[order] >= 0]
    sc = code[order]
    last = order[np.flatnonzero(np.append(sc[1:] != sc[:-1], True))] if len(order) else order
    return table.take(pa.array(last, type=pa.int64()))


def materialize_view(
    offline: OfflineStore,
    online: OnlineStore,
    view: FeatureViewConfig,
    keys: list[str],
    start: int | None,
    end: int,
    incremental: bool = False,
) -> dict:
    """Writes the latest value per entity with ``start <= ts < end`` to the online store; returns the record.

    Idempotent: the online store keeps whichever record is newer, so re-running an older window never
    overwrites a newer value. With ``incremental`` the window starts at the previous run's end.
    """
    history = json.loads(online.get_meta(meta_key(view.name)) or '{"runs": []}')
    if incremental and history.get("watermark") is not None:
        start = history["watermark"]
    version = offline.latest(view.name)
    started = time.time()
    written = 0
    if version is not None and version.rows:
        columns = list(
            dict.fromkeys(
                [*keys, view.timestamp, *([view.created_timestamp] if view.created_timestamp else []), *view.fields]
            )
        )
        ds = offline.read_dataset(view.name, columns=columns, version=version.number)
        parts = partition_count(version.rows, cluster_cpus())
        ds = ds.map_batches(
            time_filter, fn_kwargs={"timestamp": view.timestamp, "start": start, "end": end}, batch_format="pyarrow"
        )
        ds = shuffle_apply(
            [Side(ds, with_partition, {"keys": keys, "partitions": parts})],
            _latest_per_key,
            parts,
            {"view": view, "join_keys": keys},
        )
        for batch in ds.iter_batches(batch_size=WRITE_BATCH, batch_format="pyarrow"):
            written += online.write(view.name, _records(batch, view, keys))
    tiles = _materialize_tiles(offline, online, view, keys, version, start, end)
    run = {
        "start": iso(start),
        "end": iso(end),
        "offline_version": version.number if version else None,
        "entities": written,
        **({"tiles": tiles} if tiles is not None else {}),
        "seconds": round(time.time() - started, 2),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if version is not None:  # nothing loaded before the first build: keep the watermark where it was
        history["watermark"] = max(end, history.get("watermark") or end)
    history["runs"] = (history.get("runs", []) + [run])[-50:]
    online.set_meta(meta_key(view.name), json.dumps(history))
    return run


def _materialize_tiles(
    offline: OfflineStore,
    online: OnlineStore,
    view: FeatureViewConfig,
    keys: list[str],
    version,
    start: int | None,
    end: int,
) -> int | None:
    """Recomputes every tile the events of ``[start, end)`` touch, whole, from the offline events (so a re-run
    replaces rather than double-counts, and an older window re-run loses nothing), skipping events no window
    can read any more; returns the tiles written."""
    spec = tile_spec(view)
    if spec is None:
        return None
    written = 0
    if version is not None and version.rows:
        oldest = end - spec.max_window_ns - EXPIRY_GRACE_NS  # before it, events no live tile holds
        lo = oldest if start is None else max(start, oldest)
        top = spec.span(spec.levels - 1)
        # from the start of the top-level tile holding lo to the end of the one holding end - 1: every tile
        # written is whole. A tile cut at ``end`` would drop the later events it holds: re-running an older
        # window after a newer one lost them (tiles cover (k * span, (k + 1) * span], hence the + 1s)
        lo = ((lo - 1) // top) * top + 1
        hi = ((end - 2) // top + 1) * top + 1
        columns = list(
            dict.fromkeys(
                [
                    *keys,
                    view.timestamp,
                    *([view.created_timestamp] if view.created_timestamp else []),
                    *(c for _, c in spec.partials.values()),
                ]
            )
        )
        ds = offline.read_dataset(view.name, columns=columns, version=version.number)
        ds = ds.map_batches(
            time_filter, fn_kwargs={"timestamp": view.timestamp, "start": lo, "end": hi}, batch_format="pyarrow"
        )
        parts = partition_count(version.rows, cluster_cpus())
        ds = shuffle_apply(
            [Side(ds, with_partition, {"keys": keys, "partitions": parts})],
            build_tiles,
            parts,
            {"spec": spec, "keys": keys, "timestamp": view.timestamp, "created": view.created_timestamp},
        )
        for batch in ds.iter_batches(batch_size=WRITE_BATCH, batch_format="pyarrow"):
            written += online.write_tiles(view.name, _tiles(batch, keys))
    online.expire_tiles(view.name, time.time_ns())
    return written


def _tiles(batch: pa.Table, keys: list[str]):
    key_cols = [batch.column(k).to_pylist() for k in keys]
    cols = [batch.column(c).to_pylist() for c in ("__level", "__index", "__expires", "__partial")]
    for i in range(batch.num_rows):
        yield (tuple(col[i] for col in key_cols), cols[0][i], cols[1][i], cols[2][i], cols[3][i])


def _records(batch: pa.Table, view: FeatureViewConfig, keys: list[str]):
    ts = utc_ns(batch.column(view.timestamp))
    created = utc_ns(batch.column(view.created_timestamp)) if view.created_timestamp else None
    key_cols = [batch.column(k).to_pylist() for k in keys]
    values = {f: batch.column(f).to_pylist() for f in view.fields}
    for i in range(batch.num_rows):
        rec = OnlineRecord(
            {f: v[i] for f, v in values.items()},
            int(ts[i]),
            None if created is None or created[i] == NAT else int(created[i]),
        )
        yield tuple(col[i] for col in key_cols), rec
