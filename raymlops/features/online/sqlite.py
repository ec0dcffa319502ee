"""SqliteOnlineStore: the embedded default online store, one SQLite file in WAL mode.

Layout: table `online_features(view, ekey, vals, ts, cts)` with primary key (view, ekey), table
`online_tiles(view, ekey, lvl, idx, partial, expires)` (window-aggregate tiles) and table `online_meta(key, value)`. Each thread gets its own connection (WAL readers never wait for a writer); several
processes may share the file (busy timeout 30 s). Every write call is one transaction: if it fails midway, e.g.
because the rows iterator raises, the previous state is kept.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raymlops.features.online.base import (
    Merge,
    OnlineRecord,
    OnlineStore,
    OnlineStoreError,
    Row,
    Slot,
    Tile,
    check_ts,
    decode_values,
    encode_key,
    encode_values,
    slot_runs,
)

BUSY_TIMEOUT_S = 30.0
READ_CHUNK = 500  # keys per SELECT ... IN (...), well under SQLite's bound-parameter limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    view TEXT NOT NULL,
    ekey TEXT NOT NULL,
    vals TEXT NOT NULL,
    ts INTEGER NOT NULL,
    cts INTEGER,
    PRIMARY KEY (view, ekey)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online_tiles (
    view TEXT NOT NULL,
    ekey TEXT NOT NULL,
    lvl INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    partial TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (view, ekey, lvl, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS online_tiles_expiry ON online_tiles (view, expires);
"""
_PUT_TILE = """
INSERT INTO online_tiles (view, ekey, lvl, idx, partial, expires) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (view, ekey, lvl, idx) DO UPDATE SET partial = excluded.partial, expires = excluded.expires
"""
_GET_TILE = "SELECT partial FROM online_tiles WHERE view = ? AND ekey = ? AND lvl = ? AND idx = ?"

# Newer wins: replace only if (ts, cts) >= the stored one, a NULL cts sorting before any value.
_UPSERT = """
INSERT INTO online_features (view, ekey, vals, ts, cts) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (view, ekey) DO UPDATE SET vals = excluded.vals, ts = excluded.ts, cts = excluded.cts
WHERE excluded.ts > online_features.ts
   OR (excluded.ts = online_features.ts AND (online_features.cts IS NULL OR excluded.cts >= online_features.cts))
"""
_READ_ONE = "SELECT vals, ts, cts FROM online_features WHERE view = ? AND ekey = ?"


def default_sqlite_path(storage: str) -> Path:
    """<storage>/features/online.db, for a local (or file://) storage path."""
    if "://" in storage and not storage.startswith("file://"):
        raise OnlineStoreError(
            f"the SQLite online store needs a local file but storage is {storage!r}: "
            "set features.online_store.path, or use type: redis"
        )
    return Path(storage.removeprefix("file://")).expanduser() / "features" / "online.db"


