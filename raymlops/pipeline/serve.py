"""Composes a config's serving section into the Serve application's typed spec (`AppSpec`): resolves each
variant's and shadow's model reference (registry URI, run id or run directory), starts their drift actors
and the online-store materialization, and names the state and request-log locations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from raymlops.artifacts import run as layout
from raymlops.config import PipelineConfig
from raymlops.contracts.calls import Call, Watch
from raymlops.contracts.monitoring import (
    AppMonitorSpec,
    LabelsSource,
    MonitorSpec,
    PerformanceSpec,
    RetrainSpec,
    SkewSpec,
)
from raymlops.contracts.serving import AppSpec, FeaturesSpec, ModelEntry, ReplicaSpec, RequestLogSpec
from raymlops.errors import RaymlopsError
from raymlops.storage import open_storage
from raymlops.storage.files import join, write_file

RESOLVER = "raymlops.registry.models:pinned_for"


def state_dir(cfg: PipelineConfig, app: str) -> str:
    """The app's serving state (traffic.json, events.jsonl): a path or URI every node reaches."""
    return open_storage(cfg).url("serving", app)


def request_log_path(cfg: PipelineConfig, app: str) -> str:
    rl = cfg.serving.request_log if cfg.serving else None
    if rl is not None and rl.path:
        return rl.path if "://" in rl.path else str(Path(rl.path).resolve())
    return open_storage(cfg).url("request_log", app)


def resolve_model(
    cfg: PipelineConfig, ref: str, until_set: str | Call | None = None
) -> tuple[str | Call, Watch | None]:
    """A model reference -> (the run's location, watch spec or None). The location is one every node
    resolves (``layout.local_run``): a run's path or URI in storage, or a registry version pinned now.
    'models:/NAME@ALIAS' is followed as the alias moves (replicas poll it every ``serving.reload_seconds``);
    with ``until_set`` (a location), an alias no version holds yet serves that location until one does."""
    if ref.startswith("models:/"):
        from raymlops.registry import parse_uri, tracking_uri
        from raymlops.registry.models import AliasNotSet, pinned_for

        args = [ref, tracking_uri(cfg.registry, open_storage(cfg))]
        watch = Watch(call=RESOLVER, args=args, every=cfg.serving.reload_seconds) if parse_uri(ref)[1] else None
        try:
            return pinned_for(*args), watch
        except AliasNotSet:
            if until_set is None:
                raise
            return until_set, watch
    return str(layout.find_run(ref, open_storage(cfg))), None


def serving_spec(
    cfg: PipelineConfig,
    app: str,
    default_ref: str,
    say: Callable[[str], None],
    feature_store=None,
    start_actors: bool = True,
    workdir: str | None = None,
) -> AppSpec:
    """The `AppSpec` (`raymlops.serving.app.build_app`'s ``args``) of this config.

    ``default_ref``: the model of variants (and shadows) that name none, and of the single default variant.
    ``start_actors``: start the monitor actors and materialize online features. False when exporting: the
    actors' start calls go in ``start``, run by `build_app` when `serve deploy` builds the app.
    """
    s = cfg.serving
    from raymlops.config.serving import VariantConfig

    entries = [("variant", v) for v in (s.variants or [VariantConfig(name="default")])]
    entries += [("shadow", sh) for sh in s.shadow]
    from raymlops.monitoring.actor import actor_name, start_monitor

    models: list[ModelEntry] = []
    monitors, start = [], []
    app_monitor = None
    if cfg.monitoring is not None:
        from raymlops.monitoring.app_monitor import app_monitor_name, start_app_monitor

        spec = _app_monitor_spec(cfg, app, workdir)
        if start_actors:
            start_app_monitor(spec)
        else:  # an exported file: `serve deploy` starts it when it builds the app, from a spec file in
            # storage (webhook URLs and headers are secrets: they stay out of the exported file)
            path = _stored(join(monitoring_dir(cfg, app), "app_monitor.json"), spec.model_dump(mode="json"))
            start.append(Call(call="raymlops.monitoring.app_monitor:start_app_monitor_from", args=[path]))
        app_monitor = app_monitor_name(app)
    for role, entry in entries:
        # A shadow on an alias no version holds yet (the closed loop's @challenger before the first retrain)
        # mirrors the first variant until the alias is set, then swaps to it like any alias move.
        mirror = models[0].run_dir if role == "shadow" else None
        run_dir, watch = resolve_model(cfg, entry.model or default_ref, until_set=mirror)
        local = layout.local_run(run_dir)
        run_id, version = layout.read_meta(local)["run_id"], layout.model_version(local)
        waiting = mirror is not None and run_dir is mirror
        say(
            f"{role} {entry.name}: {entry.model or default_ref} (run {run_id}"
            + (
                f": no version holds the alias yet, so it mirrors variant {models[0].name} until one does)"
                if waiting
                else ")"
            )
            + (f", following the alias every {s.reload_seconds:g} s" if watch else "")
        )
        spec = _monitor_spec(cfg, app, entry.name, run_dir, version, app_monitor)
        if spec is not None and start_actors:
            monitors.append(start_monitor(spec, wait=False))
        elif spec is not None:
            start.append(Call(call="raymlops.monitoring.actor:ensure_monitor", args=[spec.model_dump(mode="json")]))
        models.append(
            ModelEntry(
                name=entry.name,
                role=role,
                weight=getattr(entry, "weight", 0.0),
                run_dir=run_dir,
                model_version=version,
                watch=watch,
                max_in_flight=getattr(entry, "max_in_flight", None),
                monitor=actor_name(app, entry.name) if spec is not None else None,
            )
        )
    if monitors:  # started side by side; fail here, not in serving, if a detector cannot load
        import ray

        ray.get([h.latest.remote() for h in monitors])
    features = None
    if s.features:
        meta = layout.read_meta(layout.local_run(models[0].run_dir))
        refs = meta.get("dataset", {}).get("features")
        if not refs:
            raise RaymlopsError(
                f"serving.features is set but run {meta['run_id']} was not trained "
                "from a feature set (training.dataset)"
            )
        if start_actors:
            say("materializing the latest feature values into the online store")
            for view, m in feature_store.materialize().items():
                say(f"  {view}: {m['entities']} entities")
        portable = feature_store.portable_config()
        if start_actors:
            features = FeaturesSpec(refs=refs, config=portable)
        else:  # an exported file: the config (store URLs, alert secrets) stays in storage
            features = FeaturesSpec(
                refs=refs, config_file=_stored(join(state_dir(cfg, app), "features.json"), portable)
            )
    request_log = None
    if s.request_log is not None:
        request_log = RequestLogSpec(**{**s.request_log.model_dump(), "path": request_log_path(cfg, app)})
    return AppSpec(
        app=app,
        namespace=cfg.ray.namespace,
        state_dir=state_dir(cfg, app),
        max_batch_rows=s.max_batch_rows,
        models=models,
        features=features,
        sticky_key=s.sticky_key,
        canary=s.canary,
        request_log=request_log,
        route_prefix=s.route_prefix,
        request_timeout_s=s.request_timeout_s,
        router_replicas=s.router_replicas,
        app_monitor=app_monitor,
        start=start,
        replica=ReplicaSpec(
            num_replicas=s.num_replicas,
            num_cpus=s.num_cpus,
            max_ongoing_requests=s.max_ongoing_requests,
            autoscaling=s.autoscaling,
            batching=s.batching,
        ),
    )


