"""Traffic splitting, the canary policy and its persisted controller, the request log and the shadow report,
and the serving config checks: no Ray, no HTTP."""

import json
import os
import time
from collections import Counter

import pandas as pd
import pytest

from raymlops.serving.compare import compare, format_status
from raymlops.serving.controller import TrafficController, read_events, read_state
from raymlops.serving.request_log import RequestLog, read_log
from raymlops.serving.split import Splitter, stable_unit
from raymlops.serving.traffic import Traffic, spread
from tests.unit.test_config import BASE, issues, write

CANARY = {
    "variant": "new",
    "steps": [10, 50, 100],
    "interval_s": 60,
    "rollback_on": {"error_rate": 0.05, "p99_ms": 200, "min_requests": 20},
}


def test_random_split_follows_the_weights_and_skips_zero():
    s = Splitter({"a": 90, "b": 10, "c": 0})
    counts = Counter(s.pick() for _ in range(20_000))
    assert set(counts) == {"a", "b"} and abs(counts["b"] / 20_000 - 0.10) < 0.01
    with pytest.raises(ValueError):
        Splitter({"a": 0})


def test_sticky_keys_are_stable_and_spread_evenly():
    s = Splitter({"a": 50, "b": 50})
    assert all(s.pick(f"k{i}") == Splitter({"a": 50, "b": 50}).pick(f"k{i}") for i in range(200))
    assert stable_unit(123) == stable_unit("123")  # JSON ints and strings of the same key agree
    counts = Counter(s.pick(f"user-{i}") for i in range(10_000))
    assert abs(counts["a"] / 10_000 - 0.5) < 0.02


def test_spread_gives_the_canary_its_step_and_shares_the_rest():
    assert spread({"a": 3, "b": 1, "new": 5}, "new", 20) == {"a": 60.0, "b": 20.0, "new": 20.0}
    assert spread({"a": 1, "new": 1}, None, None) == {"a": 50.0, "new": 50.0}


def _stats(n, errors=0, ms=10.0, model=None):
    """n canary requests of `ms` each, the last `errors` of them failed (answered by ``model`` if given)."""
    return {"new": {"samples": [(ms, int(i >= n - errors), *([model] if model else [])) for i in range(n)]}}


def test_canary_steps_on_schedule_then_completes():
    t = Traffic({"old": 1, "new": 1}, CANARY, now=0)
    assert t.weights == {"old": 90.0, "new": 10.0} and t.state["canary"]["status"] == "running"
    assert t.observe(_stats(30), now=30) == []  # mid-interval: nothing yet
    (e,) = t.evaluate(now=61)
    assert e["event"] == "step" and t.weights == {"old": 50.0, "new": 50.0} and t.version == 2
    t.observe(_stats(30), now=100)
    assert t.evaluate(now=122)[0]["event"] == "step" and t.weights["new"] == 100
    t.observe(_stats(30), now=150)
    assert t.evaluate(now=183)[0]["event"] == "complete" and t.state["canary"]["status"] == "complete"
    assert t.evaluate(now=999) == []


def test_thin_traffic_holds_the_step():
    t = Traffic({"old": 1, "new": 1}, CANARY, now=0)
    t.observe(_stats(5), now=10)
    (e,) = t.evaluate(now=61)
    assert e["event"] == "hold" and "only 5 canary requests" in e["reason"] and t.weights["new"] == 10
    t.observe(_stats(20), now=70)  # counts keep accumulating across the held interval
    assert t.evaluate(now=122)[0]["event"] == "step"


@pytest.mark.parametrize(
    "stats,why",
    [
        (_stats(40, errors=3), "error rate 0.075 > 0.05 (3/40)"),
        (_stats(40, ms=250.0), "p99 latency 250.0 ms > 200 ms over 40 requests"),
    ],
)
def test_a_breach_rolls_back_at_once_with_the_reason(stats, why):
    t = Traffic({"old": 1, "new": 1}, CANARY, now=0)
    (e,) = t.observe(stats, now=5)  # before the interval ends
    assert e["event"] == "rollback" and e["reason"] == why
    assert t.weights == {"old": 100.0, "new": 0.0} and t.state["canary"]["status"] == "rolled_back"
    assert t.observe(_stats(100), now=200) == [] and t.weights["new"] == 0.0


