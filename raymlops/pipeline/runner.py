"""Pipeline: the public facade that runs the steps a config declares, in order."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from raymlops.artifacts import RunWriter
from raymlops.artifacts import run as layout
from raymlops.config import PipelineConfig, load_config
from raymlops.errors import RaymlopsError


@dataclass
class RunResult:
    """What a pipeline run produced."""

    run_id: str | None
    run_dir: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    endpoint: str | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)


def _stderr(msg: str) -> None:
    print(f"[raymlops {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Pipeline:
    """Runs one pipeline config: training (Ray Data + Tune), then serving and drift monitoring.

    Example:
        >>> result = Pipeline.from_yaml("configs/quickstart.yaml").run()
        >>> result.run_id, result.metrics["auc"], result.endpoint
    """

    def __init__(self, config: PipelineConfig, say: Callable[[str], None] | None = _stderr):
        self.config = config
        self.say = say or (lambda _msg: None)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None, **kwargs) -> "Pipeline":
        return cls(load_config(path, overrides), **kwargs)

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

    def build_features(self) -> dict:
        """Runs every feature pipeline into the offline store; returns {view: manifest}."""
        self.connect()
        self.say(f"building {len(self.config.features.views)} feature view(s) into {self.feature_store.offline.uri}")
        out = self.feature_store.build()
        for view, m in out.items():
            self.say(f"  {view}: version {m['version']}, {sum(f['rows'] for f in m['files'])} rows")
        return out

    def train(self, progress: bool = True) -> RunResult:
        """Runs the training step and publishes the run directory."""
        from raymlops.pipeline.train import train

        cfg = self.config
        if cfg.training is None:
            raise RaymlopsError("this config has no 'training' section")
        self.connect()
        writer = RunWriter(cfg.storage, cfg.name)
        self.say(f"run {writer.run_id} of pipeline {cfg.name!r}")
        try:
            metrics = train(cfg, writer, self.say, progress=progress)
            run_dir = writer.commit()
        except BaseException:
            writer.abort()
            raise
        self.say(f"run saved to {run_dir}")
        return RunResult(writer.run_id, run_dir, metrics["best"], trials=metrics["trials"])

    def serve(self, run: str | os.PathLike | None = None) -> str:
        """Deploys a run (default: the latest of this pipeline) and returns its endpoint URL."""
        from raymlops.monitoring.actor import actor_name, start_monitor
        from raymlops.serving import deploy

        cfg = self.config
        if cfg.serving is None:
            raise RaymlopsError("this config has no 'serving' section")
        self.connect()
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
            start_monitor(str(run_dir / layout.DRIFT_DIR), d.window, d.p_val, run_dir.name, self.app_name,
                          cfg.ray.namespace)
            drift = actor_name(self.app_name)
        self.say(f"deploying run {run_dir.name} as Serve app {self.app_name!r}")
        url = deploy(str(run_dir), cfg.serving, self.app_name, drift, cfg.ray.namespace, features)
        self.say(f"serving at {url}/predict")
        return url

    def run(self, progress: bool = True) -> RunResult:
        """Builds the feature views the training set needs, trains, then deploys when the config has a
        'serving' section."""
        if self.config.training is not None and self.config.training.dataset is not None:
            self.build_features()
        result = self.train(progress=progress)
        if self.config.serving is not None:
            result.endpoint = self.serve(result.run_dir)
        return result
