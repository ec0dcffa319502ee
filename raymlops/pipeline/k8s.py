"""KubeRay manifests (ray.io/v1) for a pipeline: a RayJob that runs it, a RayService that serves it (its
``serveConfigV2`` is the file `raymlops serve --export` writes) and, with ``monitoring.retrain``, the closed
loop's retrain job as a RayJob template.

Secret values never appear: every pod reads the storage and tracking settings (and cloud credentials) from a
Kubernetes Secret by reference. Each manifest is checked against ``kuberay_v1.json`` (the RayJob, RayService
and RayCluster spec fields of KubeRay's v1 CRDs, written down from them) before it is written.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from raymlops.config import PipelineConfig
from raymlops.errors import RaymlopsError

SCHEMA_FILE = Path(__file__).with_name("kuberay_v1.json")
WORKDIR = "/app"  # where the image (docker/Dockerfile) holds the project
SERVE_PORT = 8000  # KubeRay's serve service targets this port on every node's proxy
ENV_FROM_SECRET = ("RAYMLOPS_STORAGE", "MLFLOW_TRACKING_URI")  # required keys of the Secret
# GCS takes a key *file* (GOOGLE_APPLICATION_CREDENTIALS): use Workload Identity, or mount it yourself
OPTIONAL_SECRET = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
)
GIB_PER_CPU = 4  # memory requested per CPU of a Ray pod (KubeRay's guides size Ray pods at 2-8 GiB per CPU)
NAME = re.compile(r"[^a-z0-9-]+")


class ManifestError(RaymlopsError):
    exit_code = 2


MAX_NAME = 47  # RayJob and RayService names: DNS-1035 labels of at most 47 characters (KubeRay's validation)
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _name(base: str, suffix: str = "") -> str:
    """A DNS-1035 label (a letter first, then lower case, digits and '-') of at most MAX_NAME characters:
    ``base`` cut to leave room for ``suffix``, with a short hash of the full name when it had to be cut or
    changed, so two pipelines never share a name and a manifest's suffix always survives."""
    import hashlib

    clean = NAME.sub("-", base.lower()).strip("-")
    clean = clean if clean[:1].isalpha() else f"r-{clean}"
    room = MAX_NAME - (len(suffix) + 1 if suffix else 0)
    if clean != base or len(clean) > room:
        tag = hashlib.sha256(base.encode()).hexdigest()[:5]
        clean = f"{clean[: room - 6].rstrip('-')}-{tag}" if len(clean) > room else f"{clean}-{tag}"[:room]
    return f"{clean}-{suffix}" if suffix else clean


def _env(secret: str) -> list[dict[str, Any]]:
    required = [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}} for k in ENV_FROM_SECRET]
    optional = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k, "optional": True}}}
        for k in OPTIONAL_SECRET
    ]
    return [*required, *optional]


def _container(
    name: str,
    image: str,
    cpus: float,
    secret: str,
    ports: list[tuple[str, int]] | None = None,
    probe_path: str | None = None,
) -> dict[str, Any]:
    cpu = f"{cpus:g}"
    memory = f"{max(2, math.ceil(cpus * GIB_PER_CPU))}Gi"
    c: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "workingDir": WORKDIR,
        "env": _env(secret),
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}},
    }
    if ports:
        c["ports"] = [{"name": n, "containerPort": p} for n, p in ports]
    if probe_path:
        c["readinessProbe"] = {
            "httpGet": {"path": probe_path, "port": SERVE_PORT},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "initialDelaySeconds": 10,
        }
    return c


def _cluster(image: str, secret: str, worker_cpus: int, workers: int, probe_path: str | None = None) -> dict:
    """A RayCluster spec: a head that runs no work (num-cpus 0, as KubeRay recommends) and one worker group."""
    head_ports = [("gcs-server", 6379), ("dashboard", 8265), ("client", 10001), ("serve", SERVE_PORT)]
    return {
        "rayVersion": _ray_version(),
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {"spec": {"containers": [_container("ray-head", image, 2, secret, head_ports)]}},
        },
        "workerGroupSpecs": [
            {
                "groupName": "cpu",
                "replicas": workers,
                "minReplicas": workers,
                "maxReplicas": workers,
                "rayStartParams": {"num-cpus": str(worker_cpus)},
                "template": {
                    "spec": {
                        "containers": [_container("ray-worker", image, worker_cpus, secret, probe_path=probe_path)]
                    }
                },
            }
        ],
    }


