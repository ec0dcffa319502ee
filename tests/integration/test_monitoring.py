"""The monitoring engine on a real local Ray: monitor actors that survive being killed, alerts to a webhook
receiver started here (once per event inside the cooldown), live performance from late labels joined to
the request log, and the closed loop: shift -> alert -> retrain job -> challenger shadowed -> promoted."""

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import ray
from sklearn.metrics import roc_auc_score

from raymlops.artifacts import Predictor
from raymlops.config.monitoring import DataQualityConfig, DriftConfig
from raymlops.monitoring.actor import start_monitor
from raymlops.monitoring.app_monitor import start_app_monitor
from raymlops.pipeline.loop import promote_challenger
from raymlops.pipeline.probe import _jsonable
from raymlops.serving.request_log import RequestLog
from tests.integration.conftest import pipeline
from tests.webhook import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _wait(what, fn, timeout=60, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _monitor_spec(run_dir, state_dir, app, app_monitor=None, **extra):
    return {
        "app": app,
        "variant": "default",
        "namespace": ray.get_runtime_context().namespace,
        "run_dir": str(run_dir),
        "model_version": Path(run_dir).name,
        "state_dir": str(state_dir),
        "drift": DriftConfig(window=500).model_dump(),
        "quality": DataQualityConfig(window=500).model_dump(),
        "history": 100,
        "checkpoint_s": 0.3,
        "app_monitor": app_monitor,
        **extra,
    }


def _served(df: pd.DataFrame, run_dir) -> pd.DataFrame:
    """Rows as the model replicas hand them to the monitor: inputs plus the model output."""
    p = Predictor(run_dir)
    _, proba = p.predict_with_proba(df)
    return df[p.schema.names].assign(__prediction__=proba)


def test_a_killed_monitor_resumes_with_its_history_and_loses_at_most_one_window(quickstart, demo_dir, tmp_path):
    _, result = quickstart
    holdout = pd.read_parquet(demo_dir / "holdout.parquet")  # 1,000 rows: sent twice
    rows = _served(pd.concat([holdout, holdout], ignore_index=True), result.run_dir)
    handle = start_monitor(_monitor_spec(result.run_dir, tmp_path, "killed"))
    for part in (rows.iloc[:400], rows.iloc[400:1100], rows.iloc[1100:1250]):
        ray.get(handle.observe.remote(part))
    before = ray.get(handle.status.remote())
    assert before["drift"]["windows_tested"] == 2 and before["drift"]["rows_pending"] == 250
    time.sleep(1.0)  # only the periodic checkpoint (0.3 s) saves the last 150 rows: they closed no window
    pid = ray.get(handle.pid.remote())
    os.kill(pid, signal.SIGKILL)
    after = _wait("the restarted monitor", lambda: _status_if_restarted(handle, pid))
    assert after["restored"] is True
    assert after["drift"]["windows_tested"] == 2 and after["drift"]["rows_pending"] == 250
    assert after["history"] == before["history"]  # every result, none twice
    assert ray.get(handle.observe.remote(rows.iloc[1250:1500])) == 3  # the pending rows were kept: 250 + 250
    kinds = [h["kind"] for h in ray.get(handle.status.remote())["history"]]
    assert kinds.count("drift") == 3 and kinds.count("data_quality") == 3
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(ln)["model_version"] == Path(result.run_dir).name for ln in lines)
    ray.kill(handle, no_restart=True)


def _status_if_restarted(handle, old_pid):
    try:
        if ray.get(handle.pid.remote(), timeout=5) != old_pid:
            return ray.get(handle.status.remote())
    except Exception:
        return None
    return None


