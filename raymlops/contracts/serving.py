"""What `raymlops.pipeline.serve` hands the Serve application: the app builder's ``args`` (`AppSpec`, also
the ``args`` of an exported Serve config file) and what the builder passes each deployment (`RouterSpec`,
`ModelSpec`)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from raymlops.config.models import PipelineConfig
from raymlops.config.serving import AutoscalingConfig, BatchingConfig, CanaryConfig, RequestLogConfig
from raymlops.contracts.base import Contract
from raymlops.contracts.calls import Call, Watch

RunLocation = str | Call  # a run's path or URI, or a call returning this node's copy of a registry version


class FeaturesSpec(Contract):
    """Online features a model deployment joins to each request."""

    refs: list[str] = Field(min_length=1, description="'view:feature' references the model was trained on.")
    config: PipelineConfig | None = Field(None, description="The feature store's config (in-process deploys).")
    config_file: str | None = Field(
        None,
        description="A JSON file in storage holding that config (exported "
        "files: store URLs and secrets stay out of them).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> FeaturesSpec:
        if (self.config is None) == (self.config_file is None):
            raise ValueError("exactly one of config and config_file must be set")
        return self

    @model_serializer(mode="wrap")
    def _only_the_set_source(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        return {k: v for k, v in out.items() if k == "refs" or v is not None}


class RequestLogSpec(RequestLogConfig):
    """The request log's settings, with its location resolved."""

    path: str = Field(description="Directory or URI of the Parquet log.")


class ReplicaSpec(Contract):
    """Serve options of each model deployment (the router's own when the model runs inline)."""

    num_replicas: int = Field(ge=1, description="Replicas when not autoscaling.")
    num_cpus: float = Field(ge=0, description="CPUs per replica.")
    max_ongoing_requests: int | None = Field(None, ge=1, description="Unset: enough for batches to fill.")
    autoscaling: AutoscalingConfig | None = Field(
        None, description="serving.autoscaling; unset: num_replicas fixed replicas."
    )
    batching: BatchingConfig | None = Field(None, description="serving.batching; unset: each request is scored alone.")


class ModelEntry(Contract):
    """One variant or shadow of the app, with its model resolved."""

    name: str = Field(description="The variant's or shadow's name (answers carry it as `variant`).")
    role: Literal["variant", "shadow"] = Field(
        description="variant: takes traffic by weight; shadow: gets copies, its answers are logged only."
    )
    weight: float = Field(0.0, ge=0, description="Relative traffic share (variants).")
    run_dir: RunLocation = Field(description="Where every node finds the model's run.")
    model_version: str = Field(description="NAME/VERSION of a registry version, else the run id.")
    watch: Watch | None = Field(None, description="Polls the registry alias the model follows.")
    max_in_flight: int | None = Field(None, ge=1, description="Copies waiting for a shadow per router replica.")
    monitor: str | None = Field(None, description="The variant monitor actor's name.")


class AppSpec(Contract):
    """The Serve app's build arguments: `raymlops.serving.app.build_app`'s ``args``."""

    app: str = Field(description="The Serve application's name.")
    namespace: str = Field(description="Ray namespace of the app's actors.")
    state_dir: str = Field(description="The app's serving state (traffic.json, events.jsonl): a path or URI.")
    max_batch_rows: int = Field(ge=1, description="Most rows one request may carry.")
    models: list[ModelEntry] = Field(min_length=1, description="Variants first, then shadows.")
    features: FeaturesSpec | None = Field(
        None, description="Online features joined to `entities` requests; unset: rows carry every input."
    )
    sticky_key: str | None = Field(
        None, description="Input column whose value pins a caller to one variant; unset: by weight."
    )
    canary: CanaryConfig | None = Field(
        None, description="serving.canary: the variant whose share steps up, with its rollback rules."
    )
    request_log: RequestLogSpec | None = Field(
        None, description="Where and how requests are logged; unset: not logged."
    )
    route_prefix: str = Field("/", description="The app's HTTP path prefix.")
    request_timeout_s: float = Field(gt=0, description="A variant slower than this answers 504.")
    router_replicas: int = Field(ge=1, description="Router replicas when models run in their own deployments.")
    app_monitor: str | None = Field(None, description="The app monitor actor's name.")
    start: list[Call] = Field(
        default_factory=list, description="Calls `build_app` makes first (an exported file's monitor actors)."
    )
    replica: ReplicaSpec = Field(description="Serve options of the model deployments.")

    @model_validator(mode="after")
    def _variant_first(self) -> AppSpec:
        if self.models[0].role != "variant":
            raise ValueError("models: the first model must be a variant")
        return self

    def variants(self) -> list[ModelEntry]:
        return [m for m in self.models if m.role == "variant"]

    def shadows(self) -> list[ModelEntry]:
        return [m for m in self.models if m.role == "shadow"]