class SqliteOnlineStore(OnlineStore):
    """Online store in one local SQLite file.

    Args:
        path: Database file; parent directories are created.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as e:
            self.close()
            raise OnlineStoreError(f"cannot open the SQLite online store {self.path}: {e}") from e

    @classmethod
    def from_config(cls, cfg: Any, storage: str, namespace: str) -> SqliteOnlineStore:
        """``cfg.path``, or <storage>/features/online.db."""
        path = getattr(cfg, "path", None)
        return cls(Path(path.removeprefix("file://")) if path else default_sqlite_path(storage))

    def __repr__(self) -> str:
        return f"SqliteOnlineStore({str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            return conn
        with self._lock:
            if self._closed:
                raise OnlineStoreError(f"{self!r} is closed")
            # check_same_thread=False only so that close() may close every thread's connection.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across app crashes, commits stay cheap
            self._conns.append(conn)
        self._local.conn = conn
        return conn

    def write(self, view: str, rows: Iterable[Row]) -> int:
        """See OnlineStore.write; all rows are applied in one transaction or none are."""
        with self._transaction(f"write to view {view!r}") as conn:
            return conn.executemany(_UPSERT, _params(view, rows)).rowcount

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed at the end, rolled back on any error (SQLite's as OnlineStoreError)."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise OnlineStoreError(f"{self!r}: cannot start a write: {e}") from e
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise OnlineStoreError(f"{self!r}: {what} failed: {e}") from e
            raise

    def read(self, view: str, keys: Sequence[tuple]) -> list[OnlineRecord | None]:
        """See OnlineStore.read."""
        conn = self._conn()
        if len(keys) == 1:
            row = conn.execute(_READ_ONE, (view, encode_key(keys[0]))).fetchone()
            return [None if row is None else OnlineRecord(decode_values(row[0]), row[1], row[2])]
        enc = [encode_key(k) for k in keys]
        found: dict[str, OnlineRecord] = {}
        unique = list(dict.fromkeys(enc))
        for i in range(0, len(unique), READ_CHUNK):
            chunk = unique[i : i + READ_CHUNK]
            sql = (
                "SELECT ekey, vals, ts, cts FROM online_features WHERE view = ? AND ekey IN ("
                + ",".join("?" * len(chunk))
                + ")"
            )
            for ekey, vals, ts, cts in conn.execute(sql, (view, *chunk)):
                found[ekey] = OnlineRecord(decode_values(vals), ts, cts)
        return [found.get(e) for e in enc]

    def write_tiles(self, view: str, tiles: Iterable[Tile], merge: Merge | None = None) -> int:
        """See OnlineStore.write_tiles; one transaction (merges read and write under its lock)."""
        now = time.time_ns()
        n = 0
        with self._transaction(f"write of tiles to view {view!r}") as conn:
            for key, level, index, expires, partial in tiles:
                if expires <= now:
                    continue
                ekey = encode_key(key)
                if merge is not None:
                    row = conn.execute(_GET_TILE, (view, ekey, level, index)).fetchone()
                    partial = merge(None if row is None else row[0], partial)
                conn.execute(_PUT_TILE, (view, ekey, level, index, partial, expires))
                n += 1
        return n

    def read_tiles(self, view: str, keys: Sequence[tuple], slots: Sequence[Slot]) -> list[dict[Slot, str]]:
        """See OnlineStore.read_tiles: one index range per run of consecutive tiles."""
        runs = slot_runs(slots)
        if not runs:
            return [{} for _ in keys]
        sql = " UNION ALL ".join(
            [
                "SELECT lvl, idx, partial FROM online_tiles WHERE view = ? AND ekey = ? AND lvl = ? "
                "AND idx BETWEEN ? AND ?"
            ]
            * len(runs)
        )
        conn = self._conn()
        out = []
        for key in keys:
            ekey = encode_key(key)
            params = [p for level, lo, hi in runs for p in (view, ekey, level, lo, hi)]
            out.append({(level, index): partial for level, index, partial in conn.execute(sql, params)})
        return out

    def expire_tiles(self, view: str, now: int) -> int:
        """See OnlineStore.expire_tiles."""
        return self._conn().execute("DELETE FROM online_tiles WHERE view = ? AND expires <= ?", (view, now)).rowcount

    def get_meta(self, key: str) -> str | None:
        """See OnlineStore.get_meta."""
        row = self._conn().execute("SELECT value FROM online_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """See OnlineStore.set_meta."""
        self._conn().execute(
            "INSERT INTO online_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_view(self, view: str) -> None:
        """See OnlineStore.delete_view."""
        conn = self._conn()
        conn.execute("DELETE FROM online_features WHERE view = ?", (view,))
        conn.execute("DELETE FROM online_tiles WHERE view = ?", (view,))

    def count(self, view: str) -> int:
        """See OnlineStore.count."""
        return self._conn().execute("SELECT count(*) FROM online_features WHERE view = ?", (view,)).fetchone()[0]

    def close(self) -> None:
        """Closes every thread's connection."""
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()


def _params(view: str, rows: Iterable[Row]) -> Iterator[tuple]:
    for key, rec in rows:
        cts = rec.created_ts
        yield (
            view,
            encode_key(key),
            encode_values(rec.values),
            check_ts(rec.event_ts, "event_ts"),
            None if cts is None else check_ts(cts, "created_ts"),
        )