def test_one_alert_per_event_inside_the_cooldown_and_every_event_recorded(quickstart, demo_dir, tmp_path, receiver):
    _, result = quickstart
    ns = ray.get_runtime_context().namespace
    canary_events = tmp_path / "events.jsonl"
    start_app_monitor(
        {
            "app": "alerting",
            "namespace": ns,
            "state_dir": str(tmp_path / "app"),
            "alerts": [
                {
                    "type": "webhook",
                    "url": receiver.url,
                    "on": ["drift", "data_quality", "canary"],
                    "cooldown_s": 300,
                    "timeout_s": 5,
                    "retries": 2,
                    "headers": {},
                },
                {"type": "log", "path": None, "on": ["drift"], "cooldown_s": 0},
            ],
            "alert_log": str(tmp_path / "app" / "alerts.jsonl"),
            "canary_events": str(canary_events),
            "performance": None,
            "retrain": None,
        }
    )
    monitor = start_monitor(_monitor_spec(result.run_dir, tmp_path / "v", "alerting", "raymlops-appmonitor-alerting"))
    shifted = pd.read_parquet(demo_dir / "shifted.parquet")  # 1,000 rows: sent twice
    shifted = _served(pd.concat([shifted, shifted], ignore_index=True), result.run_dir)
    for i in range(0, 2000, 250):
        ray.get(monitor.observe.remote(shifted.iloc[i : i + 250]))
    canary_events.write_text(
        json.dumps(
            {
                "at": time.time(),
                "event": "rollback",
                "variant": "next",
                "reason": "error rate 0.31 > 0.02 over 120 requests",
            }
        )
        + "\n"
    )
    app = ray.get_actor("raymlops-appmonitor-alerting", namespace=ns)
    _wait("the canary event", lambda: receiver.of("canary"), timeout=30)
    assert ray.get(app.flush_alerts.remote(10))
    status = ray.get(app.status.remote(100))
    drift_events = [e for e in status["events"] if e["type"] == "drift"]
    assert len(drift_events) == 3  # every drifted window from the second on (alert_after: 2 of 3) ...
    assert len(receiver.of("drift")) == 1  # ... and the webhook hears of it once inside the cooldown
    assert len(receiver.of("data_quality")) == 1 and len(receiver.of("canary")) == 1
    hook = receiver.of("drift")[0]
    assert hook["variant"] == "default" and "monthly_charges" in hook["text"] and hook["app"] == "alerting"
    assert "rolled back" in receiver.of("canary")[0]["message"]
    log_lines = (tmp_path / "app" / "alerts.jsonl").read_text().splitlines()
    assert len(log_lines) == 3  # the log sink has no cooldown
    quality_events = [e for e in status["events"] if e["type"] == "data_quality"]
    assert len(quality_events) == 4  # monthly_charges out of its training range in every window
    webhook = status["alerts"]["webhook:" + receiver.url.split("/")[2]]
    assert webhook["suppressed"] == 2 + 3 and webhook["sent"] == 3 and webhook["failed"] == 0
    ray.kill(monitor, no_restart=True)
    ray.kill(app, no_restart=True)


