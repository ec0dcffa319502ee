"""Step cache: each step's outputs stored under a key made from the content of its inputs."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from raymlops.registry.fingerprint import code_fingerprint, digest, dir_fingerprint, package_versions

MANIFEST = "step.json"


@dataclass
class StepOutput:
    """A step's stored outputs: its directory, what it recorded, and whether this run reused it."""

    step: str
    key: str
    path: Path
    info: dict[str, Any]
    fingerprint: str
    cached: bool


class StepCache:
    """Runs steps at most once per input key; the outputs are published by one rename when complete.

    Args:
        root: Directory of the cache (``<storage>/cache/steps``).
        enabled: False runs every step (``--no-cache``), still storing its outputs for later runs.
    """

    def __init__(self, root: str | os.PathLike, enabled: bool = True):
        self.root = Path(root)
        self.enabled = enabled

    def key(self, step: str, inputs: dict[str, Any]) -> str:
        """The step's cache key: its inputs (config section, upstream fingerprints), raymlops' code and the
        versions of the packages that decide the outputs."""
        return digest({"step": step, "inputs": inputs, "code": code_fingerprint(), "packages": package_versions()})[:24]

    def _dir(self, step: str, key: str) -> Path:
        return self.root / step / key

    def lookup(self, step: str, key: str) -> StepOutput | None:
        d = self._dir(step, key)
        try:
            m = json.loads((d / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return StepOutput(step, key, d, m["info"], m["fingerprint"], cached=True)

    def run(self, step: str, inputs: dict[str, Any], build: Callable[[Path], dict]) -> StepOutput:
        """Returns the stored outputs for these inputs, or runs ``build(tmp_dir) -> info`` and stores them.

        ``build`` writes its files into the directory it is given and returns a JSON-able summary. The first
        complete writer of a key wins; a run that loses the race (or ran with the cache off while an entry
        existed) keeps its outputs in a directory of its own, so no reader ever sees files change.
        """
        key = self.key(step, inputs)
        if self.enabled and (hit := self.lookup(step, key)) is not None:
            return hit
        final = self._dir(step, key)
        tmp = final.with_name(f".{key}.{os.getpid()}.{time.monotonic_ns()}.partial")
        tmp.mkdir(parents=True)
        try:
            info = build(tmp)
            fp = dir_fingerprint(tmp)
            (tmp / MANIFEST).write_text(json.dumps({"step": step, "key": key, "inputs": inputs, "info": info,
                                                    "fingerprint": fp, "created": time.time()}, default=str))
            if not _publish(tmp, final):
                if self.enabled and (hit := self.lookup(step, key)) is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                    return hit
                final = tmp.with_name(tmp.name.removesuffix(".partial").lstrip("."))
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return StepOutput(step, key, final, info, fp, cached=False)

    def put(self, step: str, inputs: dict[str, Any], info: dict) -> str:
        """Records (or replaces) a step that writes no files, e.g. which offline version a feature build
        made; returns its key. The record is one JSON file replaced atomically."""
        key = self.key(step, inputs)
        d = self._dir(step, key)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{MANIFEST}.{os.getpid()}.{time.monotonic_ns()}"
        tmp.write_text(json.dumps({"step": step, "key": key, "inputs": inputs, "info": info,
                                   "fingerprint": digest(info), "created": time.time()}, default=str))
        os.replace(tmp, d / MANIFEST)
        return key


def _publish(tmp: Path, final: Path) -> bool:
    """Renames ``tmp`` to ``final`` unless ``final`` exists (another writer got there first)."""
    try:
        os.rename(tmp, final)  # fails on a non-empty existing directory
        return True
    except OSError:
        if final.exists():
            return False
        raise
