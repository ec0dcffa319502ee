"""The laptop YAMLs on a 2-node cluster whose nodes share no disk: submitted with `ray job submit`, state on a
real S3-compatible server, tracking on a real MLflow server, and a worker node lost and replaced."""

from __future__ import annotations

import json
import subprocess

import pandas as pd

from tests.cluster.conftest import BUCKET, HEAD_IP, SERVE_PORT, VENV, _http, _wait

QUICKSTART = (
    "raymlops run configs/quickstart.yaml --quiet --probe data/demo/holdout.parquet --probe data/demo/shifted.parquet"
)


def storage(cluster):
    from raymlops.storage import Storage

    return Storage(
        cluster.storage,
        {"endpoint_url": cluster.s3, "access_key": "raymlops-test", "secret_key": "raymlops-test-secret"},
    )


def result_of(out: str) -> dict:
    """The result a run prints as JSON (indented by `raymlops run`, one line by jobs/run_pipeline.py)."""
    at = out.rindex("{", 0, out.index('"run_id"'))
    return json.JSONDecoder().raw_decode(out[at:])[0]


def predict(rows: list[dict], prefix: str = "/churn", timeout: float = 30) -> tuple[int, dict]:
    status, body = _http(
        f"http://127.0.0.1:{SERVE_PORT}{prefix}/predict",
        {"content-type": "application/json"},
        json.dumps({"instances": rows}).encode(),
        timeout=timeout,
    )
    return status, json.loads(body) if body else {}


def rows(job_dir, name: str, n: int) -> list[dict]:
    df = pd.read_parquet(job_dir / "data" / "demo" / f"{name}.parquet").head(n)
    keep = [
        "plan",
        "region",
        "contract",
        "payment_method",
        "tenure_months",
        "age",
        "monthly_charges",
        "usage_gb",
        "support_calls",
        "autopay",
    ]
    return json.loads(df[keep].to_json(orient="records"))


def test_the_nodes_share_no_disk(cluster):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    worker = next(n for n in cluster.nodes() if n["alive"] and n["resources"].get(cluster.worker_name))

    @ray.remote(num_cpus=0)
    def look(write: str) -> dict:
        import os

        with open(f"/tmp/{write}", "w") as f:
            f.write("x")
        return {
            "sees_head_file": os.path.exists("/tmp/written-on-head"),
            "node": ray.get_runtime_context().get_node_id(),
        }

    with open("/tmp/written-on-head", "w") as f:
        f.write("x")
    got = ray.get(
        look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(worker["id"], soft=False)).remote(
            "written-on-worker"
        )
    )
    import os

    assert got["node"] == worker["id"] and not got["sees_head_file"]
    assert not os.path.exists("/tmp/written-on-worker")
    head = [n for n in cluster.nodes() if n["alive"] and n["ip"] == HEAD_IP]
    assert len(head) == 1 and head[0]["resources"].get("CPU", 0) == 0  # the head runs no work (--num-cpus=0)


def test_local_state_on_a_multi_node_cluster_is_refused_before_any_work(cluster, job_dir):
    """Node-local storage and the embedded MLflow store: one line each saying what to set, exit 2."""
    env = {k: v for k, v in cluster.job_env().items() if k not in ("RAYMLOPS_STORAGE", "MLFLOW_TRACKING_URI")}
    r = cluster.submit(
        "raymlops run configs/quickstart.yaml --quiet",
        job_dir,
        env={**env, "RAYMLOPS_STORAGE": "/srv/store/raymlops", "MLFLOW_TRACKING_URI": cluster.tracking},
        name="local-storage",
    )
    assert r.returncode != 0
    line = [x for x in r.stdout.splitlines() if x.startswith("error:")]
    assert (
        line
        and "storage /srv/store/raymlops is on this machine's disk, which 1 of the 2 nodes cannot see" in line[0]
        and "s3://" in line[0]
    ), r.stdout[-3000:]
    assert "Traceback" not in r.stdout and "exit code 2" in r.stdout + r.stderr, r.stdout[-3000:]
    r = cluster.submit(
        "raymlops run configs/quickstart.yaml --quiet",
        job_dir,
        env={**env, "RAYMLOPS_STORAGE": cluster.storage},
        name="embedded-mlflow",
    )
    assert r.returncode != 0 and "Traceback" not in r.stdout, r.stdout[-3000:]
    assert "set registry.tracking_uri or $MLFLOW_TRACKING_URI to an MLflow server" in r.stdout, r.stdout[-3000:]


