"""The Serve application of one config: a router ingress in front of one model deployment per variant and
per shadow. With a single variant and no shadow the model runs inside the router replicas instead (one
hop less per request). `build_app` is also the ``import_path`` of exported Serve config files."""

from __future__ import annotations

from typing import Any

ROUTER = "router"


def deployment_name(model: str) -> str:
    return f"model-{model}"


def inline(args: dict) -> bool:
    """One variant, no shadow: the model is scored in the router replica itself."""
    return len(args["models"]) == 1


def replica_options(replica: dict) -> dict[str, Any]:
    """Serve options of a model deployment: replicas or autoscaling, CPUs, and enough concurrent requests
    per replica for batches to fill."""
    batching = replica.get("batching")
    ongoing = replica.get("max_ongoing_requests") or max(128, 2 * (batching["max_batch_size"] if batching else 0))
    opts: dict[str, Any] = {"max_ongoing_requests": ongoing, "ray_actor_options": {"num_cpus": replica["num_cpus"]}}
    a = replica.get("autoscaling")
    if a:
        opts["autoscaling_config"] = {**a, "initial_replicas": a["min_replicas"] or 1}
        opts["num_replicas"] = "auto"
    else:
        opts["num_replicas"] = replica["num_replicas"]
    return opts


def deployment_options(args: dict) -> dict[str, dict[str, Any]]:
    """{deployment name: Serve options} of the app."""
    model = replica_options(args["replica"])
    if inline(args):
        return {ROUTER: model}
    router = {"num_replicas": args.get("router_replicas", 1), "max_ongoing_requests": 1000,
              "ray_actor_options": {"num_cpus": 0}}
    return {ROUTER: router, **{deployment_name(m["name"]): model for m in args["models"]}}


def model_spec(args: dict, m: dict) -> dict:
    from raymlops.serving.controller import controller_name

    canary = (args.get("canary") or {}).get("variant") == m["name"] and m.get("watch")
    return {"variant": m["name"], "run_dir": m["run_dir"], "batching": args["replica"].get("batching"),
            "monitor": m.get("monitor"), "namespace": args["namespace"], "features": args.get("features"),
            "watch": m.get("watch"), "canary_controller": controller_name(args["app"]) if canary else None}


def build_app(args: dict):
    """Builds the bound application from plain data (see `raymlops.pipeline.serve` for how ``args`` is made)."""
    from raymlops.serving.model import ModelServer, resolver
    from raymlops.serving.router import Router

    for call in args.get("start") or []:  # an exported file: the monitor actors `raymlops serve` would start
        resolver(call)()
    opts = deployment_options(args)
    router_spec = {
        "app": args["app"], "namespace": args["namespace"], "state_dir": args["state_dir"],
        "variants": [{"name": m["name"], "weight": m["weight"], "model_version": m["model_version"]}
                     for m in args["models"] if m["role"] == "variant"],
        "shadow": [{"name": m["name"], "model_version": m["model_version"], "max_in_flight": m["max_in_flight"]}
                   for m in args["models"] if m["role"] == "shadow"],
        "sticky_key": args.get("sticky_key"), "canary": args.get("canary"), "app_monitor": args.get("app_monitor"),
        "request_log": args.get("request_log"), "max_batch_rows": args["max_batch_rows"],
        "route_prefix": args.get("route_prefix", "/"), "request_timeout_s": args.get("request_timeout_s", 30),
    }
    if inline(args):
        router_spec["inline"] = {m["name"]: model_spec(args, m) for m in args["models"]}
        return Router.options(name=ROUTER, **opts[ROUTER]).bind(router_spec, {})
    models = {m["name"]: ModelServer.options(name=deployment_name(m["name"]), **opts[deployment_name(m["name"])])
              .bind(model_spec(args, m)) for m in args["models"]}
    return Router.options(name=ROUTER, **opts[ROUTER]).bind(router_spec, models)
