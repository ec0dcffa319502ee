"""Directories in the making (``Staging``) and per-node copies of committed ones (``fetch_dir``).

A staged directory has a local side (small files the driver writes: JSON, models, reports) and a side every
node can write (Ray Data's Parquet, Tune's experiment state): on local or shared storage both are one hidden
``.<name>.<token>.partial`` directory beside the target, renamed into place on commit; on an object store the
local side is a temp directory uploaded on commit and the shared side is the remote prefix itself, committed
by the manifest written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from raymlops.storage.core import MANIFEST, Storage


def cache_root() -> Path:
    """This node's cache directory ($RAYMLOPS_CACHE, else ~/.cache/raymlops): per node, never shared."""
    return Path(os.environ.get("RAYMLOPS_CACHE") or os.path.expanduser("~/.cache/raymlops"))


class Staging:
    """A directory being written for ``store/<parts>``; nothing of it is visible there before ``publish``.

    Args:
        store: Where it is published.
        parts: Its final path below ``store``.
        remote_parts: On an object store, the prefix the shared side writes to (default ``parts``; the step
            cache uses a prefix of its own per writer so that racing writers never touch each other's files).
        local_dir: Reuse this local side (resuming a run).
    """

    def __init__(
        self, store: Storage, *parts: str, remote_parts: tuple[str, ...] | None = None, local_dir: Path | None = None
    ):
        self.store, self.parts = store, tuple(parts)
        self.token = f"{os.getpid()}.{secrets.token_hex(4)}"
        if store.local:
            parent, name = store.local_path(*parts).parent, Path(store.path(*parts)).name
            self.dir = local_dir or parent / f".{name}.{self.token}.partial"
            self.shared = Storage(self.dir)
        else:
            self.dir = local_dir or Path(tempfile.mkdtemp(prefix=f"raymlops-{parts[-1]}-"))
            self.remote_parts = tuple(remote_parts or parts)
            self.shared = store.child(*self.remote_parts)
        self.dir.mkdir(parents=True, exist_ok=True)

    def __truediv__(self, name: str) -> Path:
        return self.dir / name

    def path(self, *names: str) -> Path:
        """A local path for a file the driver writes."""
        return self.dir.joinpath(*names)

    def target(self, *names: str) -> tuple[str, object | None]:
        """(path, pyarrow filesystem or None) for a writer that may run on any node (Ray Data, Tune)."""
        if self.store.local:
            return str(self.dir.joinpath(*names)), None
        return self.shared.path(*names), self.shared.fs

    def publish(self, manifest: dict | None = None) -> str:
        """Commits the directory at ``store/<parts>``: a rename locally (the target must not exist), the
        local side's files uploaded beside the shared side's and the manifest written last on an object
        store. Returns its URL."""
        if self.store.local:
            return self.store.publish(self.dir, *self.parts)
        url = self.shared.publish(self.dir, manifest=manifest)
        shutil.rmtree(self.dir, ignore_errors=True)
        return url

    def abort(self) -> None:
        """Removes what was staged (both sides)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        if not self.store.local:
            self.shared.delete_tree()


def fetch_dir(store: Storage, *parts: str) -> Path:
    """A local path holding the committed directory ``store/<parts>``: the directory itself on local
    storage, else a per-node copy (downloaded once, keyed by its URL and manifest: committed directories
    never change, so the copy stays valid)."""
    if store.local:
        return store.local_path(*parts)
    manifest = store.read_bytes(*parts, MANIFEST)
    key = hashlib.sha256(store.url(*parts).encode() + manifest).hexdigest()[:20]
    final = cache_root() / "fetched" / f"{Path(store.path(*parts)).name}-{key}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        for name in json.loads(manifest)["files"]:  # what was committed, not what else lies below
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(store.read_bytes(*parts, name))
        try:
            os.rename(tmp, final)
        except OSError:  # another process on this node fetched it first
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
