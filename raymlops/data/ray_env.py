"""Connects to (or starts) Ray for a pipeline."""

from __future__ import annotations

import logging
import os

# Settings every raymlops process needs, wherever Ray starts it. A local Ray's workers inherit the
# driver's environment; on a cluster, workers on other nodes only see these through the job's runtime_env.
SETTINGS = {
    # Train V2's controller polls its workers every 2 s by default; short runs spend most of it waiting.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # Ray Data's V2 Parquet reader (Ray 2.60's default) starts 32 footer-reader actors per read: ~11x slower
    # than the V1 reader on small inputs on 2 cores (benchmarks/read_bench.py). Set it to 1 to opt back in.
    "RAY_DATA_USE_DATASOURCE_V2": "0",
    # Intermediate (per-round) results may lack metrics xgboost cannot compute per round (f1, r2).
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Save the experiment state every 2 s (default: >= 10 s) so --resume loses at most that much progress.
    "TUNE_GLOBAL_CHECKPOINT_S": "2",
    # alibi-detect imports transformers, which advises on every import that no deep-learning framework is
    # installed (none is needed: the detectors used here are numpy/scipy).
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}
# Passed on as set in the driver: where state lives and how to reach it (storage endpoint and credentials).
PASSED = (
    "RAYMLOPS_STORAGE",
    "RAYMLOPS_STORAGE_OPTIONS",
    "MLFLOW_TRACKING_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


def worker_env() -> dict[str, str]:
    """The environment variables a cluster's workers get (runtime_env ``env_vars``): raymlops' settings as
    this process has them, and the storage/tracking variables set here. Keys the Ray job already sets are
    left to it (Ray refuses to merge a key set twice)."""
    env = {k: os.environ.get(k, v) for k, v in SETTINGS.items()}
    env.update({k: os.environ[k] for k in PASSED if os.environ.get(k)})
    job = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if job:
        import json

        taken = (json.loads(job).get("runtime_env") or {}).get("env_vars") or {}
        env = {k: v for k, v in env.items() if k not in taken}
    return env


def ingress_env(ingress: str) -> dict[str, str]:
    """The cluster-wide Serve settings of ``serving.ingress`` (read by Serve's controller, proxies and replicas
    when they start, so they must be in the environment Ray starts with).

    ``haproxy``: HAProxy (C) takes the HTTP connections and forwards them to ingress replicas that answer
    HTTP themselves (direct ingress), with Serve's throughput-optimized settings (user code on the replica's
    own event loop, gRPC between deployments, buffered request-path logs). A constant-answer deployment
    answered at p50 1.14 ms this way against 7.28 ms through Serve's Python proxy on a 2-core machine
    (benchmarks/serve_bench.py, serve-noop).

    Raises:
        SetupError: the haproxy binary is not on PATH.
    """
    if ingress != "haproxy":
        return {}
    import shutil

    from raymlops.errors import SetupError

    exe = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        raise SetupError(
            "serving.ingress: haproxy needs the haproxy binary (Debian/Ubuntu: apt-get install "
            "haproxy; macOS: brew install haproxy), or use ingress: proxy"
        )
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": exe,
    }


def ensure_ray(ray_cfg, address: str | None = None, quiet: bool = True, ingress: str = "proxy") -> bool:
    """Initialises Ray unless it already is; returns True if this call started a local Ray (with the
    Serve settings of ``ingress``, see `ingress_env`).

    Connecting to a cluster passes ``worker_env()`` to every worker of this job (tasks, actors, Serve
    replicas, Tune trials), on every node."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    for k, v in SETTINGS.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.expanduser("~/.cache/raymlops/numba"))  # per node
    _configure_ray_data(quiet)
    _mute_known_notices()
    if ray.is_initialized():
        return False
    address = address or ray_cfg.address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"namespace": ray_cfg.namespace, "logging_level": logging.WARNING if quiet else logging.INFO}
    if address:
        ray.init(address=address, runtime_env={"env_vars": worker_env()}, **kwargs)
        return False
    if ray_cfg.num_cpus:
        kwargs["num_cpus"] = ray_cfg.num_cpus
    if ray_cfg.object_store_memory_mb:
        kwargs["object_store_memory"] = ray_cfg.object_store_memory_mb * 1024 * 1024
    # The dashboard hosts the State API, which Ray Train's placement-group cleaner needs: without it every
    # finished Train run leaks its workers' CPUs and later trials wait for ever.
    # address="local": always a new local Ray, never a cluster that `ray start` left in /tmp/ray on this machine.
    # The ingress settings reach the local raylet (and so Serve) through this process's environment, which
    # is restored afterwards: a later local Ray of this process starts with its own config's.
    serve_env = ingress_env(ingress)
    saved = {k: os.environ.get(k) for k in serve_env}
    os.environ.update(serve_env)
    try:
        ray.init(address="local", include_dashboard=True, log_to_driver=not quiet, **kwargs)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return True


def job_client(address: str | None = None):
    """A ``JobSubmissionClient`` for ``address``, else for the cluster this process is connected to (asked
    through its GCS for the dashboard's address: "auto" looks for a cluster file in this machine's /tmp/ray,
    which a worker node has none of)."""
    import ray
    from ray.job_submission import JobSubmissionClient

    if not address and ray.is_initialized():
        address = ray.get_runtime_context().gcs_address
    return JobSubmissionClient(address or "auto")


# Ray's notices that say nothing about this run, printed on every command: the token-auth notice a local Ray
# prints at start (raymlops' local Ray is token-authenticated on purpose; clusters set RAY_AUTH_MODE), and
# "Progress bars disabled", which quiet mode causes itself. Muted here once, at their loggers (private modules'
# names: raymlops.data._compat.NOTICE_LOGGERS).
# Serve's driver-side INFO ("Started Serve in namespace", "Connecting to existing Serve app ... options will not
# be applied"): raymlops says what it deployed and where itself.
_SERVE_DRIVER = "ray.serve"


class _ServeDriverInfo(logging.Filter):
    """Serve re-configures its logger's level and handlers when it starts, so this filter on the logger
    itself (which Serve leaves alone) holds its driver-side INFO back."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO


class _BusyCpusNotice(logging.Filter):
    """Ray Data warns "the Ray cluster currently does not have any available CPUs. The Dataset job will
    hang..." whenever a Dataset starts while every CPU is taken at that instant. In raymlops' pipelines they
    are taken by its own work that ends (Tune trials, shuffle tasks of a feature join, a replica starting),
    so the job waits, it does not hang; the notice reached users of the quickstart and feature example
    depending on timing alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not have any available CPUs" not in record.getMessage()


def _mute_known_notices() -> None:
    from raymlops.data._compat import NOTICE_LOGGERS

    for name in NOTICE_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name, kind in ((_SERVE_DRIVER, _ServeDriverInfo), ("ray.data.dataset", _BusyCpusNotice)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


def _configure_ray_data(quiet: bool) -> None:
    """The Parquet reader per $RAY_DATA_USE_DATASOURCE_V2 (read when ray.data was imported, maybe before
    ensure_ray); quiet: no INFO log per execution and no progress bars, to keep the CLI readable."""
    from ray.data.context import DataContext

    ctx = DataContext.get_current()
    ctx.use_datasource_v2 = os.environ.get("RAY_DATA_USE_DATASOURCE_V2", SETTINGS["RAY_DATA_USE_DATASOURCE_V2"]) == "1"
    if quiet:
        ctx.enable_progress_bars = False
        for name in ("ray.data", "ray.tune", "ray.train", "ray.serve"):
            logging.getLogger(name).setLevel(logging.WARNING)
