"""Run directories: ``<storage>/runs/<pipeline>/<run_id>/``, written to a hidden temp dir and renamed
into place when complete, so a crash never leaves a partial run visible."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from raymlops.errors import RunNotFoundError

# Files inside a run directory.
CONFIG = "config.yaml"
META = "meta.json"
METRICS = "metrics.json"
SCHEMA = "schema.json"
PREPROCESSING = "preprocessing.json"
REFERENCE = "reference.parquet"
DRIFT_DIR = "drift"
QUALITY = "quality.json"
XGB_MODEL = "model.ubj"
SKLEARN_MODEL = "model.pkl"
RESUME = "resume.json"  # in a partial run: what --resume needs (config hash, MLflow run id)
LINEAGE = "lineage.json"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def storage_root(storage: str | None = None) -> Path:
    """The local storage directory: ``storage``, else $RAYMLOPS_STORAGE, else ./.raymlops."""
    storage = storage or os.environ.get("RAYMLOPS_STORAGE") or "./.raymlops"
    if "://" in storage and not storage.startswith("file://"):
        raise NotImplementedError(f"remote storage {storage!r} is not supported yet; use a local or shared path")
    return Path(storage.removeprefix("file://")).expanduser().resolve()


def runs_root(storage: str) -> Path:
    return storage_root(storage) / "runs"


def link_or_copy(src, dst) -> None:
    """Hard-links an immutable file (copies across filesystems)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


class RunWriter:
    """Collects a run's files in ``.<run_id>.partial`` and publishes them with one rename."""

    def __init__(self, storage: str, pipeline: str, run_id: str | None = None):
        self.run_id = run_id or new_run_id()
        self.parent = runs_root(storage) / pipeline
        self.final_dir = self.parent / self.run_id
        self.dir = self.parent / f".{self.run_id}.partial"
        self.dir.mkdir(parents=True, exist_ok=False)

    @classmethod
    def reopen(cls, storage: str, pipeline: str, check) -> "RunWriter":
        """The newest interrupted (still partial) run of ``pipeline`` whose ``resume.json`` passes ``check``.

        Raises:
            RunNotFoundError: if there is none.
        """
        parent = runs_root(storage) / pipeline
        partial = sorted(parent.glob(".*.partial"), reverse=True) if parent.is_dir() else []
        for d in partial:
            state = d / RESUME
            if state.is_file() and check(json.loads(state.read_text())):
                w = cls.__new__(cls)
                w.run_id = d.name[1:].removesuffix(".partial")
                w.parent, w.final_dir, w.dir = parent, parent / w.run_id, d
                return w
        raise RunNotFoundError(f"no interrupted run of pipeline {pipeline!r} with this config to resume under {parent}")

    def path(self, name: str) -> Path:
        return self.dir / name

    def json(self, name: str, obj: Any) -> None:
        write_json(self.path(name), obj)

    def commit(self) -> Path:
        os.replace(self.dir, self.final_dir)
        return self.final_dir

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def find_run(run: str | os.PathLike, storage: str | None = None) -> Path:
    """Resolves a run directory from a path or a run id (searched under ``storage``).

    Raises:
        RunNotFoundError: if nothing matches.
    """
    p = Path(run)
    if (p / META).is_file():
        return p.resolve()
    root = runs_root(storage)
    hits = sorted(root.glob(f"*/{run}")) if root.is_dir() else []
    hits = [h for h in hits if (h / META).is_file()]
    if not hits:
        raise RunNotFoundError(f"no run {str(run)!r} (looked for a run directory and under {root})")
    if len(hits) > 1:
        raise RunNotFoundError(f"run id {run!r} is ambiguous: {[str(h) for h in hits]}")
    return hits[0]


def latest_run(storage: str, pipeline: str) -> Path:
    root = runs_root(storage) / pipeline
    runs = sorted(p for p in root.glob("*") if (p / META).is_file()) if root.is_dir() else []
    if not runs:
        raise RunNotFoundError(f"no runs of pipeline {pipeline!r} under {root}")
    return runs[-1]


def read_meta(run_dir: str | os.PathLike) -> dict:
    """A run's meta.json."""
    return json.loads((Path(run_dir) / META).read_text())
