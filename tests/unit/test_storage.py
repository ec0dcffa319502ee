"""One contract suite for every storage backend: a local directory and a real S3-compatible server."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from raymlops.storage import MANIFEST, Staging, Storage, fetch_dir, files
from tests.s3server import KEY, SECRET


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch) -> Storage:
    monkeypatch.setenv("RAYMLOPS_CACHE", str(tmp_path / "node-cache"))
    if request.param == "local":
        return Storage(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    # The standard variables (as a cluster's nodes have them), so URIs built anywhere reach the server.
    for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}.items():
        monkeypatch.setenv(k, v)
    files._store.cache_clear()
    return Storage(f"s3://raymlops/{tmp_path.name}")


def test_an_exclusive_create_has_one_winner_among_racing_writers(store):
    """Locally a hard link, on S3 a conditional PUT (If-None-Match): never two winners, whatever the timing."""
    import threading

    start, wins = threading.Barrier(8), []

    def write(i: int) -> None:
        start.wait()
        if store.create("race", "00000001.json", data=str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and store.read_bytes("race", "00000001.json") == str(wins[0]).encode()


def test_objects_are_written_whole_listed_and_deleted(store):
    assert not store.exists("a", "x.json") and store.listdir("a") == [] and not store.isdir("a")
    store.write_json("a", "x.json", obj={"v": 1})
    store.write_bytes("a", "b", "y.bin", data=b"\0" * 10)
    assert store.read_json("a", "x.json") == {"v": 1} and store.exists("a", "x.json")
    assert store.listdir("a") == ["b", "x.json"] and store.files("a") == ["b/y.bin", "x.json"]
    store.write_json("a", "x.json", obj={"v": 2})  # replaced whole, no temporary file left beside it
    assert store.read_json("a", "x.json") == {"v": 2} and store.listdir("a") == ["b", "x.json"]
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a", "missing")
    assert store.create("a", "once", data=b"1") and not store.create("a", "once", data=b"2")
    assert store.read_bytes("a", "once") == b"1"
    store.delete("a", "x.json")
    store.delete("a", "x.json")  # missing is fine
    store.delete_tree("a")
    assert store.listdir("a") == [] and store.files() == []


def test_a_storage_pickles_with_its_options():
    import pickle

    s = Storage("s3://bucket/prefix", {"endpoint_url": "http://127.0.0.1:9", "region": "eu-west-1"})
    t = pickle.loads(pickle.dumps(s.child("runs")))
    assert t.uri == "s3://bucket/prefix/runs" and t.options["region"] == "eu-west-1" and t.root == "bucket/prefix/runs"
    assert Storage("file:///tmp/x/").uri == "/tmp/x" and Storage("S3://b/p/").uri == "s3://b/p"


def test_a_staged_directory_is_invisible_until_published_and_fetched_whole(store, tmp_path):
    stage = Staging(store, "runs", "p", "r1")
    (stage / "meta.json").write_text("{}")
    path, fs = stage.target("parts")  # where a writer on any node puts its files
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fs is None:
        import os

        os.makedirs(path)
        pq.write_table(pa.table({"x": [1, 2]}), f"{path}/part-0.parquet")
    else:
        pq.write_table(pa.table({"x": [1, 2]}), f"{path}/part-0.parquet", filesystem=fs)
    assert not store.published("runs", "p", "r1", marker="meta.json")
    url = stage.publish({"run_id": "r1"})
    assert store.published("runs", "p", "r1", marker="meta.json")
    assert url == store.url("runs", "p", "r1")
    assert store.read_parquet("runs", "p", "r1", "parts")["x"].tolist() == [1, 2]
    local = fetch_dir(store, "runs", "p", "r1")
    assert (local / "meta.json").read_text() == "{}"
    if not store.local:
        assert json.loads(store.read_text("runs", "p", "r1", MANIFEST))["files"] == {"meta.json": 2}
        assert not (local / "parts").exists()  # a copy holds what the driver committed, not the shared side
    aborted = Staging(store, "runs", "p", "r2")
    (aborted / "x").write_text("x")
    aborted.abort()
    assert "r2" not in store.listdir("runs", "p") and not aborted.dir.exists()


def test_step_cache_runs_once_per_key_and_the_first_complete_writer_wins(store):
    from raymlops.pipeline.cache import StepCache

    calls = []

    def build(out):
        calls.append(1)
        (out / "model.txt").write_text(f"model {len(calls)}")
        return {"n": len(calls)}

    a, b = StepCache(store.child("steps")), StepCache(store.child("steps"))
    first = a.run("train", {"k": 1}, build)
    again = b.run("train", {"k": 1}, build)
    assert not first.cached and again.cached and len(calls) == 1 and again.info == {"n": 1}
    assert (again.path / "model.txt").read_text() == "model 1"
    forced = StepCache(store.child("steps"), enabled=False).run("train", {"k": 1}, build)
    assert not forced.cached and (forced.path / "model.txt").read_text() == "model 2"
    assert (a.lookup("train", first.key).path / "model.txt").read_text() == "model 1"  # never replaced

    def boom(out):
        (out / "half").write_text("x")
        raise RuntimeError("crash mid-step")

    with pytest.raises(RuntimeError):
        a.run("train", {"k": 2}, boom)
    assert a.lookup("train", a.key("train", {"k": 2})) is None


def test_a_run_on_storage_is_invisible_until_committed_and_resumable(store):
    from raymlops.artifacts.run import RESUME, RunWriter, find_run, latest_run, local_run, read_meta
    from raymlops.errors import RunNotFoundError

    w = RunWriter(store, "pipe")
    w.json(RESUME, {"config_hash": "h"})
    w.json("meta.json", {"run_id": w.run_id})
    with pytest.raises(RunNotFoundError):
        find_run(w.run_id, store)
    again = RunWriter.reopen(store, "pipe", lambda s: s["config_hash"] == "h")
    assert again.run_id == w.run_id
    w.json("meta.json", {"run_id": w.run_id})
    (w.dir / "model.ubj").write_bytes(b"m")
    if RESUME in [p.name for p in w.dir.iterdir()]:
        (w.dir / RESUME).unlink()
    where = w.commit()
    assert str(find_run(w.run_id, store)) == str(where) == str(latest_run(store, "pipe"))
    assert read_meta(where) == {"run_id": w.run_id} and (local_run(where) / "model.ubj").read_bytes() == b"m"
    with pytest.raises(RunNotFoundError):
        RunWriter.reopen(store, "pipe", lambda s: True)


def test_logs_append_read_tail_fold_and_rotate(store):
    log = store.url("monitoring", "app", "history.jsonl")
    for i in range(files.COMPACT_AT + 6):
        files.append_line(log, {"i": i})
    lines = [json.loads(x)["i"] for x in files.read_lines(log)]
    assert lines == list(range(files.COMPACT_AT + 6))
    assert [json.loads(x)["i"] for x in files.read_lines(log, last=3)][-3:] == [
        files.COMPACT_AT + 3,
        files.COMPACT_AT + 4,
        files.COMPACT_AT + 5,
    ]
    if not store.local:  # folded into one object; segments a crash left behind a fold are not read twice
        names = store.listdir("monitoring", "app", "history.jsonl.d")  # the writer looks every MAINTAIN_EVERY
        assert sum(n.startswith("m") for n in names) == 1 and len(names) <= 1 + files.MAINTAIN_EVERY
        store.write_bytes(
            "monitoring", "app", "history.jsonl.d", "s00000000000000000001-dead.jsonl", data=b'{"i": -1}\n'
        )
        assert [json.loads(x)["i"] for x in files.read_lines(log)][:2] == [0, 1]
    events = store.url("serving", "app", "events.jsonl")
    got, cursor = files.tail_lines(events, 0)
    assert got == []
    files.append_line(events, {"e": 1}, compact=False)
    files.append_line(events, {"e": 2}, compact=False)
    got, cursor = files.tail_lines(events, cursor)
    assert [json.loads(x)["e"] for x in got] == [1, 2]
    files.append_line(events, {"e": 3}, compact=False)
    got, cursor = files.tail_lines(events, cursor)
    assert [json.loads(x)["e"] for x in got] == [3] and files.tail_lines(events, cursor)[0] == []
    rotated = store.url("alerts.jsonl")
    for i in range(40):
        files.append_line(rotated, {"i": i, "pad": "x" * 50}, rotate_bytes=300, keep=2)
    kept = [json.loads(x)["i"] for x in files.read_lines(rotated, keep=2)]
    assert kept[-1] == 39 and len(kept) < 40 and kept == sorted(kept)


def test_state_files_by_location(store):
    loc = files.join(store.url("monitoring", "app", "v"), "checkpoint.pkl")
    assert not files.file_exists(loc)
    files.write_file(loc, b"state", durable=True)
    assert files.file_exists(loc) and files.read_file(loc) == b"state"
    files.move_aside(loc, ".bad")
    assert not files.file_exists(loc) and files.read_file(loc + ".bad") == b"state"
    assert files.list_dirs(store.url("monitoring", "app")) == ["v"]


def test_the_request_log_writes_and_reads_on_storage(store):
    from raymlops.serving.request_log import RequestLog, read_log

    path = store.url("request_log", "app")
    assert read_log(path).empty
    rl = RequestLog(path, flush_s=0.05)
    rl.add(
        {
            "ts": 1_700_000_000.0,
            "request_id": "r1",
            "variant": "a",
            "role": "primary",
            "model_version": "m",
            "status": 200,
            "latency_ms": 1.0,
            "rows": [{"x": 1}, {"x": 2}],
            "predictions": [0, 1],
        }
    )
    assert rl.flush(10)
    df = read_log(path)
    assert len(df) == 2 and set(df["request_id"]) == {"r1"} and isinstance(df, pd.DataFrame)
    assert not [f for f in store.files("request_log") if f.rsplit("/", 1)[-1].startswith(".")]
