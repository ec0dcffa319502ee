"""The console's readers and JSON API on a store written here (no Ray, no browser): filters, sorting and
pages of runs, comparison, request-log figures against exact ones, downsampled drift that keeps every alarm,
error panels instead of 500s, and the guards on actions."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from raymlops.console import Settings, create_app
from raymlops.serving.request_log import SCHEMA


def _run(root, pipeline, run_id, auc, depth, status="ok"):
    d = root / "runs" / pipeline / run_id
    d.mkdir(parents=True)
    trials = [
        {"params": {"max_depth": depth}, "metrics": {"auc": auc}, "trial_id": f"t_{run_id[-5:]}", "status": status}
    ]
    (d / "metrics.json").write_text(
        json.dumps({"metric": "auc", "best": {"auc": auc}, "best_params": {"max_depth": depth}, "trials": trials})
    )
    (d / "evaluation.json").write_text(json.dumps({"candidate": {"auc": auc - 0.01}, "threshold": 0.3, "files": []}))
    (d / "lineage.json").write_text(
        json.dumps({"inputs": {"sources": {"s": {"path": "x", "sha256": "ab"}}, "feature_views": {}}})
    )
    (d / "meta.json").write_text(
        json.dumps({"run_id": run_id, "pipeline": pipeline, "created": run_id, "label": "y", "rows": {"train": 100}})
    )  # written last: the run is committed


@pytest.fixture()
def store(tmp_path):
    for i in range(30):
        _run(tmp_path, "p1" if i % 3 else "p2", f"2026-{i:05d}", 0.5 + i / 100, i % 4, "ok" if i % 7 else "error")
    (tmp_path / "runs" / "p1" / "2026-99999").mkdir()  # being written: no meta.json yet, so not listed
    # request log: 'a' answers with known latencies, 10% errors; 'b' shadows every request
    rng = np.random.default_rng(0)
    now = time.time()
    lat = rng.lognormal(3, 0.5, 2000)
    rows = [
        {
            "ts": int((now - 200 + k * 0.05) * 1e6),
            "request_id": f"r{k}",
            "row": 0,
            "variant": "a",
            "role": "primary",
            "model_version": "m/1",
            "status": 500 if k % 10 == 0 else 200,
            "latency_ms": float(lat[k]),
            "inputs": "{}",
            "prediction": "1",
            "probability": "0.7",
            "error": None,
            "features": None,
        }
        for k in range(2000)
    ]
    rows += [
        dict(r, variant="b", role="shadow", status=200, prediction="1" if k % 4 else "0") for k, r in enumerate(rows)
    ]
    rows += [dict(rows[0], row=i) for i in range(1, 6)]  # request r0 had 6 rows: still one request
    day = tmp_path / "request_log" / "app" / "date=2026-12-07"
    day.mkdir(parents=True)
    t = pa.Table.from_pylist([dict(r, ts=r["ts"]) for r in rows], schema=SCHEMA.set(0, pa.field("ts", pa.int64())))
    t = t.set_column(0, "ts", t["ts"].cast(pa.timestamp("us", tz="UTC")))
    pq.write_table(t.slice(0, 2500), day / "part-1.parquet")
    pq.write_table(t.slice(2500), day / "part-2.parquet")
    serving = tmp_path / "serving" / "app"
    serving.mkdir(parents=True)
    (serving / "traffic.json").write_text(
        json.dumps(
            {
                "models": {"a": "m/1"},
                "state": {
                    "weights": {"a": 100.0},
                    "canary": {"variant": "a", "status": "rolled_back", "percent": 0, "step": 1},
                    "history": [
                        {"at": now - 50, "event": "start", "percent": 5},
                        {"at": now - 10, "event": "rollback", "percent": 0},
                    ],
                },
            }
        )
    )
    # 1,200 drift windows; windows 7 and 1001 alarm
    mon = tmp_path / "monitoring" / "app" / "a"
    mon.mkdir(parents=True)
    with open(mon / "history.jsonl", "w") as f:
        for w in range(1, 1201):
            drift = w in (7, 1001)
            f.write(
                json.dumps(
                    {
                        "kind": "drift",
                        "model_version": "m/1",
                        "ts": now - 1200 + w,
                        "window": w,
                        "is_drift": drift,
                        "drifted": ["x"] if drift else [],
                        "features": {
                            "x": {
                                "statistic": 0.9 if drift else 0.1,
                                "p_value": 1e-9 if drift else 0.5,
                                "threshold": 0.01,
                                "is_drift": drift,
                            }
                        },
                    }
                )
                + "\n"
            )
    return tmp_path


def client(store, **kw) -> TestClient:
    return TestClient(create_app(Settings(storage=str(store), token="tok", **kw)))


def test_runs_filter_sort_and_pages(store):
    c = client(store)
    r = c.get("/api/runs", params={"per_page": 7, "sort": "metrics.auc", "order": "desc"}).json()
    assert r["total"] == 30 and len(r["runs"]) == 7
    aucs = [x["metrics"]["auc"] for x in r["runs"]]
    assert aucs == sorted(aucs, reverse=True) and aucs[0] == pytest.approx(0.79)
    r = c.get("/api/runs", params={"pipeline": "p2", "status": "failed", "page": 1}).json()
    assert {x["pipeline"] for x in r["runs"]} == {"p2"} and {x["status"] for x in r["runs"]} == {"failed"}
    assert r["total"] == len([i for i in range(30) if i % 3 == 0 and i % 7 == 0])
    assert c.get("/api/runs", params={"q": "max_depth=3"}).json()["total"] == len([i for i in range(30) if i % 4 == 3])
    bad = c.get("/api/runs", params={"sort": "auc"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "sort"]
    assert c.get("/api/runs", params={"per_page": 0}).status_code == 422
    page = c.get("/runs")
    assert page.status_code == 200 and page.text.count('class="run"') == 30


def test_curves_of_a_run_whose_train_step_was_cached(store):
    """A cached train step links no Tune folder into the run: its curves come from the step's search.json."""
    run = store / "runs" / "p1" / "2026-00001"
    lineage = json.loads((run / "lineage.json").read_text())
    (run / "lineage.json").write_text(json.dumps({**lineage, "steps": {"train": {"key": "k1", "cached": True}}}))
    step = store / "cache" / "steps" / "train" / "k1"
    step.mkdir(parents=True)
    history = {"valid_auc": [[2, 0.7], [1, 0.6], [3, 0.8]], "auc": [[3, 0.8]]}  # final metrics: not a curve
    (step / "search.json").write_text(json.dumps({"trials": [{"trial_id": "t_00001", "history": history}]}))
    got = client(store).get("/api/runs/p1/2026-00001").json()
    assert got["trials"][0]["curve"] == {"valid_auc": [0.6, 0.7, 0.8]}


