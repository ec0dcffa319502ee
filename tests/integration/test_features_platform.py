"""The feature platform on a real Ray: feature pipelines, backfills, crash safety, materialization into
SQLite and a real Redis, the feature server over HTTP, and a model trained from a PIT set served by key."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from raymlops import FeatureStore, Pipeline, load_model
from raymlops.errors import DataError
from tests.conftest import ROOT, free_port


def overrides(demo_dir, storage, *extra) -> list[str]:
    return [
        f"storage={storage}",
        f"sources.transactions.path={demo_dir}/transactions.parquet",
        f"sources.labels.path={demo_dir}/labels.parquet",
        *extra,
    ]


@pytest.fixture(scope="module")
def built(ray_session, demo_dir, tmp_path_factory):
    storage = tmp_path_factory.mktemp("features")
    fs = FeatureStore.from_yaml(ROOT / "configs" / "features.yaml", overrides(demo_dir, storage))
    fs.build()
    return fs


def post(url: str, body) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_window_aggregates_match_pandas(built, demo_dir):
    """The demo's windows as of arbitrary times (not only event times), from the stored events."""
    tx = pd.read_parquet(demo_dir / "transactions.parquet")
    assert built.offline.read_table("txn_stats").num_rows == len(tx)  # the view stores the events themselves
    rng = np.random.default_rng(0)
    sample = tx.sample(150, random_state=0)
    entity = pd.DataFrame(
        {
            "customer_id": sample.customer_id.to_numpy(),
            "event_timestamp": sample.event_time.to_numpy() + pd.to_timedelta(rng.integers(0, 20 * 24, 150), unit="h"),
        }
    )
    got = built.get_historical_features(entity, ["txn_stats:*"])
    for (_, e), (_, r) in zip(entity.iterrows(), got.iterrows()):
        t = e.event_timestamp
        mine = tx[tx.customer_id == e.customer_id]
        w7 = mine[(mine.event_time > t - pd.Timedelta(days=7)) & (mine.event_time <= t)]
        w30 = mine[(mine.event_time > t - pd.Timedelta(days=30)) & (mine.event_time <= t)]
        assert r.amount_sum_7d == pytest.approx(w7.amount.sum())
        assert r.amount_sum_30d == pytest.approx(w30.amount.sum())
        assert r.amount_count_30d == w30.amount.count()
        assert r.amount_max_30d == pytest.approx(w30.amount.max()) or (
            np.isnan(r.amount_max_30d) and w30.amount.count() == 0
        )
        assert r.merchant_category_distinct_count_30d == w30.merchant_category.nunique()


def test_backfill_and_append_keep_the_view_whole(built):
    before = built.offline.latest("txn_stats")
    full = built.offline.read_table("txn_stats").to_pandas()
    mid = full.event_time.quantile(0.5)
    built.build(start=mid - pd.Timedelta(days=3), end=mid + pd.Timedelta(days=2))
    after = built.offline.read_table("txn_stats").to_pandas()
    assert built.offline.latest("txn_stats").number == before.number + 1
    key = ["customer_id", "event_time", "ingested_at"]
    pd.testing.assert_frame_equal(
        after.sort_values(key).reset_index(drop=True), full.sort_values(key).reset_index(drop=True), check_dtype=False
    )
    m = built.build(append=True)["txn_stats"]  # nothing newer in the source: an empty, valid version
    assert m["mode"] == "append" and m["written_rows"] == 0
    assert built.offline.read_table("txn_stats").num_rows == len(full)


