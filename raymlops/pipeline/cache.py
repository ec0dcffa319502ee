"""Step cache: each step's outputs stored under a key made from the content of its inputs."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymlops.pipeline.fingerprint import code_fingerprint, digest, dir_fingerprint, package_versions
from raymlops.storage import Staging, Storage, fetch_dir, open_storage

MANIFEST = "step.json"


@dataclass
class StepOutput:
    """A step's stored outputs: where they are (``store``; ``path`` is a local copy of the files the driver
    wrote), what it recorded, and whether this run reused it."""

    step: str
    key: str
    store: Storage
    info: dict[str, Any]
    fingerprint: str
    cached: bool

    @property
    def path(self) -> Path:
        """A local directory with the entry's files (on an object store: this node's copy of the files the
        driver wrote; Parquet written by Ray Data is read through ``store``)."""
        return fetch_dir(self.store)


class StepCache:
    """Runs steps at most once per input key; the outputs are published whole when complete.

    Layout: ``<root>/<step>/<key>/`` holds the files and ``step.json`` on local storage (renamed into place).
    On an object store each writer uploads to ``<root>/<step>/<key>.<token>/`` (its manifest last) and then
    creates ``<root>/<step>/<key>/step.json`` naming that prefix: the first complete writer wins and no
    reader ever sees files change under it.

    Args:
        root: The cache (``<storage>/cache/steps``): a local directory or a ``Storage``.
        enabled: False runs every step (``--no-cache``), still storing its outputs for later runs.
    """

    def __init__(self, root: str | os.PathLike | Storage, enabled: bool = True):
        self.store = root if isinstance(root, Storage) else open_storage(root)
        self.root = self.store.url()
        self.enabled = enabled

    def key(self, step: str, inputs: dict[str, Any]) -> str:
        """The step's cache key: its inputs (config section, upstream fingerprints), raymlops' code and the
        versions of the packages that decide the outputs."""
        return digest({"step": step, "inputs": inputs, "code": code_fingerprint(), "packages": package_versions()})[:24]

    def lookup(self, step: str, key: str) -> StepOutput | None:
        try:
            m = self.store.read_json(step, key, MANIFEST)
        except (OSError, ValueError):
            return None
        where = self.store.child(step, m["dir"]) if m.get("dir") else self.store.child(step, key)
        return StepOutput(step, key, where, m["info"], m["fingerprint"], cached=True)

    def run(self, step: str, inputs: dict[str, Any], build: Callable[[Staging], dict]) -> StepOutput:
        """Returns the stored outputs for these inputs, or runs ``build(staging) -> info`` and stores them.

        ``build`` writes small files into the local directory ``staging / name`` and distributed outputs to
        ``staging.target(name)``, and returns a JSON-able summary. The first complete writer of a key wins;
        a run that loses the race (or ran with the cache off while an entry existed) keeps its outputs in a
        directory of its own, so no reader ever sees files change.
        """
        key = self.key(step, inputs)
        if self.enabled and (hit := self.lookup(step, key)) is not None:
            return hit
        local = self.store.local
        stage = Staging(self.store, step, key, remote_parts=None if local else (step, f"{key}.{time.time_ns()}"))
        try:
            info = build(stage)
            fp = dir_fingerprint(stage.dir)
            record = {
                "step": step,
                "key": key,
                "inputs": inputs,
                "info": info,
                "fingerprint": fp,
                "created": time.time(),
            }
            if local:
                (stage.dir / MANIFEST).write_text(json.dumps(record, default=str))
                where = self._publish_local(stage, step, key)
                if isinstance(where, StepOutput):  # another writer got there first
                    return where
            else:
                stage.publish()
                where = stage.shared
                record["dir"] = stage.remote_parts[-1]
                if (
                    not self.store.create(step, key, MANIFEST, data=json.dumps(record, default=str).encode())
                    and self.enabled
                    and (hit := self.lookup(step, key)) is not None
                ):
                    where.delete_tree()
                    return hit
        except BaseException:
            stage.abort()
            raise
        return StepOutput(step, key, where, info, fp, cached=False)

    def _publish_local(self, stage: Staging, step: str, key: str) -> Storage | StepOutput:
        final = Path(self.store.path(step, key))
        try:
            os.rename(stage.dir, final)  # fails on a non-empty existing directory
            return self.store.child(step, key)
        except OSError:
            if not final.exists():
                raise
        if self.enabled and (hit := self.lookup(step, key)) is not None:
            shutil.rmtree(stage.dir, ignore_errors=True)
            return hit
        own = stage.dir.name.removesuffix(".partial").lstrip(".")
        os.rename(stage.dir, final.with_name(own))
        return self.store.child(step, own)

    def put(self, step: str, inputs: dict[str, Any], info: dict) -> str:
        """Records (or replaces) a step that writes no files, e.g. which offline version a feature build
        made; returns its key. The record is one JSON object replaced whole."""
        key = self.key(step, inputs)
        self.store.write_json(
            step,
            key,
            MANIFEST,
            obj={
                "step": step,
                "key": key,
                "inputs": inputs,
                "info": info,
                "fingerprint": digest(info),
                "created": time.time(),
            },
            indent=None,
        )
        return key
