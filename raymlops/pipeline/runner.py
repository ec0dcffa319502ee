"""Pipeline: the public facade that runs the steps a config declares, in order."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from raymlops.artifacts import RunWriter
from raymlops.artifacts import run as layout
from raymlops.config import PipelineConfig, load_config
from raymlops.errors import RaymlopsError
from raymlops.registry import Fingerprinter, StepCache
from raymlops.registry.fingerprint import digest


@dataclass
class RunResult:
    """What a pipeline run produced."""

    run_id: str | None
    run_dir: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    endpoint: str | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    model: dict | None = None  # the registered version: name, version, alias, gate
    evaluation: dict | None = None
    steps: dict[str, dict] = field(default_factory=dict)
    mlflow_run_id: str | None = None


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_hardlink)


def _hardlink(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _stderr(msg: str) -> None:
    print(f"[raymlops {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Pipeline:
    """Runs one pipeline config: training (Ray Data + Tune), then serving and drift monitoring.

    Example:
        >>> result = Pipeline.from_yaml("configs/quickstart.yaml").run()
        >>> result.run_id, result.metrics["auc"], result.endpoint
    """

    def __init__(self, config: PipelineConfig, say: Callable[[str], None] | None = _stderr,
                 source_file: str | None = None):
        self.config = config
        self.say = say or (lambda _msg: None)
        self.source_file = source_file

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None, **kwargs) -> "Pipeline":
        return cls(load_config(path, overrides), source_file=str(Path(path).resolve()), **kwargs)

    @property
    def app_name(self) -> str:
        return (self.config.serving.app_name if self.config.serving else None) or self.config.name

    def connect(self, address: str | None = None) -> bool:
        """Connects to Ray (starting a local one if no address is given); True if started locally."""
        from raymlops.data.ray_env import ensure_ray

        return ensure_ray(self.config.ray, address)

    @property
    def feature_store(self):
        """The config's FeatureStore (needs a 'features' section)."""
        from raymlops.features import FeatureStore

        if getattr(self, "_feature_store", None) is None:
            self._feature_store = FeatureStore(self.config)
        return self._feature_store

    # ------------------------------------------------------------------ steps

    def _cache(self, no_cache: bool) -> StepCache:
        return StepCache(self._storage_dir() / "cache" / "steps", enabled=self.config.cache and not no_cache)

    def _storage_dir(self) -> Path:
        return layout.runs_root(self.config.storage).parent

    def _step_said(self, out, started: float) -> dict:
        if out.cached:
            self.say(f"step {out.step}: skipped (inputs unchanged; cache key {out.key})")
        else:
            self.say(f"step {out.step}: ran in {time.monotonic() - started:.1f} s (cache key {out.key})")
        return {"key": out.key, "cached": out.cached, "fingerprint": out.fingerprint}

    def build_features(self, no_cache: bool = False) -> dict:
        """Runs the feature pipelines into the offline store, skipping views whose source and definition are
        unchanged since their latest version; returns {view: {version, fingerprint, cached}}."""
        self.connect()
        store, cache = self.feature_store, self._cache(no_cache)
        fp = Fingerprinter(self._storage_dir() / "cache" / "fingerprints.json")
        out = {}
        for v in self.config.features.views:
            src = self.config.sources[v.source]
            key = cache.key("features", {"view": v.model_dump(mode="json"), "source": src.model_dump(mode="json"),
                                         "data": fp.path(src.path)["sha256"]})
            hit = cache.lookup("features", key) if cache.enabled else None
            latest = store.offline.latest(v.name)
            if hit and latest is not None and latest.number == hit.info["version"]:
                self.say(f"step features ({v.name}): skipped (source and definition unchanged; version "
                         f"{latest.number})")
                out[v.name] = {"version": latest.number, "fingerprint": key, "cached": True}
                continue
            started = time.monotonic()
            m = store.build([v.name])[v.name]
            cache.run("features", {"view": v.model_dump(mode="json"), "source": src.model_dump(mode="json"),
                                   "data": fp.path(src.path)["sha256"]}, lambda _d, m=m: {"version": m["version"]})
            self.say(f"step features ({v.name}): built version {m['version']}, "
                     f"{sum(f['rows'] for f in m['files'])} rows in {time.monotonic() - started:.1f} s")
            out[v.name] = {"version": m["version"], "fingerprint": key, "cached": False}
        return out

    def _inputs(self, views: dict | None = None) -> dict:
        """Content fingerprints of everything the training set is read from."""
        cfg, t = self.config, self.config.training
        fp = Fingerprinter(self._storage_dir() / "cache" / "fingerprints.json")
        names = [t.source] if t.source else [t.dataset.labels]
        out = {"sources": {n: fp.path(cfg.sources[n].path) for n in names}, "feature_views": {}}
        if t.dataset is not None:
            store = self.feature_store
            for view, _ in store.resolve(t.dataset.features):
                got = (views or {}).get(view.name)
                latest = store.offline.latest(view.name)
                if latest is None:
                    raise RaymlopsError(f"feature view {view.name!r} has no offline version; run "
                                        "`raymlops features build` first")
                src = cfg.sources[view.source]
                out["feature_views"][view.name] = {
                    "version": latest.number, "source": view.source, "source_sha256": fp.path(src.path)["sha256"],
                    "fingerprint": got["fingerprint"] if got and got["version"] == latest.number
                    else digest([view.name, latest.number, latest.files])[:24]}
        return out

    def train(self, progress: bool = True, no_cache: bool = False, resume: bool = False, register: bool = True,
              views: dict | None = None, tags: dict | None = None) -> RunResult:
        """Runs prepare, train, evaluate and register (each skipped when its inputs are unchanged), publishes
        the run directory and records the run in MLflow.

        Args:
            progress: Print Tune's progress table.
            no_cache: Run every step even if its inputs are unchanged.
            resume: Continue the newest interrupted run of this config (finished trials are kept).
            register: Register the model (False for reproductions).
            views: What build_features returned (feature-view fingerprints), when it ran first.
            tags: Extra MLflow tags for the parent run.
        """
        from raymlops.pipeline import record
        from raymlops.pipeline.evaluate import evaluate, read_holdout
        from raymlops.pipeline.train import prepare, search, write_run

        cfg = self.config
        if cfg.training is None:
            raise RaymlopsError("this config has no 'training' section")
        self.connect()
        chash = record.config_hash(cfg)
        if resume:
            writer = RunWriter.reopen(cfg.storage, cfg.name, lambda s: s.get("config_hash") == chash)
            state = json.loads(writer.path(layout.RESUME).read_text())
            self.say(f"resuming run {writer.run_id} of pipeline {cfg.name!r}")
        else:
            writer, state = RunWriter(cfg.storage, cfg.name), {"config_hash": chash}
            self.say(f"run {writer.run_id} of pipeline {cfg.name!r}")
        cache = self._cache(no_cache)
        tracker = record.open_tracker(cfg)
        try:
            inputs = self._inputs(views)
            self.say(f"step read: fingerprinted {len(inputs['sources'])} source(s)"
                     + (f" and {len(inputs['feature_views'])} feature view(s)" if inputs["feature_views"] else ""))
            if tracker is not None:
                tracker.start(writer.run_id, {**record.start_tags(cfg, writer.run_id, inputs, self.source_file),
                                              **(tags or {})}, resume_run_id=state.get("mlflow_run_id"))
                state["mlflow_run_id"] = tracker.run_id
            writer.json(layout.RESUME, state)
            steps = {}
            t0 = time.monotonic()
            t = cfg.training
            prep_inputs = {"training": t.model_dump(mode="json", exclude={"model", "tune", "failure"}),
                           "drift": cfg.monitoring.drift.model_dump(mode="json")
                           if cfg.monitoring and cfg.monitoring.drift else None,
                           "sources": {n: cfg.sources[n].model_dump(mode="json") for n in inputs["sources"]},
                           "inputs": digest(inputs)}
            prep = cache.run("prepare", prep_inputs, lambda d: prepare(cfg, d, self.say))
            steps["prepare"] = self._step_said(prep, t0)
            t0 = time.monotonic()
            train_inputs = {"prepare": prep.fingerprint, "model": t.model.model_dump(mode="json"),
                            "tune": t.tune.model_dump(mode="json")}
            tune_dir = writer.path("tune")
            trained = cache.run("train", train_inputs, lambda d: {**search(
                cfg, prep.path, prep.info, tune_dir, d, self.say, progress, resume and tune_dir.is_dir()),
                "run_id": writer.run_id})
            steps["train"] = self._step_said(trained, t0)
            metrics = write_run(cfg, writer, prep.path, prep.info, trained.path, {"steps": steps})
            t0 = time.monotonic()
            champion = self._champion(tracker)
            if champion and champion[2] == trained.info["model_sha256"]:
                champion = None  # the champion is this very model: nothing to compare
            ev = cache.run("evaluate", {"model": trained.info["model_sha256"], "prepare": prep.fingerprint,
                                        "champion": champion[2] if champion else None},
                           lambda d: evaluate(writer.dir, read_holdout(prep.path), t.label,
                                              champion[:2] if champion else None, d, self.say))
            steps["evaluate"] = self._step_said(ev, t0)
            evaluation = json.loads((ev.path / "evaluation.json").read_text())
            _link_tree(ev.path / "report", writer.path("report"))
            writer.json("evaluation.json", evaluation)
            writer.json(layout.LINEAGE, {"run_id": writer.run_id, "pipeline": cfg.name, "config_hash": chash,
                                         "config_file": self.source_file, "inputs": inputs, "steps": steps,
                                         "mlflow_run_id": tracker.run_id if tracker else None,
                                         "tracking_uri": tracker.uri if tracker else None})
            writer.path(layout.RESUME).unlink()
            run_dir = writer.commit()
            self.say(f"run saved to {run_dir}")
            model = None
            if tracker is not None:
                record.record_run(tracker, cfg, run_dir, trained.path, prep.info, inputs, evaluation, steps,
                                  trials_logged=not trained.cached, trained_in=trained.info.get("run_id", "?"))
                if register:
                    model = record.register(cfg, tracker, run_dir, evaluation, trained.info["model_sha256"],
                                            reuse=cache.enabled and trained.cached, say=self.say)
                tracker.end("FINISHED")
        except KeyboardInterrupt:
            if tracker is not None and tracker.run_id:
                tracker.end("KILLED")
            self.say(f"interrupted; `raymlops run --resume` continues run {writer.run_id}")
            raise
        except BaseException:
            writer.abort()
            if tracker is not None and tracker.run_id:
                tracker.end("FAILED")
            raise
        return RunResult(writer.run_id, run_dir, metrics["best"], trials=metrics["trials"], model=model,
                         evaluation=evaluation, steps=steps, mlflow_run_id=tracker.run_id if tracker else None)

    def _champion(self, tracker):
        """(label, Predictor, model sha256) of the current holder of the promotion alias, or None."""
        if tracker is None:
            return None
        from raymlops.registry import ModelRegistry, load_model

        reg, name, alias = ModelRegistry(tracker.uri), self.config.model_name, self.config.registry.promotion.alias
        if not reg.list_versions(name) or reg.alias_version(name, alias) is None:
            return None
        uri = f"models:/{name}@{alias}"
        mv = reg.resolve_version(uri)
        from raymlops.registry.tracking import TAG

        return (f"{alias} v{mv.version}", load_model(uri, self.config.storage, tracker.uri),
                mv.tags.get(f"{TAG}model_key") or f"{name}/{mv.version}")

    def serve(self, run: str | os.PathLike | None = None, model: str | None = None) -> str:
        """Deploys a run (default: the latest of this pipeline) or a registered model (``model``, else
        ``serving.model`` when no run is given: 'models:/NAME@ALIAS' is followed as the alias moves) and
        returns its endpoint URL."""
        from raymlops.monitoring.actor import actor_name, start_monitor
        from raymlops.serving import deploy

        cfg = self.config
        if cfg.serving is None:
            raise RaymlopsError("this config has no 'serving' section")
        self.connect()
        uri = model or (cfg.serving.model if run is None else None)
        watch = None
        if uri:
            from raymlops.registry import parse_uri, tracking_uri
            from raymlops.registry.models import bundle_for

            resolve = functools.partial(bundle_for, uri, tracking_uri(cfg.registry, cfg.storage),
                                        str(self._storage_dir() / "registry-cache"))
            run_dir = Path(resolve())
            if parse_uri(uri)[1] is not None:
                watch = {"resolve": resolve, "every": cfg.serving.reload_seconds}
                self.say(f"serving {uri} (run {layout.read_meta(run_dir)['run_id']}); "
                         f"replicas follow the alias every {cfg.serving.reload_seconds:g} s")
        else:
            run_dir = layout.find_run(run, cfg.storage) if run else layout.latest_run(cfg.storage, cfg.name)
        features = None
        if cfg.serving.features:
            refs = layout.read_meta(run_dir).get("dataset", {}).get("features")
            if not refs:
                raise RaymlopsError(f"serving.features is set but run {run_dir.name} was not trained from a "
                                    "feature set (training.dataset)")
            self.say("materializing the latest feature values into the online store")
            for view, m in self.feature_store.materialize().items():
                self.say(f"  {view}: {m['entities']} entities")
            features = {"config": self.feature_store.portable_config(), "refs": refs}
        drift = None
        if cfg.monitoring and cfg.monitoring.drift and (run_dir / layout.DRIFT_DIR).is_dir():
            d = cfg.monitoring.drift
            start_monitor(str(run_dir / layout.DRIFT_DIR), d.window, d.p_val, layout.read_meta(run_dir)["run_id"], self.app_name,
                          cfg.ray.namespace)
            drift = actor_name(self.app_name)
        self.say(f"deploying run {layout.read_meta(run_dir)['run_id']} as Serve app {self.app_name!r}")
        url = deploy(str(run_dir), cfg.serving, self.app_name, drift, cfg.ray.namespace, features, watch)
        self.say(f"serving at {url}/predict")
        return url

    def run(self, progress: bool = True, no_cache: bool = False, resume: bool = False) -> RunResult:
        """Builds the feature views the training set needs, trains, then deploys when the config has a
        'serving' section."""
        views = None
        if self.config.training is not None and self.config.training.dataset is not None:
            views = self.build_features(no_cache=no_cache)
        result = self.train(progress=progress, no_cache=no_cache, resume=resume, views=views)
        if self.config.serving is not None:
            result.endpoint = self.serve(result.run_dir)
        return result
