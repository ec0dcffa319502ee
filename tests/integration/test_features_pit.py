"""Point-in-time retrieval through the SDK on a real Ray: hand-built cases and a brute-force property test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from raymlops import FeatureStore
from raymlops.features.offline import OfflineStore

FEATURES = ["score", "tier"]


def make_store(tmp_path, table: pa.Table, ttl: str | None = "3d", created: bool = True) -> FeatureStore:
    """A FeatureStore whose view 'stats' holds ``table`` as its first offline version."""
    data = tmp_path / "src.parquet"
    pa.parquet.write_table(table, data)
    view = {"name": "stats", "entity": "user", "source": "events", "timestamp": "ts", "fields": FEATURES}
    if ttl:
        view["ttl"] = ttl
    if created:
        view["created_timestamp"] = "created"
    cfg = {
        "name": "pit-test",
        "storage": str(tmp_path / "store"),
        "sources": {"events": {"format": "parquet", "path": str(data)}},
        "features": {"entities": [{"name": "user", "join_keys": ["user_id"]}], "views": [view]},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    fs = FeatureStore.from_yaml(path)
    OfflineStore(fs.offline.uri).write("stats", table, "ts")
    return fs


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def rows(**cols) -> pa.Table:
    return pa.table(cols)


@pytest.fixture
def hand_built(tmp_path, ray_session):
    t = pa.timestamp("ns", tz="UTC")
    table = pa.table(
        {
            "user_id": pa.array([1, 1, 1, 1, 2, 3], pa.int64()),
            "ts": pa.array(
                [
                    ts("2024-01-01"),
                    ts("2024-01-05"),
                    ts("2024-01-05"),
                    ts("2024-01-08"),
                    ts("2024-01-02"),
                    ts("2024-01-10"),
                ],
                t,
            ),
            # the two rows at 01-05 tie on event time; the later created one must win
            "created": pa.array(
                [
                    ts("2024-01-01"),
                    ts("2024-01-06"),
                    ts("2024-01-05"),
                    ts("2024-01-08"),
                    ts("2024-01-02"),
                    ts("2024-01-10"),
                ],
                t,
            ),
            "score": [1.0, 2.0, 3.0, 4.0, 5.0, None],
            "tier": ["a", "b", "c", "d", "e", "f"],
        }
    )
    return make_store(tmp_path, table)


def test_hand_built_cases(hand_built):
    entity = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 9, 1, 3],
            "event_timestamp": [
                "2024-01-05 00:00:00",  # exact-time match with the created-time tie: the later created row (2.0)
                "2024-01-04 00:00",  # 3 days after 01-01: the ttl boundary is inclusive -> 1.0
                "2024-01-04 00:00:01",  # one second past the ttl -> null
                "2024-01-05 00:00",  # 3 days after 01-02 -> 5.0
                "2024-01-01 23:59",  # before any row -> null
                "2024-01-05 00:00",  # unknown entity -> null, row kept
                "2024-01-05 00:00",  # a duplicate of row 0 is kept
                "2024-01-10 00:00",  # the row exists but its value is null -> null value, tier present
            ],
            "label": [10, 11, 12, 13, 14, 15, 16, 17],
        }
    )
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], format="mixed")  # naive: read as UTC
    out = hand_built.get_historical_features(entity, ["stats:score", "stats:tier"])
    assert list(out.columns) == ["user_id", "event_timestamp", "label", "score", "tier"]
    assert out["label"].tolist() == entity["label"].tolist()  # input order, one row per input row
    assert out["score"].tolist()[:2] == [2.0, 1.0]
    assert np.isnan(out["score"][2]) and out["score"][3] == 5.0 and np.isnan(out["score"][4])
    assert np.isnan(out["score"][5]) and out["score"][6] == 2.0 and np.isnan(out["score"][7])
    assert out["tier"].tolist() == ["b", "a", None, "e", None, None, "b", "f"]
    assert str(out["event_timestamp"].dt.tz) == "UTC"


def test_aware_and_naive_timestamps_agree(hand_built):
    naive = pd.DataFrame(
        {"user_id": [1, 1], "event_timestamp": pd.to_datetime(["2024-01-05 00:00", "2024-01-08 00:00"])}
    )
    aware = naive.assign(event_timestamp=naive["event_timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"))
    a = hand_built.get_historical_features(naive, ["stats:*"])
    b = hand_built.get_historical_features(aware, ["stats:*"])
    assert a["score"].tolist() == b["score"].tolist() == [2.0, 4.0]
    assert (a["event_timestamp"] == b["event_timestamp"]).all()


def test_late_arriving_rows_count_by_event_time(hand_built):
    """A row ingested later (an appended version) with an earlier event time is the value as of that time."""
    late = pa.table(
        {
            "user_id": pa.array([2], pa.int64()),
            "ts": pa.array([ts("2024-01-04")], pa.timestamp("ns", tz="UTC")),
            "created": pa.array([ts("2024-01-20")], pa.timestamp("ns", tz="UTC")),
            "score": [50.0],
            "tier": ["late"],
        }
    )
    hand_built.offline.write("stats", late, "ts", mode="append")
    entity = pd.DataFrame({"user_id": [2, 2], "event_timestamp": pd.to_datetime(["2024-01-03", "2024-01-05"])})
    out = hand_built.get_historical_features(entity, ["stats:score"])
    assert out["score"].tolist() == [5.0, 50.0]


def test_ray_dataset_in_ray_dataset_out_in_order(hand_built):
    import ray.data

    entity = pd.DataFrame(
        {"user_id": [1, 2, 1, 9] * 50, "event_timestamp": pd.to_datetime(["2024-01-09"] * 200), "i": range(200)}
    )
    ds = ray.data.from_pandas([entity.iloc[:70], entity.iloc[70:130], entity.iloc[130:]])
    out = hand_built.get_historical_features(ds, ["stats:score"])
    assert isinstance(out, ray.data.Dataset)
    got = out.to_pandas()
    assert got["i"].tolist() == list(range(200))
    scores = got["score"].astype("float64").fillna(-1.0).tolist()
    assert scores == [4.0, -1.0, 4.0, -1.0] * 50  # user 2's last row is older than the 3d ttl; user 9 is unknown


def test_errors_name_the_problem(hand_built):
    from raymlops.errors import DataError

    entity = pd.DataFrame({"user_id": [1], "when": pd.to_datetime(["2024-01-05"])})
    with pytest.raises(DataError, match="event_timestamp"):
        hand_built.get_historical_features(entity, ["stats:score"])
    assert hand_built.get_historical_features(entity, ["stats:score"], event_timestamp="when")["score"][0] == 2.0
    with pytest.raises(DataError, match="no feature 'nope'"):
        hand_built.get_historical_features(entity, ["stats:nope"], event_timestamp="when")
    strings = pd.DataFrame({"user_id": ["1"], "event_timestamp": pd.to_datetime(["2024-01-05"])})
    with pytest.raises(DataError, match="join key 'user_id'"):
        hand_built.get_historical_features(strings, ["stats:score"])


def brute_force(entity: pd.DataFrame, feats: pd.DataFrame, ttl: pd.Timedelta | None) -> pd.DataFrame:
    """Feast's find_latest_record, row by row."""
    out = []
    for _, e in entity.iterrows():
        c = feats[(feats.user_id == e.user_id) & (feats.ts <= e.event_timestamp)]
        if ttl is not None:
            c = c[c.ts >= e.event_timestamp - ttl]
        if c.empty:
            out.append((None, None))
            continue
        best = c.sort_values(["ts", "created"], kind="stable").iloc[-1]
        out.append((best.score, best.tier))
    return pd.DataFrame(out, columns=FEATURES)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_brute_force_on_random_data(tmp_path, ray_session, seed):
    rng = np.random.default_rng(seed)
    n_feat, n_ent = 3000, 800
    base = pd.Timestamp("2024-03-01", tz="UTC")
    hours = lambda n: pd.to_timedelta(rng.integers(0, 24 * 40, n), unit="h")  # noqa: E731  many exact ties
    # unique created times make the winner unique, so the comparison is exact
    feats = pd.DataFrame(
        {
            "user_id": rng.integers(0, 120, n_feat),
            "ts": base + hours(n_feat),
            "created": base + pd.to_timedelta(rng.permutation(n_feat), unit="s"),
            "score": rng.normal(size=n_feat).round(6),
            "tier": rng.choice(list("xyz"), n_feat),
        }
    )
    feats.loc[rng.random(n_feat) < 0.05, "score"] = np.nan
    ttl = [pd.Timedelta(days=2), None, pd.Timedelta(hours=30)][seed - 1]
    fs = make_store(
        tmp_path,
        pa.Table.from_pandas(feats, preserve_index=False),
        ttl=None if ttl is None else f"{int(ttl.total_seconds() // 3600)}h",
    )
    entity = pd.DataFrame({"user_id": rng.integers(0, 140, n_ent), "event_timestamp": base + hours(n_ent)})
    entity = pd.concat([entity, entity.iloc[:50]], ignore_index=True)  # duplicates
    got = fs.get_historical_features(entity, ["stats:*"])
    want = brute_force(entity, feats, ttl)
    assert len(got) == len(entity)
    assert (got["user_id"].to_numpy() == entity["user_id"].to_numpy()).all()
    pd.testing.assert_series_equal(got["score"].astype("float64"), want["score"].astype("float64"), check_names=False)
    assert got["tier"].tolist() == want["tier"].tolist()
