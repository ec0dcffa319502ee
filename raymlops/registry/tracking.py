"""Experiment tracking on MLflow: one parent run per pipeline run, a child run per Tune trial."""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raymlops.errors import RaymlopsError
from raymlops.storage import open_storage

TAG = "raymlops."  # prefix of every tag raymlops sets


class TrackingError(RaymlopsError):
    """The tracking server or store could not be reached or refused a write."""


def tracking_uri(registry_cfg=None, storage: str | None = None, create: bool = True) -> str:
    """The configured URI, else ``$MLFLOW_TRACKING_URI``, else the embedded ``sqlite:///<storage>/mlflow.db``
    (its folder made unless ``create`` is False)."""
    uri = (registry_cfg.tracking_uri if registry_cfg is not None else None) or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = open_storage(storage)
    if not store.local:
        raise TrackingError(
            f"storage {store.uri} is an object store, where the embedded MLflow store (a SQLite "
            "file) cannot live: set registry.tracking_uri or $MLFLOW_TRACKING_URI to an MLflow "
            f"server (`raymlops tracking-server --storage {store.uri}` starts one)"
        )
    root = store.local_path()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Where an embedded (sqlite) store keeps artifacts: beside the database. Servers choose their own."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts")
    return None


def _quiet() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout is the CLI's output
    # An unreachable server fails in seconds, not after minutes of back-off.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    for name in ("mlflow", "alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def client(uri: str):
    """An ``MlflowClient`` for ``uri`` (no global state is changed)."""
    _quiet()
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def using(uri: str):
    """Points MLflow's fluent API at ``uri`` for a block, then restores the previous URIs and the
    MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI variables (mlflow.set_tracking_uri exports them)."""
    _quiet()
    import mlflow

    from raymlops.registry._compat import kept_uri_globals

    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        with kept_uri_globals():
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            yield
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _param_value(v: Any) -> str:
    return str(v)[:6000]


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isnan(f) and not math.isinf(f):
            out[k] = f
    return out


class Tracker:
    """Records one pipeline run in MLflow.

    Args:
        uri: Tracking URI.
        experiment: Experiment name (created with its artifacts under the embedded store when missing).
    """

    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        try:
            self.client = client(uri)
            exp = self.client.get_experiment_by_name(experiment)
            if exp is not None and exp.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"MLflow experiment {experiment!r} at {uri} is deleted; restore it "
                    "(`mlflow experiments restore`) or set registry.experiment"
                )
            self.experiment_id = (
                exp.experiment_id
                if exp
                else self.client.create_experiment(
                    experiment, artifact_location=(f"{artifact_root(uri)}/{experiment}" if artifact_root(uri) else None)
                )
            )
        except TrackingError:
            raise
        except Exception as e:  # connection refused, bad URI, ...
            raise TrackingError(f"MLflow at {uri} is not usable: {type(e).__name__}: {str(e)[:300]}") from e
        self.run_id: str | None = None

    def start(self, name: str, tags: dict[str, Any], resume_run_id: str | None = None) -> str:
        """Opens the parent run (or reopens ``resume_run_id``)."""
        if resume_run_id:
            self.client.update_run(resume_run_id, status="RUNNING")
            self.run_id = resume_run_id
        else:
            self.run_id = self.client.create_run(
                self.experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()}
            ).info.run_id
        return self.run_id

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, status=status)

    def set_tags(self, tags: dict[str, Any], run_id: str | None = None) -> None:
        from mlflow.entities import RunTag

        tags = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
        for i in range(0, len(tags), 100):
            self.client.log_batch(run_id or self.run_id, tags=tags[i : i + 100])

    def log_params(self, params: dict[str, Any], run_id: str | None = None) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id or self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, Any], step: int = 0, run_id: str | None = None) -> None:
        self.log_series({k: [(step, v)] for k, v in _finite(metrics).items()}, run_id)

    def log_series(self, series: dict[str, list[tuple[int, float]]], run_id: str | None = None) -> None:
        """Metric histories: name -> [(step, value), ...]."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, int(s))
            for k, points in series.items()
            for s, v in points
            if v is not None and not (isinstance(v, float) and (math.isnan(v) or math.isinf(v)))
        ]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id or self.run_id, metrics=items[i : i + 1000])

    def log_artifacts(self, local_dir: str | os.PathLike, path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), path)

    def log_artifact(self, local_file: str | os.PathLike, path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_file), path)

    def log_dataset(self, name: str, source: str, digest: str, sample, context: str) -> None:
        """Logs a dataset as an MLflow input: its source, content digest and (given a sample) schema."""
        import warnings

        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import InputTag
        from mlflow.models import infer_signature

        with warnings.catch_warnings():  # mlflow warns about source types and integer columns
            warnings.simplefilter("ignore")
            try:
                from mlflow.data.dataset_source_registry import resolve_dataset_source

                src = resolve_dataset_source(source)
            except Exception:  # no source type for this URI scheme
                src = LocalArtifactDatasetSource(source)
            schema = infer_signature(sample).inputs if sample is not None else None
            ds = MetaDataset(src, name=name, digest=digest[:36], schema=schema)
        self.client.log_inputs(self.run_id, datasets=[_dataset_input(ds, [InputTag("mlflow.data.context", context)])])

    def log_trials(self, trials: list[dict], tags: dict[str, Any]) -> list[str]:
        """One child run per trial: its params, status, final metrics and per-iteration history."""
        ids = []
        for i, t in enumerate(trials):
            child = self.client.create_run(
                self.experiment_id,
                run_name=f"trial-{i:03d}",
                tags={
                    "mlflow.parentRunId": self.run_id,
                    f"{TAG}trial_status": t["status"],
                    f"{TAG}trial_id": t.get("trial_id", ""),
                    **{k: str(v) for k, v in tags.items()},
                    **({f"{TAG}trial_error": t["error"][:500]} if t.get("error") else {}),
                },
            ).info.run_id
            self.log_params(t["params"], run_id=child)
            series = {k: list(v) for k, v in (t.get("history") or {}).items()}
            for k, v in _finite(t["metrics"]).items():
                series.setdefault(k, []).append((max((s for s, _ in series.get(k, [])), default=0), v))
            self.log_series(series, run_id=child)
            self.client.set_terminated(child, status="FINISHED" if t["status"] != "failed" else "FAILED")
            ids.append(child)
        return ids


def _dataset_input(ds, tags):
    from mlflow.entities import DatasetInput

    from raymlops.registry._compat import dataset_entity

    return DatasetInput(dataset=dataset_entity(ds), tags=tags)