def test_crash_during_build_keeps_previous_version(built, demo_dir, tmp_path):
    version = built.offline.latest("txn_stats").number
    data = built.offline._dir("txn_stats", "data")

    def writes():
        return sorted(i.path for i in built.offline.fs.get_file_info(__import__("pyarrow.fs").fs.FileSelector(data)))

    before = writes()
    bad = FeatureStore.from_yaml(
        ROOT / "configs" / "features.yaml",
        overrides(demo_dir, built.config.storage, "features.views.0.transform=tests.integration.failing:fail_late"),
    )
    with pytest.raises(Exception, match="injected failure"):
        bad.build()
    assert built.offline.latest("txn_stats").number == version
    assert writes() == before  # the failed write's directory is gone
    assert built.offline.read_table("txn_stats").num_rows > 0


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_materialize_and_online_lookup(built, backend, redis_url, tmp_path):
    cfg = built.config.model_copy(deep=True)
    if backend == "redis":
        from raymlops.config.models import RedisOnlineStoreConfig

        cfg.features.online_store = RedisOnlineStoreConfig(type="redis", url=redis_url, key_prefix=f"t{free_port()}")
    else:
        cfg.features.online_store.path = str(tmp_path / "online.db")
    fs = FeatureStore(cfg)
    view = fs.offline.read_table("txn_stats").to_pandas()
    events = view.sort_values("event_time")
    recent = events[events.event_time > pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=20)]
    cut = recent.event_time.iloc[len(recent) // 2]  # an event's own time: the re-run below ends just before it
    # an older window first, then the newer one; then the older one again, which must not overwrite (nor drop
    # the events at or after the cut from the tiles that hold it)
    fs.materialize(end=cut)
    run = fs.materialize(incremental=True)["txn_stats"]
    assert run["start"] is not None
    fs.materialize(end=cut)
    latest = view.sort_values(["event_time", "ingested_at"]).groupby("customer_id").tail(1).set_index("customer_id")
    ids = list(latest.index[:10]) + list(latest.index[-30:]) + [-5]  # stalest and freshest entities
    got = fs.get_online_features(
        ["txn_stats:amount_sum_30d", "txn_stats:segment"], [{"customer_id": int(i)} for i in ids]
    )
    now = pd.Timestamp.now(tz="UTC")
    at = now.floor("min")  # a tile boundary: the online windows are exact there
    online = fs.get_online_features(
        ["txn_stats:amount_sum_30d", "txn_stats:amount_sum_7d"], [{"customer_id": int(i)} for i in ids], at=at
    ).to_pandas()
    offline = fs.get_historical_features(
        pd.DataFrame({"customer_id": ids, "event_timestamp": at}),
        ["txn_stats:amount_sum_30d", "txn_stats:amount_sum_7d"],
    )
    pd.testing.assert_frame_equal(online, offline[online.columns], check_dtype=False, rtol=1e-9)
    at_cut = cut.ceil("min")  # the window ending at the first tile boundary at or after the cut event holds it
    cut_ids = [int(i) for i in events.loc[events.event_time == cut, "customer_id"].unique()]
    online = fs.get_online_features(
        ["txn_stats:amount_sum_7d"], [{"customer_id": i} for i in cut_ids], at=at_cut
    ).to_pandas()
    offline = fs.get_historical_features(
        pd.DataFrame({"customer_id": cut_ids, "event_timestamp": at_cut}), ["txn_stats:amount_sum_7d"]
    )
    assert (offline.amount_sum_7d > 0).all()
    pd.testing.assert_frame_equal(online, offline[online.columns], check_dtype=False, rtol=1e-9)
    for i, cid in enumerate(ids[:-1]):
        fresh = now - latest.loc[cid].event_time <= pd.Timedelta(days=30)
        assert got.statuses["segment"][i] == ("PRESENT" if fresh else "OUTSIDE_TTL")
        if fresh:
            assert got.values["segment"][i] == latest.loc[cid].segment
    assert got.statuses["segment"][-1] == "NOT_FOUND" and got.values["segment"][-1] is None
    assert "PRESENT" in got.statuses["segment"]
    desc = fs.describe("txn_stats")
    assert desc["last_materialization"]["entities"] >= 0 and desc["online_watermark"]
    with pytest.raises(DataError, match="join key"):
        fs.get_online_features(["txn_stats:segment"], [{"id": 1}])
    _console_shows_the_view(cfg, fs, desc, int(ids[-2]), backend)
    fs.close()


def _console_shows_the_view(cfg, fs, desc, key: int, backend: str) -> None:
    """The console's features pages over the same store: versions, freshness, reachability, online values."""
    from fastapi.testclient import TestClient

    from raymlops.console import Settings, create_app

    c = TestClient(create_app(Settings(storage=str(cfg.storage), configs=[cfg])))
    views = {v["name"]: v for v in c.get("/api/features").json()["views"]}
    assert (
        views["txn_stats"]["online"] == "reachable" and views["txn_stats"]["offline_version"] == desc["offline_version"]
    )
    one = c.get(f"/api/features/{cfg.name}/txn_stats", params={"key": str(key)}).json()
    assert [v["version"] for v in one["details"]["offline_versions"]] == [
        v["version"] for v in desc["offline_versions"]
    ]
    assert one["details"]["last_materialization"] == json.loads(json.dumps(desc["last_materialization"], default=str))
    want = fs.get_online_features(["txn_stats:segment"], [{"customer_id": key}])
    assert one["sample"]["values"]["segment"] == [want.values["segment"][0]]
    assert one["sample"]["statuses"]["segment"] == [want.statuses["segment"][0]]
    page = c.get(f"/features/{cfg.name}/txn_stats", params={"key": f"customer_id={key}"})
    assert page.status_code == 200 and "Offline versions" in page.text and 'class="panel"' not in page.text
    assert c.get(f"/api/features/{cfg.name}/nope").status_code == 404
    if backend == "redis":  # a Redis that is down: the offline side still renders, the view says unreachable
        from raymlops.config.models import RedisOnlineStoreConfig

        down = cfg.model_copy(deep=True)
        down.features.online_store = RedisOnlineStoreConfig(type="redis", url=f"redis://127.0.0.1:{free_port()}/0")
        got = TestClient(create_app(Settings(storage=str(cfg.storage), configs=[down]))).get("/api/features").json()
        assert {v["online"] for v in got["views"]} == {"unreachable"} and got["views"][0]["offline_rows"] > 0


@pytest.fixture(scope="module")
def served(built, demo_dir):
    """The features example trained from its PIT set and served by entity key (the feature server too)."""
    port = free_port()
    pipe = Pipeline.from_yaml(
        ROOT / "configs" / "features.yaml",
        overrides(
            demo_dir,
            built.config.storage,
            f"serving.port={port}",
            "training.tune.num_samples=1",
            f"features.server.port={port}",
        ),
        say=None,
    )
    result = pipe.run(progress=False)
    from raymlops.serving.deploy import deploy_feature_server

    fs = pipe.feature_store
    feature_url = deploy_feature_server(fs.portable_config(), fs.features.server, "features-test")
    yield pipe, result, feature_url
    from ray import serve

    serve.delete(pipe.app_name)
    serve.delete("features-test")


def test_trained_from_pit_set_and_served_by_entity(served, demo_dir):
    pipe, result, _ = served
    meta = json.loads((result.run_dir / "meta.json").read_text())
    assert meta["dataset"]["features"] == ["txn_stats:*"] and meta["dataset"]["offline_versions"]["txn_stats"] >= 1
    assert result.metrics["auc"] > 0.7  # the label depends on the 30-day spending features
    ids = [1, 2, 3, 999_999]
    status, body = post(
        result.endpoint + "/predict", {"entities": [{"customer_id": c, "tenure_months": 12} for c in ids]}
    )
    assert status == 200, body
    assert body["feature_statuses"]["segment"][-1] == "NOT_FOUND"
    rows = pd.DataFrame(
        [{**{k: v[i] for k, v in body["features"].items()}, "tenure_months": 12} for i in range(len(ids))]
    )
    local = load_model(result.run_dir).predict_proba(rows)
    assert np.allclose(local, body["probabilities"], atol=1e-6)


def test_an_exported_file_keeps_the_feature_config_in_storage_and_its_model_serves_from_it(served, tmp_path):
    """`raymlops serve --export` of an app served by entity: the pipeline config (store URLs, any alert
    secrets) goes to a file in storage, not into the exported file; a model replica built from the
    exported args fetches the online features through it."""
    import asyncio

    import yaml

    from raymlops.serving.model import ModelServer

    pipe, result, _ = served
    path = pipe.export_serve_config(tmp_path / "serve.yaml", result.run_dir)
    args = yaml.safe_load(path.read_text())["applications"][0]["args"]
    [model] = args["models"]
    assert "config" not in args["features"] and "online_store" not in path.read_text()
    assert json.loads(open(args["features"]["config_file"]).read())["features"]["online_store"]
    from raymlops.serving.app import model_spec

    server = ModelServer.func_or_class(model_spec(args, model))  # what a replica runs, in process
    rows = [{"customer_id": c, "tenure_months": 12} for c in (1, 2, 999_999)]
    got = asyncio.run(server.predict("entities", rows))
    status, live = post(result.endpoint + "/predict", {"entities": rows})  # the app `raymlops serve` deployed
    assert got["status"] == status == 200, got
    assert got["body"]["feature_statuses"] == live["feature_statuses"] and got["body"]["features"] == live["features"]
    assert got["body"]["feature_statuses"]["segment"][-1] == "NOT_FOUND"
    assert np.allclose(got["body"]["probabilities"], live["probabilities"])


def test_entity_request_errors_are_422(served):
    _, result, _ = served
    status, body = post(result.endpoint + "/predict", {"entities": [{"tenure_months": 3}]})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "entities", 0, "customer_id"]
    status, body = post(result.endpoint + "/predict", {"entities": [{"customer_id": 1, "tenure_months": "x"}]})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "entities", 0, "tenure_months"]
    status, body = post(result.endpoint + "/predict", {"entities": [{"customer_id": 1}], "instances": [{}]})
    assert status == 422


