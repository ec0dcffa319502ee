"""The `serving` section: variants, shadows, canary, batching, autoscaling, request log."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from raymlops.config.base import MODEL_URI, Issue, Strict

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


def _model_ref(v: str | None) -> str | None:
    """A 'models:...' reference must be a registry URI; anything else is a run id or run directory."""
    if v is not None and v.startswith("models:") and not MODEL_URI.fullmatch(v):
        raise ValueError(f"got {v!r}; expected 'models:/NAME@ALIAS' or 'models:/NAME/VERSION'")
    return v


ModelRef = Annotated[str | None, AfterValidator(_model_ref)]


class VariantConfig(Strict):
    """A model taking a share of the traffic (A/B testing)."""

    name: str = Field(pattern=_NAME, description="Variant name, returned in every response as 'variant'.")
    model: ModelRef = Field(
        None,
        description="'models:/NAME@ALIAS', 'models:/NAME/VERSION', a run id or a run "
        "directory; unset: the run being deployed.",
    )
    weight: float = Field(1, ge=0, description="Relative share of traffic.")


class ShadowConfig(Strict):
    """A model that scores a copy of every request; its answers are logged, never returned."""

    name: str = Field(pattern=_NAME, description="Shadow name, distinct from every variant's.")
    model: ModelRef = Field(None, description="Same forms as a variant's model.")
    max_in_flight: int = Field(
        4096,
        ge=1,
        description="Copies waiting for this shadow per router replica; beyond it copies are skipped and counted.",
    )


class RollbackConfig(Strict):
    """When a canary is rolled back (its weight back to 0): judged once an interval has `min_requests` canary
    requests."""

    error_rate: float | None = Field(0.02, ge=0, le=1, description="Roll back above this share of 5xx answers.")
    p99_ms: float | None = Field(None, gt=0, description="Roll back above this p99 latency (ms, at the router).")
    min_requests: int = Field(20, ge=1, description="Canary requests an interval needs before it is judged.")


class CanaryConfig(Strict):
    """A variant whose share of traffic steps up on a schedule while it stays healthy."""

    variant: str = Field(description="The variant whose weight steps up.")
    steps: list[float] = Field(min_length=1, description="Percent of traffic at each step, increasing, up to 100.")
    interval_s: float = Field(60, gt=0, description="Seconds per step.")
    rollback_on: RollbackConfig = Field(default_factory=RollbackConfig, description="What rolls the canary back.")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[float]) -> list[float]:
        if any(not 0 < s <= 100 for s in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"got {v}; expected increasing percentages in (0, 100]")
        return v


class BatchingConfig(Strict):
    """Dynamic batching: requests queued at a replica are scored in one model call."""

    max_batch_size: int = Field(64, ge=1, description="Most requests one model call scores together.")
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, description="How long a batch waits to fill; 0 takes what is queued (no added latency when idle)."
    )


class AutoscalingConfig(Strict):
    """Ray Serve autoscaling of each model deployment (instead of a fixed num_replicas)."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas (it also starts with this many, at least 1).")
    max_replicas: int = Field(4, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(8, gt=0, description="Requests in flight per replica to aim for.")
    upscale_delay_s: float = Field(
        10, ge=0, description="How long load must stay above target before replicas are added."
    )
    downscale_delay_s: float = Field(
        60, ge=0, description="How long load must stay below target before replicas are removed."
    )


class RequestLogConfig(Strict):
    """The log of served requests and answers (Parquet): monitoring's late labels and skew checks read it."""

    path: str | None = Field(
        None,
        description="Directory (or URI) for the Parquet log, partitioned by date; default <storage>/request_log/<app>.",
    )
    sample_rate: float = Field(1.0, ge=0, le=1, description="Share of requests logged.")
    flush_s: float = Field(1.0, gt=0, description="Largest delay before buffered rows are written.")
    max_buffer_rows: int = Field(
        100_000, ge=1, description="Rows held in memory; beyond it rows are dropped and counted, requests never wait."
    )


class ServingConfig(Strict):
    """The HTTP endpoint (Ray Serve): model replicas, traffic split across variants, shadows and a canary."""

    app_name: str | None = Field(None, description="Serve application name; defaults to the pipeline name.")
    route_prefix: str = Field("/", description="HTTP route prefix, e.g. /churn.")
    host: str = Field("127.0.0.1", description="Bind address of the HTTP proxy.")
    ingress: Literal["proxy", "haproxy"] = Field(
        "proxy",
        description="What takes HTTP requests: Serve's Python proxy, or HAProxy in front of replicas "
        "that answer HTTP themselves (Serve's direct ingress and throughput-optimized mode; "
        "~8x lower per-request floor here, needs the haproxy binary). Cluster-wide: applied "
        "when raymlops starts Ray; a cluster must be started with it (see README).",
    )
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the proxy.")
    grpc_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Also serve raymlops.ModelServer/Predict over "
        "gRPC (Serve's gRPC proxy) on this port; "
        "clients name the app in the 'application' "
        "metadata. Off by default.",
    )
    num_replicas: int = Field(1, ge=1, description="Model replicas per variant (unless autoscaling is set).")
    num_cpus: float = Field(0.5, ge=0, description="CPUs per model replica.")
    max_ongoing_requests: int | None = Field(
        None, ge=1, description="Per model replica; default max(128, 2 x batching.max_batch_size)."
    )
    variants: list[VariantConfig] | None = Field(
        None, min_length=1, description="Models splitting the traffic by weight; default one."
    )
    sticky_key: str | None = Field(None, description="Input column whose value always picks the same variant.")
    shadow: list[ShadowConfig] = Field(
        default_factory=list, description="Models that get a copy of every request; their answers are only logged."
    )
    canary: CanaryConfig | None = Field(
        None, description="Step a variant's share of traffic up, with automatic rollback."
    )
    batching: BatchingConfig | None = Field(None, description="Dynamic batching inside model replicas.")
    autoscaling: AutoscalingConfig | None = Field(None, description="Autoscale model replicas instead of num_replicas.")
    request_log: RequestLogConfig | None = Field(
        None, description="Log requests and answers (needed by monitoring.performance and monitoring.skew)."
    )
    request_timeout_s: float = Field(
        30, gt=0, description="The router answers 504 (an error for the canary) when a variant takes longer."
    )
    router_replicas: int = Field(
        1,
        ge=1,
        description="Router replicas when the model runs in its own deployments (several variants or a shadow).",
    )
    start_timeout_s: float = Field(
        300,
        gt=0,
        description="Deploying fails (and the app is removed) if it is not "
        "running by then, e.g. when replicas need more CPUs than "
        "the cluster has.",
    )
    max_batch_rows: int = Field(10_000, ge=1, description="Largest 'instances' list accepted by /predict.")
    features: bool = Field(
        False,
        description="Accept entity keys ({'entities': [...]}) and fetch the "
        "training.dataset features from the online store.",
    )
    model: str | None = Field(
        None,
        description="Serve a registered model, 'models:/NAME@ALIAS' or "
        "'models:/NAME/VERSION', instead of the run just trained.",
    )
    reload_seconds: float = Field(
        10,
        gt=0,
        description="How often replicas check whether the served alias moved; they swap to the new version in place.",
    )

    @field_validator("model")
    @classmethod
    def _model_uri(cls, v: str | None) -> str | None:
        if v is not None and not MODEL_URI.fullmatch(v):
            raise ValueError(f"got {v!r}; expected 'models:/NAME@ALIAS' or 'models:/NAME/VERSION'")
        return v

    @field_validator("route_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f'got "{v}"; route_prefix must start with "/"')
        if len(v) > 1 and v.endswith("/"):
            raise ValueError(f'got "{v}"; route_prefix must not end with "/"')
        return v


def serving_issues(s: ServingConfig | None) -> list[Issue]:
    """Checks across the serving section: unique names, weights, the canary's variant, ports, batching."""
    if s is None:
        return []
    out: list[Issue] = []
    names = [v.name for v in s.variants] if s.variants else ["default"]  # one implicit variant otherwise
    for i, name in enumerate(names if s.variants else []):
        if names.index(name) != i:
            out.append((("serving", "variants", i, "name"), f"variant {name!r} is declared twice"))
    if s.variants and not any(v.weight > 0 for v in s.variants):
        out.append((("serving", "variants"), "at least one variant needs a weight above 0"))
    for i, sh in enumerate(s.shadow):
        if sh.name in names or [x.name for x in s.shadow].index(sh.name) != i:
            out.append((("serving", "shadow", i, "name"), f"{sh.name!r} is already a variant or shadow name"))
    if s.canary is not None:
        if s.canary.variant not in names:
            out.append((("serving", "canary", "variant"), f"unknown variant {s.canary.variant!r}; defined: {names}"))
        elif not any(v.weight > 0 for v in s.variants or [] if v.name != s.canary.variant):
            out.append(
                (
                    ("serving", "canary"),
                    "a canary needs another variant with a weight above 0 to take the rest of the traffic",
                )
            )
    if s.grpc_port is not None and s.grpc_port == s.port:
        out.append((("serving", "grpc_port"), f"must differ from serving.port, got {s.grpc_port} for both"))
    if s.grpc_port is not None and s.ingress == "haproxy":
        out.append(
            (
                ("serving", "grpc_port"),
                "needs ingress: proxy; with gRPC on, Serve writes HTTP/2 settings "
                "into HAProxy's config that HAProxy 2.6 (Debian 12's) refuses",
            )
        )
    if s.batching and s.max_ongoing_requests is not None and s.max_ongoing_requests < s.batching.max_batch_size:
        out.append(
            (
                ("serving", "max_ongoing_requests"),
                f"{s.max_ongoing_requests} is below batching.max_batch_size {s.batching.max_batch_size}: "
                "a replica would never receive enough requests to fill a batch",
            )
        )
    a = s.autoscaling
    if a is not None and a.min_replicas > a.max_replicas:
        out.append(
            (("serving", "autoscaling", "min_replicas"), f"{a.min_replicas} is above max_replicas {a.max_replicas}")
        )
    return out
