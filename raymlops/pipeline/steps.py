"""The training steps of one run (features, read, prepare, train, evaluate, register), each keyed by the
content of its inputs and skipped when that key was already computed."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from typing import Any

from raymlops.artifacts import RunWriter
from raymlops.artifacts import run as layout
from raymlops.config.models import PipelineConfig
from raymlops.errors import RaymlopsError
from raymlops.pipeline import record
from raymlops.pipeline.cache import StepCache
from raymlops.pipeline.fingerprint import Fingerprinter, digest, module_fingerprint
from raymlops.storage import open_storage
from raymlops.storage.staging import cache_root


class InputsChangedError(RaymlopsError):
    """The inputs differ from what an interrupted run was started on."""


def step_cache(cfg: PipelineConfig, no_cache: bool) -> StepCache:
    return StepCache(open_storage(cfg).child("cache", "steps"), enabled=cfg.cache and not no_cache)


def fingerprinter(cfg: PipelineConfig) -> Fingerprinter:
    """Content hashes of sources, memoised per node by (path, size, mtime): a local cache, never shared."""
    return Fingerprinter(cache_root() / "fingerprints.json")


def _said(say, out, started: float) -> dict:
    if out.cached:
        say(f"step {out.step}: skipped (inputs unchanged; cache key {out.key})")
    else:
        say(f"step {out.step}: ran in {time.monotonic() - started:.1f} s (cache key {out.key})")
    return {"key": out.key, "cached": out.cached, "fingerprint": out.fingerprint}


def source_fingerprint(cfg: PipelineConfig, name: str, fp: Fingerprinter) -> dict:
    """A source's content fingerprint. A Delta or Iceberg table is fingerprinted by the version a read sees
    now, and the source is pinned to that version in ``cfg`` (the run reads, records and reproduces it)."""
    from raymlops.data import tables

    src = cfg.sources[name]
    if not tables.is_table(src):
        return fp.path(src.path)
    got = tables.version(src)
    cfg.sources[name] = src.model_copy(
        update={"version": got.get("version"), "snapshot": got.get("snapshot"), "as_of": None}
    )
    pinned = {k: v for k, v in got.items() if k != "table"}
    return {"path": src.path, **pinned, "sha256": digest(pinned)}


def view_inputs(cfg: PipelineConfig, view, fp: Fingerprinter) -> dict:
    """What a feature view's build depends on: its definition, its source and the source's content."""
    data = source_fingerprint(cfg, view.source, fp)["sha256"]
    src = cfg.sources[view.source]
    return {
        "view": view.model_dump(mode="json"),
        "source": src.model_dump(mode="json"),
        "data": data,
        "code": module_fingerprint(view.transform) if view.transform else None,
    }


def build_features(cfg: PipelineConfig, store, no_cache: bool, say: Callable[[str], None]) -> dict:
    """Builds each feature view unless its inputs are unchanged since its latest offline version; returns
    {view: {version, fingerprint, cached}}."""
    cache, fp = step_cache(cfg, no_cache), fingerprinter(cfg)
    out = {}
    for v in cfg.features.views:
        inputs = view_inputs(cfg, v, fp)
        key = cache.key("features", inputs)
        hit = cache.lookup("features", key) if cache.enabled else None
        latest = store.offline.latest(v.name)
        if (
            hit
            and latest is not None
            and (
                latest.number == hit.info["version"]
                or (
                    latest.number > hit.info["version"] and store.offline.only_pushed_since(v.name, hit.info["version"])
                )
            )
        ):
            pushed = "" if latest.number == hit.info["version"] else ", plus pushed events"
            say(f"step features ({v.name}): skipped (source and definition unchanged{pushed}; version {latest.number})")
            out[v.name] = {"version": latest.number, "fingerprint": key, "cached": True}
            continue
        started = time.monotonic()
        m = store.build([v.name])[v.name]
        cache.put("features", inputs, {"version": m["version"]})
        say(
            f"step features ({v.name}): built version {m['version']}, {sum(f['rows'] for f in m['files'])} rows "
            f"in {time.monotonic() - started:.1f} s"
        )
        out[v.name] = {"version": m["version"], "fingerprint": key, "cached": False}
    return out


def build_and_record(cfg: PipelineConfig, store, views: list[str] | None = None, **window) -> dict:
    """`raymlops features build`: always a new version of each view; a whole rebuild (no ``window``: start,
    end, append) is recorded in the step cache as a run's features step records it, so a run on unchanged
    inputs uses that version instead of building it again."""
    names = views or [v.name for v in cfg.features.views]
    whole = not any(v for k, v in window.items() if k != "drop_pushed")
    cache, fp = step_cache(cfg, False), fingerprinter(cfg)
    inputs = {v.name: view_inputs(cfg, v, fp) for v in cfg.features.views if v.name in names and whole}
    out = store.build(views, **window)
    for name, i in inputs.items():
        cache.put("features", i, {"version": out[name]["version"]})
    return out


def read_inputs(cfg: PipelineConfig, store=None) -> dict:
    """Content fingerprints of everything the training set is read from (sources and feature views)."""
    t, fp = cfg.training, fingerprinter(cfg)
    names = [t.source] if t.source else [t.dataset.labels]
    out = {"sources": {n: source_fingerprint(cfg, n, fp) for n in names}, "feature_views": {}}
    if t.dataset is not None:
        for view, _ in store.resolve(t.dataset.features):
            latest = store.offline.latest(view.name)
            if latest is None:
                raise RaymlopsError(
                    f"feature view {view.name!r} has no offline version; run `raymlops features build` first"
                )
            out["feature_views"][view.name] = {
                "version": latest.number,
                "source": view.source,
                "source_sha256": source_fingerprint(cfg, view.source, fp)["sha256"],
                "fingerprint": digest([view.model_dump(mode="json"), latest.number, latest.files])[:24],
            }
    return out


def _content(inputs: dict) -> dict:
    """``read_inputs`` without where the sources lie: a step's key follows their content, not the directory a
    job's working dir was unpacked to."""
    return {
        **inputs,
        "sources": {n: {k: v for k, v in fp.items() if k != "path"} for n, fp in inputs["sources"].items()},
    }