def test_feature_server_http(served):
    _, _, url = served
    status, body = post(
        url + "/online",
        {"features": ["txn_stats:segment", "txn_stats:amount_count_30d"], "entities": {"customer_id": [1, 2, 999_999]}},
    )
    assert status == 200, body
    assert body["metadata"]["feature_names"] == ["customer_id", "segment", "amount_count_30d"]
    assert body["results"][0]["values"] == [1, 2, 999_999]
    assert body["results"][1]["statuses"][2] == "NOT_FOUND"
    assert "PRESENT" in body["results"][1]["statuses"][:2] or "OUTSIDE_TTL" in body["results"][1]["statuses"][:2]
    status, body = post(url + "/online", {"features": ["txn_stats:nope"], "entities": {"customer_id": [1]}})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "features", 0]
    status, body = post(url + "/online", {"features": ["txn_stats:segment"], "entities": {"user": [1]}})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "entities", "customer_id"]
    status, body = post(
        url + "/online", {"features": ["txn_stats:segment"], "entities": {"customer_id": [1, 2], "other": [1]}}
    )
    assert status == 422


def test_feature_server_rejects_malformed_bodies_with_422(served):
    _, _, url = served
    req = urllib.request.Request(url + "/online", data=b"{not json", headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 422 and json.loads(e.value.read())["detail"][0]["loc"][0] == "body"
    status, body = post(url + "/online", {"entities": {"customer_id": [1]}})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "features"]
    with urllib.request.urlopen(url + "/openapi.json") as r:
        doc = json.loads(r.read())
    assert "/online" in doc["paths"]  # typed by the store's views: a reference is one of the declared features
    refs = doc["components"]["schemas"]["OnlineFeaturesRequestTyped"]["properties"]["features"]["items"]["enum"]
    assert {"txn_stats:*", "txn_stats:segment", "txn_stats:amount_sum_30d"} <= set(refs)