def test_a_canary_breaking_late_in_a_healthy_interval_is_caught():
    t = Traffic({"old": 1, "new": 1}, CANARY, now=0)
    assert t.observe(_stats(2000), now=10) == []
    (e,) = t.observe(_stats(40, errors=40), now=20)  # 40 / 2040 overall, but 40 of the latest 100
    assert e["event"] == "rollback" and e["reason"] == "error rate 0.400 > 0.05 (40/100)"


def test_too_few_requests_are_not_judged():
    t = Traffic({"old": 1, "new": 1}, CANARY, now=0)
    assert t.observe(_stats(5, errors=5), now=1) == []  # 5 < min_requests


def test_controller_persists_and_resumes_the_same_plan(tmp_path):
    c = TrafficController("app", str(tmp_path))
    c.configure({"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r2"})
    assert c.sync(_stats(40, errors=10)).weights == {"old": 100.0, "new": 0.0}
    saved = read_state(tmp_path)
    assert saved["state"]["canary"]["status"] == "rolled_back"
    assert [e["event"] for e in read_events(tmp_path)] == ["start", "rollback"]
    again = TrafficController("app", str(tmp_path))  # a restart
    view = again.configure({"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r2"})
    assert view.weights["new"] == 0.0 and view.canary.status == "rolled_back"
    fresh = again.configure({"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r3"})  # a new canary model
    assert fresh.weights["new"] == 10.0 and fresh.canary.status == "running"
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"type": "canary", "event": "ro')  # a crash mid-append
    assert [e["event"] for e in read_events(tmp_path)][-1] == "start"
    text = format_status(read_state(tmp_path), read_events(tmp_path))
    assert "canary new: running, step 1/3 (10%)" in text and "old 90.0%" in text
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    (tmp_path / "traffic.json").write_text("{not json")  # unreadable state: start afresh, do not refuse
    view = TrafficController("app", str(tmp_path)).configure({"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r2"})
    assert view.canary.status == "running" and view.plan


def test_a_swapped_canary_model_restarts_the_canary_once(tmp_path):
    """The canary variant follows a registry alias: when a replica swaps to a new version, the schedule
    starts again for it (every replica reports the swap; only the first restarts it)."""
    c = TrafficController("app", str(tmp_path))
    plan = c.configure({"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r2"}).plan
    assert c.sync(_stats(40, errors=10)).canary.status == "rolled_back"  # r2 failed its canary
    before = c.status().version
    view = c.model_swapped("new", "r3")
    assert view.canary.model_dump() == {
        **view.canary.model_dump(),
        "status": "running",
        "step": 0,
        "percent": 10.0,
        "model": "r3",
    }
    assert view.weights == {"old": 90.0, "new": 10.0} and view.version == before + 1
    assert view.plan == plan  # the routers' plan: they take the new weights
    assert c.model_swapped("new", "r3") == view  # another replica of the same variant: no second restart
    assert c.model_swapped("old", "r9") == view  # not the canary variant
    events = read_events(tmp_path)
    assert [(e["event"], e["model"]) for e in events] == [("start", "r2"), ("rollback", "r2"), ("start", "r3")]
    assert events[-1]["reason"] == "model r2 -> r3: the canary starts again"
    # A replica that has not swapped yet still answers with r2: its failures are not r3's.
    assert c.sync(_stats(40, errors=40, model="r2")).canary.status == "running"
    assert c.status().window["new"]["requests"] == 0
    assert c.sync(_stats(40, errors=10, model="r3")).canary.status == "rolled_back"  # r3's own requests
    resumed = TrafficController("app", str(tmp_path)).configure(
        {"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r2"}
    )
    assert resumed.canary.model == "r3" and resumed.canary.status == "rolled_back"  # a restart keeps it
    # A redeploy whose alias now resolves to r3 is the same plan: r3 stays rolled back (not 10% again) ...
    again = c.configure({"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r3"})
    assert again.canary.status == "rolled_back" and again.plan != plan and again.weights["new"] == 0.0
    # ... while another model, or another schedule, is a new plan.
    assert c.configure({"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r4"}).canary.status == "running"
    no_canary = TrafficController("other", str(tmp_path / "other"))
    no_canary.configure({"old": 1, "new": 1}, None, {"old": "r1", "new": "r2"})
    assert no_canary.model_swapped("new", "r3").canary is None


def _record(i, role="primary", variant="a", preds=(1,), probs=(0.7,), status=200):
    return {
        "ts": time.time(),
        "request_id": f"r{i}",
        "variant": variant,
        "role": role,
        "model_version": "v1",
        "status": status,
        "latency_ms": 3.0,
        "rows": [{"x": i}] * len(preds),
        "predictions": list(preds),
        "probabilities": list(probs),
    }