def test_the_quickstart_trains_registers_serves_and_monitors_on_the_cluster(cluster, job_dir):
    r = cluster.submit(QUICKSTART, job_dir, name="quickstart")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    out = r.stdout
    holdout = out.split("probe data/demo/holdout.parquet: ")[1].split("probe data/demo/shifted.parquet: ")[0]
    shifted = out.split("probe data/demo/shifted.parquet: ")[1]
    assert holdout.startswith("1000 rows scored") and "drift: is_drift=False" in holdout, out[-4000:]
    assert shifted.startswith("1000 rows scored") and "drift: is_drift=True" in shifted, out[-4000:]

    store = storage(cluster)
    runs = [
        n
        for n in store.listdir("runs", "churn-quickstart")
        if store.exists("runs", "churn-quickstart", n, "_manifest.json")
    ]
    assert len(runs) == 1, store.listdir("runs", "churn-quickstart")
    run = runs[0]
    assert {"meta.json", "model.ubj", "schema.json", "evaluation.json"} <= set(
        store.listdir("runs", "churn-quickstart", run)
    )
    assert store.files("cache", "steps", "prepare") and store.files("runs", "churn-quickstart", run, "tune")
    # training.explore: the split was profiled by tasks on the worker nodes, the profile written to object storage
    profile = store.read_json("runs", "churn-quickstart", run, "explore", "training.json")
    assert profile["label"] == "churned" and profile["rows"] > 0 and "contract" in profile["associations"]
    from mlflow import MlflowClient

    mv = MlflowClient(cluster.tracking).get_model_version_by_alias("churn", "champion")
    assert mv.tags["raymlops.run_id"] == run
    # the app's state: request log, monitor history and checkpoint, alert log, all in object storage
    _wait(lambda: store.files("request_log", "churn-quickstart"), 30, "the request log in storage")
    assert store.listdir("monitoring", "churn-quickstart", "default", "history.jsonl.d")
    assert store.exists("monitoring", "churn-quickstart", "default", "checkpoint.pkl")
    status, got = predict(rows(job_dir, "holdout", 3))
    assert status == 200 and len(got["predictions"]) == 3 and got["model_version"] == f"churn/{mv.version}"
    # The exported Serve config (what a RayService runs): `serve deploy` of it on the cluster redeploys the
    # app, monitors included, from object storage and the registry.
    exported = cluster.work / "serve.yaml"
    r = subprocess.run(
        [str(VENV / "raymlops"), "serve", "configs/quickstart.yaml", "--export", str(exported)],
        cwd=job_dir,
        env=cluster.job_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.strip() == str(exported), r.stdout + r.stderr[-3000:]
    from ray import serve

    deployed = serve.status().applications["churn-quickstart"].last_deployed_time_s
    r = subprocess.run(
        [str(VENV / "serve"), "deploy", str(exported), "--address", cluster.dashboard],
        env=cluster.job_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _wait(
        lambda: (
            (a := serve.status().applications["churn-quickstart"]).last_deployed_time_s > deployed
            and a.status == "RUNNING"
        ),
        180,
        "the exported app to be redeployed",
        interval=1,
    )
    status, got = predict(rows(job_dir, "holdout", 3))
    assert status == 200 and got["model_version"] == f"churn/{mv.version}"


def test_a_lost_worker_node_is_replaced_and_serving_and_monitoring_resume_from_storage(cluster, job_dir):
    import pickle

    store = storage(cluster)
    before = pickle.loads(store.read_bytes("monitoring", "churn-quickstart", "default", "checkpoint.pkl"))
    status, _ = predict(rows(job_dir, "holdout", 2))
    assert status == 200
    cluster.kill_worker()
    cluster.start_worker()  # a new node, empty disk: the model and detectors come from storage and the registry

    def answers():
        s, body = predict(rows(job_dir, "holdout", 2), timeout=10)
        return s == 200 and body

    got = _wait(answers, 300, "serving to answer again on the new node", interval=2)
    assert got["model_version"] == before["model_version"]
    # the monitor carried on from its checkpoint in storage: it counts on from what it had seen
    batch = rows(job_dir, "holdout", 600)
    assert predict(batch)[0] == 200

    def seen():
        state = pickle.loads(store.read_bytes("monitoring", "churn-quickstart", "default", "checkpoint.pkl"))
        return state["rows_seen"] >= before["rows_seen"] + 600 and state

    state = _wait(seen, 120, "the monitor to checkpoint the new rows", interval=1)
    assert state["windows_tested"] >= before["windows_tested"] + 1
    from raymlops.storage.files import read_lines

    history = [
        json.loads(x) for x in read_lines(store.url("monitoring", "churn-quickstart", "default", "history.jsonl"))
    ]
    windows = [h["window"] for h in history if h.get("kind") == "drift"]
    assert len(windows) == len(set(windows)) and max(windows) >= before["windows_tested"] + 1
    # no partial run: every run directory in storage is committed
    for p in store.listdir("runs"):
        for run in store.listdir("runs", p):
            assert store.exists("runs", p, run, "_manifest.json"), (p, run)


PIT_JOB = '''"""A user's script on the cluster: the features example's training set, point in time."""
import pandas as pd

from raymlops import FeatureStore, load_config

store = FeatureStore(load_config("configs/features.yaml"))
labels = pd.read_parquet("data/demo/labels.parquet")
out = store.get_historical_features(labels, ["txn_stats:*"])
print(f"training set: {len(out)} rows, {int((out['amount_count_30d'] > 0).sum())} with events in 30 days")
'''


def test_the_features_example_builds_trains_point_in_time_materializes_to_redis_and_serves_by_entity(cluster, job_dir):
    """On two worker nodes: the point-in-time join's shuffle runs tasks on both. (The build shuffles no
    more: a view stores its events, and windows are computed when they are read.)"""
    from ray import serve

    serve.delete("churn-quickstart")  # free the first node's CPUs: SPREAD places tasks on nodes with room
    workers = cluster.ensure_workers(2)
    r = cluster.submit("raymlops features build configs/features.yaml", job_dir, name="features-build")
    assert r.returncode == 0 and "txn_stats: version 1 (overwrite)" in r.stdout, r.stdout[-5000:]
    store = storage(cluster)
    assert store.exists("features", "offline", "txn_stats", "_versions", "00000001.json")
    (job_dir / "pit_job.py").write_text(PIT_JOB)
    r = cluster.submit("python pit_job.py", job_dir, name="pit")
    labels = pd.read_parquet(job_dir / "data" / "demo" / "labels.parquet")
    assert r.returncode == 0 and f"training set: {len(labels)} rows" in r.stdout, r.stdout[-5000:]
    with_features = int(r.stdout.split(" rows, ")[1].split()[0])
    assert 0 < with_features < len(labels)  # some label rows have no transaction in the 30 days before them
    _wait(
        lambda: cluster.task_nodes(r.submission_id, "_reduce") == workers,
        30,
        "the point-in-time join's reduce tasks on both worker nodes",
    )
    assert cluster.task_nodes(r.submission_id, "_split_files")  # each map task read its group of feature files
    r = cluster.submit("raymlops run configs/features.yaml", job_dir, name="features-run")
    assert r.returncode == 0, r.stdout[-6000:]
    assert "step features (txn_stats): skipped" in r.stdout, r.stdout[-6000:]  # the CLI's build is reused
    result = result_of(r.stdout)
    assert result["metrics"]["auc"] > 0.7 and result["run_dir"].startswith("s3://raymlops/store/runs/churn-features/")
    from raymlops.artifacts.run import read_meta

    meta = read_meta(result["run_dir"])
    versions = sorted(store.listdir("features", "offline", "txn_stats", "_versions"))
    assert meta["dataset"]["features"] == ["txn_stats:*"]
    assert versions == [f"{meta['dataset']['offline_versions']['txn_stats']:08d}.json"]  # trained on that version
    import redis

    keys = redis.Redis.from_url(cluster.redis).keys("churn-features:txn_stats:*")
    customers = pd.read_parquet(job_dir / "data" / "demo" / "transactions.parquet").customer_id.nunique()
    records = [k for k in keys if b":@" not in k]  # the rest are window tiles
    assert len(records) >= customers and len(keys) > len(records), (len(records), len(keys), customers)
    ids = [1, 2, 3, 999_999]
    status, raw = _http(
        f"http://127.0.0.1:{SERVE_PORT}/churn-features/predict",
        {"content-type": "application/json"},
        json.dumps({"entities": [{"customer_id": c, "tenure_months": 12} for c in ids]}).encode(),
    )
    body = json.loads(raw)
    assert status == 200, body
    assert body["feature_statuses"]["segment"][-1] == "NOT_FOUND"
    assert (
        "PRESENT" in body["feature_statuses"]["segment"][:3] or "OUTSIDE_TTL" in body["feature_statuses"]["segment"][:3]
    )
    assert len(body["probabilities"]) == 4 and body["model_version"] == result["run_id"]


def test_the_ab_canary_example_keeps_its_canary_state_in_storage_across_a_controller_and_node_loss(cluster, job_dir):
    import ray
    from mlflow import MlflowClient
    from ray import serve

    from raymlops.serving.controller import controller_name

    for app in ("churn-quickstart", "churn-features"):  # the worker node's 2 CPUs go to this app now
        serve.delete(app)
    MlflowClient(cluster.tracking).set_registered_model_alias("churn", "challenger", "1")
    r = cluster.submit("raymlops serve configs/ab_canary.yaml", job_dir, name="ab-canary")
    assert r.returncode == 0, r.stdout[-6000:]

    def variants() -> dict:
        status, body = _http(f"http://127.0.0.1:{SERVE_PORT}/churn-ab/variants", timeout=10)
        return json.loads(body) if status == 200 else {}

    before = _wait(variants, 60, "the app's variants")
    assert before["canary"]["step"] == 0 and before["weights"]["challenger"] == 5, before
    store = storage(cluster)
    saved = store.read_json("serving", "churn-ab", "traffic.json")
    assert saved["fingerprint"] == before["plan"] and saved["state"]["version"] == before["version"]
    sample = rows(job_dir, "holdout", 5)
    for i, row in enumerate(sample):
        row["customer_id"] = i
    status, got = predict(sample, "/churn-ab")
    assert status == 200 and got["variant"] in ("champion", "challenger")
    # The controller dies (Ray restarts it, on any node): it carries on from traffic.json in object storage.
    ray.kill(ray.get_actor(controller_name("churn-ab"), namespace="raymlops"), no_restart=False)
    cluster.kill_worker()
    cluster.start_worker()
    after = _wait(lambda: (v := variants()) and v.get("weights") and v, 300, "the app to serve again", interval=2)
    assert after["canary"]["step"] >= before["canary"]["step"] and after["history"][:1] == before["history"][:1]
    assert after["plan"] == before["plan"]
    from raymlops.serving.controller import read_events

    starts = [e for e in read_events(store.url("serving", "churn-ab")) if e.get("event") == "start"]
    assert len(starts) == 1, starts  # resumed, not started again
    status, got = predict(sample, "/churn-ab")
    assert status == 200


def test_the_sklearn_examples_train_and_register_on_the_cluster(cluster, job_dir):
    from mlflow import MlflowClient

    store = storage(cluster)
    for entrypoint, pipeline, metric in (
        ("raymlops run configs/sklearn_multiclass.yaml --quiet", "contract-multiclass", "accuracy"),
        ("python jobs/run_pipeline.py configs/sklearn_regression.yaml", "charges-regression", "rmse"),
    ):
        r = cluster.submit(entrypoint, job_dir, name=pipeline)
        assert r.returncode == 0, r.stdout[-6000:]
        result = result_of(r.stdout)
        assert result["run_dir"].startswith(f"s3://{BUCKET}/store/runs/{pipeline}/"), result
        assert store.exists("runs", pipeline, result["run_id"], "_manifest.json")
        assert metric in result["metrics"], result
        versions = MlflowClient(cluster.tracking).search_model_versions(f"name='{result['model']['name']}'")
        assert result["run_id"] in {v.tags.get("raymlops.run_id") for v in versions}


def test_the_closed_loop_drift_alerts_retrains_in_a_job_and_promotes_the_challenger(cluster, job_dir):
    """configs/monitoring.yaml with its source on object storage: shifted traffic -> drift alert (a webhook
    on the head's address, from the monitors on the worker nodes) -> a retrain Ray job submitted by the app
    monitor -> the new version @challenger, shadowed -> promoted to @champion after observe_s."""
    from mlflow import MlflowClient
    from ray import serve

    from tests.webhook import Receiver

    for app in list(serve.status().applications):  # the worker nodes' CPUs go to this app and its retrain
        serve.delete(app)
    cluster.ensure_workers(2)
    store = storage(cluster)
    demo = job_dir / "data" / "demo"
    store.write_bytes("data", "train.parquet", data=(demo / "train.parquet").read_bytes())
    receiver = Receiver(HEAD_IP)
    try:
        r = cluster.submit(
            "raymlops run configs/monitoring.yaml --quiet --exit --set training.tune.num_samples=1 "
            "--set monitoring.retrain.observe_s=5",
            job_dir,
            name="monitoring",
            env_vars={
                "ALERT_WEBHOOK": receiver.url,
                "DEMO_DATA": f"s3://{BUCKET}/store/data",
                "LATE_LABELS": f"s3://{BUCKET}/store/data/late_labels.csv",
            },
        )
        assert r.returncode == 0, r.stdout[-6000:]
        client = MlflowClient(cluster.tracking)
        first = int(client.get_model_version_by_alias("churn-watch", "champion").version)
        # The new month lands in the source table; the shifted rows reach the endpoint.
        shifted = pd.read_parquet(demo / "shifted.parquet")
        grown = pd.concat([pd.read_parquet(demo / "train.parquet"), shifted], ignore_index=True)
        store.write_bytes("data", "train.parquet", data=grown.to_parquet(index=False))
        batch = rows(job_dir, "shifted", 1000)
        for i in range(0, 1000, 100):
            status, body = predict(batch[i : i + 100], "/churn-watch", timeout=60)
            assert status == 200, body

        def finished():
            status, raw = _http(f"http://127.0.0.1:{SERVE_PORT}/churn-watch/monitoring", timeout=30)
            done = json.loads(raw)["app"]["retrains"] if status == 200 else []
            return done if done and done[-1]["status"] in ("promoted", "kept", "failed") else None

        [record] = _wait(finished, 600, "the retrain to finish", interval=3)
        steps = [s["step"] for s in record["steps"]]
        assert record["status"] == "promoted", record
        assert steps[:2] == ["triggered", "job_submitted"] and steps[-2:] == ["challenger_shadow", "promoted"], steps
        from ray.job_submission import JobStatus, JobSubmissionClient

        job = JobSubmissionClient(cluster.dashboard).get_job_info(record["job_id"])
        assert job.status == JobStatus.SUCCEEDED, job
        version = record["outcome"]["version"]
        assert version > first
        assert int(client.get_model_version_by_alias("churn-watch", "champion").version) == version
        run_id = client.get_model_version("churn-watch", str(version)).tags["raymlops.run_id"]
        from raymlops.artifacts.run import read_meta

        meta = read_meta(store.url("runs", "churn-watch", run_id))
        assert sum(meta["rows"].values()) == len(grown)  # trained on the table as it is now
        _wait(
            lambda: [b for b in receiver.of("retrain") if b["details"]["step"] == "promoted"],
            30,
            "the promotion's webhook alert",
        )
        assert receiver.of("drift"), receiver.got  # from the monitor actors on the worker nodes
        from raymlops.storage.files import read_lines

        logged = [json.loads(x) for x in read_lines(store.url("monitoring", "churn-watch", "alerts.jsonl"))]
        assert {"drift", "retrain"} <= {a["type"] for a in logged}
    finally:
        receiver.close()
