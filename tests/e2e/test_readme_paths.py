"""The README's paths, run as a user runs them: the CLI in a subprocess, and `ray job submit`."""

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.conftest import ROOT, cli_env, free_port


def run(cmd, timeout, **env):
    r = subprocess.run(cmd, cwd=ROOT, env=cli_env(**env), capture_output=True, text=True, timeout=timeout)
    return r


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e-demo")
    r = run(["raymlops", "demo-data", str(out), "--rows", "8000"], 120)
    assert r.returncode == 0, r.stderr
    return out


def test_quickstart_cli_trains_serves_and_flags_drift(demo, tmp_path):
    r = run(["raymlops", "run", "configs/quickstart.yaml", "--quiet",
             "--probe", str(demo / "holdout.parquet"), "--probe", str(demo / "shifted.parquet"),
             "--set", "training.tune.num_samples=1", "--set", f"serving.port={free_port()}"],
            900, DEMO_DATA=str(demo), RAYMLOPS_STORAGE=str(tmp_path / "store"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    out = r.stdout
    summary = json.loads(out[out.index("{"): out.index("}\n", out.index('"endpoint"')) + 1])
    assert summary["metrics"]["auc"] > 0.6 and summary["endpoint"].endswith("/churn")
    # Registered in the embedded MLflow store and served through models:/churn@champion.
    assert summary["model"]["name"] == "churn" and summary["model"]["version"] == 1
    assert summary["model"]["alias"] == "champion" and (tmp_path / "store" / "mlflow.db").is_file()
    assert (tmp_path / "store" / "runs" / "churn-quickstart" / summary["run_id"] / "model.ubj").exists()
    holdout, shifted = out.split("probe ")[1:]
    assert "1000 rows scored" in holdout and "1000 rows scored" in shifted
    assert "drift: is_drift=True" in shifted
    assert "tenure_months    ks" in shifted
    # Every probed row is in the request log (the CLI shuts Serve down gracefully, so the last flush lands).
    r = run(["raymlops", "serving", "compare", "configs/quickstart.yaml"], 120, DEMO_DATA=str(demo),
            RAYMLOPS_STORAGE=str(tmp_path / "store"))
    assert r.returncode == 0 and "2000 logged rows" in r.stdout and "variant default:" in r.stdout, r.stdout + r.stderr


def test_bad_config_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs" / "quickstart.yaml").read_text().replace("num_samples: 3", "num_sampels: 3"))
    r = run(["raymlops", "run", str(bad)], 120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}:" in r.stderr and "training.tune.num_sampels: unknown key; did you mean 'num_samples'?" in r.stderr


@pytest.fixture
def ray_head(tmp_path):
    """A real `ray start --head` cluster (token auth on, as Ray 2.60 defaults), in a pid namespace of its own:
    stopping it kills exactly its processes (a host-wide `ray stop` would also kill any other Ray here)."""
    gcs, dash, agent, client = free_port(), free_port(), free_port(), free_port()
    log = open(tmp_path / "ray-head.log", "wb")
    # Its own /tmp/ray too: the session files (and ray_current_cluster, which `ray.init()` and the State API
    # would follow) of a head killed at the end must not outlive it on the machine.
    start = (f"mount --make-rprivate / && mount -t tmpfs tmpfs /tmp/ray && ray start --head --port={gcs} "
             f"--dashboard-port={dash} --dashboard-agent-listen-port={agent} --ray-client-server-port={client} "
             "--num-cpus=2 --include-dashboard=true --disable-usage-stats --block & wait $!")
    os.makedirs("/tmp/ray", exist_ok=True)
    proc = subprocess.Popen(["unshare", "--pid", "--mount", "--fork", "--mount-proc", "--kill-child=SIGKILL",
                             "bash", "-c", start],
                            cwd=ROOT, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        address, deadline = f"http://127.0.0.1:{dash}", time.time() + 180
        # The head answers before its job agent takes jobs ("No available agent to submit job"): a trivial
        # job submitted without waiting is accepted only once it does.
        while run(["ray", "job", "submit", "--no-wait", "--address", address, "--", "true"], 60,
                  RAY_AUTH_MODE="token").returncode != 0:
            assert proc.poll() is None, (tmp_path / "ray-head.log").read_text()[-3000:]
            assert time.time() < deadline, "the cluster's job agent did not come up within 180 s"
            time.sleep(2)
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the namespace's init dies, and the kernel kills the rest
        proc.wait(timeout=60)
        log.close()


def test_ray_job_submit_runs_the_quickstart(ray_head, tmp_path):
    port = free_port()
    env = json.dumps({"env_vars": {"RAYMLOPS_STORAGE": str(tmp_path / "store")}})
    r = run(["ray", "job", "submit", "--address", ray_head, "--working-dir", ".", "--runtime-env-json", env, "--",
             "python", "jobs/run_pipeline.py", "configs/quickstart.yaml",
             "--set", "training.tune.num_samples=1", "--set", f"serving.port={port}"],
            900, RAY_AUTH_MODE="token")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith('{"run_id"'))
    result = json.loads(line)
    assert result["run_dir"].startswith(str(tmp_path / "store"))
    # The app outlives the job: it is served by the cluster.
    health = httpx.get(f"{result['endpoint']}/health", timeout=30).json()
    assert health == {"status": "ok", "model_version": result["run_id"], "variants": {"default": result["run_id"]}}
    # `raymlops serve --export` writes a Serve config file; `serve deploy` redeploys the app from it.
    exported = tmp_path / "serve.yaml"
    r = run(["raymlops", "serve", "configs/quickstart.yaml", "--export", str(exported), "--set", f"serving.port={port}"],
            300, RAYMLOPS_STORAGE=str(tmp_path / "store"))
    assert r.returncode == 0 and r.stdout.strip() == str(exported), r.stdout + r.stderr[-3000:]
    r = run(["serve", "deploy", str(exported), "--address", ray_head], 300, RAY_AUTH_MODE="token")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    deadline = time.time() + 180
    while True:  # serve deploy returns at once; the app is redeployed in the background
        status = run(["serve", "status", "--address", ray_head], 120, RAY_AUTH_MODE="token").stdout
        if "churn-quickstart" in status and "status: RUNNING" in status and "DEPLOYING" not in status:
            break
        assert time.time() < deadline, status
        time.sleep(2)
    r = httpx.post(f"{result['endpoint']}/predict", json={"instances": [_row()]}, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == result["run_id"], r.text


def _row():
    return {"event_ts": "2024-07-01T00:19:35", "plan": "standard", "region": "west", "contract": "month-to-month",
            "payment_method": "electronic-check", "tenure_months": 25, "age": 45.0, "monthly_charges": 71.45,
            "usage_gb": 17.54, "support_calls": 1, "autopay": False}
