"""Every CLI command on deliberately broken input, as a user runs it: one line on stderr, the right exit
code, no traceback, nothing partial left behind; and Ctrl-C stops a command at its first press."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pandas as pd
import pytest

from tests.conftest import ROOT, cli_env, free_port
from tests.e2e.conftest import run

CFG = "configs/quickstart.yaml"


def _wait_for(path, text: str, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.3)
    raise AssertionError(f"never saw {text!r} (exit {proc.poll()}):\n{path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(demo, tmp_path_factory):  # noqa: F811
    """A real training search, then serving until Ctrl-C: one SIGINT to the process group, as a terminal sends
    it. Yields the store (with the run and its registered model) for the broken-input cases."""
    d = tmp_path_factory.mktemp("cli-errors")
    env = {"DEMO_DATA": str(demo), "RAYMLOPS_STORAGE": str(d / "store")}
    out, err = d / "out.log", d / "err.log"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(
            ["raymlops", "run", CFG, "--set", "training.tune.num_samples=2", "--set", f"serving.port={free_port()}"],
            cwd=ROOT,
            env=cli_env(**env),
            stdout=o,
            stderr=e,
            start_new_session=True,
        )
    try:
        _wait_for(out, "Serving; press Ctrl-C", proc, 900)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=120)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return {"dir": d, "env": env, "rc": rc, "stopped_in": stopped_in, "stderr": err.read_text()}


def test_first_ctrl_c_after_a_training_search_stops_serving(served):
    assert served["rc"] == 0, served["stderr"][-3000:]
    assert served["stopped_in"] < 60 and "Traceback" not in served["stderr"]
    # Quiet by default: Ray's, Serve's, MLflow's and transformers' known notices (token auth, progress bars,
    # "Registered model ... Creating a new version", "Started Serve", "graceful_shutdown failed", ...) are
    # muted; what is left on stderr is raymlops' own step lines (and their indented details).
    noise = [
        ln
        for ln in served["stderr"].splitlines()
        if ln.strip() and not ln.startswith("[raymlops ") and not ln.startswith("    ")
    ]
    assert noise == [], noise


def test_first_ctrl_c_during_a_training_search_stops_the_run(demo, tmp_path):  # noqa: F811
    fits = tmp_path / "fits.log"
    err = tmp_path / "err.log"
    cmd = [
        "raymlops",
        "run",
        "configs/sklearn_multiclass.yaml",
        "--quiet",
        "--set",
        "training.model.estimator=tests.integration.chaos.SlowLogClassifier",
        "--set",
        f"training.model.params.log={fits}",
        "--set",
        "training.model.params.delay=60",
    ]
    env = cli_env(DEMO_DATA=str(demo), RAYMLOPS_STORAGE=str(tmp_path / "store"), PYTHONPATH=str(ROOT))
    with open(err, "w") as e:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=e, start_new_session=True)
    try:
        _wait_for(fits, "start", proc, 300)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=90)
        assert time.monotonic() - t0 < 45
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stderr = err.read_text()
    assert rc == 130 and stderr.strip().splitlines()[-1] == "interrupted", stderr[-3000:]
    assert "Traceback" not in stderr
    runs = tmp_path / "store" / "runs" / "contract-multiclass"
    assert all(p.name.startswith(".") for p in runs.iterdir())  # nothing published; kept for --resume


@pytest.fixture(scope="module")
def broken(served, demo):  # noqa: F811
    d = served["dir"] / "inputs"
    d.mkdir()
    rows = pd.read_parquet(demo / "holdout.parquet").head(500)
    rows.drop(columns=["age"]).to_parquet(d / "missing.parquet")
    rows.assign(prediction=1).to_parquet(d / "with_prediction.pq")
    rows.assign(usage_gb=rows["usage_gb"].astype(str)).to_parquet(d / "text.parquet")
    (d / "garbage.parquet").write_bytes(os.urandom(3000))
    rows.head(0).to_parquet(d / "zero.parquet")
    rows.head(0).to_csv(d / "zero.csv", index=False)
    (d / "empty").mkdir()
    (d / "empty" / "_SUCCESS").write_text("")
    bad = d / "bad.yaml"
    bad.write_text((ROOT / CFG).read_text().replace("num_samples: 3", "num_sampels: 3"))
    return d


CASES = [  # (name, arguments, exit code, what the one line says)
    ("validate-typo", ["validate", "{d}/bad.yaml"], 2, "training.tune.num_sampels: unknown key"),
    (
        "run-corrupt-source",
        ["run", CFG, "--set", "sources.customers.path={d}/garbage.parquet"],
        2,
        "cannot read as parquet",
    ),
    ("run-no-files", ["run", CFG, "--set", "sources.customers.path={d}/empty"], 2, "no data files found"),
    (
        "run-no-rows",
        ["run", CFG, "--set", "sources.customers.path={d}/zero.parquet"],
        2,
        "zero.parquet: no rows to train on in source 'customers'",
    ),
    ("run-label-typo", ["run", CFG, "--set", "training.label=churn"], 2, "did you mean 'churned'?"),
    (
        "predict-missing-column",
        ["predict", CFG, "--input", "{d}/missing.parquet", "--output", "{d}/out"],
        2,
        "missing.parquet: age: missing column",
    ),
    (
        "predict-would-overwrite",
        ["predict", CFG, "--input", "{d}/with_prediction.pq", "--output", "{d}/out"],
        2,
        "prediction: the input already has this column",
    ),
    (
        "predict-numbers-as-text",
        ["predict", CFG, "--input", "{d}/text.parquet", "--output", "{d}/out"],
        2,
        "usage_gb: expected number values, got string",
    ),
    (
        "predict-no-rows",
        ["predict", CFG, "--input", "{d}/zero.csv", "--output", "{d}/out"],
        2,
        "zero.csv: no rows in 1 csv file(s)",
    ),
    (
        "predict-bad-output-columns",
        ["predict", CFG, "--input", "{d}/missing.parquet", "--output", "{d}/out", "--output-columns", "score=x"],
        2,
        "--output-columns: got 'score=x'",
    ),
    (
        "predict-no-run",
        ["predict", CFG, "--run", "nope", "--input", "{d}/text.parquet", "--output", "{d}/out"],
        1,
        "no run 'nope'",
    ),
    ("check-corrupt", ["check", CFG, "--input", "{d}/garbage.parquet"], 2, "cannot read as parquet"),
    ("check-absent", ["check", CFG, "--input", "{d}/absent.csv"], 2, "absent.csv: does not exist"),
    (
        "drift-missing-column",
        ["drift", "report", CFG, "--current", "{d}/missing.parquet", "--out", "{d}/r.html"],
        2,
        "lacks the model's input columns ['age']",
    ),
    ("models-no-store", ["models", "list", "--storage", "{d}/nowhere"], 2, "no MLflow store at"),
    ("models-no-version", ["models", "promote", "churn", "99", "--config", CFG], 1, "no version 99"),
    (
        "models-rollback-nothing",
        ["models", "rollback", "churn", "--config", CFG],
        1,
        "@champion has no previous version to roll back to",
    ),
    ("serving-canary-none", ["serving", "canary", CFG, "pause"], 1, "has no canary"),
    ("lineage-unknown", ["lineage", "models:/nope/1", "--config", CFG], 1, "nope"),
    ("reproduce-no-run", ["reproduce", "nope"], 1, "no run 'nope'"),
    ("bad-override", ["run", CFG, "--set", "training.tune.num_samples=-3"], 2, "training.tune.num_samples"),
    ("explore-absent", ["explore", "{d}/absent.csv", "--out", "{d}/r.html"], 2, "absent.csv: does not exist"),
    ("explore-unknown-source", ["explore", "nosuch", "--config", CFG], 2, "sources in the config: ['customers']"),
    (
        "explore-label-typo",
        ["explore", "{d}/missing.parquet", "--label", "churn", "--out", "{d}/r.html"],
        2,
        "label column 'churn' is not in the data",
    ),
    ("explore-corrupt", ["explore", "{d}/garbage.parquet"], 2, "cannot read as parquet"),
]


@pytest.mark.parametrize("name,args,code,says", CASES, ids=[c[0] for c in CASES])
def test_broken_input_fails_in_one_line(served, broken, name, args, code, says):
    r = run(["raymlops", *[a.format(d=broken) for a in args]], 300, **served["env"])
    # the progress lines a run prints before it fails are not the failure: one line says what is wrong
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("[raymlops ")]
    assert r.returncode == code, r.stderr[-3000:]
    assert len(lines) == 1 and says in lines[0], r.stderr[-3000:]
    assert "Traceback" not in r.stdout + r.stderr
    left = [p.name for p in broken.iterdir() if p.name.endswith(".partial") or p.name in ("out", "r.html", "r.json")]
    assert not left and not (broken / "nowhere").exists()


def test_a_batch_prediction_prints_its_result_and_nothing_else(served, broken, demo):  # noqa: F811
    out = served["dir"] / "scored"
    r = run(
        ["raymlops", "predict", CFG, "--input", str(demo / "holdout.parquet"), "--output", str(out)],
        300,
        **served["env"],
    )
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr[-3000:]
    assert r.stdout.strip() == f"wrote {len(pd.read_parquet(demo / 'holdout.parquet'))} rows to {out}"
    assert pd.read_parquet(out)["model_version"].iloc[0].startswith("20")  # scored by a run: its run id


def test_first_ctrl_c_during_a_batch_prediction_stops_it_and_leaves_nothing(served, demo, tmp_path):  # noqa: F811
    rows = pd.read_parquet(demo / "holdout.parquet")
    big = tmp_path / "big.parquet"
    pd.concat([rows] * (1_500_000 // len(rows)), ignore_index=True).to_parquet(big, row_group_size=50_000)
    out, err = tmp_path / "scored", tmp_path / "err.log"
    with open(err, "w") as e:
        proc = subprocess.Popen(
            ["raymlops", "predict", CFG, "--input", str(big), "--output", str(out)],
            cwd=ROOT,
            env=cli_env(**served["env"]),
            stdout=subprocess.DEVNULL,
            stderr=e,
            start_new_session=True,
        )
    partial = tmp_path / ".scored.partial"
    try:
        deadline = time.monotonic() + 180
        while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert partial.exists(), f"scoring never started writing (exit {proc.poll()}): {err.read_text()[-2000:]}"
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stderr = err.read_text()
    assert rc == 130 and stderr.strip().splitlines()[-1] == "interrupted", stderr[-3000:]
    assert not partial.exists() and not out.exists()  # nothing half-written is left, hidden or not


def test_check_reports_numbers_that_arrive_as_text(served, broken):
    r = run(["raymlops", "check", CFG, "--input", str(broken / "text.parquet")], 120, **served["env"])
    assert r.returncode == 1, r.stderr
    assert "FAIL schema            usage_gb:" in r.stdout and "arrive as text, not numbers" in r.stdout
