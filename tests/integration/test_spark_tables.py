"""Tables written by real PySpark (local mode, Debian's Java): Hive partitions come back as typed columns,
Spark's _SUCCESS and .crc files are skipped, a partition filter prunes files before reading, and the
quickstart model trains on the pruned table."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from raymlops.data.reader import read_frame, resolve, schema
from raymlops.errors import DataError
from tests.integration.conftest import pipeline


@pytest.fixture(scope="module")
def spark_table(demo_dir, tmp_path_factory):
    """The demo's training data written by PySpark, partitioned by month (int) and plan (string)."""
    if shutil.which("java") is None:
        pytest.fail("java is missing: scripts/test.sh installs it (openjdk-17-jre-headless)")
    from pyspark.sql import SparkSession

    out = tmp_path_factory.mktemp("spark") / "customers"
    df = pd.read_parquet(demo_dir / "train.parquet")
    df["month"] = df["event_ts"].dt.month
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("raymlops-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        spark.createDataFrame(df).write.partitionBy("month", "plan").parquet(str(out))
    finally:
        spark.stop()
    return out, df


def test_spark_partitions_come_back_typed_and_markers_are_skipped(spark_table):
    out, df = spark_table
    names = [p.name for p in out.rglob("*")]
    assert "_SUCCESS" in names and any(n.endswith(".crc") for n in names)  # what Spark leaves beside the data
    src = resolve(str(out))
    assert all(f.endswith(".parquet") for f in src.files)
    got = schema(src)
    assert str(got.field("month").type) == "int64" and str(got.field("plan").type) == "string"
    frame = read_frame(src)
    assert len(frame) == len(df)
    key = ["customer_id"]
    merged = frame.merge(df, on=key, suffixes=("", "_want"))
    assert (merged["month"] == merged["month_want"]).all() and (merged["plan"] == merged["plan_want"]).all()


def test_a_partition_filter_reads_only_its_files(spark_table):
    out, df = spark_table
    all_files = resolve(str(out)).files
    src = resolve(str(out), filters=[("month", "<=", 3), ("plan", "in", ["basic", "premium"])])
    want = df[(df["month"] <= 3) & df["plan"].isin(["basic", "premium"])]
    assert 0 < len(src.files) < len(all_files)
    assert all("month=" in f and ("plan=basic" in f or "plan=premium" in f) for f in src.files)
    assert sorted(read_frame(src)["customer_id"]) == sorted(want["customer_id"])
    with pytest.raises(DataError, match="'tenure_months' is not a partition column; partition columns: "):
        resolve(str(out), filters=[("tenure_months", ">", 3)])
    with pytest.raises(DataError, match="leaves no files"):
        resolve(str(out), filters=[("month", ">", 12)])


def test_the_quickstart_trains_on_the_pruned_spark_table(ray_session, spark_table, storage):
    out, df = spark_table
    pipe = pipeline(
        "quickstart.yaml",
        out.parent,
        storage,
        f"sources.customers.path={out}",
        'sources.customers.filter=[["month", "<=", 5]]',
        "training.tune.num_samples=1",
        "training.explore=false",
        "serving=null",
        "monitoring=null",
    )
    result = pipe.train(progress=False)
    from raymlops.artifacts.run import read_meta

    meta = read_meta(result.run_dir)
    rows = meta["rows"]
    assert rows["train"] + rows["valid"] == int((df["month"] <= 5).sum())
    assert meta["time_range"][1] < "2024-06-01"  # June was pruned away


def test_the_offline_store_exports_tables_spark_and_delta_read(ray_session, tmp_path):
    import numpy as np
    import pyarrow as pa
    from deltalake import DeltaTable
    from pyspark.sql import SparkSession

    from tests.integration.test_features_pit import make_store

    rng = np.random.default_rng(4)
    n = 3_000
    table = pa.table(
        {
            "user_id": rng.integers(0, 50, n),
            "ts": pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 20 * 86400, n), unit="s"),
            "created": pd.Timestamp("2024-04-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
            "clicks": rng.integers(0, 9, n),
            "spend": rng.normal(10, 2, n),
        }
    )
    store = make_store(tmp_path, table)
    want = store.offline.read_table("stats").to_pandas()
    got = store.export("stats", str(tmp_path / "pq"), "parquet")
    assert got["rows"] == n and (tmp_path / "pq" / "_SUCCESS").exists()
    assert not list(tmp_path.glob("pq.*.partial"))
    store.export("stats", str(tmp_path / "delta"), "delta")
    delta = DeltaTable(str(tmp_path / "delta"))
    assert delta.to_pyarrow_table().num_rows == n
    assert delta.history()[0]["raymlops.offline_version"] == str(got["version"])
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("raymlops-export")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        df = spark.read.parquet(str(tmp_path / "pq"))
        assert df.count() == n and "date" in df.columns
        assert abs(df.groupBy().sum("spend").collect()[0][0] - want["spend"].sum()) < 1e-6
        days = {r["date"].isoformat() for r in df.select("date").distinct().collect()}
        assert days == set(want["ts"].dt.strftime("%Y-%m-%d"))
    finally:
        spark.stop()
    with pytest.raises(DataError, match="already exists and is not empty"):
        store.export("stats", str(tmp_path / "pq"), "parquet")
