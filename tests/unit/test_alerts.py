"""Alerts: webhook payloads against a real local HTTP receiver, cooldown, retries, non-blocking emit, log sink."""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from raymlops.config.monitoring import LogAlert, WebhookAlert
from raymlops.monitoring.alerts import Alerts, AlertSink, LogSink, WebhookSink, make_event

pytestmark = pytest.mark.unit


class Receiver:
    """A local HTTP server recording POSTs; answers `statuses` in turn (then 200), after `delay_s`."""

    def __init__(self, statuses=(), delay_s=0.0):
        self.statuses, self.delay_s = list(statuses), delay_s
        self.posts: list[tuple[int, dict, dict]] = []  # (status answered, headers, body)
        self.lock, self.release = threading.Lock(), threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.release.wait(receiver.delay_s)
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.posts.append((status, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def delivered(self) -> list[dict]:
        with self.lock:
            return [body for status, _, body in self.posts if status == 200]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kw):
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def alerts():
    made = []

    def make(configs, tmp_path, **kw):
        made.append(Alerts.from_config(configs, str(tmp_path / "alerts.jsonl"), backoff_s=0.01, **kw))
        return made[-1]

    yield make
    for a in made:
        a.close(timeout=0)


def hook(url, **kw):
    return {"type": "webhook", "url": url, **kw}


def drift(subject="plan, region", **kw):
    return make_event(
        "drift", "churn-quickstart", f"drift on {subject} (p<0.05)", variant="default", subject=subject, **kw
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_event_validates():
    e = make_event("retrain", "app", "retrain started", details={"run": "r1"})
    assert e["type"] == "retrain" and e["variant"] is None and e["severity"] == "warning"
    assert e["details"] == {"run": "r1"} and abs(e["ts"] - time.time()) < 5
    with pytest.raises(ValueError):
        make_event("nope", "app", "x")
    with pytest.raises(ValueError):
        make_event("drift", "app", "x", severity="fatal")


def test_webhook_payload_has_text_and_event_fields(receiver, alerts, tmp_path):
    r = receiver()
    a = alerts([hook(r.url, headers={"X-Token": "t0k"})], tmp_path)
    event = drift(severity="critical", details={"p": 0.01})
    assert a.emit(event) and a.flush(5)
    [(_, headers, body)] = r.posts
    assert body["text"] == ":rotating_light: [drift] churn-quickstart/default: drift on plan, region (p<0.05)"
    assert {k: body[k] for k in event} == event
    assert headers["Content-Type"] == "application/json" and headers["X-Token"] == "t0k"
    assert a.stats()[f"webhook:127.0.0.1:{r.server.server_address[1]}"]["sent"] == 1


def test_cooldown_one_delivery_per_key_then_again_after(receiver, alerts, tmp_path):
    r = receiver()
    a = alerts([hook(r.url, cooldown_s=0.5)], tmp_path)
    accepted = [a.emit(drift()) for _ in range(20)]
    assert accepted == [True] + [False] * 19
    a.flush(5)
    assert len(r.delivered()) == 1
    [stats] = a.stats().values()
    assert stats["suppressed"] == 19 and stats["sent"] == 1
    time.sleep(0.6)
    assert a.emit(drift()) and a.flush(5)
    assert len(r.delivered()) == 2


def test_cooldown_holds_while_sink_is_slow(receiver, alerts, tmp_path):
    r = receiver(delay_s=0.3)
    a = alerts([hook(r.url, cooldown_s=10)], tmp_path)
    assert sum(a.emit(drift()) for _ in range(20)) == 1
    a.flush(5)
    assert len(r.delivered()) == 1


def test_different_subjects_are_not_deduplicated(receiver, alerts, tmp_path):
    r = receiver()
    a = alerts([hook(r.url, cooldown_s=60)], tmp_path)
    for subject in ("plan", "region", "age", "plan"):
        a.emit(drift(subject))
    a.flush(5)
    assert sorted(b["subject"] for b in r.delivered()) == ["age", "plan", "region"]


def test_on_filter(receiver, alerts, tmp_path):
    r = receiver()
    a = alerts([hook(r.url, on=["drift"])], tmp_path)
    assert not a.emit(make_event("performance", "app", "auc 0.61 < floor 0.7", subject="auc"))
    assert a.emit(drift())
    a.flush(5)
    assert [b["type"] for b in r.delivered()] == ["drift"]


def test_retries_until_success_and_failure_after_retries(receiver, alerts, tmp_path):
    flaky, broken = receiver(statuses=[500, 500]), receiver(statuses=[500] * 10)
    a = alerts([hook(flaky.url, retries=3), hook(broken.url, retries=1)], tmp_path)
    a.emit(drift())
    a.flush(5)
    assert [s for s, _, _ in flaky.posts] == [500, 500, 200] and len(flaky.delivered()) == 1
    assert len(broken.posts) == 2 and not broken.delivered()
    s_flaky, s_broken = a.stats().values()
    assert (s_flaky["sent"], s_flaky["retries"], s_flaky["failed"]) == (1, 2, 0)
    assert (s_broken["sent"], s_broken["retries"], s_broken["failed"]) == (0, 1, 1)


def test_dead_and_slow_sinks_never_block_emit_nor_other_sinks(receiver, alerts, tmp_path):
    slow = receiver(delay_s=5)
    log_path = tmp_path / "alerts.jsonl"
    a = alerts(
        [
            hook(f"http://127.0.0.1:{closed_port()}/x", cooldown_s=0, retries=2),
            hook(slow.url, cooldown_s=0, timeout_s=0.2, retries=2),
            {"type": "log", "cooldown_s": 0},
        ],
        tmp_path,
    )
    t0 = time.monotonic()
    assert all(a.emit(drift(f"f{i}")) for i in range(100))
    assert time.monotonic() - t0 < 0.5
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(log_path.read_text().splitlines() if log_path.exists() else []) < 100:
        time.sleep(0.02)
    assert [json.loads(line)["subject"] for line in log_path.read_text().splitlines()] == [f"f{i}" for i in range(100)]
    dead, slow_stats, _ = a.stats().values()
    assert dead["sent"] == slow_stats["sent"] == 0


def test_log_sink_lines_never_interleave_across_threads(tmp_path, caplog):
    sink = LogSink(LogAlert(type="log"), str(tmp_path / "deep" / "dir" / "alerts.jsonl"))
    big = "x" * 10_000  # larger than a write buffer, so unlocked writes would split

    def write(t):
        for i in range(15):
            sink.send(make_event("data_quality", "app", f"t{t} e{i}", subject=f"t{t}", details={"pad": big}))

    with caplog.at_level(logging.WARNING, logger="raymlops.alerts"):
        threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    lines = sink.path.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 120 and all(e["details"]["pad"] == big for e in events)
    for t in range(8):
        assert [e["message"] for e in events if e["subject"] == f"t{t}"] == [f"t{t} e{i}" for i in range(15)]
    assert sum("[data_quality] app: t0 e0" in r.getMessage() for r in caplog.records) == 1


def test_log_sink_rotates_at_rotate_mb(tmp_path):
    sink = LogSink(LogAlert(type="log", rotate_mb=0.01, keep=2), str(tmp_path / "alerts.jsonl"))  # ~10 KB a file
    for i in range(20):
        sink.send(make_event("drift", "app", f"e{i}", subject="s", details={"pad": "x" * 2000}))
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert files == ["alerts.jsonl", "alerts.jsonl.1", "alerts.jsonl.2"]
    newest = [json.loads(ln)["message"] for ln in sink.path.read_text().splitlines()]
    assert newest[-1] == "e19" and all((tmp_path / f).stat().st_size < 10_486 + 2_500 for f in files)


class Blocking(AlertSink):
    """A sink whose send waits for `release` (to fill the dispatcher's queue)."""

    def __init__(self):
        self.name, self.on, self.cooldown_s = "blocking", {"drift"}, 0
        self.started, self.release, self.got = threading.Event(), threading.Event(), []

    def send(self, event):
        self.started.set()
        self.release.wait(5)
        self.got.append(event["subject"])


def test_queue_full_drops_and_counts():
    sink = Blocking()
    a = Alerts([sink], queue_size=5)
    try:
        assert a.emit(drift("first"))
        assert sink.started.wait(5)
        accepted = [a.emit(drift(f"s{i}")) for i in range(20)]
        assert accepted == [True] * 5 + [False] * 15
        sink.release.set()
        assert a.flush(5)
        assert sink.got == ["first"] + [f"s{i}" for i in range(5)]
        assert a.stats()["blocking"] == {"sent": 6, "failed": 0, "suppressed": 0, "dropped": 15, "retries": 0}
    finally:
        a.close(timeout=0)
    assert not a.emit(drift("after close"))


def test_from_config_accepts_models_and_dicts(tmp_path):
    a = Alerts.from_config(
        [
            WebhookAlert(type="webhook", url="http://h:1/a"),
            hook("http://h:1/b"),
            {"type": "log", "path": str(tmp_path / "a.jsonl")},
        ],
        str(tmp_path / "default.jsonl"),
    )
    try:
        sinks = a.sinks
        assert list(sinks) == ["webhook:h:1", "webhook:h:1#2", f"log:{(tmp_path / 'a.jsonl').resolve()}"]
        assert isinstance(sinks["webhook:h:1"], WebhookSink) and sinks["webhook:h:1"].retries == 3
    finally:
        a.close(timeout=0)
    with pytest.raises(ValueError):
        Alerts.from_config([{"type": "pager"}], str(tmp_path / "x.jsonl"))


def test_a_restarted_app_monitor_keeps_the_cooldown(receiver, tmp_path):
    from raymlops.monitoring.app_monitor import AppMonitor

    r = receiver()
    spec = {
        "app": "churn-quickstart",
        "namespace": "raymlops",
        "state_dir": str(tmp_path / "app"),
        "alerts": [hook(r.url, cooldown_s=300)],
        "alert_log": str(tmp_path / "alerts.jsonl"),
        "canary_events": None,
        "performance": None,
        "retrain": None,
    }
    first = AppMonitor(spec)
    first.event(drift())
    assert first.flush_alerts(5) and len(r.delivered()) == 1
    first.close()
    restarted = AppMonitor(spec)  # what Ray builds after the actor's process died: state from state.json
    restarted.event(drift())
    restarted.event(drift(subject="contract"))  # another subject: its own cooldown
    assert restarted.flush_alerts(5)
    assert [b["subject"] for b in r.delivered()] == ["plan, region", "contract"]
    assert [e["subject"] for e in restarted.status(10)["events"]] == ["plan, region"] * 2 + ["contract"]
    [stats] = restarted.alerts.stats().values()
    assert stats["suppressed"] == 1 and stats["sent"] == 1
    restarted.close()


PROMOTED: list = []


def submitted(config, job_id, result_path):  # the retrain's submit step (called by dotted path): no cluster
    # in a unit test; the job's result record, as `raymlops retrain --result` writes it
    from raymlops.contracts.monitoring import RetrainResult

    Path(result_path).parent.mkdir(parents=True, exist_ok=True)
    Path(result_path).write_text(
        RetrainResult(model="churn", version=3, run_id="run-new", gate_passed=True).model_dump_json()
    )
    return job_id


def promote(config, version):
    PROMOTED.append(version)
    return {"promoted": True, "version": version, "reason": "gate passed"}


@pytest.mark.parametrize("rolled_back,kept", [("churn/3", True), ("run-new", True), ("churn/2", False)])
def test_a_canary_rollback_of_the_challenger_keeps_the_champion(monkeypatch, tmp_path, rolled_back, kept):
    """Canary mode: the retrained version's canary rolling back keeps the champion (events name it as
    serving does: NAME/VERSION, or the run id of a run served by its directory); a rollback of another
    version's canary (the one before the retrain) does not stop the promotion."""
    from raymlops.monitoring.app_monitor import AppMonitor

    PROMOTED.clear()
    job = {"status": "RUNNING"}
    monkeypatch.setattr("raymlops.monitoring.retrain.job_status", lambda job_id, address: (job["status"], ""))
    events = tmp_path / "events.jsonl"
    events.write_text("")
    here = __name__
    spec = {
        "app": "churn-quickstart",
        "namespace": "raymlops",
        "state_dir": str(tmp_path / "app"),
        "alerts": [],
        "alert_log": str(tmp_path / "alerts.jsonl"),
        "canary_events": str(events),
        "performance": None,
        "retrain": {
            "on": ["drift"],
            "min_interval_s": 3600,
            "deploy": "canary",
            "timeout_s": 60,
            "observe_s": 600 if kept else 3,  # 'kept' never waits for it
            "submit": {"call": f"{here}:submitted", "args": ["cfg.yaml"]},
            "promote": {"call": f"{here}:promote", "args": ["cfg.yaml"]},
        },
    }
    monitor = AppMonitor(spec)
    monitor.event(drift())
    job["status"] = "SUCCEEDED"

    def record(status):
        deadline = time.monotonic() + 15
        while (r := monitor.status(0)["retrains"][-1])["status"] != status:
            assert time.monotonic() < deadline, r
            time.sleep(0.1)
        return r

    assert record("observing")["run_id"] == "run-new"
    with open(events, "a") as f:
        f.write(
            json.dumps(
                {
                    "type": "canary",
                    "event": "rollback",
                    "variant": "challenger",
                    "model": rolled_back,
                    "reason": "p99 latency 9.0 ms > 1 ms over 20 requests",
                }
            )
            + "\n"
        )
    if kept:
        r = record("kept")
        assert r["outcome"]["reason"].startswith("the canary of churn/3 (run run-new) rolled back: p99 latency")
        assert not PROMOTED
        assert [s["step"] for s in r["steps"]][-3:] == ["challenger_registered", "challenger_canary", "kept"]
    else:
        assert record("promoted")["outcome"]["version"] == 3 and PROMOTED == [3]
    assert [e["type"] for e in monitor.status(10)["events"]] == ["drift", "canary"]
    monitor.close()


def no_result(config, job_id, result_path):  # a retrain job that succeeds but never writes its result record
    return job_id


def test_a_retrain_job_that_wrote_no_result_record_fails_naming_where_it_was_expected(monkeypatch, tmp_path):
    """The challenger comes from the job's `RetrainResult` record in storage, not from its logs: a job that
    succeeded without writing one fails the retrain (and the champion stays)."""
    from raymlops.monitoring.app_monitor import AppMonitor

    monkeypatch.setattr("raymlops.monitoring.retrain.job_status", lambda job_id, address: ("SUCCEEDED", ""))
    spec = {
        "app": "churn-quickstart",
        "namespace": "raymlops",
        "state_dir": str(tmp_path / "app"),
        "alerts": [],
        "alert_log": str(tmp_path / "alerts.jsonl"),
        "canary_events": None,
        "performance": None,
        "retrain": {
            "on": ["drift"],
            "submit": {"call": f"{__name__}:no_result", "args": ["cfg.yaml"]},
            "promote": {"call": f"{__name__}:promote", "args": ["cfg.yaml"]},
        },
    }
    monitor = AppMonitor(spec)
    try:
        monitor.event(drift())
        deadline = time.monotonic() + 15
        while (r := monitor.status(0)["retrains"][-1])["status"] != "failed":
            assert time.monotonic() < deadline, r
            time.sleep(0.1)
        assert "wrote no readable result" in r["error"] and r["result_path"] in r["error"]
        assert r["result_path"].startswith(str(tmp_path / "app" / "retrains"))
    finally:
        monitor.close()