def test_compare_diffs_params_and_metrics(store):
    c = client(store)
    r = c.get("/api/compare", params=[("run", "p1/2026-00001"), ("run", "p1/2026-00002")]).json()
    assert [d["key"] for d in r["params"]] == ["max_depth"] and r["params"][0] == {
        "key": "max_depth",
        "values": [1, 2],
        "differs": True,
    }
    one = c.get("/api/compare", params={"run": "p1/2026-00001"})
    assert one.status_code == 422 and one.json()["detail"][0]["loc"] == ["query", "run"]
    assert c.get("/api/compare", params=[("run", "p1/nope"), ("run", "p1/2026-00001")]).status_code == 404


def test_traffic_figures_match_the_exact_ones(store):
    got = client(store).get("/api/deployments/app").json()
    a = next(t for t in got["traffic"] if t["role"] == "primary")
    rng = np.random.default_rng(0)
    lat = rng.lognormal(3, 0.5, 2000)
    assert a["requests"] == 2000 and a["error_rate"] == pytest.approx(0.1)
    assert a["p50_ms"] == pytest.approx(np.percentile(lat, 50), rel=0.02)
    assert a["p99_ms"] == pytest.approx(np.percentile(lat, 99), rel=0.02)
    shadow = got["shadows"][0]
    # errors (status 500) are not compared; of the 1,800 answered rows, a quarter disagree
    assert shadow["shadow"] == "b" and shadow["compared_rows"] == 1800
    assert shadow["agreement"] == pytest.approx(np.mean([k % 4 != 0 for k in range(2000) if k % 10]))
    assert got["health"] == "degraded" and [h["event"] for h in got["canary_history"]] == ["start", "rollback"]


def test_long_drift_series_are_downsampled_and_keep_every_alarm(store):
    client_again = client(store)
    m = client_again.get("/api/monitoring/app", params={"points": 100}).json()
    s = m["drift"]["a"]["x"]
    assert m["windows"] == {"a": 1200} and len(s["window"]) == 100
    assert {7, 1001} <= {w for w, d in zip(s["window"], s["drift"]) if d}
    assert [v["window"] for v in m["verdicts"]["a"]] == [1001, 7]
    assert [a[:2] for a in m["alarms"]["a"]] == [[7, 1e-9], [1001, 1e-9]]  # every alarm, whole, for the markers
    # appended windows are read on the next request (the history is tailed, not re-read)
    with open(store / "monitoring" / "app" / "a" / "history.jsonl", "a") as f:
        f.write(
            json.dumps(
                {
                    "kind": "drift",
                    "model_version": "m/1",
                    "ts": time.time(),
                    "window": 1201,
                    "is_drift": False,
                    "drifted": [],
                    "features": {},
                }
            )
            + "\n"
        )
    assert client_again.get("/api/monitoring/app").json()["windows"] == {"a": 1201}


