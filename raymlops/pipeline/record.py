"""What a pipeline run records in MLflow (tags, params, metrics, trials, datasets, artifacts) and how its
model is registered and promoted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raymlops.artifacts import run as layout
from raymlops.config.models import PipelineConfig
from raymlops.pipeline.fingerprint import digest, git_info, package_versions
from raymlops.registry import ModelRegistry, Tracker, check_gate, tracking_uri
from raymlops.registry.tracking import TAG


def config_hash(cfg: PipelineConfig) -> str:
    return digest(cfg.model_dump(mode="json"))[:16]


def open_tracker(cfg: PipelineConfig) -> Tracker | None:
    if not cfg.registry.enabled:
        return None
    return Tracker(tracking_uri(cfg.registry, cfg.storage), cfg.registry.experiment or cfg.name)


def start_tags(cfg: PipelineConfig, run_id: str, inputs: dict, source_file: str | None) -> dict[str, Any]:
    """Tags of the parent run: config hash, input fingerprints, git state, packages, seeds, Ray resources."""
    import ray

    t = cfg.training
    tags: dict[str, Any] = {
        f"{TAG}run_id": run_id,
        f"{TAG}pipeline": cfg.name,
        f"{TAG}config_hash": config_hash(cfg),
        f"{TAG}packages": json.dumps(package_versions()),
        f"{TAG}ray_resources": json.dumps(
            {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
        ),
        f"{TAG}seed.tune": t.tune.seed,
        f"{TAG}seed.model": t.tune.seed,
        f"{TAG}seed.split": t.split.seed if t.split.type == "random" else "time split",
    }
    for name, fp in inputs["sources"].items():
        tags[f"{TAG}input.{name}.sha256"] = fp["sha256"]
        tags[f"{TAG}input.{name}.path"] = fp["path"]
    for view, v in inputs.get("feature_views", {}).items():
        tags[f"{TAG}feature_view.{view}.version"] = v["version"]
        tags[f"{TAG}feature_view.{view}.fingerprint"] = v["fingerprint"]
    git = git_info(source_file or ".")
    if git:
        tags.update(
            {
                "mlflow.source.git.commit": git["commit"],
                f"{TAG}git.commit": git["commit"],
                f"{TAG}git.dirty": str(git["dirty"]).lower(),
            }
        )
    if source_file:
        tags[f"{TAG}config_file"] = source_file
    return tags


def record_run(
    tracker: Tracker,
    cfg: PipelineConfig,
    run_dir: Path,
    train_dir: Path,
    prep_info: dict,
    inputs: dict,
    evaluation: dict,
    steps: dict[str, dict],
    trials_logged: bool,
    trained_in: str,
) -> None:
    """Logs the finished run: params, metrics, step status, trials (child runs, or a tag naming the run that
    trained a cached model), datasets, artifacts."""
    import pandas as pd

    record = json.loads((train_dir / "search.json").read_text())
    t = cfg.training
    tracker.log_params(
        {
            "model.type": t.model.type,
            "tune.num_samples": t.tune.num_samples,
            "tune.metric": t.tune.metric,
            "tune.scheduler": t.tune.scheduler,
            "tune.search": t.tune.search,
            "split": t.split.type,
            "split.fraction": t.split.fraction,
            "rows.train": prep_info["rows"]["train"],
            "rows.valid": prep_info["rows"]["valid"],
            **{f"best.{k}": v for k, v in record["best_params"].items()},
            **{f"model.{k}": v for k, v in t.model.model_dump(exclude={"params", "type"}).items()},
        }
    )
    if "decision" in record:
        tracker.log_params({"decision.how": record["decision"]["how"]})
        tracker.log_metrics({"decision_threshold": record["decision"]["threshold"]})
    tracker.log_metrics(record["best"])
    tracker.log_metrics({f"holdout_{k}": v for k, v in evaluation["candidate"].items()})
    if evaluation.get("champion"):
        tracker.log_metrics({f"champion_{k}": v for k, v in evaluation["champion"]["metrics"].items()})
    tracker.set_tags(
        {f"{TAG}step.{s}": ("skipped (cached)" if v["cached"] else "ran") for s, v in steps.items()}
        | {f"{TAG}cache_key.{s}": v["key"] for s, v in steps.items()}
    )
    if trials_logged:
        tracker.log_trials(record["trials"], {f"{TAG}run_id": layout.read_meta(run_dir)["run_id"]})
    else:
        tracker.set_tags({f"{TAG}trials_in_run": trained_in})
    sample = pd.read_parquet(run_dir / layout.REFERENCE).head(100)
    for name, fp in inputs["sources"].items():
        tracker.log_dataset(name, fp["path"], fp["sha256"], sample if t.source else None, "training")
    for view, v in inputs.get("feature_views", {}).items():
        tracker.log_dataset(
            f"feature_view:{view}",
            f"{cfg.features.offline_store.path or 'offline'}/{view}",
            v["fingerprint"],
            None,
            f"features (offline version {v['version']})",
        )
    for name in (layout.CONFIG, layout.META, layout.METRICS, layout.SCHEMA, layout.LINEAGE, "evaluation.json"):
        if (run_dir / name).is_file():
            tracker.log_artifact(run_dir / name, "run")
    for folder in ("report", layout.EXPLORE_DIR):
        if (run_dir / folder).is_dir():
            tracker.log_artifacts(run_dir / folder, folder)


def bundle_key(run_dir: Path, model_key: str) -> str:
    """The model and everything served beside it (preprocessing, schema, drift detectors and reference,
    quality profile): a version is reused only when all of it is unchanged, so a run that changes only the
    monitoring (a new drift detector) registers a version whose bundle carries it."""
    from raymlops.pipeline.fingerprint import file_sha256

    names = [layout.PREPROCESSING, layout.SCHEMA, layout.REFERENCE, layout.QUALITY]
    drift = run_dir / layout.DRIFT_DIR
    names += sorted(str(p.relative_to(run_dir)) for p in drift.rglob("*") if p.is_file()) if drift.is_dir() else []
    # A threshold other than the default decides otherwise with the same model bytes (before: no threshold).
    threshold = (layout.read_meta(run_dir).get("decision") or {}).get("threshold", 0.5)
    decision = [["threshold", threshold]] if threshold != 0.5 else []
    return digest([model_key, *decision, *[[n, file_sha256(run_dir / n)] for n in names if (run_dir / n).is_file()]])


def register(
    cfg: PipelineConfig,
    tracker: Tracker,
    run_dir: Path,
    run_id: str,
    evaluation: dict,
    model_key: str,
    reuse: bool,
    say: Callable[[str], None],
    alias: str | None = None,
) -> dict:
    """Registers the run's model as a new version of the model name (unless a version with the same model
    bytes exists and ``reuse``), then gives it the promotion alias if it passes the gate, else 'otherwise'.
    ``alias`` (retraining: 'challenger') is set whatever the gate; the gate's verdict, judged on the same
    holdout as the current champion, is kept on the version for a later promotion."""
    import pandas as pd

    name = cfg.model_name
    reg = ModelRegistry(tracker.uri)
    bundle = bundle_key(run_dir, model_key)
    if reuse:
        same = [v for v in reg.list_versions(name) if v.tags.get(f"{TAG}bundle_key") == bundle]
        if same:
            v = max(int(x.version) for x in same)
            say(f"step register: skipped (model unchanged; it is {name} version {v})")
            return {"name": name, "version": v, "cached": True, "aliases": reg.aliases_of(name, v)}
    meta = layout.read_meta(run_dir)
    pkgs = package_versions()
    sample = pd.read_parquet(run_dir / layout.REFERENCE).head(20)
    model_uri = reg.log_model(tracker.run_id, run_dir, meta["model_type"], sample, pkgs)
    p = cfg.registry.promotion
    gate = {
        "metric": p.metric or cfg.training.tune.metric,
        "min": p.min,
        "max": p.max,
        "beat_champion_by": p.beat_champion_by,
    }
    tags = {
        f"{TAG}run_id": run_id,
        f"{TAG}model_key": model_key,
        f"{TAG}bundle_key": bundle,
        f"{TAG}config_hash": config_hash(cfg),
        **{f"{TAG}metric.{k}": v for k, v in evaluation["candidate"].items()},
    }
    version = reg.register(model_uri, name, tags, gate)
    champion = evaluation.get("champion")
    passed, lines = check_gate(gate, evaluation["candidate"], champion["metrics"] if champion else None)
    say(
        f"registered {name} version {version}; gate for @{p.alias}: {'passed' if passed else 'failed'}"
        + "".join(f"\n    {ln}" for ln in lines)
    )
    reg.tag_version(name, version, {f"{TAG}gate.passed": str(passed).lower(), f"{TAG}gate.lines": json.dumps(lines)})
    alias = alias or (p.alias if passed else p.otherwise)
    if alias:
        reg.set_alias(
            name, alias, version, reason=f"pipeline run {run_id}: gate {'passed' if passed else 'failed'}", gate=lines
        )
    tracker.set_tags(
        {
            f"{TAG}model.name": name,
            f"{TAG}model.version": version,
            f"{TAG}model.alias": alias or "",
            f"{TAG}gate.passed": str(passed).lower(),
        }
    )
    return {"name": name, "version": version, "cached": False, "alias": alias, "passed": passed, "gate": lines}
