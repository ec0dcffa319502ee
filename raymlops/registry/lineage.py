"""Lineage of a registered model version: version -> run -> config -> sources and feature views."""

from __future__ import annotations

import json
import os

from raymlops.registry.models import ModelRegistry, parse_uri, version_metrics
from raymlops.registry.tracking import TAG


def lineage(uri: str, tracking_uri_: str, cache_root: str | os.PathLike) -> dict:
    """Everything recorded about where the version ``uri`` names came from."""
    parse_uri(uri)
    reg = ModelRegistry(tracking_uri_)
    bundle, mv = reg.download(uri, cache_root)
    record = json.loads((bundle / "lineage.json").read_text()) if (bundle / "lineage.json").is_file() else {}
    run = reg.client.get_run(mv.run_id) if mv.run_id else None
    tags = run.data.tags if run else {}
    return {
        "model": {
            "name": mv.name,
            "version": int(mv.version),
            "aliases": reg.aliases_of(mv.name, int(mv.version)),
            "metrics": version_metrics(mv),
            "model_key": mv.tags.get(f"{TAG}model_key"),
        },
        "mlflow_run": {
            "id": mv.run_id,
            "experiment_id": run.info.experiment_id if run else None,
            "status": run.info.status if run else None,
            "tracking_uri": tracking_uri_,
        },
        "run": {
            "id": mv.tags.get(f"{TAG}run_id") or record.get("run_id"),
            "pipeline": record.get("pipeline"),
            "config_hash": record.get("config_hash"),
            "config_file": record.get("config_file"),
            "git_commit": tags.get(f"{TAG}git.commit"),
            "git_dirty": tags.get(f"{TAG}git.dirty"),
            "packages": json.loads(tags[f"{TAG}packages"]) if f"{TAG}packages" in tags else None,
        },
        "config": (bundle / "config.yaml").read_text() if (bundle / "config.yaml").is_file() else None,
        "inputs": record.get("inputs", {}),
        "steps": record.get("steps", {}),
    }


def format_lineage(d: dict) -> str:
    """A readable tree of :func:`lineage`'s result."""
    m, r, run = d["model"], d["mlflow_run"], d["run"]
    lines = [
        f"models:/{m['name']}/{m['version']}" + (f"  @{', @'.join(m['aliases'])}" if m["aliases"] else ""),
        "  metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(m["metrics"].items())),
        f"  └─ MLflow run {r['id']} ({r['status']}) in experiment {r['experiment_id']}",
        f"     └─ raymlops run {run['id']} of pipeline {run['pipeline']}",
        f"        ├─ config {run['config_hash']}" + (f" from {run['config_file']}" if run["config_file"] else ""),
        f"        ├─ git {run['git_commit'] or '-'}" + (" (dirty)" if run["git_dirty"] == "true" else ""),
    ]
    for step, s in d["steps"].items():
        lines.append(f"        ├─ step {step}: key {s['key']}" + (" (cached)" if s["cached"] else ""))
    for name, fp in d["inputs"].get("sources", {}).items():
        lines.append(
            f"        ├─ source {name}: {fp['path']} ({fp['files']} file(s), {fp['bytes']} bytes) "
            f"sha256 {fp['sha256'][:16]}"
        )
    for view, v in d["inputs"].get("feature_views", {}).items():
        lines.append(
            f"        ├─ feature view {view}: offline version {v['version']}, fingerprint "
            f"{v['fingerprint'][:16]}, source {v['source']} sha256 {v['source_sha256'][:16]}"
        )
    lines[-1] = lines[-1].replace("├─", "└─")
    return "\n".join(lines)