def test_an_unreachable_source_is_a_panel_not_a_500(store, tmp_path):
    c = client(store, tracking_uri="http://127.0.0.1:9")  # nothing listens there
    assert c.get("/api/models").status_code == 503
    page = c.get("/models")
    assert page.status_code == 503 and 'class="panel"' in page.text and "<nav>" in page.text
    home = c.get("/")
    assert home.status_code == 200 and "MLflow http://127.0.0.1:9" in home.text  # the rest still renders
    assert "2026-00029" in home.text
    assert c.get("/api/monitoring/nope").status_code == 404


def test_actions_are_guarded(store):
    c = client(store, tracking_uri="http://127.0.0.1:9")
    body = {"version": 1}
    assert c.post("/api/models/m/promote", json=body).status_code == 401
    assert (
        c.post(
            "/api/models/m/promote", json=body, headers={"x-raymlops-token": "tok", "origin": "http://evil"}
        ).status_code
        == 403
    )
    assert (
        c.post(
            "/api/models/m/promote", json=body, headers={"x-raymlops-token": "tok", "sec-fetch-site": "cross-site"}
        ).status_code
        == 403
    )
    assert c.post("/api/models/m/promote", json={"version": 0}, headers={"x-raymlops-token": "tok"}).status_code == 422
    ro = client(store, tracking_uri="http://127.0.0.1:9", read_only=True)
    assert ro.post("/api/models/m/promote", json=body, headers={"x-raymlops-token": "tok"}).status_code == 403
    assert 'id="promote"' not in ro.get("/models/m").text


def _upload(local, s3) -> None:
    """The store written above, as it lies on an object store: committed runs with their manifest, logs as
    folders of segment objects (storage/files.py)."""
    for run in (local / "runs").glob("*/*"):
        if (run / "meta.json").is_file():
            s3.publish(run, "runs", run.parent.name, run.name)
    for f in (local / "request_log").rglob("*.parquet"):
        s3.upload(f, *f.relative_to(local).parts)
    s3.write_bytes("serving", "app", "traffic.json", data=(local / "serving" / "app" / "traffic.json").read_bytes())
    body = (local / "monitoring" / "app" / "a" / "history.jsonl").read_bytes()
    s3.write_bytes("monitoring", "app", "a", "history.jsonl.d", f"m{time.time_ns():020d}-0000.jsonl", data=body)


def test_the_same_pages_from_an_object_store(store, s3_endpoint, monkeypatch, tmp_path):
    """Against S3 (a real S3-compatible server), as on a cluster whose nodes share no disk: the same answers."""
    from raymlops.storage import Storage, files
    from tests.s3server import KEY, SECRET

    for k, v in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}.items():
        monkeypatch.setenv(k, v)
    files._store.cache_clear()
    uri = f"s3://raymlops/console-{tmp_path.name}"
    _upload(store, Storage(uri))
    local, remote = client(store), TestClient(create_app(Settings(storage=uri, token="tok")))
    for url, params in (
        ("/api/runs", {"sort": "metrics.auc", "per_page": 10}),
        ("/api/compare", [("run", "p1/2026-00001"), ("run", "p2/2026-00003")]),
        ("/api/monitoring/app", {"points": 50}),
    ):
        a, b = local.get(url, params=params), remote.get(url, params=params)
        assert a.status_code == b.status_code == 200 and a.json() == b.json(), url
    from raymlops.console import monitoring

    monkeypatch.setattr(monitoring, "URI_TTL_S", 0.0)  # every page re-lists the object store
    again = [remote.get("/api/monitoring/app", params={"points": 5000}).json() for _ in range(2)]
    assert again[0] == again[1] and again[0]["windows"] == {"a": 1200}
    assert len(again[1]["drift"]["a"]["x"]["window"]) == 1200  # a reload replaces, never appends twice
    a, b = local.get("/api/deployments/app").json(), remote.get("/api/deployments/app").json()
    no_rate = lambda ts: [{k: v for k, v in t.items() if k != "rps"} for t in ts]  # noqa: E731 (rates move with now)
    assert no_rate(a["traffic"]) == no_rate(b["traffic"]) and a["shadows"] == b["shadows"]
    assert a["canary_history"] == b["canary_history"]
    assert remote.get("/runs").text.count('class="run"') == 30