def test_request_log_writes_date_partitions_atomically(tmp_path):
    log = RequestLog(str(tmp_path / "log"), flush_s=30)
    for i in range(10):
        assert log.add(_record(i, preds=(1, 0), probs=(0.7, 0.2)))
    assert log.flush(10) and log.written == 20 and log.dropped == 0
    df = read_log(tmp_path / "log")
    assert len(df) == 20 and set(df["row"]) == {0, 1} and df["date"].astype(str).nunique() == 1
    assert json.loads(df.sort_values(["request_id", "row"])["prediction"].iloc[1]) == 0
    files = [f for _, _, fs in os.walk(tmp_path / "log") for f in fs]
    assert files and all(f.startswith("part-") and f.endswith(".parquet") for f in files)


def test_a_full_buffer_drops_and_counts_without_blocking(tmp_path):
    dropped = []
    log = RequestLog(str(tmp_path / "log"), flush_s=60, max_buffer_rows=5, on_drop=dropped.append)
    t0 = time.perf_counter()
    accepted = [log.add(_record(i)) for i in range(8)]
    assert time.perf_counter() - t0 < 1.0
    assert accepted == [True] * 5 + [False] * 3 and log.dropped == 3 and dropped == [1, 1, 1]
    log.flush(10)
    assert len(read_log(tmp_path / "log")) == 5


def test_an_unwritable_log_never_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    log = RequestLog(str(blocker / "log"), flush_s=30)
    assert log.add(_record(1)) is True
    assert log.flush(10) is False
    assert log.dropped == 1 and log.written == 0


def test_compare_reports_agreement_per_shadow():
    rows = []
    for i in range(10):
        rows.append(_record(i, variant="a" if i < 8 else "b", preds=(1,), probs=(0.8,)))
        rows.append(_record(i, role="shadow", variant="s", preds=(1 if i < 6 else 0,), probs=(0.6,)))
    df = pd.DataFrame(
        [
            {
                **r,
                "row": 0,
                "prediction": json.dumps(r["predictions"][0]),
                "probability": json.dumps(r["probabilities"][0]),
                "inputs": "{}",
            }
            for r in rows
        ]
    )
    got = compare(df)
    assert got["variants"]["a"]["requests"] == 8 and got["variants"]["b"]["requests"] == 2
    s = got["shadows"]["s"]
    assert s["agreement"] == 0.6 and s["compared_rows"] == 10 and abs(s["mean_abs_score_diff"] - 0.2) < 1e-9
    assert s["agreement_by_variant"] == {"a": 0.75, "b": 0.0}


SERVING = (
    BASE
    + """\
serving:
  variants:
    - {name: champion, weight: 90}
    - {name: champion, weight: 10}
  shadow: [{name: champion}]
  canary: {variant: missing, steps: [50, 20]}
  batching: {max_batch_size: 64}
  max_ongoing_requests: 8
  autoscaling: {min_replicas: 3, max_replicas: 2}
"""
)


def test_serving_config_errors_name_file_line_and_path(tmp_path):
    (bad_steps,) = issues(write(tmp_path, SERVING))
    assert ":23: serving.canary.steps: got [50.0, 20.0]; expected increasing percentages in (0, 100]" in bad_steps
    got = issues(write(tmp_path, SERVING.replace("[50, 20]", "[5, 50, 100]")))
    expected = [
        ":21: serving.variants[1].name: variant 'champion' is declared twice",
        ":22: serving.shadow[0].name: 'champion' is already a variant or shadow name",
        ":23: serving.canary.variant: unknown variant 'missing'",
        ":25: serving.max_ongoing_requests: 8 is below batching.max_batch_size 64",
        ":26: serving.autoscaling.min_replicas: 3 is above max_replicas 2",
    ]
    for e in expected:
        assert any(e in g for g in got), (e, got)
    solo = SERVING.replace("[50, 20]", "[5, 50, 100]").replace(
        "- {name: champion, weight: 10}", "- {name: next, weight: 10}"
    )
    solo = solo.replace("variant: missing", "variant: next").replace("weight: 90", "weight: 0")
    assert any(
        "serving.canary: a canary needs another variant with a weight above 0" in g
        for g in issues(write(tmp_path, solo))
    )