def test_late_labels_joined_to_the_request_log_give_live_auc_per_variant(quickstart, demo_dir, tmp_path, receiver):
    _, result = quickstart
    holdout = pd.read_parquet(demo_dir / "holdout.parquet")
    _, proba = Predictor(result.run_dir).predict_with_proba(holdout)
    log = RequestLog(str(tmp_path / "log"), flush_s=60)
    ids = [f"r{i}" for i in range(len(holdout))]
    bad = np.random.default_rng(0).random(len(holdout))  # variant "b" answers with noise
    for i, rid in enumerate(ids):
        variant, p = ("a", proba[i]) if i % 2 == 0 else ("b", float(bad[i]))
        log.add(
            {
                "ts": time.time(),
                "request_id": rid,
                "variant": variant,
                "role": "primary",
                "status": 200,
                "latency_ms": 3.0,
                "model_version": variant,
                "rows": [holdout.iloc[i][["plan"]].to_dict()],
                "predictions": [int(p >= 0.5)],
                "probabilities": [p],
            }
        )
    assert log.flush()
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ids, "churned": holdout["churned"]}).to_csv(labels, index=False)
    perf = {
        "labels": "late",
        "join": "request_id",
        "request_id": "request_id",
        "keys": [],
        "timestamp": None,
        "max_delay_s": 86400.0,
        "label": "churned",
        "metric": "auc",
        "window": 200,
        "floor": 0.6,
        "every_s": 3600,
        "task": "binary",
        "labels_source": {"format": "csv", "path": str(labels)},
        "request_log": str(tmp_path / "log"),
    }
    ns = ray.get_runtime_context().namespace
    app = start_app_monitor(
        {
            "app": "perf",
            "namespace": ns,
            "state_dir": str(tmp_path / "app"),
            "alerts": [
                {
                    "type": "webhook",
                    "url": receiver.url,
                    "on": ["performance"],
                    "cooldown_s": 300,
                    "timeout_s": 5,
                    "retries": 0,
                    "headers": {},
                }
            ],
            "alert_log": str(tmp_path / "alerts.jsonl"),
            "canary_events": None,
            "performance": perf,
            "retrain": None,
        }
    )
    got = ray.get(app.refresh_performance.remote())
    assert got["labelled_rows"] == 1000
    summary = got["summary"]["primary"]
    a_rows = holdout.iloc[::2]
    first = a_rows.head(200)
    window_a = [w for w in got["windows"] if w["variant"] == "a"][0]
    assert window_a["value"] == pytest.approx(roc_auc_score(first["churned"], np.asarray(proba)[::2][:200]))
    assert summary["a"]["mean"] > 0.65 and summary["b"]["mean"] < 0.6
    ray.get(app.flush_alerts.remote(10))
    alerts = receiver.of("performance")
    assert len(alerts) == 1 and alerts[0]["variant"] == "b" and alerts[0]["subject"] == "auc"
    events = [e for e in ray.get(app.status.remote(100))["events"] if e["type"] == "performance"]
    assert {e["variant"] for e in events} == {"b"} and len(events) == 2  # each breaching window, once
    ray.get(app.refresh_performance.remote())  # joined again: no window is reported twice
    assert len([e for e in ray.get(app.status.remote(100))["events"] if e["type"] == "performance"]) == 2
    ray.kill(app, no_restart=True)
    # The windows and the floor are in the app's state in storage: the console draws them from there.
    from raymlops.console.monitoring import Histories, page

    shown = page("perf", str(tmp_path / "app"), [], Histories()).performance
    assert {w["variant"] for ws in shown.values() for w in ws} == {"a", "b"}
    assert shown["a"][0]["value"] == pytest.approx(window_a["value"]) and shown["b"][0]["floor"] == 0.6


def _loop_app(
    demo_dir,
    storage,
    tmp_path,
    receiver,
    model: str,
    app: str,
    *serving: str,
    deploy: str,
    observe_s: float,
    challenger: bool = True,
):
    """Serves app ``app`` on registry aliases of ``model`` with drift-triggered retraining from a source
    directory the test later adds the shifted month to; returns (pipeline, url, source directory).
    ``challenger``: register a first @challenger (a canary variant needs one; a shadow waits for it)."""
    registry = [f"registry.model_name={model}", "registry.promotion.beat_champion_by=null"]
    # The quickstart's own config and data: every step is cached, only the registrations are new.
    trainer = pipeline(
        "quickstart.yaml", demo_dir, storage, "training.tune.num_samples=2", "monitoring.drift.p_val=0.01", *registry
    )
    first = trainer.train(progress=False)
    assert first.model["version"] == 1 and first.steps["train"]["cached"], (first.model, first.steps)
    if challenger:
        trainer.train(progress=False, register_as="challenger")
    data = tmp_path / "customers"
    data.mkdir()
    shutil.copy(demo_dir / "train.parquet", data / "part-0.parquet")
    pipe = pipeline(
        "quickstart.yaml",
        demo_dir,
        storage,
        f"sources.customers.path={data}",
        *registry,
        "training.tune.num_samples=1",
        f"serving.app_name={app}",
        f"serving.route_prefix=/{app}",
        "serving.reload_seconds=1",
        "serving.num_cpus=0",
        *serving,
        f'monitoring.alerts=[{{"type": "webhook", "url": "{receiver.url}", "cooldown_s": 300}}]',
        f'monitoring.retrain={{"on": ["drift"], "min_interval_s": 3600, "deploy": "{deploy}", '
        f'"observe_s": {observe_s}}}',
    )
    return pipe, pipe.serve(), data


