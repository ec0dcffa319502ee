"""The closed loop's pipeline side: submit retraining as a Ray job, and promote its challenger when the
registry gate passed. The app monitor calls these by dotted path (monitoring does not import pipeline)."""

from __future__ import annotations

import json
import shlex
import sys

import yaml

from raymlops.config import PipelineConfig
from raymlops.contracts.monitoring import RetrainResult
from raymlops.errors import RaymlopsError
from raymlops.storage.files import read_file, write_file

CHALLENGER = "challenger"


def write_config(cfg: PipelineConfig, path: str) -> str:
    """The resolved config (environment interpolated, overrides applied), as the retrain job reads it
    (``path``: in storage, a path or URI)."""
    write_file(path, yaml.safe_dump(json.loads(cfg.model_dump_json(by_alias=True)), sort_keys=False).encode())
    return path


def submit_retrain(config_path: str, cwd: str, address: str | None, job_id: str, result_path: str) -> str:
    """Submits `raymlops retrain CONFIG --result RESULT_PATH` as Ray job ``job_id``; returns the job id. The
    job writes its challenger as a `RetrainResult` at ``result_path`` for the app monitor to read.

    Called in the app monitor actor, wherever Ray placed it. When the app was deployed from a Ray job (``ray
    job submit --working-dir``), the actor runs in that job's runtime env: the retrain job gets the same
    working_dir package (already in the cluster's GCS, kept there while the app's actors use it) and env vars,
    so the config's relative paths and the storage/tracking settings mean the same on any node. Otherwise
    (``raymlops run`` from a shell) it runs in ``cwd``, the deploying shell's directory, on this machine.
    """
    import ray

    from raymlops.data.ray_env import job_client

    retrain = (
        f"{shlex.quote(sys.executable)} -m raymlops.cli retrain {shlex.quote(config_path)} "
        f"--result {shlex.quote(result_path)}"
    )
    runtime_env: dict = {}
    if ray.is_initialized():
        mine = dict(ray.get_runtime_context().runtime_env or {})
        runtime_env = {k: mine[k] for k in ("working_dir", "py_modules", "env_vars") if mine.get(k)}
    cmd = retrain if "working_dir" in runtime_env else f"cd {shlex.quote(cwd)} && {retrain}"
    return job_client(address).submit_job(entrypoint=cmd, submission_id=job_id, runtime_env=runtime_env or None)


def write_result(path: str, result) -> None:
    """Writes a retrain's challenger (a `TrainResult` registered as @challenger) as a `RetrainResult` record,
    atomically: the app monitor reads it once the job has succeeded."""
    m = result.model or {}
    if m.get("version") is None:
        raise RaymlopsError(f"run {result.run_id} registered no model version: nothing to write to {path}")
    record = RetrainResult(
        model=m["name"], version=int(m["version"]), run_id=result.run_id, gate_passed=bool(m.get("passed"))
    )
    write_file(path, record.model_dump_json().encode(), durable=True)


def promote_challenger(config_path: str, version: int) -> dict:
    """Moves the promotion alias (champion) to ``version``, the retrain's challenger, when it still holds
    @challenger and passed its gate (judged when it was trained, against the then champion on the same
    holdout); returns {promoted, version, reason}."""
    from raymlops.registry import ModelRegistry, tracking_uri
    from raymlops.registry.tracking import TAG

    cfg = PipelineConfig.model_validate(yaml.safe_load(read_file(config_path)))
    reg = ModelRegistry(tracking_uri(cfg.registry, cfg.storage))
    name, alias = cfg.model_name, cfg.registry.promotion.alias
    holder = reg.alias_version(name, CHALLENGER)
    if holder != version:
        return {
            "promoted": False,
            "version": version,
            "reason": f"@{CHALLENGER} is now version {holder}, not the retrained version {version}",
        }
    if reg.alias_version(name, alias) == version:
        return {"promoted": False, "version": version, "reason": f"version {version} already holds @{alias}"}
    tags = reg.version(name, version).tags
    lines = json.loads(tags.get(f"{TAG}gate.lines", "[]"))
    if tags.get(f"{TAG}gate.passed") != "true":
        return {"promoted": False, "version": version, "reason": "gate failed: " + "; ".join(lines)}
    reg.set_alias(
        name, alias, version, reason=f"closed loop: @{CHALLENGER} version {version} passed its gate", gate=lines
    )
    return {"promoted": True, "version": version, "reason": f"@{alias} -> version {version}: " + "; ".join(lines)}