def test_registry_actions_map_to_statuses(store, tmp_path):
    """Against a real (embedded) MLflow registry: a move is 200 and recorded; an unknown model or version is
    404; nothing to roll back to is 409; a forced move without a reason is 422 naming `reason`."""
    from mlflow import MlflowClient

    from raymlops.registry import ModelRegistry

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    src = tmp_path / "model"
    src.mkdir()
    (src / "MLmodel").write_text("flavors: {}\n")
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model("m")
    for _ in range(2):
        client.create_model_version("m", str(src))
    ModelRegistry(uri).set_alias("m", "champion", 1, reason="first")
    c = TestClient(create_app(Settings(storage=str(store), tracking_uri=uri, token="tok")))
    h = {"x-raymlops-token": "tok"}
    r = c.post("/api/models/m/promote", json={"version": 2}, headers=h)
    assert r.status_code == 200 and r.json()["previous"] == 1 and r.json()["by"].endswith("(console)")
    assert c.get("/api/models/m").json()["aliases"]["champion"] == 2  # the console's own move shows at once
    r = c.post("/api/models/m/promote", json={"version": 1, "force": True, "reason": " "}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "reason"]
    assert c.post("/api/models/nope/promote", json={"version": 1}, headers=h).status_code == 404
    assert c.post("/api/models/m/promote", json={"version": 99}, headers=h).status_code == 404
    assert c.post("/api/models/m/rollback", json={"alias": "staging"}, headers=h).status_code == 409
    r = c.post("/api/models/m/promote", json={"version": 1, "alias": "latest"}, headers=h)  # reserved by MLflow
    assert r.status_code == 422 and "latest" in r.json()["detail"]
    none = TestClient(create_app(Settings(storage=str(store), token="tok")))  # no tracking store at all
    assert none.post("/api/models/m/promote", json={"version": 1}, headers=h).status_code == 503
    r = c.post("/api/models/m/rollback", json={"reason": "bad"}, headers=h)
    assert r.status_code == 200 and r.json()["version"] == 1 and r.json()["reason"] == "rollback from version 2: bad"
    assert c.get("/models/nope").status_code == 404


def test_rotated_histories_lose_and_repeat_no_window(tmp_path):
    """The writer rotates history.jsonl -> .1 -> .2 while the console tails it: every window is read once."""
    import os

    from raymlops.console.monitoring import Histories

    d = tmp_path / "mon"
    d.mkdir()
    log = d / "history.jsonl"

    def write(*windows):
        with open(log, "a") as f:
            for w in windows:
                f.write(
                    json.dumps(
                        {
                            "kind": "drift",
                            "model_version": "m/1",
                            "ts": 1e9 + w,
                            "window": w,
                            "is_drift": False,
                            "drifted": [],
                            "features": {"x": {"p_value": 0.5}},
                        }
                    )
                    + "\n"
                )

    def rotate():
        if (d / "history.jsonl.1").exists():
            os.replace(d / "history.jsonl.1", d / "history.jsonl.2")
        os.replace(log, d / "history.jsonl.1")

    h = Histories()
    seen = lambda: sorted(e["window"] for e in h.read(str(log)))  # noqa: E731
    write(1, 2)
    assert seen() == [1, 2]
    write(3)
    rotate()
    write(4, 5, 6)  # the new file is already longer than the old offset
    assert seen() == [1, 2, 3, 4, 5, 6]
    write(7)
    rotate()
    write(8)
    rotate()  # twice between two reads: the file tailed is now .2
    write(9)
    assert seen() == list(range(1, 10))
    assert [len(v) for v in h.series(str(log), 100)[0]["x"].values()] == [9] * 6


def test_the_data_page_shows_a_runs_training_profile(store):
    from tests.unit.test_explore import _frame, _profile

    profile, _ = _profile(_frame(2_000), label="y")
    run = store / "runs" / "p1" / "2026-00001"
    (run / "explore").mkdir()
    (run / "explore" / "training.json").write_text(json.dumps(profile))
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "explored": True}))
    c = client(store)
    got = c.get("/api/data/p1/2026-00001").json()
    assert got["rows"] == 2_000 and got["columns"] == len(profile["columns"])
    assert {w["kind"] for w in got["warnings"]} >= {"leakage", "constant"}
    html = c.get("/data/p1/2026-00001")
    assert html.status_code == 200 and "id='col-leak'" in html.text and "<svg" in html.text
    datasets = c.get("/api/datasets").json()["datasets"]
    assert [d["profiled_run"] for d in datasets if d["pipeline"] == "p1"] == ["2026-00001"]
    assert "/data/p1/2026-00001" in c.get("/datasets").text
    missing = c.get("/api/data/p1/2026-00002")
    assert missing.status_code == 404 and "training.explore" in missing.json()["detail"]
    assert c.get("/api/data/p1/nope").status_code == 404
