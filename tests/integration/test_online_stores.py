"""One OnlineStore contract suite, run against SQLite and a real redis-server; plus backend-specific guarantees.

No Ray here: these tests do not request ray_session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raymlops.config.models import RedisOnlineStoreConfig, SqliteOnlineStoreConfig
from raymlops.errors import DataError, RaymlopsError
from raymlops.features.online import (
    OnlineRecord,
    OnlineStore,
    OnlineStoreError,
    encode_key,
    encode_values,
    open_online_store,
    to_json_value,
)
from raymlops.features.online.sqlite import SqliteOnlineStore
from tests.conftest import ROOT, free_port

T0 = 1_704_067_200_000_000_001  # 2024-01-01 00:00:00.000000001 UTC: beyond 2**53, so compared exactly or not at all


def rec(x, ts: int = T0, cts: int | None = None) -> OnlineRecord:
    return OnlineRecord({"x": x}, ts, cts)


def open_store(kind: str, tmp_path: Path, redis_url: str | None) -> OnlineStore:
    if kind == "sqlite":
        return open_online_store(SqliteOnlineStoreConfig(), str(tmp_path / "store"), "ns")
    return open_online_store(
        RedisOnlineStoreConfig(type="redis", url=redis_url), str(tmp_path), f"test-{uuid.uuid4().hex[:12]}"
    )


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    with open_store(request.param, tmp_path, url) as s:
        yield s


# --- the contract, on both backends ---------------------------------------------------------------------------


def test_round_trip_keeps_values_and_timestamps(store):
    values = {
        "i": 42,
        "neg": -7,
        "f": 0.1,
        "big": 2**62 + 1,
        "s": 'héllo "q" :*',
        "b": True,
        "no": False,
        "n": None,
        "list": [1, 2.5, None],
    }
    assert store.write("v", [((1,), OnlineRecord(values, T0, T0 + 1)), ((2,), OnlineRecord({"i": 0}, -5))]) == 2
    got = store.read("v", [(1,), (2,)])
    assert got == [OnlineRecord(values, T0, T0 + 1), OnlineRecord({"i": 0}, -5, None)]
    assert type(got[0].values["i"]) is int and type(got[0].values["b"]) is bool and type(got[0].values["f"]) is float


def test_values_are_normalized_to_json(store):
    values = {
        "f32": np.float32(0.5),
        "i64": np.int64(7),
        "nb": np.bool_(True),
        "nan": float("nan"),
        "npnan": np.float64("nan"),
        "inf": float("inf"),
        "ts": pd.Timestamp("2024-01-02 03:04:05"),
        "tz": pd.Timestamp("2024-01-02 05:04:05", tz="Europe/Berlin"),
        "dt64": np.datetime64("2024-01-02T03:04:05"),
        "nat": pd.NaT,
        "na": pd.NA,
        "arr": np.array([1, 2]),
    }
    store.write("v", [((1,), OnlineRecord(values, np.int64(T0), np.int64(3)))])
    got = store.read("v", [(1,)])[0]
    assert got.values == {
        "f32": 0.5,
        "i64": 7,
        "nb": True,
        "nan": None,
        "npnan": None,
        "inf": None,
        "ts": "2024-01-02T03:04:05+00:00",
        "tz": "2024-01-02T04:04:05+00:00",
        "dt64": "2024-01-02T03:04:05+00:00",
        "nat": None,
        "na": None,
        "arr": [1, 2],
    }
    assert (got.event_ts, got.created_ts) == (T0, 3)


def test_bad_values_keys_and_timestamps_are_data_errors(store):
    with pytest.raises(DataError, match="bytes"):
        store.write("v", [((1,), OnlineRecord({"b": b"\x00"}, T0))])
    with pytest.raises(DataError, match="no JSON form"):
        store.write("v", [((1,), OnlineRecord({"o": object()}, T0))])
    for key in [(), (None,), (float("nan"),), 5, (b"k",)]:
        with pytest.raises(DataError):
            store.write("v", [(key, rec(1))])
    with pytest.raises(DataError, match="event_ts"):
        store.write("v", [((1,), rec(1, ts=pd.Timestamp("2024-01-01")))])
    with pytest.raises(DataError, match="created_ts"):
        store.write("v", [((1,), rec(1, cts=1.5))])
    with pytest.raises(DataError, match="64-bit"):
        store.write("v", [((1,), rec(1, ts=2**63))])
    assert store.count("v") == 0


def test_multi_column_keys(store):
    store.write("v", [(("a", 3), rec(1)), (("a", 4), rec(2)), ((3, "a"), rec(3)), (("a,3",), rec(4))])
    assert [r.values["x"] for r in store.read("v", [("a", 4), (3, "a"), ("a", 3), ("a,3",)])] == [2, 3, 1, 4]
    assert store.read("v", [("a",), (3,), ("a", 3, 0)]) == [None, None, None]
    assert store.count("v") == 4


def test_int_str_and_bool_keys_do_not_collide(store):
    store.write("v", [((1,), rec("int")), (("1",), rec("str")), ((True,), rec("bool")), (('"1"',), rec("quoted"))])
    got = store.read("v", [("1",), (1,), (True,), ('"1"',)])
    assert [r.values["x"] for r in got] == ["str", "int", "bool", "quoted"]
    assert store.count("v") == 4


def test_numpy_keys_equal_python_keys(store):
    store.write(
        "v",
        [
            ((np.int64(5), np.str_("a")), rec("np")),
            ((np.int32(6),), rec("i32")),
            ((7,), rec("py")),
            ((8.0,), rec("float")),
        ],
    )
    got = store.read("v", [(5, "a"), (np.int16(6),), (np.uint64(7),), (8,), (np.float32(8.0),), (8.5,)])
    assert [r and r.values["x"] for r in got] == ["np", "i32", "py", "float", "float", None]
    assert encode_key((np.int64(1),)) == encode_key((1,)) == encode_key([1.0]) != encode_key(("1",))


def test_not_found_is_none_and_order_follows_keys(store):
    store.write("v", [((1,), rec(1)), ((2,), rec(2))])
    got = store.read("v", [(2,), (99,), (1,), (2,), (2,)])
    assert [r and r.values["x"] for r in got] == [2, None, 1, 2, 2]
    assert store.read("v", []) == []
    assert store.read("nothing", [(1,)]) == [None]


def test_newer_event_or_created_time_wins(store):
    k = (1,)

    def now():
        r = store.read("v", [k])[0]
        return r.values["x"], r.event_ts, r.created_ts

    assert store.write("v", [(k, rec("a", T0, None))]) == 1
    assert store.write("v", [(k, rec("older", T0 - 1, 2**63 - 1))]) == 0  # 1 ns older event, however recent its cts
    assert now() == ("a", T0, None)
    assert store.write("v", [(k, rec("b", T0, 5))]) == 1  # same event time: any created_ts beats None
    assert store.write("v", [(k, rec("stale", T0, 4))]) == 0
    assert store.write("v", [(k, rec("no-cts", T0, None))]) == 0  # None sorts before any created_ts
    assert now() == ("b", T0, 5)
    assert store.write("v", [(k, rec("c", T0, 5))]) == 1  # an equal version replaces (re-materialized window)
    assert store.write("v", [(k, rec("d", T0, 6))]) == 1
    assert store.write("v", [(k, rec("e", T0 + 1, None))]) == 1  # 1 ns newer event beats any created_ts
    assert now() == ("e", T0 + 1, None)
    assert store.write("v", [(k, rec("neg", -(2**62), None))]) == 0
    assert store.count("v") == 1


def test_duplicate_keys_in_one_write_apply_in_order(store):
    rows = [((1,), rec("new", T0 + 2)), ((1,), rec("old", T0 + 1)), ((2,), rec("first", T0)), ((2,), rec("second", T0))]
    assert store.write("v", rows) == 3
    assert [r.values["x"] for r in store.read("v", [(1,), (2,)])] == ["new", "second"]
    assert store.count("v") == 2


def test_rewrite_is_idempotent(store):
    rows = [((i,), OnlineRecord({"x": i, "y": str(i)}, T0 + i, T0)) for i in range(100)]
    assert store.write("v", rows) == 100
    before = store.read("v", [(i,) for i in range(100)])
    assert store.write("v", iter(rows)) == 100  # equal versions are applied again (same state)
    assert store.read("v", [(i,) for i in range(100)]) == before
    assert store.count("v") == 100


def test_meta_get_set(store):
    assert store.get_meta("watermark:v") is None
    store.set_meta("watermark:v", "1")
    store.set_meta("watermark:v", '{"ts": 2, "note": "ü"}')
    store.set_meta("other", "")
    assert store.get_meta("watermark:v") == '{"ts": 2, "note": "ü"}'
    assert store.get_meta("other") == ""


def test_views_are_isolated_and_delete_view_removes_one(store):
    views = ["a", "a:b", "a*", "ab", "[a]", "__meta__", "__counts__"]
    for n, view in enumerate(views):
        store.write(view, [((1,), rec(view)), ((n + 2,), rec(n))])
    store.set_meta("a", "kept")
    assert [store.read(v, [(1,)])[0].values["x"] for v in views] == views
    store.delete_view("a")
    store.delete_view("a*")
    store.delete_view("[a]")
    assert store.read("a", [(1,), (2,)]) == [None, None]
    assert store.count("a") == store.count("a*") == store.count("[a]") == 0
    for view in ["a:b", "ab", "__meta__", "__counts__"]:
        assert store.read(view, [(1,)])[0].values["x"] == view
        assert store.count(view) == 2
    assert store.get_meta("a") == "kept"
    store.delete_view("never-written")
    assert store.write("a", [((1,), rec("again", T0 - 10))]) == 1  # nothing left to be newer than
    assert store.count("a") == 1


def test_large_batch_round_trips(store):
    n = 50_000
    rows = ((("c", i), OnlineRecord({f"f{j}": i * j * 0.5 for j in range(10)}, T0 + i)) for i in range(n))
    assert store.write("big", rows) == n
    assert store.count("big") == n
    keys = [("c", i) for i in range(n - 1, -1, -1)]
    got = store.read("big", keys)
    assert len(got) == n and all(r is not None for r in got)
    assert got[0] == OnlineRecord({f"f{j}": (n - 1) * j * 0.5 for j in range(10)}, T0 + n - 1)
    assert [r.event_ts for r in got] == [T0 + i for i in range(n - 1, -1, -1)]


def test_threads_share_one_store(store):
    def work(t: int) -> list:
        store.write("v", [((t, i), rec(t * 1000 + i)) for i in range(200)])
        return [r.values["x"] for r in store.read("v", [(t, i) for i in range(200)])]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(16)))
    assert results == [[t * 1000 + i for i in range(200)] for t in range(16)]
    assert store.count("v") == 16 * 200


def test_closed_store_refuses_use(store):
    store.close()
    store.close()
    with pytest.raises(OnlineStoreError, match="closed"):
        store.read("v", [(1,)])


# --- codec ------------------------------------------------------------------------------------------------------


# --- window tiles (the same contract on both backends) ------------------------------------------------------


def _add(a: str | None, b: str) -> str:
    return str(int(b) + (0 if a is None else int(a)))


def far() -> int:
    return time.time_ns() + 3600 * 10**9


def test_tiles_replace_read_and_isolate(store):
    k1, k2 = (1,), ("1",)
    assert (
        store.write_tiles(
            "v", [(k1, 0, 10, far(), "1"), (k1, 0, 11, far(), "2"), (k1, 1, 1, far(), "3"), (k2, 0, 10, far(), "4")]
        )
        == 4
    )
    assert store.write_tiles("v", [(k1, 0, 10, far(), "5")]) == 1  # replaces
    got = store.read_tiles("v", [k1, k2, (9,)], [(0, 10), (0, 11), (1, 1), (0, 12)])
    assert got == [{(0, 10): "5", (0, 11): "2", (1, 1): "3"}, {(0, 10): "4"}, {}]
    assert store.read_tiles("other", [k1], [(0, 10)]) == [{}]
    assert store.read_tiles("v", [k1], []) == [{}]
    store.delete_view("v")
    assert store.read_tiles("v", [k1], [(0, 10)]) == [{}]


def test_tiles_merge_atomically_under_concurrent_writers(store):
    def push(i):
        store.write_tiles("v", [((7,), 0, 1, far(), "1"), ((7,), 1, 0, far(), "1")], merge=_add)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(push, range(80)))
    assert store.read_tiles("v", [(7,)], [(0, 1), (1, 0)]) == [{(0, 1): "80", (1, 0): "80"}]


def test_expired_tiles_are_not_written_and_expire(store):
    now = time.time_ns()
    assert store.write_tiles("v", [((1,), 0, 1, now - 1, "1"), ((1,), 0, 2, now + 400 * 10**6, "2")]) == 1
    time.sleep(0.5)
    store.expire_tiles("v", time.time_ns())
    assert store.read_tiles("v", [(1,)], [(0, 1), (0, 2)]) == [{}]


def test_value_codec():
    assert to_json_value(np.float64("nan")) is None
    assert to_json_value(pd.Timestamp("2024-01-01 00:00:00.000000001")) == "2024-01-01T00:00:00.000000001+00:00"
    assert to_json_value(np.datetime64("NaT")) is None
    assert encode_values({"a": np.int64(1), "b": float("nan")}) == '{"a":1,"b":null}'
    with pytest.raises(DataError, match="bytes"):
        to_json_value(bytearray(b"x"))


# --- factory and backend specifics ----------------------------------------------------------------------------


def test_factory_sqlite_default_path_and_explicit_path(tmp_path):
    with open_online_store(None, str(tmp_path / "s"), "ns") as s:
        assert isinstance(s, SqliteOnlineStore) and s.path == tmp_path / "s" / "features" / "online.db"
        assert s.path.exists()
    path = tmp_path / "deep" / "er" / "x.db"
    with open_online_store(SqliteOnlineStoreConfig(path=str(path)), "/unused", "ns") as s:
        assert s.path == path and path.exists()
    with pytest.raises(OnlineStoreError, match="features.online_store.path"):
        open_online_store(SqliteOnlineStoreConfig(), "s3://bucket/x", "ns")


def test_factory_rejects_unknown_type(tmp_path):
    class Cfg:
        type = "dynamo"

    with pytest.raises(RaymlopsError, match="dynamo"):
        open_online_store(Cfg(), str(tmp_path), "ns")


def test_redis_unreachable_is_a_clear_error(tmp_path):
    port = free_port()
    with pytest.raises(OnlineStoreError, match=f"127.0.0.1:{port}") as e:
        open_online_store(RedisOnlineStoreConfig(type="redis", url=f"redis://:s3cret@127.0.0.1:{port}/0"), "", "ns")
    assert "s3cret" not in str(e.value)


def test_redis_key_layout_and_prefix_isolation(redis_url, tmp_path):
    import redis

    prefix = f"iso-{uuid.uuid4().hex[:8]}"
    cfg = RedisOnlineStoreConfig(type="redis", url=redis_url, key_prefix=prefix)
    with (
        open_online_store(cfg, "", "ignored") as a,
        open_online_store(cfg.model_copy(update={"key_prefix": None}), "", prefix + "-b") as b,
    ):
        a.write("v", [((7, "x"), rec(1, T0, 9))])
        a.set_meta("m", "1")
        assert b.read("v", [(7, "x")]) == [None] and b.count("v") == 0 and b.get_meta("m") is None
        raw = redis.Redis.from_url(redis_url, decode_responses=True)
        assert raw.hgetall(f'{prefix}:v:7,"x"') == {"values": '{"x":1}', "ts": str(T0), "cts": "9"}
        assert raw.hget(f"{prefix}:__meta__", "m") == "1"
        raw.close()


def test_sqlite_two_connections_see_each_others_writes(tmp_path):
    path = tmp_path / "shared.db"
    with SqliteOnlineStore(path) as a, SqliteOnlineStore(path) as b:
        a.write("v", [((1,), rec("from a"))])
        assert b.read("v", [(1,)])[0].values == {"x": "from a"}
        b.write("v", [((1,), rec("from b", T0 + 1))])
        b.set_meta("k", "b")
        assert a.read("v", [(1,)])[0].values == {"x": "from b"} and a.get_meta("k") == "b"
        assert a.count("v") == b.count("v") == 1


def test_sqlite_failed_write_keeps_previous_state(tmp_path):
    with SqliteOnlineStore(tmp_path / "x.db") as s:
        s.write("v", [((i,), rec(f"old{i}")) for i in range(10)])

        def rows():
            for i in range(20):
                if i == 15:
                    raise RuntimeError("source died")
                yield (i,), rec(f"new{i}", T0 + 1)

        with pytest.raises(RuntimeError, match="source died"):
            s.write("v", rows())
        assert [r and r.values["x"] for r in s.read("v", [(i,) for i in range(20)])] == [
            f"old{i}" for i in range(10)
        ] + [None] * 10
        assert s.count("v") == 10
        assert s.write("v", [((1,), rec("after", T0 + 2))]) == 1  # the connection is usable afterwards


def test_sqlite_processes_write_concurrently(tmp_path):
    path = tmp_path / "mp.db"
    child = textwrap.dedent(f"""
        import sys
        from raymlops.features.online import OnlineRecord
        from raymlops.features.online.sqlite import SqliteOnlineStore
        with SqliteOnlineStore({str(path)!r}) as s:
            for batch in range(20):
                s.write(sys.argv[1], (((batch, i), OnlineRecord({{"x": i}}, batch)) for i in range(500)))
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", child, f"p{n}"], cwd=ROOT, stderr=subprocess.PIPE) for n in range(3)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    with SqliteOnlineStore(path) as s:
        assert [s.count(f"p{n}") for n in range(3)] == [10_000] * 3


def test_sqlite_reader_thread_not_blocked_by_open_write(tmp_path):
    """WAL + a connection per thread: a read during another thread's long write sees the last committed state."""
    with SqliteOnlineStore(tmp_path / "x.db") as s:
        s.write("v", [((1,), rec("committed"))])
        inside, release = threading.Event(), threading.Event()

        def slow_rows():
            yield (1,), rec("pending", T0 + 1)
            inside.set()
            release.wait(10)

        writer = threading.Thread(target=s.write, args=("v", slow_rows()))
        writer.start()
        try:
            assert inside.wait(10)
            assert s.read("v", [(1,)])[0].values == {"x": "committed"}
        finally:
            release.set()
            writer.join()
        assert s.read("v", [(1,)])[0].values == {"x": "pending"}
