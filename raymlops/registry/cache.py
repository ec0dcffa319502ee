"""Step cache: each step's outputs stored under a key made from the content of its inputs."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from raymlops.registry.fingerprint import code_fingerprint, digest, dir_fingerprint

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
        """The step's cache key: its inputs (config section, upstream fingerprints) and the code."""
        return digest({"step": step, "inputs": inputs, "code": code_fingerprint()})[:24]

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

        ``build`` writes its files into the directory it is given and returns a JSON-able summary.
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
            if final.exists():  # --no-cache re-ran it: replace the old outputs
                old = final.with_name(f".{key}.{os.getpid()}.old")
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return StepOutput(step, key, final, info, fp, cached=False)
