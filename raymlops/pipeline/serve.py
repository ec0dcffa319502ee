"""Composes a config's serving section into the Serve application's plain-data spec: resolves each
variant's and shadow's model reference (registry URI, run id or run directory), starts their drift actors
and the online-store materialization, and names the state and request-log locations."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from raymlops.artifacts import run as layout
from raymlops.config import PipelineConfig
from raymlops.errors import RaymlopsError

RESOLVER = "raymlops.registry.models:bundle_for"


def state_dir(cfg: PipelineConfig, app: str) -> Path:
    return layout.storage_root(cfg.storage) / "serving" / app


def request_log_path(cfg: PipelineConfig, app: str) -> str:
    rl = cfg.serving.request_log if cfg.serving else None
    if rl is not None and rl.path:
        return rl.path if "://" in rl.path else str(Path(rl.path).resolve())
    return str(layout.storage_root(cfg.storage) / "request_log" / app)


def resolve_model(cfg: PipelineConfig, ref: str) -> tuple[Path, dict | None]:
    """A model reference -> (run directory, watch spec or None). 'models:/NAME@ALIAS' is followed as the
    alias moves (replicas poll it every ``serving.reload_seconds``)."""
    if ref.startswith("models:/"):
        from raymlops.registry import parse_uri, tracking_uri

        args = [ref, tracking_uri(cfg.registry, cfg.storage), str(layout.storage_root(cfg.storage) / "registry-cache")]
        from raymlops.registry.models import bundle_for

        run_dir = Path(bundle_for(*args))
        watch = {"call": RESOLVER, "args": args, "every": cfg.serving.reload_seconds} if parse_uri(ref)[1] else None
        return run_dir, watch
    return layout.find_run(ref, cfg.storage), None


def serving_spec(cfg: PipelineConfig, app: str, default_ref: str, say: Callable[[str], None],
                 feature_store=None, start_actors: bool = True) -> dict:
    """The ``args`` of `raymlops.serving.app.build_app` for this config.

    ``default_ref``: the model of variants (and shadows) that name none, and of the single default variant.
    ``start_actors``: start the drift actors and materialize online features (False when only exporting).
    """
    s = cfg.serving
    from raymlops.config.serving import VariantConfig

    entries = [("variant", v) for v in (s.variants or [VariantConfig(name="default")])]
    entries += [("shadow", sh) for sh in s.shadow]
    models, monitors = [], []
    for role, entry in entries:
        run_dir, watch = resolve_model(cfg, entry.model or default_ref)
        run_id = layout.read_meta(run_dir)["run_id"]
        say(f"{role} {entry.name}: {entry.model or default_ref} (run {run_id})"
            + (f", following the alias every {s.reload_seconds:g} s" if watch else ""))
        models.append({"name": entry.name, "role": role, "weight": getattr(entry, "weight", 0.0),
                       "run_dir": str(run_dir), "model_version": run_id, "watch": watch,
                       "max_in_flight": getattr(entry, "max_in_flight", None),
                       "drift_actor": None if role == "shadow" else
                       _drift_actor(cfg, app, entry.name, run_dir, run_id, monitors if start_actors else None)})
    if monitors:  # started side by side; fail here, not in serving, if a detector cannot load
        import ray

        ray.get([h.latest.remote() for h in monitors])
    features = None
    if s.features:
        refs = layout.read_meta(Path(models[0]["run_dir"])).get("dataset", {}).get("features")
        if not refs:
            raise RaymlopsError(f"serving.features is set but run {Path(models[0]['run_dir']).name} was not trained "
                                "from a feature set (training.dataset)")
        if start_actors:
            say("materializing the latest feature values into the online store")
            for view, m in feature_store.materialize().items():
                say(f"  {view}: {m['entities']} entities")
        features = {"config": feature_store.portable_config(), "refs": refs}
    request_log = None
    if s.request_log is not None:
        request_log = {**s.request_log.model_dump(), "path": request_log_path(cfg, app)}
    return {
        "app": app, "namespace": cfg.ray.namespace, "state_dir": str(state_dir(cfg, app)),
        "max_batch_rows": s.max_batch_rows, "models": models, "features": features,
        "sticky_key": s.sticky_key, "canary": s.canary.model_dump() if s.canary else None,
        "request_log": request_log, "route_prefix": s.route_prefix, "request_timeout_s": s.request_timeout_s,
        "router_replicas": s.router_replicas,
        "replica": {"num_replicas": s.num_replicas, "num_cpus": s.num_cpus,
                    "max_ongoing_requests": s.max_ongoing_requests,
                    "autoscaling": s.autoscaling.model_dump() if s.autoscaling else None,
                    "batching": s.batching.model_dump() if s.batching else None},
    }


def _drift_actor(cfg: PipelineConfig, app: str, variant: str, run_dir: Path, run_id: str,
                 started: list | None) -> str | None:
    """The name of the variant's drift actor when drift monitoring is on and the run has a detector; starts
    it (appending its handle to ``started``) unless ``started`` is None."""
    d = cfg.monitoring.drift if cfg.monitoring else None
    if d is None or not (run_dir / layout.DRIFT_DIR).is_dir():
        return None
    from raymlops.monitoring.actor import actor_name, start_monitor

    name = f"{app}-{variant}"
    if started is not None:
        started.append(start_monitor(str(run_dir / layout.DRIFT_DIR), d.window, d.p_val, run_id, name,
                                     cfg.ray.namespace, wait=False))
    return actor_name(name)
