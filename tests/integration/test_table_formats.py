"""Delta Lake tables written by the deltalake package and Iceberg tables written by pyiceberg (SQLite
catalog) as sources: time travel (version, snapshot, as_of), the version a run read pinned in its lineage and
its recorded config, and the quickstart model trained on an old version."""

from __future__ import annotations

import json
import time

import pandas as pd
import pyarrow as pa
import pytest

from raymlops.artifacts.run import read_meta
from raymlops.config.models import SourceConfig
from raymlops.data.sources import read_source
from raymlops.errors import DataError
from tests.integration.conftest import pipeline


def _halves(demo_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.read_parquet(demo_dir / "train.parquet")
    df["event_ts"] = df["event_ts"].astype("datetime64[us]")
    early = df["event_ts"] < "2024-04-01"
    return df[early].reset_index(drop=True), df[~early].reset_index(drop=True)


@pytest.fixture(scope="module")
def delta_table(demo_dir, tmp_path_factory):
    from deltalake import DeltaTable, write_deltalake

    first, second = _halves(demo_dir)
    path = str(tmp_path_factory.mktemp("delta") / "customers")
    write_deltalake(path, first, partition_by=["region"])  # version 0: Jan-Mar
    time.sleep(1.1)
    write_deltalake(path, second, mode="append", partition_by=["region"])  # version 1: + Apr-Jun
    stamps = sorted(h["timestamp"] for h in DeltaTable(path).history())  # ms since the epoch, per commit
    between = pd.Timestamp((stamps[0] + stamps[1]) / 2, unit="ms", tz="UTC").isoformat()
    return path, first, second, between


@pytest.fixture(scope="module")
def iceberg_table(demo_dir, tmp_path_factory):
    from pyiceberg.catalog import load_catalog

    first, second = _halves(demo_dir)
    root = tmp_path_factory.mktemp("iceberg")
    catalog = {"type": "sql", "uri": f"sqlite:///{root}/catalog.db", "warehouse": f"file://{root}/warehouse"}
    cat = load_catalog("raymlops", **catalog)
    cat.create_namespace("crm")
    arrow = pa.Table.from_pandas(first, preserve_index=False)
    table = cat.create_table("crm.customers", schema=arrow.schema)
    table.append(arrow)
    snap0 = table.current_snapshot().snapshot_id
    time.sleep(0.05)
    table.append(pa.Table.from_pandas(second, preserve_index=False).cast(arrow.schema))
    return catalog, first, second, snap0


def test_delta_time_travel_by_version_and_time(ray_session, delta_table):
    path, first, second, between = delta_table
    assert read_source(SourceConfig(format="delta", path=path)).count() == len(first) + len(second)
    assert read_source(SourceConfig(format="delta", path=path, version=0)).count() == len(first)
    old = read_source(SourceConfig(format="delta", path=path, as_of=between)).to_pandas()
    assert sorted(old["customer_id"]) == sorted(first["customer_id"]) and "region" in old.columns
    with pytest.raises(DataError, match="cannot open the Delta table at the requested version"):
        read_source(SourceConfig(format="delta", path=path, version=7)).count()
    with pytest.raises(DataError, match="not a Delta table"):
        read_source(SourceConfig(format="delta", path=str(first.attrs.get("nowhere", "/tmp/no-such-delta"))))


def test_iceberg_time_travel_by_snapshot(ray_session, iceberg_table):
    catalog, first, second, snap0 = iceberg_table
    src = {"format": "iceberg", "path": "crm.customers", "catalog": catalog}
    assert read_source(SourceConfig(**src)).count() == len(first) + len(second)
    assert read_source(SourceConfig(**src, snapshot=snap0)).count() == len(first)
    from pyiceberg.catalog import load_catalog

    stamps = sorted(s.timestamp_ms for s in load_catalog("raymlops", **catalog).load_table("crm.customers").snapshots())
    between = pd.Timestamp((stamps[0] + stamps[1]) / 2, unit="ms", tz="UTC").isoformat()
    assert read_source(SourceConfig(**src, as_of=between)).count() == len(first)
    with pytest.raises(DataError, match="no snapshot 1;"):
        read_source(SourceConfig(**src, snapshot=1))
    with pytest.raises(DataError, match="no such Iceberg table"):
        read_source(SourceConfig(**{**src, "path": "crm.nope"}))


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_a_run_trains_on_a_pinned_table_version(ray_session, storage, delta_table, iceberg_table, fmt, tmp_path):
    if fmt == "delta":
        path, first, second, _ = delta_table
        table = ["sources.customers.format=delta", f"sources.customers.path={path}"]
        old, latest = ["sources.customers.version=0"], {"version": 1}
    else:
        catalog, first, second, snap0 = iceberg_table
        table = [
            "sources.customers.format=iceberg",
            "sources.customers.path=crm.customers",
            f"sources.customers.catalog={json.dumps(catalog)}",
        ]
        old, latest = [f"sources.customers.snapshot={snap0}"], None
    quick = ["training.tune.num_samples=1", "training.explore=false", "serving=null", "monitoring=null"]
    result = pipeline("quickstart.yaml", tmp_path, storage, *table, *old, *quick).train(progress=False)
    meta = read_meta(result.run_dir)
    assert meta["rows"]["train"] + meta["rows"]["valid"] == len(first)  # the old version: Jan-Mar only
    lineage = json.loads((result.run_dir / "lineage.json").read_text())["inputs"]["sources"]["customers"]
    assert lineage["format"] == fmt and lineage.get("version", lineage.get("snapshot")) is not None
    # without a version the run reads the latest, and pins it in its recorded config (so `reproduce` re-reads it)
    pipe = pipeline("quickstart.yaml", tmp_path, storage, *table, *quick)
    result = pipe.train(progress=False)
    meta = read_meta(result.run_dir)
    assert meta["rows"]["train"] + meta["rows"]["valid"] == len(first) + len(second)
    recorded = (result.run_dir / "config.yaml").read_text()
    lineage = json.loads((result.run_dir / "lineage.json").read_text())["inputs"]["sources"]["customers"]
    if latest:
        assert lineage["version"] == latest["version"] and "version: 1" in recorded
    else:
        assert f"snapshot: {lineage['snapshot']}" in recorded and lineage["snapshot"] != old[0].split("=")[1]


def test_a_feature_view_builds_from_a_delta_table_at_its_pinned_version(ray_session, tmp_path):
    import numpy as np
    import yaml
    from deltalake import write_deltalake

    from raymlops import FeatureStore
    from raymlops.pipeline.steps import build_and_record

    rng = np.random.default_rng(1)
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 20, 500),
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(500), unit="h"),
            "score": rng.normal(0, 1, 500),
            "tier": rng.choice(["a", "b"], 500),
        }
    )
    table = str(tmp_path / "events")
    write_deltalake(table, events.iloc[:300])
    write_deltalake(table, events.iloc[300:], mode="append")
    cfg = {
        "name": "delta-features",
        "storage": str(tmp_path / "store"),
        "sources": {"events": {"format": "delta", "path": table, "version": 0}},
        "features": {
            "entities": [{"name": "user", "join_keys": ["user_id"]}],
            "views": [
                {"name": "stats", "entity": "user", "source": "events", "timestamp": "ts", "fields": ["score", "tier"]}
            ],
        },
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    store = FeatureStore.from_yaml(tmp_path / "cfg.yaml")
    built = build_and_record(store.config, store)
    assert sum(f["rows"] for f in built["stats"]["files"]) == 300  # version 0 only
    assert store.offline.read_table("stats").num_rows == 300