def test_a_single_drifted_window_raises_no_event_and_two_of_three_do(quickstart, demo_dir, tmp_path):
    """alert_after {windows: 2, of: 3} (the default): one noisy window is in /drift and the history but
    raises no event (so no alert and no retrain, which start from events); a second within three does."""
    _, result = quickstart
    ns = ray.get_runtime_context().namespace
    start_app_monitor(
        {
            "app": "persist",
            "namespace": ns,
            "state_dir": str(tmp_path / "app"),
            "alerts": [],
            "alert_log": str(tmp_path / "app" / "alerts.jsonl"),
            "canary_events": None,
            "performance": None,
            "retrain": None,
        }
    )
    monitor = start_monitor(_monitor_spec(result.run_dir, tmp_path / "v", "persist", "raymlops-appmonitor-persist"))
    app = ray.get_actor("raymlops-appmonitor-persist", namespace=ns)
    shifted = _served(pd.read_parquet(demo_dir / "shifted.parquet").head(500), result.run_dir)
    calm = _served(pd.read_parquet(demo_dir / "holdout.parquet").head(1000), result.run_dir)
    drift_events = lambda: [e for e in ray.get(app.status.remote(100))["events"] if e["type"] == "drift"]  # noqa: E731
    for part in (shifted, calm.iloc[:500], calm.iloc[500:]):
        ray.get(monitor.observe.remote(part))
    verdicts = [h["is_drift"] for h in ray.get(monitor.status.remote())["history"] if h["kind"] == "drift"]
    assert verdicts == [True, False, False]
    time.sleep(1.0)  # events are sent without waiting: give a stray one time to arrive
    assert drift_events() == []
    ray.get(monitor.observe.remote(shifted))  # window 4: one drifted in the last three
    ray.get(monitor.observe.remote(shifted))  # window 5: two
    events = _wait("the drift event", drift_events, timeout=30)
    assert len(events) == 1 and "drift in 2 of the last 3 windows (window 5" in events[0]["message"], events
    ray.kill(monitor, no_restart=True)
    ray.kill(app, no_restart=True)


@pytest.fixture
def loop_app(quickstart, demo_dir, storage, tmp_path, receiver):
    """App 'loop': champion variant + challenger shadow (both follow registry aliases of 'churn-loop')."""
    pipe, url, data = _loop_app(
        demo_dir,
        storage,
        tmp_path,
        receiver,
        "churn-loop",
        "loop",
        "serving.model=models:/churn-loop@champion",
        'serving.shadow=[{"name": "challenger", "model": "models:/churn-loop@challenger"}]',
        deploy="shadow",
        observe_s=2,
        challenger=False,
    )
    yield pipe, url, data
    pipe.stop()


def _post_shifted_month(demo_dir, data, url) -> list[dict]:
    """The new month lands in the source directory and 1,000 of its rows reach the endpoint; returns them."""
    shifted = pd.read_parquet(demo_dir / "shifted.parquet")
    shifted.to_parquet(data / "part-1.parquet")
    rows = _jsonable(shifted.drop(columns=["customer_id", "churned"]))
    for i in range(0, 1000, 50):
        r = httpx.post(f"{url}/predict", json={"instances": rows[i : i + 50]}, timeout=60)
        assert r.status_code == 200, r.text
    return rows


def _retrain_finished(url):
    retrains = httpx.get(f"{url}/monitoring", timeout=30).json()["app"]["retrains"]
    return retrains if retrains and retrains[-1]["status"] in ("promoted", "kept", "failed") else None


