"""`raymlops k8s render`: every example config's manifests conform to KubeRay v1's field structure
(raymlops/pipeline/kuberay_v1.json), carry no secret values, and the checker refuses what KubeRay would."""

from __future__ import annotations

import copy

import pytest
import yaml

from raymlops.config import load_config
from raymlops.pipeline.k8s import ManifestError, check, render, schema, serving_cpus, training_cpus
from tests.conftest import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
SERVE = {
    "proxy_location": "EveryNode",
    "http_options": {"host": "127.0.0.1", "port": 8000},
    "applications": [
        {
            "name": "app",
            "route_prefix": "/churn",
            "import_path": "raymlops.serving.app:build_app",
            "args": {"app": "app"},
            "deployments": [{"name": "Router", "num_replicas": 1}],
        }
    ],
}


def _docs(paths) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in paths}


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_example_renders_conforming_manifests(config, tmp_path):
    cfg = load_config(config)
    rel = str(config.relative_to(ROOT))
    docs = _docs(
        render(
            cfg,
            rel,
            "registry.example/raymlops:1.0",
            tmp_path,
            namespace="ml",
            serve_config=SERVE if cfg.serving else None,
        )
    )
    for name, doc in docs.items():
        assert check(doc) == [], name
        assert doc["metadata"]["namespace"] == "ml"
        text = (tmp_path / name).read_text()
        assert "secretKeyRef" in text and "value:" not in text  # settings by reference only, no literal values
    job = docs[next(n for n in docs if n.endswith("-rayjob.yaml") and "retrain" not in n)]["spec"]
    assert job["entrypoint"] == f"python jobs/run_pipeline.py {rel}"
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] > 0
    head = job["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    workers = job["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] * int(workers["rayStartParams"]["num-cpus"]) >= training_cpus(cfg)
    assert any(n.endswith("-rayservice.yaml") for n in docs) == (cfg.serving is not None)
    assert any("retrain" in n for n in docs) == bool(cfg.monitoring and cfg.monitoring.retrain)
    for name, doc in docs.items():
        if doc["kind"] == "RayService":
            spec = doc["spec"]
            served = yaml.safe_load(spec["serveConfigV2"])
            assert served["http_options"] == {"host": "0.0.0.0", "port": 8000}
            worker = spec["rayClusterConfig"]["workerGroupSpecs"][0]
            probe = worker["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
            assert probe["path"] == f"{cfg.serving.route_prefix.rstrip('/')}/health" and probe["port"] == 8000
            assert worker["replicas"] * int(worker["rayStartParams"]["num-cpus"]) >= serving_cpus(cfg)
        if "retrain" in name:
            assert doc["spec"]["suspend"] is True and doc["spec"]["entrypoint"] == f"raymlops retrain {rel}"
            assert doc["spec"]["activeDeadlineSeconds"] == int(cfg.monitoring.retrain.timeout_s)


def test_the_checker_refuses_what_kuberay_would(tmp_path):
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    (path,) = [p for p in render(cfg, "configs/quickstart.yaml", "r/raymlops:1", tmp_path) if "rayjob" in p.name]
    good = yaml.safe_load(path.read_text())
    cases = [
        (
            ("spec", "rayClusterSpec", "headGroupSpec", "rayStartParams", "num-cpus"),
            0,
            "rayStartParams.num-cpus: must be a string",
        ),
        (("spec", "rayClusterSpec", "workerGroupSpecs", 0, "replicas"), "2", "replicas: must be an integer"),
        (("spec", "submissionMode"), "Batch", "submissionMode: must be one of"),
        (("spec", "entrypoints"), "x", "spec.entrypoints: unknown field of RayJob"),
        (("metadata", "name"), "Churn_Run", "metadata.name: must be a DNS-1035 label"),
        (("apiVersion",), "ray.io/v1alpha1", "apiVersion: must be ray.io/v1"),
    ]
    for keys, value, says in cases:
        doc = copy.deepcopy(good)
        target = doc
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
        got = check(doc)
        assert any(says in p for p in got), (keys, got)
    doc = copy.deepcopy(good)
    del doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]
    assert any("groupName: required by WorkerGroupSpec" in p for p in check(doc))
    assert schema()["_source"]["tag"].startswith("v1.")


def test_bad_arguments_are_one_line_errors(tmp_path):
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    with pytest.raises(ManifestError, match="--image must be an image reference"):
        render(cfg, "configs/quickstart.yaml", "", tmp_path)
    with pytest.raises(ManifestError, match="--worker-cpus must be an integer >= 1, got 0"):
        render(cfg, "configs/quickstart.yaml", "r/x:1", tmp_path, worker_cpus=0)
    assert not list(tmp_path.iterdir())


def test_sizing_follows_the_training_path_and_refuses_what_cannot_schedule(tmp_path):
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", ["training.model.cpus_per_trial=3"])  # 3 trials at once
    (job,) = [yaml.safe_load(p.read_text()) for p in render(cfg, "c.yaml", "r/x:1", tmp_path) if "rayjob" in p.name]
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == 3 and workers["rayStartParams"]["num-cpus"] == "4"  # 9 CPUs in 4-CPU pods
    big = load_config(ROOT / "configs" / "quickstart.yaml", ["training.model.cpus_per_trial=8"])
    with pytest.raises(ManifestError, match="one training task needs 8 CPUs but a worker pod has 4"):
        render(big, "c.yaml", "r/x:1", tmp_path / "big")
    gpu = load_config(ROOT / "configs" / "quickstart.yaml", ["training.model.device=cuda"])
    with pytest.raises(ManifestError, match="needs a GPU worker group"):
        render(gpu, "c.yaml", "r/x:1", tmp_path / "gpu")


def test_long_names_stay_distinct_and_overrides_reach_the_job(tmp_path):
    name = "customer-churn-prediction-model-for-emea-region"  # 47 characters
    cfg = load_config(ROOT / "configs" / "monitoring.yaml", [f"name={name}"])
    docs = _docs(
        render(
            cfg,
            "configs/monitoring.yaml",
            "r/x:1",
            tmp_path,
            serve_config=SERVE,
            overrides=["training.tune.num_samples=2"],
        )
    )
    names = [d["metadata"]["name"] for d in docs.values()]
    assert len(set(names)) == 3 and all(len(n) <= 47 for n in names), names
    assert sorted(n.rsplit("-", 1)[1] for n in names) == ["retrain", "run", "serve"]
    for d in docs.values():
        if d["kind"] == "RayJob":
            assert d["spec"]["entrypoint"].endswith(" --set training.tune.num_samples=2")


def test_operator_rules_and_names_are_checked(tmp_path):
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    with pytest.raises(ManifestError, match="--deadline-s must be an integer >= 1, got 0"):
        render(cfg, "c.yaml", "r/x:1", tmp_path, deadline_s=0)
    with pytest.raises(ManifestError, match="--namespace must be a DNS-1123 name"):
        render(cfg, "c.yaml", "r/x:1", tmp_path, namespace="My_NS")
    (path,) = render(cfg, "c.yaml", "r/x:1", tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = 5
    doc["spec"]["activeDeadlineSeconds"] = 0
    got = check(doc)
    assert any("minReplicas <= replicas <= maxReplicas" in p for p in got)
    assert any("activeDeadlineSeconds: must be > 0" in p for p in got)
