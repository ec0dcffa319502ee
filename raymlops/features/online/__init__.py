"""Online feature store: the OnlineStore extension point, the table of its backends (SQLite, Redis) and the factory."""

from __future__ import annotations

from typing import Any

from raymlops.contracts.calls import import_object
from raymlops.features.online.base import (
    OnlineRecord,
    OnlineStore,
    OnlineStoreError,
    decode_values,
    encode_key,
    encode_values,
    to_json_value,
)

__all__ = [
    "ONLINE_STORES",
    "OnlineRecord",
    "OnlineStore",
    "OnlineStoreError",
    "decode_values",
    "encode_key",
    "encode_values",
    "online_store_class",
    "open_online_store",
    "to_json_value",
]

# The only place a backend is chosen: features.online_store.type -> the OnlineStore subclass, as "module:Class"
# (imported when a store of that type is first opened, so `redis` loads only where it is used) or the class.
ONLINE_STORES: dict[str, str | type[OnlineStore]] = {
    "sqlite": "raymlops.features.online.sqlite:SqliteOnlineStore",
    "redis": "raymlops.features.online.redis:RedisOnlineStore",
}


def online_store_class(kind: str) -> type[OnlineStore]:
    """The backend class of an online store type (see ONLINE_STORES).

    Raises:
        OnlineStoreError: Unknown type.
    """
    try:
        target = ONLINE_STORES[kind]
    except KeyError:
        raise OnlineStoreError(
            f"unknown online store type {kind!r}; expected {' or '.join(repr(k) for k in ONLINE_STORES)}"
        ) from None
    if isinstance(target, str):
        target = import_object(target)
    return target


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
    return online_store_class(kind).from_config(cfg, storage, namespace)