def test_the_closed_loop_retrains_shadows_and_promotes_when_the_gate_passes(loop_app, demo_dir, receiver):
    pipe, url, data = loop_app
    before = httpx.get(f"{url}/health").json()["variants"]
    assert before["challenger"] == before["default"]  # no @challenger yet: the shadow mirrors the champion
    _post_shifted_month(demo_dir, data, url)

    node = ray._private.worker.global_worker.node
    metrics = f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"

    def gauges():  # Ray exports metrics every few seconds
        lines = httpx.get(metrics, timeout=10).text.splitlines()
        return [ln for ln in lines if ln.startswith("ray_raymlops_drift_score{") and 'app="loop"' in ln] or None

    scores = _wait("the drift gauges", gauges, timeout=60, every=2)
    assert any('feature="monthly_charges"' in ln and 'variant="default"' in ln for ln in scores), scores
    assert any('feature="__prediction__"' in ln for ln in scores), scores
    lines = httpx.get(metrics, timeout=10).text.splitlines()
    assert any(ln.startswith("ray_raymlops_drift_effect{") and 'feature="monthly_charges"' in ln for ln in lines)

    retrains = _wait("the retrain to finish", lambda: _retrain_finished(url), timeout=600, every=2)
    assert len(retrains) == 1, retrains  # min_interval_s: one retrain however many windows drift
    record = retrains[0]
    steps = [s["step"] for s in record["steps"]]
    assert record["status"] == "promoted", record
    assert steps[:2] == ["triggered", "job_submitted"] and steps[-3:] == [
        "challenger_registered",
        "challenger_shadow",
        "promoted",
    ], steps
    assert record["trigger"]["type"] == "drift"
    version = record["outcome"]["version"]
    from raymlops.registry import ModelRegistry

    reg = ModelRegistry.from_config(pipe.config)
    assert reg.alias_version("churn-loop", "champion") == version == reg.alias_version("churn-loop", "challenger")
    new_run = reg.version("churn-loop", version).tags["raymlops.run_id"]
    trained_rows = json.loads(
        (Path(pipe.config.storage) / "runs" / pipe.config.name / new_run / "meta.json").read_text()
    )["rows"]
    assert sum(trained_rows.values()) > 6000  # trained on the data up to now (the shifted month too)
    new_model = f"churn-loop/{version}"  # what serving calls a registered version
    served = _wait(
        "both variants to swap to the new version",
        lambda: (v := httpx.get(f"{url}/health").json()["variants"])["default"] == new_model and v,
        timeout=30,
    )
    assert served["challenger"] == new_model and before["default"] != new_model
    from raymlops.pipeline.monitor import format_monitor_status, monitor_status

    shown = format_monitor_status(monitor_status(pipe.config, pipe.app_name))
    assert "(promoted): triggered -> job_submitted" in shown and "[drift] default" in shown, shown
    from raymlops.console.monitoring import Histories, page
    from raymlops.pipeline.serve import monitoring_dir

    console = page(pipe.app_name, monitoring_dir(pipe.config, pipe.app_name), ["default"], Histories())
    assert console.retrains[0]["status"] == "promoted" and console.retrains[0]["outcome"]["version"] == version
    assert console.windows["default"] > 0 and console.alarms["default"]  # the shifted month's windows
    receiver_steps = [b["details"]["step"] for b in receiver.of("retrain")]
    assert receiver_steps[-1] == "promoted"
    # The champion and the shadowed challenger each have a monitor: one drift alert each inside the cooldown.
    assert sorted(b["variant"] for b in receiver.of("drift")) == ["challenger", "default"]
    # The gate decides: a challenger whose gate failed is never promoted.
    reg.tag_version("churn-loop", version, {"raymlops.gate.passed": "false"})
    reg.set_alias("churn-loop", "champion", 1, reason="test: back to version 1")
    refused = promote_challenger(str(pipe_config_path(pipe)), version)
    assert refused["promoted"] is False and refused["reason"].startswith("gate failed")
    assert reg.alias_version("churn-loop", "champion") == 1


