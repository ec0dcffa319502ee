"""Run directories: ``<storage>/runs/<pipeline>/<run_id>/``, staged and committed whole, so a crash never
leaves a partial run visible: locally a hidden temp dir renamed into place; on an object store the files
are uploaded and ``_manifest.json`` is written last (a run without it is not there for readers)."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from raymlops.contracts.calls import Call
from raymlops.errors import RunNotFoundError
from raymlops.storage import MANIFEST, Staging, Storage, fetch_dir, open_storage

# Files inside a run directory.
CONFIG = "config.yaml"
META = "meta.json"
METRICS = "metrics.json"
SCHEMA = "schema.json"
PREPROCESSING = "preprocessing.json"
REFERENCE = "reference.parquet"
DRIFT_DIR = "drift"
EXPLORE_DIR = "explore"  # training.explore: the training split's profile (training.html, training.json)
QUALITY = "quality.json"
XGB_MODEL = "model.ubj"
SKLEARN_MODEL = "model.pkl"
RESUME = "resume.json"  # in a partial run: what --resume needs (config hash, MLflow run id)
LINEAGE = "lineage.json"
REGISTERED = "registered.json"  # in a registry version's bundle: {name, version, run_id}
TUNE = "tune"  # Tune's experiment state (and the Train runs' checkpoints), written from any node


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def link_or_copy(src, dst) -> None:
    """Hard-links an immutable file (copies across filesystems)."""
    from raymlops.storage.local import link_or_copy_atomic

    link_or_copy_atomic(src, dst)


def write_json(path: Path, obj: Any) -> None:
    from raymlops.storage.local import atomic_write

    atomic_write(path, json.dumps(obj, indent=2, default=str).encode())


class RunWriter:
    """Collects a run's files (``dir``, on this machine) and Tune's state (``tune_target``, where every node
    writes) and publishes them at once with ``commit``.

    Single writer: the driver that created it (a resumed run is reopened by one driver at a time).
    """

    def __init__(self, storage: str | Storage, pipeline: str, run_id: str | None = None, _local: Path | None = None):
        self.store = open_storage(storage)
        self.run_id = run_id or new_run_id()
        self.pipeline = pipeline
        parts = ("runs", pipeline, self.run_id)
        if self.store.local and _local is None:
            _local = self.store.local_path("runs", pipeline, f".{self.run_id}.partial")
            if _local.exists():
                raise FileExistsError(_local)
        self.stage = Staging(self.store, *parts, local_dir=_local)
        self.dir = self.stage.dir
        self.final_dir = self.store.url(*parts)

    @classmethod
    def reopen(cls, storage: str | Storage, pipeline: str, check) -> RunWriter:
        """The newest interrupted (still partial) run of ``pipeline`` whose ``resume.json`` passes ``check``.

        Raises:
            RunNotFoundError: if there is none.
        """
        store = open_storage(storage)
        names = store.listdir("runs", pipeline)
        if store.local:
            partial = [
                (n[1:].removesuffix(".partial"), n) for n in names if n.startswith(".") and n.endswith(".partial")
            ]
        else:  # on an object store a partial run is one without its manifest
            partial = [
                (n, n) for n in names if not n.startswith(".") and not store.exists("runs", pipeline, n, MANIFEST)
            ]
        for run_id, name in sorted(partial, reverse=True):
            try:
                state = store.read_json("runs", pipeline, name, RESUME)
            except (FileNotFoundError, ValueError):
                continue
            if check(state):
                local = store.local_path("runs", pipeline, name) if store.local else None
                w = cls(store, pipeline, run_id, _local=local)
                if not store.local:
                    w.path(RESUME).write_text(json.dumps(state))
                return w
        raise RunNotFoundError(
            f"no interrupted run of pipeline {pipeline!r} with this config to resume under "
            f"{store.url('runs', pipeline)}"
        )

    def path(self, name: str) -> Path:
        return self.dir / name

    def json(self, name: str, obj: Any) -> None:
        write_json(self.path(name), obj)
        if name == RESUME and not self.store.local:  # a resume on another machine needs it
            self.store.write_json("runs", self.pipeline, self.run_id, RESUME, obj=obj)

    def tune_target(self) -> tuple[str, Any]:
        """(path, pyarrow filesystem or None) of Tune's experiment state, writable from every node."""
        return self.stage.target(TUNE)

    def has_tune_state(self) -> bool:
        path, fs = self.tune_target()
        if fs is None:
            return os.path.isdir(path)
        return self.store.isdir("runs", self.pipeline, self.run_id, TUNE)

    def commit(self) -> Path | str:
        """Publishes the run; returns its directory (a local path, or its URI on an object store)."""
        if not self.store.local:
            self.store.delete("runs", self.pipeline, self.run_id, RESUME)
            return self.stage.publish({"run_id": self.run_id})
        return Path(self.stage.publish())

    def abort(self) -> None:
        self.stage.abort()