def test_operator_requests_pause_resume_and_roll_back_the_canary(tmp_path):
    """`request_action` (the console, `raymlops serving canary`) appends a request; the controller applies it
    at its next tick, once, in order, and records it; one that does not apply is recorded as ignored."""
    from raymlops.serving.controller import request_action

    request_action(tmp_path, "pause", "old-run")  # left by an earlier deployment of the name: not applied
    c = TrafficController("app", str(tmp_path))
    c.configure({"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r2"})

    def tick_until(status):
        end = time.time() + 10
        while time.time() < end and (read_state(tmp_path)["state"]["canary"] or {}).get("status") != status:
            time.sleep(0.05)
        return read_state(tmp_path)["state"]

    assert tick_until("running")["canary"]["status"] == "running"
    request_action(tmp_path, "pause", "ana", "looking at the p99")
    state = tick_until("paused")
    assert state["canary"]["status"] == "paused" and state["weights"] == {"old": 90.0, "new": 10.0}
    assert c.sync(_stats(40, errors=10)).canary.status == "paused"  # not judged while paused
    assert c.traffic.evaluate(now=time.time() + 999) == []  # nor stepped
    request_action(tmp_path, "resume", "ana")
    assert tick_until("running")["canary"]["step"] == 0
    request_action(tmp_path, "rollback", "bo", "bad dashboards")
    state = tick_until("rolled_back")
    assert (
        state["weights"] == {"old": 100.0, "new": 0.0} and state["canary"]["reason"] == "rollback by bo: bad dashboards"
    )
    request_action(tmp_path, "resume", "ana")  # nothing to resume: recorded as ignored, the state unchanged
    end = time.time() + 10
    while time.time() < end and read_events(tmp_path)[-1]["event"] != "ignored":
        time.sleep(0.05)
    events = read_events(tmp_path)
    assert [e["event"] for e in events] == ["start", "pause", "resume", "rollback", "ignored"]
    assert events[1]["reason"] == "pause by ana: looking at the p99"
    assert "does not apply to a canary that is rolled_back" in events[-1]["reason"]
    again = TrafficController("app", str(tmp_path))  # a restart applies nothing twice
    time.sleep(0.6)
    assert [e["event"] for e in read_events(tmp_path)] == ["start", "pause", "resume", "rollback", "ignored"]
    assert again.traffic.state["canary"]["status"] == "rolled_back"
    with pytest.raises(ValueError, match="action must be pause, resume or rollback"):
        request_action(tmp_path, "stop", "x")


def test_a_stale_operator_request_changes_nothing_and_none_is_lost_across_a_restart(tmp_path):
    from raymlops.serving import controller
    from raymlops.serving.controller import REQUESTS_FILE

    c = TrafficController("app", str(tmp_path))  # no requests file yet
    c.configure({"old": 1, "new": 1}, CANARY, {"old": "r1", "new": "r2"})
    stale = {"id": "x", "action": "rollback", "by": "ana", "reason": None, "ts": time.time() - 3600}
    with open(tmp_path / REQUESTS_FILE, "a") as f:
        f.write(json.dumps(stale) + "\n")
    end = time.time() + 10
    while time.time() < end and read_events(tmp_path)[-1]["event"] != "ignored":
        time.sleep(0.05)
    assert read_events(tmp_path)[-1]["reason"].startswith("rollback requested by ana more than")
    assert read_state(tmp_path)["state"]["canary"]["status"] == "running"  # the stale rollback did nothing
    assert read_state(tmp_path)["requests_cursor"] > 0
    # a request made while no controller runs is applied by the next one (within the TTL)
    fresh = TrafficController("app2", str(tmp_path / "b"))
    assert fresh.cursor == 0 and controller.REQUEST_TTL_S == 300


def test_the_typed_openapi_takes_any_column_name():
    """Column names that are not Python names, or clash with pydantic's (`_id`, `model_dump`), still document."""
    from raymlops.serving.router import openapi_document

    cols = [
        {"name": n, "type": t, "nullable": null}
        for n, t, null in (
            ("_id", "integer", False),
            ("model_dump", "string", True),
            ("a b", "number", False),
            ("model_config", "boolean", False),
            ("when", "timestamp", False),
        )
    ]
    row = openapi_document("/x", columns=cols, entities=False, max_rows=7)["components"]["schemas"]["Row"]
    assert set(row["required"]) == {c["name"] for c in cols} == set(row["properties"])
    import re

    when = row["properties"]["when"]  # ISO-8601 inside pandas' nanosecond range: what validation accepts
    assert re.match(when["pattern"], "2024-05-06T07:08:09.5+02:00") and not re.match(
        when["pattern"], "0001-01-01T00:00:00Z"
    )
    assert row["properties"]["_id"]["type"] == "integer"