def _flush(pipe) -> None:
    from ray import serve

    assert serve.get_deployment_handle("router", app_name=pipe.app_name).flush_log.remote().result(timeout_s=60)


def test_skew_check_finds_none_on_the_example_and_finds_an_injected_one(served):
    import ray

    from raymlops.features.online import OnlineRecord
    from raymlops.features.tiles import tile_spec
    from raymlops.monitoring.app_monitor import app_monitor_name
    from raymlops.pipeline.skew import skew_report

    pipe, result, _ = served
    fs = pipe.feature_store
    ids = [5, 6, 7, 8, 9, 999_999]
    status, _ = post(result.endpoint + "/predict", {"entities": [{"customer_id": c, "tenure_months": 3} for c in ids]})
    assert status == 200
    _flush(pipe)
    clean = skew_report(pipe.config)
    assert clean["rows"] >= len(ids) and clean["max_rate"] == 0.0, clean
    assert set(clean["features"]) == {
        "balance",
        "segment",
        "amount_sum_7d",
        "amount_sum_30d",
        "amount_count_30d",
        "amount_mean_30d",
        "amount_max_30d",
        "merchant_category_distinct_count_30d",
    }
    # an online write the offline store never saw: a field, and an event in customer 6's window tiles
    now = pd.Timestamp.now(tz="UTC").value
    fs.online.write("txn_stats", [((5,), OnlineRecord({"balance": -1.0, "segment": "forged"}, now, now))])
    view = fs.view("txn_stats")
    import functools

    import pyarrow as pa

    from raymlops.features.materialize import _tiles
    from raymlops.features.tiles import build_tiles, merge

    ghost = pa.table(
        {
            "customer_id": [6],
            "event_time": pa.array([now - 10**9], pa.timestamp("ns", tz="UTC")),
            "ingested_at": pa.array([now], pa.timestamp("ns", tz="UTC")),
            "amount": [5000.0],
            "merchant_category": ["ghost"],
        }
    )
    spec = tile_spec(view)
    fs.online.write_tiles(
        "txn_stats",
        _tiles(build_tiles(ghost, spec, ["customer_id"], "event_time", "ingested_at"), ["customer_id"]),
        merge=functools.partial(merge, spec=spec),
    )
    since = pd.Timestamp.now(tz="UTC")
    status, _ = post(result.endpoint + "/predict", {"entities": [{"customer_id": c, "tenure_months": 3} for c in ids]})
    assert status == 200
    _flush(pipe)
    report = skew_report(pipe.config, since=since)
    assert report["rows"] == len(ids)
    bad = {n: f["mismatches"] for n, f in report["features"].items() if f["mismatches"]}
    assert bad == {
        "balance": 1,
        "segment": 1,
        "amount_sum_7d": 1,
        "amount_sum_30d": 1,
        "amount_count_30d": 1,
        "amount_mean_30d": 1,
        "amount_max_30d": 1,
        "merchant_category_distinct_count_30d": 1,
    }, report
    worst = report["features"]["amount_sum_30d"]["largest"][0]
    assert worst["customer_id"] == 6 and worst["difference"] == pytest.approx(5000.0)
    assert report["features"]["segment"]["largest"][0]["served"] == "forged"
    # the app monitor's scheduled check raises a skew event naming the feature
    monitor = ray.get_actor(app_monitor_name(pipe.app_name), namespace=pipe.config.ray.namespace)
    summary = ray.get(monitor.refresh_skew.remote(), timeout=300)
    assert summary["rows"] >= len(ids) and summary["max_rate"] > 0.01
    events = [e for e in ray.get(monitor.status.remote())["events"] if e["type"] == "skew"]
    assert events and events[-1]["subject"] in bad and "online/offline skew" in events[-1]["message"]
    # repair: a rematerialization rewrites the tiles and the record from the offline store
    fs.online.delete_view("txn_stats")
    fs.materialize()