class ModelSpec(Contract):
    """One model deployment's (or inline model's) arguments."""

    variant: str = Field(description="The variant (or shadow) this deployment scores for.")
    run_dir: RunLocation = Field(description="Where every node finds the model's run.")
    namespace: str = Field(description="Ray namespace of the app's actors (its monitor, the traffic controller).")
    batching: BatchingConfig | None = Field(
        None, description="Dynamic batching of concurrent requests; unset: each scored alone."
    )
    monitor: str | None = Field(None, description="The variant monitor actor's name; unset: not monitored.")
    features: FeaturesSpec | None = Field(None, description="Online features joined to `entities` requests.")
    watch: Watch | None = Field(None, description="Polls the registry alias the model follows; unset: a fixed model.")
    canary_controller: str | None = Field(
        None, description="The traffic controller's name, on the canary variant that follows an alias."
    )


class VariantSpec(Contract):
    """A variant as the router splits traffic to it."""

    name: str = Field(description="The variant's name.")
    weight: float = Field(ge=0, description="Relative traffic share.")
    model_version: str = Field(description="The model it serves (NAME/VERSION or a run id), part of the traffic plan.")


class ShadowSpec(Contract):
    """A shadow as the router mirrors traffic to it."""

    name: str = Field(description="The shadow's name.")
    model_version: str = Field(description="The model it serves (NAME/VERSION or a run id).")
    max_in_flight: int = Field(
        4096,
        ge=1,
        description="Copies waiting for this shadow per router replica; beyond it copies are dropped and counted.",
    )


class RouterSpec(Contract):
    """The router deployment's arguments."""

    app: str = Field(description="The Serve application's name.")
    namespace: str = Field(description="Ray namespace of the app's actors.")
    state_dir: str = Field(description="The app's serving state (traffic.json, events.jsonl): a path or URI.")
    variants: list[VariantSpec] = Field(
        min_length=1, description="The variants, in the config's order (the first answers when no weight applies)."
    )
    shadow: list[ShadowSpec] = Field(default_factory=list, description="The shadows.")
    sticky_key: str | None = Field(None, description="Input column whose value pins a caller to one variant.")
    canary: CanaryConfig | None = Field(
        None, description="The canary section; the traffic controller runs its schedule."
    )
    app_monitor: str | None = Field(None, description="The app monitor actor's name (GET /monitoring asks it).")
    request_log: RequestLogSpec | None = Field(
        None, description="Where and how requests are logged; unset: not logged."
    )
    max_batch_rows: int = Field(ge=1, description="Most rows one request may carry (more: 422).")
    route_prefix: str = Field("/", description="The app's HTTP path prefix.")
    request_timeout_s: float = Field(gt=0, description="A variant slower than this answers 504.")
    inline: dict[str, ModelSpec] | None = Field(None, description="Models scored in the router replica itself.")


class Reply(TypedDict):
    """A model deployment's answer to one request (`ModelServer.predict`), which the router turns into the
    HTTP response. A TypedDict, checked by mypy but not validated at run time: it is on the request path,
    whose in-process budget is a fraction of a millisecond (benchmarks/README.md, issue 20), and the router
    answers it as the typed HTTP schema in `raymlops.serving.api` documents."""

    status: int
    body: dict[str, Any]
    model: NotRequired[str]  # the version that answered (the traffic controller counts it for the canary)