def _is_run(store: Storage, *parts: str) -> bool:
    return store.published(*parts, marker=META)


def _where(store: Storage, *parts: str) -> Path | str:
    """A run's directory: a local Path on local storage, its URI on an object store."""
    return Path(store.path(*parts)) if store.local else store.url(*parts)


def find_run(run: str | os.PathLike, storage: str | Storage | None = None) -> Path | str:
    """Resolves a run directory (a local path or a URI) from a path, a URI or a run id searched under
    ``storage``.

    Raises:
        RunNotFoundError: if nothing matches.
    """
    s = str(run)
    if "://" in s:
        if _is_run(open_storage(s)):
            return open_storage(s).url()
    elif (Path(s) / META).is_file():
        return Path(s).resolve()
    store = open_storage(storage)
    hits = (
        [
            _where(store, "runs", p, s)
            for p in store.listdir("runs")
            if not p.startswith(".") and _is_run(store, "runs", p, s)
        ]
        if "/" not in s
        else []
    )
    if not hits:
        raise RunNotFoundError(f"no run {s!r} (looked for a run directory and under {store.url('runs')})")
    if len(hits) > 1:
        raise RunNotFoundError(f"run id {s!r} is ambiguous: {hits}")
    return hits[0]


def latest_run(storage: str | Storage, pipeline: str) -> Path | str:
    store = open_storage(storage)
    runs = [n for n in store.listdir("runs", pipeline) if not n.startswith(".") and _is_run(store, "runs", pipeline, n)]
    if not runs:
        raise RunNotFoundError(f"no runs of pipeline {pipeline!r} under {store.url('runs')}")
    return _where(store, "runs", pipeline, runs[-1])


def local_run(run_dir: str | os.PathLike | Call | dict) -> Path:
    """A local path holding a committed run, given as a location any node can resolve: a local or shared
    path, a run's URI on an object store (this node's copy is fetched once), or a `Call` (or its JSON
    shape ``{"call": "module:function", "args": [...]}``) returning one of those on the calling node (a registry
    version's per-node copy: ``raymlops.registry.models:bundle_for``)."""
    if isinstance(run_dir, dict):
        run_dir = Call.model_validate(run_dir)
    if isinstance(run_dir, Call):
        return local_run(run_dir())
    s = str(run_dir)
    if "://" not in s:
        return Path(s)
    return fetch_dir(open_storage(s))


def model_version(local: Path) -> str:
    """What answers, responses, logs and monitors call a model: ``NAME/VERSION`` for a registered version's
    bundle (a cached re-run that reuses the version keeps the name, and the monitor's state), else the run
    id of a run served by its directory."""
    reg = local / REGISTERED
    if reg.is_file():
        r = json.loads(reg.read_text())
        return f"{r['name']}/{r['version']}"
    return json.loads((local / META).read_text())["run_id"]


def read_meta(run_dir: str | os.PathLike) -> dict:
    """A run's meta.json."""
    s = str(run_dir)
    if "://" in s:
        return open_storage(s).read_json(META)
    return json.loads((Path(s) / META).read_text())
