"""Deploys an app's Serve application over HTTP, or writes it as a Serve config file; deploys the feature server."""

from __future__ import annotations

import os
from pathlib import Path

from raymlops.contracts.serving import AppSpec


def deploy(
    args: AppSpec, host: str, port: int, route_prefix: str, timeout_s: float = 300, grpc_port: int | None = None
) -> str:
    """Starts Serve's HTTP proxy (if needed) and deploys the app; returns the endpoint URL.

    Raises:
        RaymlopsError: see `raymlops.serving.runtime.run_serve_app`.
    """
    from raymlops.serving.app import build_app
    from raymlops.serving.runtime import run_serve_app, start_serve

    base = start_serve(host, port, grpc_port)
    run_serve_app(build_app(args), args.app, route_prefix, timeout_s, "serving.start_timeout_s")
    return base + ("" if route_prefix == "/" else route_prefix)


def export(
    args: AppSpec, host: str, port: int, route_prefix: str, path: str | os.PathLike, grpc_port: int | None = None
) -> Path:
    """Writes a Serve config file (`serve deploy PATH`) that deploys exactly what `deploy` would."""
    import yaml

    from raymlops.serving.app import deployment_options

    deployments = []
    for name, opts in deployment_options(args).items():
        d = {"name": name, **{k: v for k, v in opts.items() if k != "num_replicas" or v != "auto"}}
        deployments.append(d)
    from raymlops.serving.runtime import GRPC_SERVICER

    grpc = {"grpc_options": {"port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER]}} if grpc_port else {}
    doc = {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        **grpc,
        "applications": [
            {
                "name": args.app,
                "route_prefix": route_prefix,
                "import_path": "raymlops.serving.app:build_app",
                "args": args.model_dump(mode="json"),
                "deployments": deployments,
            }
        ],
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(
        "# Written by `raymlops serve --export`; deploy with `serve deploy "
        + out.name
        + "`.\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    os.replace(tmp, out)
    return out


def deploy_feature_server(config: dict, server_cfg, app_name: str) -> str:
    """Deploys the feature server (`raymlops.features.server.FeatureServer`) as its own Serve app; returns
    its base URL."""
    from raymlops.features.server import START_TIMEOUT_S, FeatureServer
    from raymlops.serving.runtime import run_serve_app, start_serve

    base = start_serve(server_cfg.host, server_cfg.port)
    bound = FeatureServer.options(
        num_replicas=server_cfg.num_replicas,
        max_ongoing_requests=server_cfg.max_ongoing_requests,
        ray_actor_options={"num_cpus": server_cfg.num_cpus},
    ).bind(config)
    run_serve_app(bound, app_name, server_cfg.route_prefix, START_TIMEOUT_S, "the feature server's start timeout")
    return base + ("" if server_cfg.route_prefix == "/" else server_cfg.route_prefix)


def shutdown(app_name: str | None = None, namespace: str = "raymlops") -> None:
    """Deletes one app (and its traffic controller; its state file stays), or shuts Serve down entirely."""
    from ray import serve

    if not app_name:
        serve.shutdown()
        return
    _delete(app_name, namespace)


def delete_apps(namespace: str = "raymlops") -> None:
    """Deletes every app, each replica shutting down gracefully (request logs flushed), and leaves Serve's
    controller to go down with a local Ray: ``serve.shutdown`` kills it mid-call, and the raylet then
    prints "Task ServeController.graceful_shutdown failed ... will be retried" on every stop."""
    from ray import serve

    for app in list(serve.status().applications):
        _delete(app, namespace)


def _delete(app_name: str, namespace: str) -> None:
    import ray
    from ray import serve

    from raymlops.serving.controller import controller_name

    serve.delete(app_name)
    try:
        ray.kill(ray.get_actor(controller_name(app_name), namespace=namespace))
    except ValueError:  # never started, or already gone
        pass
