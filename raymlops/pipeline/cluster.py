"""What a multi-node cluster needs, checked before any work: storage every node reaches, an MLflow server
rather than the embedded SQLite store, and Redis rather than the SQLite online store."""

from __future__ import annotations

import os
import secrets

from raymlops.config.models import PipelineConfig
from raymlops.errors import SetupError
from raymlops.storage import open_storage

TRACKING_HINT = "`raymlops tracking-server --storage s3://BUCKET/PREFIX` starts one"


def alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def check_cluster(cfg: PipelineConfig, online: bool | None = None) -> None:
    """Raises SetupError (one line: what to set instead) when Ray spans several nodes and ``cfg`` keeps state
    where only one node can reach it. A local ``storage`` path passes when every node sees it (a shared
    mount): a marker written here is looked for from a task on each node. ``online``: the online store is
    used (default: when serving fetches features)."""
    nodes = alive_nodes()
    if len(nodes) < 2:
        return
    n = len(nodes)
    if cfg.registry.enabled:
        from raymlops.registry import tracking_uri

        try:
            uri = tracking_uri(cfg.registry, open_storage(cfg))
        except Exception as e:  # object-store storage with no tracking URI: the same advice
            raise SetupError(f"on this {n}-node cluster {e}") from None
        if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
            raise SetupError(
                f"on this {n}-node cluster the embedded MLflow store ({uri}) is one machine's file: set "
                f"registry.tracking_uri or $MLFLOW_TRACKING_URI to an MLflow server ({TRACKING_HINT})"
            )
    f = cfg.features
    if online is None:  # serving fetches features online; `features materialize/serve` say so themselves
        online = cfg.serving is not None and bool(cfg.serving.features)
    if f is not None and online and f.online_store.type == "sqlite":
        raise SetupError(
            f"on this {n}-node cluster the SQLite online store is one machine's file: set "
            "features.online_store to {type: redis, url: redis://HOST:6379/0}"
        )
    paths = {"storage": cfg.storage}
    if f is not None and f.offline_store.path:
        paths["features.offline_store.path"] = f.offline_store.path
    if cfg.serving is not None and cfg.serving.request_log is not None and cfg.serving.request_log.path:
        paths["serving.request_log.path"] = cfg.serving.request_log.path
    for key, path in paths.items():
        if "://" not in path or path.startswith("file://"):
            blind = _nodes_that_cannot_see(open_storage(path), nodes)
            if blind:
                raise SetupError(
                    f"{key} {open_storage(path).uri} is on this machine's disk, which {len(blind)} of the "
                    f"{n} nodes cannot see ({', '.join(blind)}): set {key} to s3://BUCKET/PREFIX (or "
                    "gs://...), or to a directory every node mounts"
                )


def _nodes_that_cannot_see(store, nodes: list[dict]) -> list[str]:
    """The addresses (and ids) of the nodes on which a marker written into ``store`` here is not there."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    name = f".raymlops-probe-{secrets.token_hex(6)}"
    store.makedirs()
    marker = store.local_path(name)
    marker.write_text(name)

    @ray.remote(num_cpus=0, max_retries=0)
    def sees(path: str) -> bool:
        return os.path.isfile(path)

    try:
        refs = {
            f"{n['NodeManagerAddress']}:{n['NodeID'][:8]}": sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(marker))
            for n in nodes
        }
        return [node for node, ref in refs.items() if not ray.get(ref, timeout=120)]
    finally:
        marker.unlink(missing_ok=True)


def tracking_server_command(
    storage: str, backend_store_uri: str | None, host: str, port: int, workers: int = 1
) -> tuple[list[str], dict, str]:
    """(argv, environment, URL) of an MLflow tracking server that keeps artifacts under ``<storage>/mlflow``
    and serves them to clients (they need no storage credentials): what a cluster's runs record to."""
    import sys
    from pathlib import Path

    store = open_storage(storage)
    artifacts = store.url("mlflow") if not store.local else str(store.local_path("mlflow"))
    if backend_store_uri is None:
        db = Path(os.path.expanduser("~/.local/share/raymlops/tracking"))
        db.mkdir(parents=True, exist_ok=True)
        backend_store_uri = f"sqlite:///{db / 'mlflow.db'}"
    env = dict(os.environ)
    # MLflow 3's server also starts a job runner (~2.5 GiB here) that tracking does not use.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # MLflow's S3 artifact store reads its endpoint from its own variable.
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or store.options.get("endpoint_url")
    if store.scheme == "s3" and endpoint:
        env.setdefault("MLFLOW_S3_ENDPOINT_URL", endpoint)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    return cmd, env, url
