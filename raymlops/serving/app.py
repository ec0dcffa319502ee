"""The Serve application of one config: a router ingress in front of one model deployment per variant and
per shadow. With a single variant and no shadow the model runs inside the router replicas instead (one
hop less per request). `build_app` is also the ``import_path`` of exported Serve config files."""

# No `from __future__ import annotations` here: Serve reads `build_app`'s parameter annotation as a class
# and validates an exported file's ``args`` into `AppSpec` before calling it (typed application builder).
from typing import Any

from raymlops.contracts.serving import AppSpec, ModelEntry, ModelSpec, ReplicaSpec, RouterSpec, ShadowSpec, VariantSpec

ROUTER = "router"


def deployment_name(model: str) -> str:
    return f"model-{model}"


def inline(spec: AppSpec) -> bool:
    """One variant, no shadow: the model is scored in the router replica itself."""
    return len(spec.models) == 1


def replica_options(replica: ReplicaSpec) -> dict[str, Any]:
    """Serve options of a model deployment: replicas or autoscaling, CPUs, and enough concurrent requests
    per replica for batches to fill."""
    batching = replica.batching
    ongoing = replica.max_ongoing_requests or max(128, 2 * (batching.max_batch_size if batching else 0))
    opts: dict[str, Any] = {"max_ongoing_requests": ongoing, "ray_actor_options": {"num_cpus": replica.num_cpus}}
    a = replica.autoscaling
    if a:
        opts["autoscaling_config"] = {**a.model_dump(), "initial_replicas": a.min_replicas or 1}
        opts["num_replicas"] = "auto"
    else:
        opts["num_replicas"] = replica.num_replicas
    return opts


def deployment_options(args: AppSpec | dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{deployment name: Serve options} of the app."""
    spec = AppSpec.model_validate(args)
    model = replica_options(spec.replica)
    if inline(spec):
        return {ROUTER: model}
    router = {"num_replicas": spec.router_replicas, "max_ongoing_requests": 1000, "ray_actor_options": {"num_cpus": 0}}
    return {ROUTER: router, **{deployment_name(m.name): model for m in spec.models}}


def model_spec(args: AppSpec | dict[str, Any], m: ModelEntry | dict[str, Any]) -> ModelSpec:
    """The arguments of model ``m``'s deployment (or inline model)."""
    from raymlops.serving.controller import controller_name

    spec, m = AppSpec.model_validate(args), ModelEntry.model_validate(m)
    canary = spec.canary is not None and spec.canary.variant == m.name and m.watch is not None
    return ModelSpec(
        variant=m.name,
        run_dir=m.run_dir,
        batching=spec.replica.batching,
        monitor=m.monitor,
        namespace=spec.namespace,
        features=spec.features,
        watch=m.watch,
        canary_controller=controller_name(spec.app) if canary else None,
    )


def router_spec(spec: AppSpec) -> RouterSpec:
    """The router deployment's arguments."""
    return RouterSpec(
        app=spec.app,
        namespace=spec.namespace,
        state_dir=spec.state_dir,
        variants=[VariantSpec(name=m.name, weight=m.weight, model_version=m.model_version) for m in spec.variants()],
        shadow=[
            ShadowSpec(
                name=m.name,
                model_version=m.model_version,
                **({"max_in_flight": m.max_in_flight} if m.max_in_flight else {}),
            )
            for m in spec.shadows()
        ],
        sticky_key=spec.sticky_key,
        canary=spec.canary,
        app_monitor=spec.app_monitor,
        request_log=spec.request_log,
        max_batch_rows=spec.max_batch_rows,
        route_prefix=spec.route_prefix,
        request_timeout_s=spec.request_timeout_s,
        inline={m.name: model_spec(spec, m) for m in spec.models} if inline(spec) else None,
    )


def build_app(args: AppSpec):  # type: ignore[no-untyped-def]  # returns a serve Application
    """Builds the bound application from its spec (see `raymlops.pipeline.serve` for how it is made); a dict
    (an exported file's ``args``) is validated into one."""
    from raymlops.serving.model import ModelServer
    from raymlops.serving.router import Router

    spec = AppSpec.model_validate(args)
    for call in spec.start:  # an exported file: the monitor actors `raymlops serve` would start
        call()
    opts = deployment_options(spec)
    rspec = router_spec(spec)
    if rspec.inline is not None:
        return Router.options(name=ROUTER, **opts[ROUTER]).bind(rspec, {})
    models = {
        m.name: ModelServer.options(name=deployment_name(m.name), **opts[deployment_name(m.name)]).bind(
            model_spec(spec, m)
        )
        for m in spec.models
    }
    return Router.options(name=ROUTER, **opts[ROUTER]).bind(rspec, models)