def test_feature_server_push_is_online_at_once_and_in_the_next_training_set(served):
    """Last in this module: it adds events to the view the tests above read."""
    from concurrent.futures import ThreadPoolExecutor

    pipe, _, url = served
    fs = pipe.feature_store
    now = pd.Timestamp.now(tz="UTC")
    new = 999_990
    row = {
        "customer_id": new,
        "event_time": (now - pd.Timedelta(minutes=1)).isoformat(),
        "amount": 40.0,
        "merchant_category": "books",
        "balance": 12.5,
        "segment": "pushed",
    }
    version = fs.offline.latest("txn_stats").number
    status, body = post(url + "/push", {"view": "txn_stats", "rows": [row]})
    assert status == 200 and body["rows"] == 1 and body["offline_version"] == version + 1, body
    status, body = post(
        url + "/online",
        {"features": ["txn_stats:amount_count_30d", "txn_stats:segment"], "entities": {"customer_id": [new]}},
    )
    assert [r["values"] for r in body["results"]] == [[new], [1], ["pushed"]]
    # concurrent pushes are committed in groups; every answered one is in the offline store
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda i: post(url + "/push", {"view": "txn_stats", "rows": [{**row, "amount": 1.0}]})[0], range(24)
            )
        )
    assert codes == [200] * 24
    assert fs.offline.latest("txn_stats").number <= version + 25
    status, body = post(
        url + "/online",
        {"features": ["txn_stats:amount_count_30d", "txn_stats:amount_sum_30d"], "entities": {"customer_id": [new]}},
    )
    assert [r["values"][0] for r in body["results"][1:]] == [25, pytest.approx(64.0)]
    training = fs.get_historical_features(
        pd.DataFrame({"customer_id": [new], "event_timestamp": [now]}),
        ["txn_stats:amount_count_30d", "txn_stats:segment"],
    )
    assert training.amount_count_30d.tolist() == [25] and training.segment.tolist() == ["pushed"]
    # bad rows: 422 naming each field, nothing written
    version = fs.offline.latest("txn_stats").number
    status, body = post(
        url + "/push", {"view": "txn_stats", "rows": [row, {**row, "amount": "lots"}, {**row, "customer_id": None}]}
    )
    assert status == 422 and {tuple(d["loc"]) for d in body["detail"]} == {
        ("body", "rows", 1, "amount"),
        ("body", "rows", 2, "customer_id"),
    }
    status, body = post(url + "/push", {"view": "nope", "rows": [row]})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "view"]
    status, body = post(url + "/push", {"view": "txn_stats", "rows": []})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "rows"]
    assert fs.offline.latest("txn_stats").number == version
    with urllib.request.urlopen(url + "/openapi.json") as r:  # pushed rows typed by the view's stored columns
        row = json.loads(r.read())["components"]["schemas"]["PushRow_txn_stats"]
    assert set(row["required"]) == {"customer_id", "event_time", "amount", "merchant_category", "balance", "segment"}
    assert row["properties"]["customer_id"]["type"] == "integer" and row["additionalProperties"] is False


def test_schemathesis_over_every_route_of_the_feature_server_and_the_entity_app(served, tmp_path):
    """Both documents are exact (see tests/fuzz.py): the feature server's (references one of the views',
    typed keys and pushed columns) and the entity-keyed app's (entity rows typed by join keys and the inputs
    the online store does not provide). Last in this module: the fuzzer's valid pushes add events."""
    from tests.fuzz import schemathesis

    _, result, url = served
    out = schemathesis(url + "/openapi.json", url, tmp_path / "features")
    assert "Selected: 3/3" in out
    out = schemathesis(result.endpoint + "/openapi.json", result.endpoint, tmp_path / "app")
    assert "Selected: 7/7" in out