def _user_code(cfg: PipelineConfig) -> dict[str, str | None]:
    """Fingerprints of the user modules a run imports (custom steps, transforms, estimators)."""
    t = cfg.training
    paths = [s.function for s in t.preprocessing if s.type == "custom"]
    if t.model.type == "sklearn":
        paths.append(t.model.estimator)
    return {p: module_fingerprint(p) for p in paths}


class TrainingRun:
    """Runs the steps of one pipeline run into a RunWriter's directory and records it in MLflow.

    The run directory is published (renamed into place) only after MLflow has the whole record and the
    model is registered: a failure before that leaves nothing visible, a Ctrl-C leaves the partial run
    (with Tune's state) for ``--resume``.
    """

    def __init__(
        self,
        cfg: PipelineConfig,
        say: Callable[[str], None],
        source_file: str | None,
        feature_store=None,
        register_as: str | None = None,
    ):
        self.cfg, self.say, self.source_file, self.store = cfg, say, source_file, feature_store
        self.register_as = register_as

    def run(self, progress: bool, no_cache: bool, resume: bool, register: bool, tags: dict | None) -> dict:
        cfg, say = self.cfg, self.say
        chash = record.config_hash(cfg)
        tracker = record.open_tracker(cfg)
        inputs = read_inputs(cfg, self.store)
        say(
            f"step read: fingerprinted {len(inputs['sources'])} source(s)"
            + (f" and {len(inputs['feature_views'])} feature view(s)" if inputs["feature_views"] else "")
        )
        if resume:
            writer = RunWriter.reopen(open_storage(cfg), cfg.name, lambda s: s.get("config_hash") == chash)
            state = json.loads(writer.path(layout.RESUME).read_text())
            if state.get("inputs") != digest(inputs):
                raise InputsChangedError(
                    f"the inputs changed since run {writer.run_id} was interrupted; its "
                    "finished trials were trained on other data: start a new run"
                )
            say(f"resuming run {writer.run_id} of pipeline {cfg.name!r}")
        else:
            writer = RunWriter(open_storage(cfg), cfg.name)
            state = {"config_hash": chash, "inputs": digest(inputs)}
            say(f"run {writer.run_id} of pipeline {cfg.name!r}")
        try:
            if tracker is not None:
                tracker.start(
                    writer.run_id,
                    {**record.start_tags(cfg, writer.run_id, inputs, self.source_file), **(tags or {})},
                    resume_run_id=state.get("mlflow_run_id"),
                )
                state["mlflow_run_id"] = tracker.run_id
            writer.json(layout.RESUME, state)
            out = self._steps(writer, tracker, inputs, chash, progress, no_cache, resume, register)
            writer.path(layout.RESUME).unlink()
            out["run_dir"] = writer.commit()
            if tracker is not None:
                tracker.end("FINISHED")
        except KeyboardInterrupt:
            if tracker is not None and tracker.run_id:
                tracker.end("KILLED")
            say(f"interrupted; `raymlops run --resume` continues run {writer.run_id}")
            raise
        except BaseException:
            if not resume:  # a resumed run keeps its Tune state for another try
                writer.abort()
            if tracker is not None and tracker.run_id:
                tracker.end("FAILED")
            raise
        say(f"run saved to {out['run_dir']}")
        return {**out, "run_id": writer.run_id, "mlflow_run_id": tracker.run_id if tracker else None}

    def _steps(
        self,
        writer: RunWriter,
        tracker,
        inputs: dict,
        chash: str,
        progress: bool,
        no_cache: bool,
        resume: bool,
        register: bool,
    ) -> dict[str, Any]:
        from raymlops.pipeline.evaluate import evaluate, read_holdout
        from raymlops.pipeline.train import prepare, search, write_run

        cfg, say, t = self.cfg, self.say, self.cfg.training
        cache, steps, code = step_cache(cfg, no_cache), {}, _user_code(cfg)
        t0 = time.monotonic()
        prep = cache.run(
            "prepare",
            {
                "training": t.model_dump(mode="json", exclude={"model", "tune", "failure", "decision"}),
                "drift": cfg.monitoring.drift.model_dump(mode="json")
                if cfg.monitoring and cfg.monitoring.drift
                else None,
                "sources": {n: cfg.sources[n].model_dump(mode="json") for n in inputs["sources"]},
                "inputs": digest(_content(inputs)),
                "code": code,
            },
            lambda d: prepare(cfg, d, say),
        )
        steps["prepare"] = _said(say, prep, t0)
        t0 = time.monotonic()
        # Keyed by the content of the splits it reads (not the drift files beside them).
        trained = cache.run(
            "train",
            {
                "data": prep.info["data_sha256"],
                "model": t.model.model_dump(mode="json"),
                "tune": t.tune.model_dump(mode="json"),
                "code": code,
                **({"decision": t.decision.model_dump(mode="json")} if t.decision else {}),
            },
            lambda d: {
                **search(
                    cfg,
                    prep.store,
                    prep.info,
                    writer.tune_target(),
                    d,
                    say,
                    progress,
                    resume and writer.has_tune_state(),
                ),
                "run_id": writer.run_id,
            },
        )
        steps["train"] = _said(say, trained, t0)
        metrics = write_run(cfg, writer, prep, trained.path, {"steps": steps})
        model_sha = trained.info["model_sha256"]
        t0 = time.monotonic()
        champion = self._champion(tracker)
        if champion and champion[2] == model_sha:
            champion = None  # the champion is this very model: nothing to compare
        ev = cache.run(
            "evaluate",
            {
                "model": model_sha,
                "holdout": prep.info["holdout_sha256"],
                **({"threshold": trained.info["threshold"]} if "threshold" in trained.info else {}),
                "champion": champion[2] if champion else None,
            },
            lambda d: evaluate(
                writer.dir, read_holdout(prep.store), t.label, champion[:2] if champion else None, d, say
            ),
        )
        steps["evaluate"] = _said(say, ev, t0)
        evaluation = json.loads((ev.path / "evaluation.json").read_text())
        for w in evaluation.get("holdout_warnings", []) if ev.cached else []:
            say(w)
        if (ev.path / "report").is_dir():
            shutil.copytree(ev.path / "report", writer.path("report"), copy_function=layout.link_or_copy)
        writer.json("evaluation.json", evaluation)
        writer.json(
            layout.LINEAGE,
            {
                "run_id": writer.run_id,
                "pipeline": cfg.name,
                "config_hash": chash,
                "config_file": self.source_file,
                "inputs": inputs,
                "steps": steps,
                "model_sha256": model_sha,
                "mlflow_run_id": tracker.run_id if tracker else None,
                "tracking_uri": tracker.uri if tracker else None,
            },
        )
        model = None
        if tracker is not None:
            record.record_run(
                tracker,
                cfg,
                writer.dir,
                trained.path,
                prep.info,
                inputs,
                evaluation,
                steps,
                trials_logged=not trained.cached,
                trained_in=trained.info.get("run_id", "?"),
            )
            if register:
                model = record.register(
                    cfg,
                    tracker,
                    writer.dir,
                    writer.run_id,
                    evaluation,
                    model_sha,
                    reuse=cache.enabled and not self.register_as,
                    say=say,
                    alias=self.register_as,
                )
        return {"metrics": metrics, "model": model, "evaluation": evaluation, "steps": steps}

    def _champion(self, tracker) -> tuple[str, Any, str] | None:
        """(label, Predictor, model sha256) of the current holder of the promotion alias, or None; a champion
        that cannot be loaded is reported and left out of the comparison."""
        if tracker is None:
            return None
        from raymlops.registry import ModelRegistry, load_model
        from raymlops.registry.tracking import TAG

        cfg = self.cfg
        reg, name, alias = ModelRegistry(tracker.uri), cfg.model_name, cfg.registry.promotion.alias
        try:
            version = reg.alias_version(name, alias)
            if version is None:
                return None
            mv = reg.version(name, version)
            predictor = load_model(f"models:/{name}/{version}", cfg.storage, tracker.uri)
        except RaymlopsError as e:
            self.say(f"warning: the current @{alias} cannot be loaded ({e}); evaluating without it")
            return None
        return f"{alias} v{version}", predictor, mv.tags.get(f"{TAG}model_key") or f"{name}/{version}"
