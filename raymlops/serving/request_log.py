"""The request log: answered requests written asynchronously, in batches, to date-partitioned Parquet.

``add`` only appends to an in-memory buffer (never blocks, never raises); a writer thread turns the buffer
into one Parquet file per flush under ``<path>/date=YYYY-MM-DD/``, written to a hidden temporary name and
renamed, so readers never see a partial file. A full buffer drops rows and counts them.
One row per input row: ``ts, request_id, row, variant, role (primary|shadow), model_version, status,
latency_ms, inputs, prediction, probability, error, features`` (inputs, outputs and, for requests by entity
key, the feature values fetched online for the row, as JSON text).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from raymlops.storage import Storage

SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("variant", pa.string()),
        ("role", pa.string()),
        ("model_version", pa.string()),
        ("status", pa.int32()),
        ("latency_ms", pa.float64()),
        ("inputs", pa.string()),
        ("prediction", pa.string()),
        ("probability", pa.string()),
        ("error", pa.string()),
        ("features", pa.string()),
    ]
)
FLUSH_ROWS = 20_000

log = logging.getLogger("ray.serve")


def _rows(record: dict) -> int:
    """Log rows a request record becomes (one per input row; one for a request without rows)."""
    return max(1, len(record.get("rows") or ()))


def _json(v: Any) -> str | None:
    return None if v is None else json.dumps(v, default=str, separators=(",", ":"))


class RequestLog:
    """Buffers request records and writes them from a background thread.

    A record is one request: ``{ts, request_id, variant, role, model_version, status, latency_ms, rows,
    predictions, probabilities, error}``; it is expanded to one log row per input row when written.
    """

    def __init__(
        self,
        path: str,
        flush_s: float = 1.0,
        max_buffer_rows: int = 100_000,
        on_drop: Callable[[int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
    ):
        self.path = str(path)
        self.flush_s, self.max_rows = flush_s, max_buffer_rows
        self.on_drop, self.on_write = on_drop, on_write
        self._records: deque = deque()
        self._rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.dropped = self.written = 0
        self.failed = False  # the last write failed
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, daemon=True, name="request-log")
        self._thread.start()

    def add(self, record: dict) -> bool:
        """Queues one request's record; False (and counted) when the buffer is full."""
        n = _rows(record)
        with self._lock:
            if self._rows + n > self.max_rows or self._closed:
                self.dropped += n
                dropped = True
            else:
                self._records.append(record)
                self._rows += n
                self._idle.clear()
                dropped = False
                if self._rows >= min(FLUSH_ROWS, max(1, self.max_rows // 2)):
                    self._wake.set()
        if dropped and self.on_drop:
            self.on_drop(n)
        return not dropped

    def flush(self, timeout: float = 30) -> bool:
        """Asks the writer to write everything buffered now; True once it has (False if a write failed)."""
        self._wake.set()
        return self._idle.wait(timeout) and not self.failed

    def close(self, timeout: float = 30) -> None:
        self.flush(timeout)
        self._closed = True

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            with self._lock:
                records, self._records, self._rows = self._records, deque(), 0
            if records:
                try:
                    self._write(records)
                    self.failed = False
                except Exception:  # a failing log must never fail serving: count the rows and carry on
                    n = sum(_rows(r) for r in records)
                    with self._lock:
                        self.dropped += n
                    self.failed = True
                    if self.on_drop:
                        self.on_drop(n)
                    log.exception("request log: dropped %d rows", n)
            with self._lock:
                if not self._records:
                    self._idle.set()

    def _write(self, records) -> None:
        import pyarrow.parquet as pq

        cols: dict[str, list] = {f.name: [] for f in SCHEMA}
        for r in records:
            rows = r.get("rows") or [None]
            preds, probs, feats = r.get("predictions"), r.get("probabilities"), r.get("features")
            for i, row in enumerate(rows):
                cols["ts"].append(r["ts"])
                cols["request_id"].append(r["request_id"])
                cols["row"].append(i)
                cols["variant"].append(r["variant"])
                cols["role"].append(r["role"])
                cols["model_version"].append(r.get("model_version"))
                cols["status"].append(r["status"])
                cols["latency_ms"].append(r["latency_ms"])
                cols["inputs"].append(_json(row))
                cols["prediction"].append(_json(preds[i]) if preds is not None and i < len(preds) else None)
                cols["probability"].append(_json(probs[i]) if probs is not None and i < len(probs) else None)
                cols["error"].append(r.get("error"))
                cols["features"].append(_json({k: v[i] for k, v in feats.items()}) if feats else None)
        cols["ts"] = [int(t * 1_000_000) for t in cols["ts"]]
        table = pa.Table.from_pydict(cols, schema=SCHEMA)
        # Partition by the UTC date of each row (a flush can straddle midnight).
        days = [time.strftime("%Y-%m-%d", time.gmtime(t / 1_000_000)) for t in cols["ts"]]
        store = Storage(self.path)
        fs, root = store.fs, store.root
        import pyarrow.compute as pc

        day_arr = pa.array(days)
        for day in sorted(set(days)):
            part = table.filter(pc.equal(day_arr, day)) if len(set(days)) > 1 else table
            folder = f"{root}/date={day}"
            name = f"part-{time.strftime('%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}.parquet"
            if store.local:  # a hidden temp file renamed into place
                fs.create_dir(folder, recursive=True)
                tmp = f"{folder}/.{name}.tmp"
                with fs.open_output_stream(tmp) as out:
                    pq.write_table(part, out)
                fs.move(tmp, f"{folder}/{name}")
            else:  # the file is complete in memory before its one PUT: no partial object is ever visible
                buf = pa.BufferOutputStream()
                pq.write_table(part, buf)
                store.write_bytes(f"date={day}", name, data=buf.getvalue().to_pybytes())
        self.written += len(table)
        if self.on_write:
            self.on_write(len(table))


def read_log(path: str | os.PathLike, filters=None):
    """The request log under ``path`` as a pandas DataFrame (with the ``date`` partition column)."""
    import pyarrow.dataset as ds

    store = Storage(path)
    if not store.isdir():
        return SCHEMA.empty_table().to_pandas()
    dataset = ds.dataset(
        store.root,
        filesystem=store.fs,
        format="parquet",
        partitioning="hive",
        schema=None,
        exclude_invalid_files=False,
        ignore_prefixes=[".", "_"],
    )
    return dataset.to_table(filter=filters).to_pandas()
