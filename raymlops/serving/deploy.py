"""Deploys a run's model as a Ray Serve application over HTTP."""

from __future__ import annotations


def deploy(run_dir: str, serving_cfg, app_name: str, drift_actor: str | None = None,
           namespace: str = "raymlops", features: dict | None = None, watch: dict | None = None) -> str:
    """Starts Serve's HTTP proxy (if needed) and deploys the app; returns the endpoint URL."""
    from ray import serve

    from raymlops.data.ray_env import start_serve
    from raymlops.serving.app import build

    base = start_serve(serving_cfg.host, serving_cfg.port)
    serve.run(build(str(run_dir), serving_cfg, drift_actor, namespace, features, watch), name=app_name,
              route_prefix=serving_cfg.route_prefix, blocking=False)
    return base + ("" if serving_cfg.route_prefix == "/" else serving_cfg.route_prefix)


def shutdown(app_name: str | None = None) -> None:
    """Deletes one app, or shuts Serve down entirely."""
    from ray import serve

    if app_name:
        serve.delete(app_name)
    else:
        serve.shutdown()
