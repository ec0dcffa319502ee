"""`raymlops run` killed mid-search (SIGKILL of its whole process group), then `raymlops run --resume`."""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import ROOT, cli_env


def _kill_when(cmd, env, log_path, ready, what: str, settle: float):
    """Starts ``cmd`` in its own process group and SIGKILLs the whole group ``settle`` s after ``ready()``
    returns something true (within 300 s); returns that."""
    log = open(log_path, "w+")
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            got = ready()
            if got:
                break
            time.sleep(0.2)
        else:
            log.seek(0)
            raise AssertionError(f"{what}:\n{log.read()[-3000:]}")
        time.sleep(settle)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        log.close()
    return got


def test_killed_run_resumes_without_redoing_finished_trials(tmp_path):
    demo = tmp_path / "demo"
    r = subprocess.run(
        ["raymlops", "demo-data", str(demo), "--rows", "3000"],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    fits = tmp_path / "fits.log"
    cmd = [
        "raymlops",
        "run",
        "configs/sklearn_multiclass.yaml",  # not --quiet: the test reads the step lines
        "--set",
        "training.model.estimator=tests.integration.chaos.SlowLogClassifier",
        "--set",
        f"training.model.params.log={fits}",
        "--set",
        "training.model.params.delay=4",
        "--set",
        "training.model.params.C={grid: [0.1, 1.0, 10.0]}",
        "--set",
        "training.tune.max_concurrent_trials=1",
    ]
    # PYTHONPATH: the driver unpickles the test estimator (tests.integration.chaos) to evaluate it.
    env = cli_env(DEMO_DATA=str(demo), RAYMLOPS_STORAGE=str(tmp_path / "store"), PYTHONPATH=str(ROOT))

    def first_done():
        lines = fits.read_text().splitlines() if fits.exists() else []
        return sum(ln.startswith("done") for ln in lines) == 1 and sum(ln.startswith("start") for ln in lines) == 2

    # 3 s: the second trial is mid-fit; Tune has saved its state since the first one finished
    _kill_when(cmd, env, tmp_path / "first.log", first_done, "the first trial never finished", settle=3)
    runs = tmp_path / "store" / "runs" / "contract-multiclass"
    partial = [p.name for p in runs.iterdir()]
    assert len(partial) == 1 and partial[0].endswith(".partial"), partial  # nothing published, state kept
    done_before = [ln.split()[1] for ln in fits.read_text().splitlines() if ln.startswith("done")]

    r = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "resuming run" in r.stderr
    out = json.loads(r.stdout[r.stdout.rindex('{\n  "run_id"') : r.stdout.rindex("}") + 1])  # after Tune's table
    assert out["run_id"] == partial[0][1:].removesuffix(".partial")
    done = [ln.split()[1] for ln in fits.read_text().splitlines() if ln.startswith("done")]
    # The trial that finished before the kill was not fitted again; the other two were fitted once more.
    assert done.count(done_before[0]) == 1 and sorted(set(done)) == ["C=0.1", "C=1.0", "C=10.0"], done
    metrics = json.loads((runs / out["run_id"] / "metrics.json").read_text())
    assert [t["status"] for t in metrics["trials"]] == ["ok", "ok", "ok"]
    # The same MLflow run was reopened and finished, with a child run per trial and a registered model.
    from raymlops.registry.tracking import client

    c = client(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    runs = c.search_runs(
        [c.get_experiment_by_name("contract-multiclass").experiment_id],
        filter_string=f"tags.`raymlops.run_id` = '{out['run_id']}'",
    )
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.info.run_name == out["run_id"]
    children = c.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(ch.data.params["C"] for ch in children) == ["0.1", "1.0", "10.0"]
    assert out["model"]["version"] == 1


@pytest.mark.parametrize("distributed,path", [("never", "in-process"), ("always", "data-parallel")])
def test_an_xgboost_search_resumes_on_both_paths(tmp_path, distributed, path):
    """The quickstart's search on each path: killed once one trial has reported its final result (metrics,
    model file, checkpoint), then resumed; that trial's results stay as they were, and the other two run to
    the end."""
    demo = tmp_path / "demo"
    r = subprocess.run(
        ["raymlops", "demo-data", str(demo), "--rows", "3000"],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    cmd = [
        "raymlops",
        "run",
        "configs/quickstart.yaml",
        "--exit",
        "--set",
        "serving=null",
        "--set",
        "monitoring=null",
        "--set",
        f"training.model.distributed={distributed}",
        "--set",
        "training.tune.max_concurrent_trials=1",
        "--set",
        "training.model.num_boost_round=4000",
        "--set",
        "training.model.early_stopping_rounds=null",
    ]
    env = cli_env(DEMO_DATA=str(demo), RAYMLOPS_STORAGE=str(tmp_path / "store"))
    runs = tmp_path / "store" / "runs" / "churn-quickstart"

    def finished_trials():
        """The trial directory whose results include the final one, once the next trial has started (one trial
        at a time: the first has ended, not only reported; a Train run still tears down after its report)."""
        trials = [p for p in runs.glob(".*.partial/tune/search/*") if p.is_dir()] if runs.exists() else []
        done = [
            p
            for p in trials
            if '"model_file"' in ((p / "result.json").read_text() if (p / "result.json").exists() else "")
        ]
        return done if len(trials) >= 2 else []

    # 3 s: the second trial is mid-fit; Tune has saved its state (every 2 s) since the first one ended
    [finished] = _kill_when(cmd, env, tmp_path / "first.log", finished_trials, "no trial finished", settle=3)
    results_before = (finished / "result.json").read_text()
    r = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "resuming run" in r.stderr
    [run] = [p for p in runs.iterdir() if not p.name.startswith(".")]
    assert (run / "tune" / "search" / finished.name / "result.json").read_text() == results_before  # not refitted
    metrics = json.loads((run / "metrics.json").read_text())
    assert [t["status"] for t in metrics["trials"]] == ["ok", "ok", "ok"], metrics["trials"]
    assert json.loads((run / "meta.json").read_text())["spec"]["path"] == path
