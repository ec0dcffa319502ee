"""Pipeline: the public facade that runs the steps a config declares, in order."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raymlops.artifacts import run as layout
from raymlops.config import PipelineConfig, load_config
from raymlops.contracts.serving import AppSpec
from raymlops.errors import DataError, RaymlopsError
from raymlops.storage import open_storage


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


def _stderr(msg: str) -> None:
    print(f"[raymlops {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Pipeline:
    """Runs one pipeline config: training (Ray Data + Tune), then serving and drift monitoring.

    Example:
        >>> result = Pipeline.from_yaml("configs/quickstart.yaml").run()
        >>> result.run_id, result.metrics["auc"], result.endpoint
    """

    def __init__(
        self, config: PipelineConfig, say: Callable[[str], None] | None = _stderr, source_file: str | None = None
    ):
        self.config = config
        self.say = say or (lambda _msg: None)
        self.source_file = source_file

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None, **kwargs) -> Pipeline:
        return cls(load_config(path, overrides), source_file=str(Path(path).resolve()), **kwargs)

    @property
    def app_name(self) -> str:
        return (self.config.serving.app_name if self.config.serving else None) or self.config.name

    def connect(self, address: str | None = None) -> bool:
        """Connects to Ray (starting a local one if no address is given); True if started locally. On a
        cluster of several nodes, checks first that its state is where every node reaches it
        (``cluster.check_cluster``: SetupError otherwise)."""
        from raymlops.data.ray_env import ensure_ray
        from raymlops.storage import export_options

        export_options(self.config.storage_options)
        serving = self.config.serving
        started = ensure_ray(self.config.ray, address, ingress=serving.ingress if serving else "proxy")
        if not started and not getattr(self, "_checked", False):
            from raymlops.pipeline.cluster import check_cluster

            check_cluster(self.config)
            self._checked = True
        return started

    def check_inputs(self) -> None:
        """The training table's source is there and readable, with the label (a source's) among its columns:
        found from file names and one footer or first block, before Ray starts, so a wrong path, a corrupt
        file or a misspelt label fails in a second with one line (DataError), not after start-up."""
        from raymlops.data.reader import resolve, schema

        t = self.config.training
        if t is None:
            return
        src = self.config.sources[t.source or t.dataset.labels]
        from raymlops.data import tables

        names = (
            tables.schema(src) if tables.is_table(src) else schema(resolve(src.path, src.format, src.filter))
        ).names
        if t.source and t.label not in names:
            import difflib

            near = difflib.get_close_matches(t.label, names, n=1)
            raise DataError(
                f"{src.path}: label column {t.label!r} is not in the data"
                + (f"; did you mean {near[0]!r}?" if near else f"; columns: {names}")
            )
        if src.timestamp and src.timestamp not in names:
            raise DataError(f"{src.path}: timestamp column {src.timestamp!r} is not in the data; columns: {names}")

    @property
    def feature_store(self):
        """The config's FeatureStore (needs a 'features' section)."""
        from raymlops.features import FeatureStore

        if getattr(self, "_feature_store", None) is None:
            self._feature_store = FeatureStore(self.config)
        return self._feature_store

    def build_features(self, no_cache: bool = False) -> dict:
        """Runs the feature pipelines into the offline store, skipping views whose source and definition are
        unchanged since their latest version; returns {view: {version, fingerprint, cached}}."""
        from raymlops.pipeline.steps import build_features

        self.connect()
        return build_features(self.config, self.feature_store, no_cache, self.say)

    def train(
        self,
        progress: bool = True,
        no_cache: bool = False,
        resume: bool = False,
        register: bool = True,
        tags: dict | None = None,
        register_as: str | None = None,
    ) -> RunResult:
        """Runs read, prepare, train, evaluate and register (each skipped when its inputs are unchanged),
        records the run in MLflow and publishes the run directory.

        Args:
            progress: Print Tune's progress table.
            no_cache: Run every step even if its inputs are unchanged.
            resume: Continue the newest interrupted run of this config (finished trials are kept).
            register: Register the model (False for reproductions).
            tags: Extra MLflow tags for the parent run.
            register_as: Give the new version this alias whatever its gate (retraining: 'challenger').
        """
        from raymlops.pipeline.steps import TrainingRun

        cfg = self.config
        if cfg.training is None:
            raise RaymlopsError("this config has no 'training' section")
        self.check_inputs()
        self.connect()
        store = self.feature_store if cfg.training.dataset is not None else None
        out = TrainingRun(cfg, self.say, self.source_file, store, register_as).run(
            progress, no_cache, resume, register, tags
        )
        m = out["metrics"]
        return RunResult(
            out["run_id"],
            out["run_dir"],
            m["best"],
            trials=m["trials"],
            model=out["model"],
            evaluation=out["evaluation"],
            steps=out["steps"],
            mlflow_run_id=out["mlflow_run_id"],
        )

    def serving_spec(
        self,
        run: str | os.PathLike | None = None,
        model: str | None = None,
        start_actors: bool = True,
        workdir: str | None = None,
    ) -> AppSpec:
        """The Serve application's `AppSpec`: variants and shadows resolved to run directories (see `serve`)."""
        from raymlops.pipeline.serve import serving_spec

        cfg = self.config
        if cfg.serving is None:
            raise RaymlopsError("this config has no 'serving' section")
        if run is not None:
            default = str(layout.find_run(run, open_storage(cfg)))
        elif model or cfg.serving.model:
            default = model or cfg.serving.model
        else:
            default = str(layout.latest_run(open_storage(cfg), cfg.name))
        store = self.feature_store if cfg.serving.features else None
        return serving_spec(cfg, self.app_name, default, self.say, store, start_actors, workdir)

    def serve(self, run: str | os.PathLike | None = None, model: str | None = None) -> str:
        """Deploys the serving section: its variants and shadows behind a router, or one model (a run,
        default the latest of this pipeline, or a registered model: ``model``, else ``serving.model`` when
        no run is given; 'models:/NAME@ALIAS' is followed as the alias moves). Returns the endpoint URL."""
        from raymlops.serving import deploy

        self.connect()
        s = self.config.serving
        args = self.serving_spec(run, model)
        self.say(f"deploying Serve app {self.app_name!r}: " + ", ".join(f"{m.name} ({m.role})" for m in args.models))
        url = deploy(args, s.host, s.port, s.route_prefix, s.start_timeout_s, s.grpc_port)
        self.say(
            f"serving at {url}/predict"
            + (
                f" and gRPC raymlops.ModelServer/Predict on port {s.grpc_port} (metadata application={self.app_name})"
                if s.grpc_port
                else ""
            )
        )
        return url

    def stop(self) -> None:
        """Deletes the Serve app and stops its traffic controller and monitor actors (state stays in storage)."""
        from raymlops.monitoring import stop as stop_monitoring
        from raymlops.serving import shutdown

        shutdown(self.app_name, self.config.ray.namespace)
        stop_monitoring(self.app_name, self.config.ray.namespace)

    def export_serve_config(
        self,
        path: str | os.PathLike,
        run: str | os.PathLike | None = None,
        model: str | None = None,
        workdir: str | None = None,
    ) -> Path:
        """Writes a Serve config file deploying what `serve` would (`serve deploy PATH`), monitor actors
        included: Serve's build of the app starts them. ``workdir``: where the closed loop's retrain job
        runs (default this process's directory; the image's for Kubernetes)."""
        from raymlops.serving import export

        s = self.config.serving
        args = self.serving_spec(run, model, start_actors=False, workdir=workdir)
        return export(args, s.host, s.port, s.route_prefix, path, s.grpc_port)

    def run(self, progress: bool = True, no_cache: bool = False, resume: bool = False) -> RunResult:
        """Builds the feature views the training set needs, trains, then deploys when the config has a
        'serving' section."""
        self.check_inputs()
        if self.config.training is not None and self.config.training.dataset is not None:
            self.build_features(no_cache=no_cache)
        result = self.train(progress=progress, no_cache=no_cache, resume=resume)
        if self.config.serving is not None:
            # serving.model set: deploy what the registry says (a run that failed its gate is not served).
            result.endpoint = self.serve(None if self.config.serving.model else result.run_dir)
        return result
