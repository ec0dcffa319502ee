"""The README's laptop paths, run as a user runs them: the CLI in a subprocess. (`ray job submit`, `serve
--export` and `serve deploy` run on a real multi-node cluster in tests/cluster.)"""

import json

from tests.conftest import ROOT
from tests.e2e.conftest import run


def test_quickstart_cli_trains_serves_and_flags_drift(cli_quickstart, demo):
    r, store, env = cli_quickstart
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    out = r.stdout
    summary = json.loads(out[out.index("{") : out.index("}\n", out.index('"endpoint"')) + 1])
    assert summary["metrics"]["auc"] > 0.6 and summary["endpoint"].endswith("/churn")
    # the holdout at the threshold chosen out of fold (training.decision), beside the search's metrics at 0.5
    assert 0 < summary["holdout"]["threshold"] < 0.5 and summary["holdout"]["f1"] > summary["metrics"]["f1"]
    # Registered in the embedded MLflow store and served through models:/churn@champion.
    assert summary["model"]["name"] == "churn" and summary["model"]["version"] == 1
    assert summary["model"]["alias"] == "champion" and (store / "mlflow.db").is_file()
    assert (store / "runs" / "churn-quickstart" / summary["run_id"] / "model.ubj").exists()
    # training.explore: the training split's profile in the run folder and among the MLflow run's artifacts
    profiles = sorted(store.rglob("explore/training.json"))
    assert any(summary["run_id"] in str(f) for f in profiles) and any("runs" not in f.parts for f in profiles), profiles
    profile = json.loads(profiles[0].read_text())
    assert profile["label"] == "churned" and "contract" in profile["associations"]
    holdout, shifted = out.split("probe ")[1:]
    assert "1000 rows scored" in holdout and "1000 rows scored" in shifted
    assert "drift: is_drift=True" in shifted
    assert "tenure_months    ks" in shifted
    # Every probed row is in the request log (the CLI shuts Serve down gracefully, so the last flush lands).
    r = run(["raymlops", "serving", "compare", "configs/quickstart.yaml"], 120, **env)
    assert r.returncode == 0 and "2000 logged rows" in r.stdout and "variant default:" in r.stdout, r.stdout + r.stderr


def test_bad_config_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs" / "quickstart.yaml").read_text().replace("num_samples: 3", "num_sampels: 3"))
    r = run(["raymlops", "run", str(bad)], 120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}:" in r.stderr and "training.tune.num_sampels: unknown key; did you mean 'num_samples'?" in r.stderr


def test_explore_a_source_against_the_shifted_month(demo, tmp_path):
    out = tmp_path / "report" / "customers.html"
    r = run(
        [
            "raymlops",
            "explore",
            "customers",
            "--config",
            "configs/quickstart.yaml",
            "--label",
            "churned",
            "--compare",
            str(demo / "shifted.parquet"),
            "--out",
            str(out),
        ],
        300,
        DEMO_DATA=str(demo),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"wrote {out}" in r.stdout and f"wrote {out.with_suffix('.json')}" in r.stdout
    profile = json.loads(out.with_suffix(".json").read_text())
    assert profile["name"] == "customers" and profile["time"] == "event_ts" and profile["rows"] == 8000
    assert profile["comparison"]["is_drift"] and "plan" in profile["comparison"]["drifted"]
    html = out.read_text()
    assert "Comparison with shifted.parquet" in html and "Drift in" in html
    r = run(["raymlops", "explore", str(demo / "holdout.parquet")], 300)
    assert r.returncode == 0 and " rows, 13 columns" in r.stdout and "warning: customer_id" in r.stdout, r.stderr[
        -3000:
    ]


def test_k8s_render_of_the_trained_quickstart(cli_quickstart, tmp_path):
    import yaml

    r, store, env = cli_quickstart
    assert r.returncode == 0
    out = tmp_path / "k8s"
    cmd = [
        "raymlops",
        "k8s",
        "render",
        "configs/quickstart.yaml",
        "--image",
        "registry.example/raymlops:1",
        "--namespace",
        "ml",
        "--out",
        str(out),
    ]
    # the RayService's Serve config names runs in storage: local storage is refused, the pods could not reach it
    r = run(cmd, 300, **env)
    assert r.returncode == 2 and "got local storage" in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert not out.exists()
    r = run([*cmd, "--no-service", "--set", "training.tune.num_samples=2"], 300, **env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["churn-quickstart-rayjob.yaml"]
    job = yaml.safe_load((out / "churn-quickstart-rayjob.yaml").read_text())
    assert job["spec"]["entrypoint"] == (
        "python jobs/run_pipeline.py configs/quickstart.yaml --set training.tune.num_samples=2"
    )
    r = run(
        ["raymlops", "k8s", "render", "configs/quickstart.yaml", "--image", "bad image", "--no-service"], 120, **env
    )
    assert r.returncode == 2 and "--image must be an image reference" in r.stderr and "Traceback" not in r.stderr