def _ray_version() -> str:
    import ray

    return ray.__version__


def trial_cpus(cfg: PipelineConfig) -> tuple[float, float]:
    """(CPUs of one trial, CPUs of its largest single task): Ray Train workers on the data-parallel xgboost
    path, else the in-process trial's threads."""
    t = cfg.training
    if t is None:
        return 1.0, 1.0
    m = t.model
    if getattr(m, "type", None) == "xgboost" and (m.distributed == "always" or m.num_workers > 1):
        return m.num_workers * m.cpus_per_worker + 1, max(m.cpus_per_worker, 1)  # + the trial's driver
    return float(m.cpus_per_trial), float(m.cpus_per_trial)


def training_cpus(cfg: PipelineConfig) -> float:
    """CPUs the training search uses at once: concurrent trials x each trial's CPUs."""
    t = cfg.training
    if t is None:
        return 1.0
    concurrent = min(t.tune.max_concurrent_trials or t.tune.num_samples, t.tune.num_samples)
    return trial_cpus(cfg)[0] * concurrent


def _fits(cfg: PipelineConfig, worker_cpus: int) -> None:
    """Refuses a config whose single task would never schedule on a worker pod (the job would wait for its
    deadline) or that needs GPUs, which the rendered worker group does not have."""
    t = cfg.training
    if t is not None and getattr(t.model, "device", "cpu") == "cuda":
        raise ManifestError(
            "training.model.device: cuda needs a GPU worker group, which `k8s render` does not "
            "write yet; add one to the RayJob's workerGroupSpecs (nvidia.com/gpu limits) by hand"
        )
    _, task = trial_cpus(cfg)
    if task > worker_cpus:
        raise ManifestError(
            f"one training task needs {task:g} CPUs but a worker pod has {worker_cpus} "
            f"(--worker-cpus): it would never schedule"
        )
    if cfg.serving is not None and cfg.serving.num_cpus > worker_cpus:
        raise ManifestError(
            f"serving.num_cpus ({cfg.serving.num_cpus:g}) is more than a worker pod's "
            f"{worker_cpus} CPUs (--worker-cpus)"
        )


def serving_cpus(cfg: PipelineConfig) -> float:
    """CPUs the app's replicas reserve: every variant and shadow, their routers, and the monitors."""
    s = cfg.serving
    if s is None:
        return 0.0
    models = max(len(s.variants or []), 1) + len(s.shadow or [])
    replicas = (
        s.num_replicas if isinstance(s.num_replicas, int) else (s.autoscaling.max_replicas if s.autoscaling else 1)
    )
    return models * replicas * s.num_cpus + s.router_replicas * 0.5 + (1.0 if cfg.monitoring else 0.0)


def _workers(cpus: float, worker_cpus: int) -> int:
    return max(1, math.ceil(cpus / worker_cpus))


def _metadata(name: str, namespace: str, cfg: PipelineConfig, component: str) -> dict:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/name": "raymlops",
            "app.kubernetes.io/component": component,
            "raymlops.io/pipeline": _name(cfg.name),
        },
    }


def ray_job(
    cfg: PipelineConfig,
    config_path: str,
    image: str,
    namespace: str,
    secret: str,
    worker_cpus: int,
    deadline_s: int,
    retrain: bool = False,
    overrides: list[str] | None = None,
) -> dict:
    """The RayJob that runs the pipeline (or, ``retrain``, the closed loop's `raymlops retrain`), with the
    same ``--set`` overrides the manifests were rendered with."""
    sets = "".join(f" --set {shlex.quote(o)}" for o in overrides or [])
    cmd = (
        f"raymlops retrain {shlex.quote(config_path)}{sets}"
        if retrain
        else f"python jobs/run_pipeline.py {shlex.quote(config_path)}{sets}"
    )
    name = _name(cfg.name, "retrain" if retrain else "run")
    doc = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _metadata(name, namespace, cfg, "retrain" if retrain else "pipeline"),
        "spec": {
            "entrypoint": cmd,
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 3600,
            "activeDeadlineSeconds": deadline_s,
            "backoffLimit": 0,
            "rayClusterSpec": _cluster(image, secret, worker_cpus, _workers(training_cpus(cfg), worker_cpus)),
        },
    }
    if retrain:  # a template: created suspended, started by whoever runs the loop (`kubectl patch ... suspend`)
        doc["metadata"]["annotations"] = {"raymlops.io/template": "retrain: set spec.suspend to false to run it"}
        doc["spec"]["suspend"] = True
    return doc


