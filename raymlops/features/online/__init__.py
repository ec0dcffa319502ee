"""Online feature store: the OnlineStore extension point, its SQLite and Redis backends and the factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raymlops.features.online.base import (
    OnlineRecord,
    OnlineStore,
    OnlineStoreError,
    decode_values,
    encode_key,
    encode_values,
    to_json_value,
)

__all__ = ["OnlineRecord", "OnlineStore", "OnlineStoreError", "decode_values", "default_sqlite_path", "encode_key",
           "encode_values", "open_online_store", "to_json_value"]


def default_sqlite_path(storage: str) -> Path:
    """<storage>/features/online.db, for a local (or file://) storage path."""
    if "://" in storage and not storage.startswith("file://"):
        raise OnlineStoreError(f"the SQLite online store needs a local file but storage is {storage!r}: "
                               "set features.online_store.path, or use type: redis")
    return Path(storage.removeprefix("file://")).expanduser() / "features" / "online.db"


def open_online_store(cfg: Any, storage: str, namespace: str) -> OnlineStore:
    """Opens the online store a config describes.

    Args:
        cfg: A SqliteOnlineStoreConfig or RedisOnlineStoreConfig (anything with their attributes; None = SQLite
            defaults).
        storage: The pipeline's storage path (SQLite default location).
        namespace: Default Redis key prefix (the pipeline name).

    Raises:
        OnlineStoreError: Unknown type, or the store cannot be opened/reached.
    """
    kind = getattr(cfg, "type", "sqlite") if cfg is not None else "sqlite"
    if kind == "sqlite":
        from raymlops.features.online.sqlite import SqliteOnlineStore

        path = getattr(cfg, "path", None)
        return SqliteOnlineStore(Path(path.removeprefix("file://")) if path else default_sqlite_path(storage))
    if kind == "redis":
        from raymlops.features.online.redis import RedisOnlineStore

        return RedisOnlineStore(cfg.url, cfg.key_prefix or namespace)
    raise OnlineStoreError(f"unknown online store type {kind!r}; expected 'sqlite' or 'redis'")
