"""The offline store's versions, appends, backfills and crash safety (Arrow tables, no Ray)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raymlops.errors import DataError
from raymlops.features.offline import OfflineStore

UTC = pa.timestamp("ns", tz="UTC")


def table(days: list[str], values: list[float], key: int = 1) -> pa.Table:
    return pa.table(
        {
            "k": pa.array([key] * len(days), pa.int64()),
            "ts": pa.array(pd.to_datetime(days, utc=True, format="mixed"), UTC),
            "v": values,
        }
    )


def ns(s: str) -> int:
    return pd.Timestamp(s, tz="UTC").value


def read(store: OfflineStore, version: int | None = None) -> list[tuple]:
    t = store.read_table("view", version=version).sort_by([("ts", "ascending"), ("v", "ascending")])
    return [(r["ts"].strftime("%m-%d %H"), r["v"]) for r in t.to_pylist()]


def test_overwrite_append_backfill_and_versions(tmp_path):
    store = OfflineStore(str(tmp_path))
    assert store.latest("view") is None
    v1 = store.write("view", table(["2024-01-01", "2024-01-02 12:00"], [1.0, 2.0]), "ts")
    assert v1.number == 1 and v1.rows == 2
    assert {f["path"].split("/")[-2] for f in v1.files} == {"date=2024-01-01", "date=2024-01-02"}
    store.write("view", table(["2024-01-03"], [3.0]), "ts", mode="append")
    assert read(store) == [("01-01 00", 1.0), ("01-02 12", 2.0), ("01-03 00", 3.0)]
    store.write("view", table(["2024-01-02 00:00"], [20.0]), "ts", mode="append")
    # Backfill [01-02 06:00, 01-03): replaces the 01-02 12:00 row, keeps the rest of the straddled day.
    store.write(
        "view",
        table(["2024-01-02 07:00"], [30.0]),
        "ts",
        mode="backfill",
        start=ns("2024-01-02 06:00"),
        end=ns("2024-01-03"),
    )
    assert read(store) == [("01-01 00", 1.0), ("01-02 00", 20.0), ("01-02 07", 30.0), ("01-03 00", 3.0)]
    assert [v.number for v in store.versions("view")] == [1, 2, 3, 4]
    assert read(store, version=2) == [("01-01 00", 1.0), ("01-02 12", 2.0), ("01-03 00", 3.0)]  # old versions stay
    store.write("view", table(["2024-02-01"], [9.0]), "ts")  # overwrite
    assert read(store) == [("02-01 00", 9.0)]
    latest = store.latest("view").manifest
    assert latest["mode"] == "overwrite" and latest["min_ts"] == latest["max_ts"] == ns("2024-02-01")


def test_failed_write_leaves_previous_version_and_no_files(tmp_path):
    store = OfflineStore(str(tmp_path))
    store.write("view", table(["2024-01-01"], [1.0]), "ts")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(DataError, match="no_such_column"):
        store.write("view", table(["2024-01-05"], [5.0]), "no_such_column")
    assert read(store) == [("01-01 00", 1.0)]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


WRITER = textwrap.dedent("""
    import sys, numpy as np, pandas as pd, pyarrow as pa
    from raymlops.features.offline import OfflineStore
    n = 400_000
    t = pa.table({"k": np.arange(n), "ts": pa.array(pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")),
                  "v": np.full(n, 2.0)})
    print("ready", flush=True)
    while True:
        OfflineStore(sys.argv[1]).write("view", t, "ts")
""")


def test_killed_writer_never_exposes_partial_data(tmp_path):
    """SIGKILL a writer at arbitrary moments: readers see complete versions only."""
    store = OfflineStore(str(tmp_path))
    store.write("view", table(["2024-01-01"], [1.0]), "ts")
    for delay in (0.3, 0.9, 1.7, 2.6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        latest = store.latest("view")
        t = store.read_table("view")
        assert t.num_rows == latest.rows and t.num_rows in (1, 400_000)
        assert np.unique(t.column("v").to_numpy()).size == 1


def test_uri_roots_work_like_paths(tmp_path):
    store = OfflineStore(f"file://{tmp_path}/uri-root")
    store.write("view", table(["2024-01-01", "2024-01-02"], [1.0, 2.0]), "ts")
    store.write("view", table(["2024-01-03"], [3.0]), "ts", mode="append")
    assert read(store) == [("01-01 00", 1.0), ("01-02 00", 2.0), ("01-03 00", 3.0)]
    assert (tmp_path / "uri-root" / "view" / "_versions" / "00000002.json").is_file()
    groups = store.file_set("view", ["k", "ts", "v"], min_groups=2)
    assert sum(len(g) for g in groups.groups) == 3 and groups.rows == 3


def test_an_all_null_batch_widens_instead_of_breaking_the_view(tmp_path):
    store = OfflineStore(str(tmp_path))
    store.write("view", table(["2024-01-01"], [1.5]), "ts")
    nulls = pa.table(
        {
            "k": pa.array([1], pa.int64()),
            "ts": pa.array(pd.to_datetime(["2024-01-02"], utc=True), UTC),
            "v": pa.array([None], pa.null()),
        }
    )
    store.write("view", nulls, "ts", mode="append")
    assert store.latest("view").schema.field("v").type == pa.float64()
    assert store.read_table("view").column("v").to_pylist() == [1.5, None]