def ray_service(
    cfg: PipelineConfig, serve_config: dict, image: str, namespace: str, secret: str, worker_cpus: int
) -> dict:
    """The RayService serving the app; ``serve_config``: the exported Serve config (`serve --export`)."""
    doc = dict(serve_config)
    doc["http_options"] = {"host": "0.0.0.0", "port": SERVE_PORT}
    prefix = cfg.serving.route_prefix.rstrip("/")
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": _metadata(_name(cfg.name, "serve"), namespace, cfg, "serving"),
        "spec": {
            "upgradeStrategy": {"type": "NewCluster"},
            "serveConfigV2": yaml.safe_dump(doc, sort_keys=False),
            "rayClusterConfig": _cluster(
                image, secret, worker_cpus, _workers(serving_cpus(cfg), worker_cpus), f"{prefix}/health"
            ),
        },
    }


# ---------------------------------------------------------------------------------------------- validation


def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def check(doc: dict, spec: dict | None = None) -> list[str]:
    """Every difference between a manifest and KubeRay v1's field structure (``kuberay_v1.json``): unknown or
    missing required fields, wrong types and values outside an enum; empty when it conforms."""
    spec = spec or schema()
    kind = doc.get("kind")
    problems: list[str] = []
    problems += _operator_rules(doc)
    if doc.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion: must be ray.io/v1, got {doc.get('apiVersion')!r}")
    if kind not in ("RayJob", "RayService"):
        return problems + [f"kind: must be RayJob or RayService, got {kind!r}"]
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or len(name) > MAX_NAME or not DNS_1035.match(name):
        problems.append(f"metadata.name: must be a DNS-1035 label of at most {MAX_NAME} characters, got {name!r}")
    problems += _check(doc.get("spec"), kind, spec, "spec")
    return problems


def _operator_rules(doc: dict) -> list[str]:
    """What KubeRay's validation refuses beyond the CRD's types (kuberay_v1.json's notes)."""
    spec, out = doc.get("spec") or {}, []
    for key in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        if key in spec and isinstance(spec[key], int) and spec[key] <= 0:
            out.append(f"spec.{key}: must be > 0, got {spec[key]}")
    if (
        (spec.get("suspend") or spec.get("ttlSecondsAfterFinished"))
        and doc.get("kind") == "RayJob"
        and not spec.get("shutdownAfterJobFinishes")
    ):
        out.append("spec.shutdownAfterJobFinishes: must be true with suspend or ttlSecondsAfterFinished")
    cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or {}
    for i, g in enumerate(cluster.get("workerGroupSpecs") or []):
        lo, hi, n = g.get("minReplicas", 0), g.get("maxReplicas", 2**31 - 1), g.get("replicas", 0)
        if isinstance(lo, int) and isinstance(hi, int) and isinstance(n, int) and not lo <= n <= hi:
            out.append(f"workerGroupSpecs[{i}]: needs minReplicas <= replicas <= maxReplicas, got {lo}, {n}, {hi}")
    ns = (doc.get("metadata") or {}).get("namespace")
    if ns is not None and (not isinstance(ns, str) or len(ns) > 63 or not DNS_1123.match(ns)):
        out.append(f"metadata.namespace: must be a DNS-1123 label, got {ns!r}")
    return out