def test_the_closed_loop_in_canary_mode_restarts_the_canary_and_keeps_the_champion_on_rollback(
    quickstart, demo_dir, storage, tmp_path, receiver
):
    """deploy: canary. The canary variant follows @challenger: the retrained version swaps in, the canary
    schedule starts again for it, and its rollback (p99 above an unreachable 0.001 ms) keeps the champion."""
    canary = {
        "variant": "challenger",
        "steps": [50, 100],
        "interval_s": 3600,
        "rollback_on": {"error_rate": None, "p99_ms": 0.001, "min_requests": 10},
    }
    variants = [
        {"name": "default", "model": "models:/churn-canary@champion"},
        {"name": "challenger", "model": "models:/churn-canary@challenger", "weight": 0},
    ]
    pipe, url, data = _loop_app(
        demo_dir,
        storage,
        tmp_path,
        receiver,
        "churn-canary",
        "loopc",
        f"serving.variants={json.dumps(variants)}",
        f"serving.canary={json.dumps(canary)}",
        deploy="canary",
        observe_s=120,
    )
    stop = threading.Event()
    try:
        rows = _post_shifted_month(demo_dir, data, url)

        def traffic():  # keeps requests coming for the restarted canary to be judged on
            i = 0
            while not stop.is_set():
                try:
                    httpx.post(f"{url}/predict", json={"instances": rows[i % 1000 : i % 1000 + 1]}, timeout=60)
                except httpx.HTTPError:  # a slow moment on a loaded machine: keep the traffic coming
                    pass
                i += 1
                time.sleep(0.05)

        threading.Thread(target=traffic, daemon=True).start()
        [record] = _wait("the retrain to finish", lambda: _retrain_finished(url), timeout=600, every=2)
        served = httpx.get(f"{url}/health").json()["variants"]
    finally:
        stop.set()
        pipe.stop()
    steps = [s["step"] for s in record["steps"]]
    new_run, new_model = record["run_id"], f"churn-canary/{record['version']}"
    assert record["status"] == "kept" and steps[-3:] == ["challenger_registered", "challenger_canary", "kept"], record
    assert record["outcome"]["reason"].startswith(f"the canary of {new_model} (run {new_run}) rolled back: p99")
    from raymlops.registry import ModelRegistry

    reg = ModelRegistry.from_config(pipe.config)
    assert reg.alias_version("churn-canary", "champion") == 1  # kept
    assert reg.alias_version("churn-canary", "challenger") == record["version"] == 3
    assert served["challenger"] == new_model != served["default"]
    from raymlops.pipeline.serve import state_dir
    from raymlops.serving.controller import read_events

    events = [(e["event"], e.get("model")) for e in read_events(state_dir(pipe.config, "loopc"))]
    restart = events.index(("start", new_model))  # the swap restarted the canary for the new model ...
    assert ("rollback", new_model) in events[restart:], events  # ... and its own requests rolled it back
    # One alert per rolled-back model: the retrained run's rollback is not inside the first one's cooldown.
    rollbacks = [b["subject"] for b in receiver.of("canary") if b["severity"] == "critical"]
    assert f"rollback {new_model}" in rollbacks, receiver.of("canary")
    assert [b["details"]["step"] for b in receiver.of("retrain")][-1] == "kept"