def _stored(path: str, doc: dict) -> str:
    """Writes ``doc`` (JSON) to ``path`` in storage for an exported file to name instead of carrying it."""
    write_file(path, json.dumps(doc).encode(), durable=True)
    return path


def monitoring_dir(cfg: PipelineConfig, app: str) -> str:
    """The app's monitoring state (per-variant histories, app monitor state): a path or URI."""
    return open_storage(cfg).url("monitoring", app)


def _monitor_spec(
    cfg: PipelineConfig, app: str, variant: str, run_dir: str | Call, version: str, app_monitor: str | None
) -> MonitorSpec | None:
    """The spec of the variant's (or shadow's) monitor actor, or None when neither drift nor data-quality
    monitoring is on."""
    m = cfg.monitoring
    if m is None or (m.drift is None and m.data_quality is None):
        return None
    return MonitorSpec(
        app=app,
        variant=variant,
        namespace=cfg.ray.namespace,
        run_dir=run_dir,
        model_version=version,
        state_dir=join(monitoring_dir(cfg, app), variant),
        drift=m.drift,
        quality=m.data_quality,
        history=m.history,
        history_rotate_mb=m.history_rotate_mb,
        history_keep=m.history_keep,
        checkpoint_s=m.checkpoint_s,
        app_monitor=app_monitor,
    )


def _app_monitor_spec(cfg: PipelineConfig, app: str, workdir: str | None = None) -> AppMonitorSpec:
    """The app monitor's spec (alerts, canary events, performance, retraining); writes the resolved config
    the retrain job reads."""
    import os

    from raymlops.pipeline.loop import write_config
    from raymlops.serving.controller import EVENTS_FILE

    m, here = cfg.monitoring, monitoring_dir(cfg, app)
    performance = skew = retrain = None
    if m.performance is not None:
        p, src = m.performance, cfg.sources[m.performance.labels]
        performance = PerformanceSpec(
            **{**p.model_dump(), "label": p.label or cfg.training.label},
            task=cfg.training.task,
            request_log=request_log_path(cfg, app),
            labels_source=LabelsSource(
                format=src.format, path=src.path if "://" in src.path else str(Path(src.path).resolve())
            ),
        )
    if m.skew is not None:
        skew = SkewSpec(
            **m.skew.model_dump(),
            check=Call(
                call="raymlops.pipeline.skew:monitor_check", args=[write_config(cfg, join(here, "pipeline.yaml")), app]
            ),
        )
    if m.retrain is not None:
        config = write_config(cfg, join(here, "pipeline.yaml"))
        retrain = RetrainSpec(
            **m.retrain.model_dump(),
            submit=Call(
                call="raymlops.pipeline.loop:submit_retrain", args=[config, workdir or os.getcwd(), m.retrain.address]
            ),
            promote=Call(call="raymlops.pipeline.loop:promote_challenger", args=[config]),
        )
    return AppMonitorSpec(
        app=app,
        namespace=cfg.ray.namespace,
        state_dir=str(here),
        alerts=m.alerts,
        alert_log=join(here, "alerts.jsonl"),
        canary_events=join(state_dir(cfg, app), EVENTS_FILE),
        performance=performance,
        skew=skew,
        retrain=retrain,
        history_rotate_mb=m.history_rotate_mb,
        history_keep=m.history_keep,
    )