def _check(value: Any, ref: str, spec: dict, where: str) -> list[str]:
    fields = spec[ref]
    if not isinstance(value, dict):
        return [f"{where}: must be an object, got {type(value).__name__}"]
    out = [f"{where}.{k}: unknown field of {ref}" for k in value if k not in fields]
    out += [f"{where}.{k}: required by {ref}" for k, f in fields.items() if f.get("required") and k not in value]
    for k, v in value.items():
        if k in fields:
            out += _check_field(v, fields[k], spec, f"{where}.{k}")
    return out


TYPES = {"string": str, "boolean": bool, "object": dict, "map": dict, "array": list}


def _check_field(v: Any, f: dict, spec: dict, where: str) -> list[str]:
    t = f["type"]
    if t in ("integer", "number"):
        ok = (int, float) if t == "number" else int
        if not isinstance(v, ok) or isinstance(v, bool):
            return [f"{where}: must be {'an integer' if t == 'integer' else 'a number'}, got {v!r}"]
    elif t in ("quantity", "intOrString"):
        if not isinstance(v, (int, str)) or isinstance(v, bool):
            return [f"{where}: must be an integer or a string, got {v!r}"]
    elif not isinstance(v, TYPES[t]):
        return [f"{where}: must be {t}, got {type(v).__name__}"]
    allowed = f.get("enum") or f.get("allowed")  # 'allowed': the operator's validation, where the CRD has no enum
    if allowed and v not in allowed:
        return [f"{where}: must be one of {allowed}, got {v!r}"]
    if t == "map" and f.get("values") == "string":
        return [f"{where}.{k}: must be a string, got {x!r}" for k, x in v.items() if not isinstance(x, str)]
    if "ref" in f:
        items = v if t == "array" else [v]
        return [
            p
            for i, item in enumerate(items)
            for p in _check(item, f["ref"], spec, f"{where}[{i}]" if t == "array" else where)
        ]
    return []


# ---------------------------------------------------------------------------------------------- render


def render(
    cfg: PipelineConfig,
    config_path: str,
    image: str,
    out: str | Path,
    namespace: str = "default",
    secret: str = "raymlops-env",
    worker_cpus: int = 4,
    deadline_s: int = 86_400,
    serve_config: dict | None = None,
    overrides: list[str] | None = None,
) -> list[Path]:
    """Writes the manifests under ``out`` (one YAML file each); returns their paths.

    Raises:
        ManifestError: a manifest that does not conform to KubeRay v1 (a bug here), or a bad argument.
    """
    if not image or any(c.isspace() for c in image):
        raise ManifestError(f"--image must be an image reference such as registry/raymlops:1.0, got {image!r}")
    if worker_cpus < 1:
        raise ManifestError(f"--worker-cpus must be an integer >= 1, got {worker_cpus}")
    if deadline_s < 1:
        raise ManifestError(f"--deadline-s must be an integer >= 1, got {deadline_s}")
    for flag, value in (("--namespace", namespace), ("--secret", secret)):
        if len(value) > 63 or not DNS_1123.match(value):
            raise ManifestError(f"{flag} must be a DNS-1123 name (lower case letters, digits, '-'), got {value!r}")
    _fits(cfg, worker_cpus)
    docs = {
        f"{_name(cfg.name)}-rayjob.yaml": ray_job(
            cfg, config_path, image, namespace, secret, worker_cpus, deadline_s, overrides=overrides
        )
    }
    if serve_config is not None:
        docs[f"{_name(cfg.name)}-rayservice.yaml"] = ray_service(
            cfg, serve_config, image, namespace, secret, worker_cpus
        )
    if cfg.monitoring is not None and cfg.monitoring.retrain is not None:
        docs[f"{_name(cfg.name)}-retrain-rayjob.yaml"] = ray_job(
            cfg,
            config_path,
            image,
            namespace,
            secret,
            worker_cpus,
            max(1, int(cfg.monitoring.retrain.timeout_s)),
            True,
            overrides,
        )
    spec = schema()
    for name, doc in docs.items():
        problems = check(doc, spec)
        if problems:
            raise ManifestError(f"{name}: " + "; ".join(problems))
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in docs.items():
        path = target / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(
            f"# Written by `raymlops k8s render`; apply with `kubectl apply -f {name}`.\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )
        tmp.replace(path)
        written.append(path)
    return written
