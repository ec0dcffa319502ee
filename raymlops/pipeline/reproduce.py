"""Re-runs a recorded run from its config and checks that inputs, metrics and model bytes match."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from raymlops.artifacts import find_run
from raymlops.artifacts import run as layout
from raymlops.config import load_config
from raymlops.errors import RaymlopsError
from raymlops.pipeline.fingerprint import file_sha256
from raymlops.pipeline.steps import read_inputs
from raymlops.registry.tracking import TAG


class InputsChanged(RaymlopsError):
    """The data a run was trained on has changed since: it cannot be reproduced."""


def reproduce(run: str, storage: str | None, say: Callable[[str], None], address: str | None = None) -> dict:
    """Re-trains ``run`` from its recorded config with every step re-run, after checking that its inputs'
    fingerprints are unchanged; returns what matched.

    Raises:
        InputsChanged: if a source or feature view differs from what the run recorded.
    """
    from raymlops.pipeline.runner import Pipeline

    where = find_run(run, storage)
    run_dir = layout.local_run(where)  # this machine's copy of a run on an object store
    if not (run_dir / layout.LINEAGE).is_file():
        raise RaymlopsError(
            f"run {run_dir.name} has no lineage.json (it predates input fingerprints): it cannot "
            "be checked, so it is not reproduced"
        )
    recorded = json.loads((run_dir / layout.LINEAGE).read_text())
    cfg = load_config(run_dir / layout.CONFIG)  # errors as FILE:LINE: key.path: message
    # The storage the run lives in: <storage>/runs/<pipeline>/<run_id>.
    cfg.storage = str(where).rstrip("/").rsplit("/", 3)[0] if "://" in str(where) else str(Path(where).parents[2])
    pipe = Pipeline(cfg, say=say, source_file=recorded.get("config_file"))
    pipe.connect(address)
    now = read_inputs(cfg, pipe.feature_store if cfg.training.dataset is not None else None)
    changed = []
    for name, fp in recorded["inputs"]["sources"].items():
        cur = now["sources"].get(name)
        if cur is None or cur["sha256"] != fp["sha256"]:
            changed.append(
                f"source {name} ({fp['path']}): recorded sha256 {fp['sha256'][:16]}, now "
                f"{cur['sha256'][:16] if cur else 'missing'}"
            )
    for view, v in recorded["inputs"].get("feature_views", {}).items():
        cur = now["feature_views"].get(view)
        if cur is None or cur["version"] != v["version"] or cur["source_sha256"] != v["source_sha256"]:
            changed.append(
                f"feature view {view}: recorded version {v['version']}, now {cur['version'] if cur else 'missing'}"
            )
    if changed:
        raise InputsChanged(f"run {run_dir.name} cannot be reproduced: its inputs changed\n  " + "\n  ".join(changed))
    say(f"inputs unchanged; re-running run {run_dir.name} with every step")
    result = pipe.train(progress=False, no_cache=True, register=False, tags={f"{TAG}reproduces": run_dir.name})
    old = json.loads((run_dir / layout.METRICS).read_text())["best"]
    model_file = layout.read_meta(run_dir)["model_file"]
    a, b = file_sha256(run_dir / model_file), file_sha256(layout.local_run(result.run_dir) / model_file)
    return {
        "run": run_dir.name,
        "reproduction": result.run_id,
        "metrics_match": old == result.metrics,
        "metrics": {"recorded": old, "reproduced": result.metrics},
        "model_bytes_match": a == b,
        "model_sha256": {"recorded": a, "reproduced": b},
    }