def test_serve_deploy_of_an_exported_file_starts_the_monitors(quickstart, demo_dir, storage, tmp_path):
    """`raymlops serve --export` + the real `serve deploy` CLI: Serve's build of the app starts the variant
    monitor and the app monitor that `raymlops serve` would have started; traffic then reaches them."""
    import subprocess
    from urllib.parse import urlparse

    from ray import serve

    from raymlops.monitoring.actor import actor_name
    from raymlops.monitoring.app_monitor import app_monitor_name
    from raymlops.serving.runtime import start_serve
    from tests.conftest import cli_env, free_port

    _, result = quickstart
    port = urlparse(start_serve("127.0.0.1", free_port())).port  # the session's proxy: deploy files must match it
    secret = "http://127.0.0.1:9/hook?token=s3cr3t-token"  # alert secrets stay in storage, out of the file
    pipe = pipeline(
        "quickstart.yaml",
        demo_dir,
        storage,
        "serving.app_name=exported",
        "serving.route_prefix=/exported",
        "serving.num_cpus=0",
        f"serving.port={port}",
        f'monitoring.alerts=[{{"type": "webhook", "url": "{secret}", "on": ["retrain"]}}, {{"type": "log"}}]',
    )
    path = pipe.export_serve_config(tmp_path / "serve.yaml", result.run_dir)
    assert "s3cr3t" not in path.read_text()
    monitors = [(actor_name("exported", "default"), "variant"), (app_monitor_name("exported"), "app")]
    for name, _ in monitors:
        with pytest.raises(ValueError):  # exporting starts nothing
            ray.get_actor(name, namespace="raymlops")
    dashboard = "http://" + ray._private.worker.global_worker.node.address_info["webui_url"]
    try:
        r = subprocess.run(
            ["serve", "deploy", str(path), "--address", dashboard],
            capture_output=True,
            text=True,
            timeout=300,
            env=cli_env(RAY_AUTH_MODE="token"),
        )
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        _wait(
            "the deployed app",
            lambda: getattr(serve.status().applications.get("exported"), "status", None) == "RUNNING",
            timeout=240,
            every=1,
        )
        for name, _ in monitors:
            ray.get_actor(name, namespace="raymlops")  # started by Serve's build of the app
        url = f"http://127.0.0.1:{port}/exported"
        rows = _jsonable(pd.read_parquet(demo_dir / "holdout.parquet").drop(columns=["customer_id", "churned"]))
        for i in range(0, 600, 100):
            assert httpx.post(f"{url}/predict", json={"instances": rows[i : i + 100]}, timeout=60).status_code == 200
        drift = _wait(
            "a drift window",
            lambda: (d := httpx.get(f"{url}/drift", timeout=30).json())["windows_tested"] and d,
            timeout=60,
        )
        assert drift["model_version"] == result.run_id and drift["rows_seen"] == 600 and drift["is_drift"] is False
        app_status = httpx.get(f"{url}/monitoring", timeout=30).json()["app"]
        assert app_status["app"] == "exported" and any(k.startswith("webhook:") for k in app_status["alerts"])
        # Serve rebuilding the app keeps a monitor started with the same spec; new settings replace it.
        import yaml

        from raymlops.monitoring.actor import ensure_monitor

        [spec] = [
            c["args"][0]
            for c in yaml.safe_load(path.read_text())["applications"][0]["args"]["start"]
            if c["call"].endswith(":ensure_monitor")
        ]

        def pid():
            return ray.get(ray.get_actor(monitors[0][0], namespace="raymlops").pid.remote(), timeout=60)

        before = pid()
        ensure_monitor(spec)
        assert pid() == before
        ensure_monitor({**spec, "drift": {**spec["drift"], "p_val": 0.01}})
        assert pid() != before
    finally:
        pipe.stop()


def pipe_config_path(pipe) -> Path:
    from raymlops.pipeline.serve import monitoring_dir

    return Path(monitoring_dir(pipe.config, pipe.app_name)) / "pipeline.yaml"


def test_check_and_drift_report_on_batches_without_serving(quickstart, demo_dir, storage, tmp_path, capsys):
    from raymlops.cli import main
    from tests.conftest import ROOT

    pipe, result = quickstart
    base = ["--set", f"storage={storage}", "--set", f"sources.customers.path={demo_dir}/train.parquet"]
    config = str(ROOT / "configs" / "quickstart.yaml")
    assert main(["check", config, *base, "--input", str(demo_dir / "holdout.parquet")]) == 0
    assert "data quality: OK" in capsys.readouterr().out
    broken = pd.read_parquet(demo_dir / "holdout.parquet").drop(columns=["age"])
    broken.loc[:300, "usage_gb"] = None
    broken.loc[:100, "plan"] = "platinum"
    broken.to_csv(tmp_path / "broken.csv", index=False)
    assert main(["check", config, *base, "--input", str(tmp_path / "broken.csv")]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "age" in out and "usage_gb" in out and "platinum" in out, out
    for batch, drifted in (("holdout", False), ("shifted", True)):
        out_file = tmp_path / f"{batch}.html"
        assert (
            main(
                [
                    "drift",
                    "report",
                    "--run",
                    str(result.run_dir),
                    "--current",
                    str(demo_dir / f"{batch}.parquet"),
                    "--out",
                    str(out_file),
                ]
            )
            == 0
        )
        doc = json.loads(out_file.with_suffix(".json").read_text())
        assert doc["verdict"]["is_drift"] is drifted, doc["verdict"]
        assert out_file.read_text().count("<img") == doc["verdict"]["n_features"] == 11  # 10 inputs + output
        assert "effect threshold" in out_file.read_text()
        assert all(f["effect"] is not None and f["effect_metric"] for f in doc["features"]), doc["features"]
    assert {"monthly_charges", "tenure_months", "__prediction__"} <= set(doc["verdict"]["drifted"])
