"""Push ingestion through the SDK: visible online at once and in the next training set; bad rows write
nothing; pushed events survive rebuilds; concurrent pushers all land. Real Ray for retrieval, SQLite online."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raymlops.features.push import PushError
from tests.integration.test_feature_windows import random_events, window_store


@pytest.fixture
def pushed(tmp_path, ray_session):
    rng = np.random.default_rng(8)
    now = pd.Timestamp.now(tz="UTC")
    events = random_events(rng, 600, 20, now - pd.Timedelta(days=5))
    events = events[events.ts <= now - pd.Timedelta(hours=1)]
    fs = window_store(tmp_path, pa.Table.from_pandas(events, preserve_index=False))
    fs.materialize()
    yield fs, now
    fs.close()


def event(user: int, when, amount=10.0, cat="zz", tier="pushed") -> dict:
    return {"user_id": user, "ts": when, "amount": amount, "cat": cat, "tier": tier}


def online(fs, user: int) -> dict:
    got = fs.get_online_features(
        ["w:amount_count_1d", "w:amount_sum_1d", "w:cat_last_2d", "w:tier"], [{"user_id": user}]
    )
    return {k: v[0] for k, v in got.values.items()}


def test_a_pushed_event_is_online_at_once_and_in_the_next_training_set(pushed):
    fs, now = pushed
    before = online(fs, 3)
    version = fs.offline.latest("w").number
    when = (now - pd.Timedelta(minutes=5)).isoformat()
    out = fs.push("w", [event(3, when, amount=1000.0), event(99, when, amount=5.0)])  # 99: a new entity
    assert out["rows"] == 2 and out["offline_version"] == version + 1
    after = online(fs, 3)
    assert after["amount_count_1d"] == before["amount_count_1d"] + 1
    assert after["amount_sum_1d"] == pytest.approx(before["amount_sum_1d"] + 1000.0)
    assert after["cat_last_2d"] == "zz" and after["tier"] == "pushed"
    assert online(fs, 99) == {"amount_count_1d": 1, "amount_sum_1d": 5.0, "cat_last_2d": "zz", "tier": "pushed"}
    training = fs.get_historical_features(
        pd.DataFrame({"user_id": [3, 99], "event_timestamp": [now, now]}),
        ["w:amount_count_1d", "w:amount_sum_1d", "w:tier"],
    )
    assert training.amount_count_1d.tolist() == [after["amount_count_1d"], 1]
    assert training.amount_sum_1d.tolist() == pytest.approx([after["amount_sum_1d"], 5.0])
    assert training.tier.tolist() == ["pushed", "pushed"]


def test_bad_rows_name_each_field_and_write_nothing(pushed):
    fs, now = pushed
    version, state = fs.offline.latest("w").number, online(fs, 3)
    good = event(3, now.isoformat())
    bad = [
        good,
        {**good, "user_id": None},
        {**good, "amount": "12,5"},
        {k: v for k, v in good.items() if k != "ts"},
        {**good, "ts": "yesterday-ish"},
        {**good, "colour": "red"},
        {**good, "ts": 1_700_000_000},
    ]
    with pytest.raises(PushError) as e:
        fs.push("w", bad)
    got = {(r, f) for r, f, _ in e.value.problems}
    assert got == {(1, "user_id"), (2, "amount"), (3, "ts"), (4, "ts"), (5, "colour"), (6, "ts")}, e.value.problems
    assert "rows[2].amount: must be a number, got str '12,5'" in str(e.value)
    assert fs.offline.latest("w").number == version and online(fs, 3) == state
    with pytest.raises(PushError, match="non-empty list"):
        fs.push("w", [])


def test_pushed_events_survive_a_rebuild_unless_dropped(pushed):
    fs, now = pushed
    fs.push("w", [event(4, (now - pd.Timedelta(minutes=1)).isoformat(), amount=777.0)])
    rows = fs.offline.read_table("w").num_rows
    fs.build()  # the source does not hold the pushed event
    table = fs.offline.read_table("w").to_pandas()
    assert len(table) == rows and (table.amount == 777.0).sum() == 1
    assert fs.build(append=True)["w"]["written_rows"] == 0  # the pushed (later) event does not move --append on
    fs.build(drop_pushed=True)
    assert (fs.offline.read_table("w").to_pandas().amount == 777.0).sum() == 0


def test_concurrent_pushers_all_land_and_compaction_keeps_every_row(pushed, monkeypatch):
    import raymlops.features.push as push

    monkeypatch.setattr(push, "COMPACT_AFTER", 5)
    fs, now = pushed
    rows = fs.offline.read_table("w").num_rows
    count = online(fs, 7)["amount_count_1d"]
    when = (now - pd.Timedelta(minutes=2)).isoformat()
    errors = []

    def pusher(i):
        try:
            for _ in range(4):
                fs.push("w", [event(7, when, amount=float(i))])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert fs.offline.read_table("w").num_rows == rows + 16
    assert online(fs, 7)["amount_count_1d"] == count + 16
    assert fs.offline.latest("w").manifest["pushed_files"] <= 6  # compacted as it went
