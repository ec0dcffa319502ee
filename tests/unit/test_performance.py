"""Late-label performance: joins by request id and by entity key, windowed metrics, floors: no Ray."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from raymlops.monitoring.performance import breaches, join_labels, metric_value, row_note, summarize, windowed

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2024-05-01", tz="UTC")


def log_frame(rows: list[dict]) -> pd.DataFrame:
    """A request-log frame shaped like the Parquet schema (JSON text for inputs and outputs)."""
    out = []
    for r in rows:
        out.append(
            {
                "ts": T0 + pd.Timedelta(seconds=r["t"]),
                "request_id": r["rid"],
                "row": r.get("row", 0),
                "variant": r["variant"],
                "role": r.get("role", "primary"),
                "model_version": r.get("mv", "1"),
                "status": r.get("status", 200),
                "latency_ms": 1.0,
                "inputs": json.dumps(r.get("inputs", {"x": 1})),
                "prediction": json.dumps(r["pred"]),
                "probability": None if r.get("prob") is None else json.dumps(r["prob"]),
                "error": None,
            }
        )
    df = pd.DataFrame(out)
    return df.astype({"ts": "datetime64[us, UTC]", "row": "int32", "status": "int32"})


def ab_log(n: int = 40, seed: int = 0):
    """Variant a scores well, b badly, shadow s like a; returns (log, true labels by request id)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    rows = []
    for i in range(n):
        good = float(np.clip(0.8 * y[i] + 0.1 + rng.normal(0, 0.05), 0, 1))
        variant = "a" if i % 2 == 0 else "b"
        p = good if variant == "a" else 1 - good
        rows.append(
            {
                "t": i,
                "rid": f"r{i}",
                "variant": variant,
                "mv": "7" if variant == "a" else "8",
                "pred": int(p >= 0.5),
                "prob": p,
            }
        )
        rows.append(
            {"t": i + 0.5, "rid": f"r{i}", "variant": "s", "role": "shadow", "pred": int(good >= 0.5), "prob": good}
        )
    return log_frame(rows), y


def test_request_id_join_keeps_one_row_per_request_and_reports_shadows():
    log, y = ab_log()
    extra = log_frame(
        [
            {"t": 100, "rid": "dup", "variant": "a", "pred": 0, "prob": 0.1},  # reused id: the later answer wins
            {"t": 101, "rid": "dup", "variant": "b", "pred": 1, "prob": 0.9},
            {"t": 102, "rid": "err", "variant": "a", "pred": 1, "prob": 0.9, "status": 500},
            {"t": 103, "rid": "multi", "row": 0, "variant": "a", "pred": 1, "prob": 0.7},
            {"t": 103, "rid": "multi", "row": 1, "variant": "a", "pred": 0, "prob": 0.2},
        ]
    )
    labels = pd.DataFrame(
        {"rid": [f"r{i}" for i in range(len(y))] + ["dup", "err", "multi", "nolog"], "target": list(y) + [1, 1, 1, 0]}
    )
    j = join_labels(
        pd.concat([log, extra], ignore_index=True),
        labels,
        {"join": "request_id", "request_id": "rid", "label": "target"},
    )
    assert list(j.columns) == [
        "ts",
        "request_id",
        "row",
        "variant",
        "role",
        "model_version",
        "prediction",
        "probability",
        "label",
    ]
    prim = j[j["role"] == "primary"]
    assert prim.groupby(["request_id", "row"]).size().max() == 1
    dup = prim[prim["request_id"] == "dup"].iloc[0]
    assert (dup["variant"], dup["prediction"], dup["probability"]) == ("b", 1, 0.9)
    assert "err" not in set(j["request_id"]) and "nolog" not in set(j["request_id"])
    assert sorted(prim.loc[prim["request_id"] == "multi", "row"]) == [0, 1]  # no `row`: every row of the request
    assert len(prim) == len(y) + 3 and (j["role"] == "shadow").sum() == len(y)
    assert j["ts"].is_monotonic_increasing and isinstance(j["probability"].iloc[0], float)


def test_labels_with_a_row_column_join_that_row_only():
    log = log_frame(
        [
            {"t": 0, "rid": "m", "row": 0, "variant": "a", "pred": 1, "prob": 0.7},
            {"t": 0, "rid": "m", "row": 1, "variant": "a", "pred": 0, "prob": 0.2},
        ]
    )
    j = join_labels(log, pd.DataFrame({"request_id": ["m"], "row": [1], "label": [0]}), {"join": "request_id"})
    assert j[["row", "prediction", "label"]].values.tolist() == [[1, 0, 0]]


def test_a_label_without_row_for_a_multi_row_request_is_said_once():
    log = log_frame(
        [
            {"t": 0, "rid": "m", "row": 0, "variant": "a", "pred": 1, "prob": 0.7},
            {"t": 0, "rid": "m", "row": 1, "variant": "a", "pred": 0, "prob": 0.2},
            {"t": 1, "rid": "one", "variant": "a", "pred": 1, "prob": 0.9},
        ]
    )
    cfg = {"join": "request_id"}
    no_row = pd.DataFrame({"request_id": ["m", "one"], "label": [0, 1]})
    note = row_note(join_labels(log, no_row, cfg), no_row, cfg)
    assert note.startswith("labels have no 'row' column: 1 labelled request(s) scored several rows")
    with_row = no_row.assign(row=[1, 0])
    assert row_note(join_labels(log, with_row, cfg), with_row, cfg) is None
    single = no_row[no_row["request_id"] == "one"]
    assert row_note(join_labels(log, single, cfg), single, cfg) is None  # one-row requests need no `row`


def test_entity_join_takes_the_latest_request_before_the_label_within_max_delay():
    rows = [
        {"t": 0, "rid": "q1", "variant": "a", "pred": 0, "prob": 0.2, "inputs": {"user": 1, "x": 3}},
        {"t": 50, "rid": "q2", "variant": "a", "pred": 1, "prob": 0.8, "inputs": {"user": 1, "x": 4}},
        {"t": 50, "rid": "q2", "variant": "s", "role": "shadow", "pred": 0, "prob": 0.4, "inputs": {"user": 1, "x": 4}},
        {"t": 200, "rid": "q3", "variant": "b", "pred": 1, "prob": 0.9, "inputs": {"user": 2, "x": 5}},
        {"t": 0, "rid": "q4", "variant": "b", "pred": 1, "prob": 0.6, "inputs": {"user": 3, "x": 6}},
        {"t": 10, "rid": "q5", "variant": "a", "pred": 1, "prob": 0.6, "inputs": {"user": 4, "x": 6}},
    ]
    naive = (T0 + pd.Timedelta(seconds=1)).tz_localize(None)  # naive label times are UTC
    labels = pd.DataFrame(
        {
            "user": [1, 2, 3, 4],
            "seen_at": [naive + pd.Timedelta(seconds=s) for s in (59, 99, 4000, 9)],  # q5 ts == label ts: joined
            "y": [1, 0, 1, 0],
        }
    )
    cfg = {"join": "entity", "keys": ["user"], "timestamp": "seen_at", "label": "y", "max_delay_s": 3600}
    j = join_labels(log_frame(rows), labels, cfg)
    # user 1: q2 (latest before the label, with its shadow); user 2: request after the label; user 3: too old.
    assert sorted(zip(j["request_id"], j["role"])) == [("q2", "primary"), ("q2", "shadow"), ("q5", "primary")]
    assert j.loc[j["request_id"] == "q2", "label"].tolist() == [1, 1]
    labels["user"] = labels["user"].astype(str)  # text keys in the labels still meet numeric inputs
    assert len(join_labels(log_frame(rows), labels, cfg)) == 3


def test_windows_match_sklearn_and_the_last_partial_one_is_flagged():
    y = [0, 1, 1, 0, 1, 0, 0, 1, 1, 0]
    p = [0.1, 0.9, 0.4, 0.3, 0.8, 0.6, 0.2, 0.7, 0.55, 0.45]
    log = log_frame(
        [{"t": i, "rid": f"r{i}", "variant": "a", "pred": int(p[i] >= 0.5), "prob": p[i]} for i in range(10)]
    )
    j = join_labels(log, pd.DataFrame({"request_id": [f"r{i}" for i in range(10)], "label": y}), {})
    for metric, fn in [
        ("auc", lambda a, b, c: skm.roc_auc_score(a, c)),
        ("logloss", lambda a, b, c: skm.log_loss(a, c, labels=[0, 1])),
        ("accuracy", lambda a, b, c: skm.accuracy_score(a, b)),
        ("f1", lambda a, b, c: skm.f1_score(a, b)),
    ]:
        ws = windowed(j, metric, "binary", 4)
        assert [(w["rows"], w["partial"]) for w in ws] == [(4, False), (4, False), (2, True)]
        for w, s in zip(ws, (slice(0, 4), slice(4, 8), slice(8, 10))):
            pred = [int(v >= 0.5) for v in p[s]]
            assert w["value"] == pytest.approx(fn(y[s], pred, p[s]))
    assert ws[0]["start_ts"] == T0.isoformat() and ws[0]["model_versions"] == ["1"]
    assert metric_value("auc", "binary", [1, 1], [1, 0], [0.9, 0.2]) is None  # one class: undefined


def test_the_bad_variant_breaches_the_auc_floor_and_the_good_one_does_not():
    log, y = ab_log(n=200)
    j = join_labels(log, pd.DataFrame({"request_id": [f"r{i}" for i in range(len(y))], "label": y}), {})
    ws = windowed(j, "auc", "binary", 30)
    hit = breaches(ws, "auc", 0.7)
    assert hit and {w["variant"] for w in hit} == {"b"} and all(not w["partial"] for w in hit)
    assert all(w["floor"] == 0.7 and w["model_versions"] == ["8"] for w in hit)
    s = summarize(ws)
    assert s["primary"]["a"]["mean"] > 0.9 > 0.1 > s["primary"]["b"]["mean"]
    assert s["shadow"]["s"]["rows"] == 200 and s["shadow"]["s"]["latest"] > 0.9
    assert s["primary"]["a"]["rows"] + s["primary"]["b"]["rows"] == 200
    assert breaches(ws, "auc", None) == []


def test_regression_floors_point_the_right_way():
    y = np.arange(20, dtype=float)
    rows = [{"t": i, "rid": f"r{i}", "variant": "a", "pred": y[i] + (0.5 if i < 10 else 3.0)} for i in range(20)]
    j = join_labels(log_frame(rows), pd.DataFrame({"request_id": [f"r{i}" for i in range(20)], "label": y}), {})
    ws = windowed(j, "rmse", "regression", 10)
    assert [w["value"] for w in ws] == pytest.approx([0.5, 3.0])
    assert [w["start_ts"] for w in breaches(ws, "rmse", 1.0)] == [ws[1]["start_ts"]]  # higher rmse is worse
    r2 = windowed(j, "r2", "regression", 10)
    assert r2[0]["value"] == pytest.approx(skm.r2_score(y[:10], y[:10] + 0.5))
    assert [w["start_ts"] for w in breaches(r2, "r2", 0.5)] == [r2[1]["start_ts"]]  # lower r2 is worse
    assert metric_value("mae", "regression", y, y + 2, [None] * 20) == pytest.approx(2.0)


def test_multiclass_accuracy_f1_and_logloss_with_list_or_dict_probabilities():
    classes = ["cat", "dog", "eel"]
    y = ["cat", "dog", "eel", "dog", "cat", "eel"]
    pred = ["cat", "dog", "dog", "dog", "eel", "eel"]
    probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.3, 0.6, 0.1], [0.3, 0.1, 0.6], [0.1, 0.1, 0.8]]
    rows = [
        {
            "t": i,
            "rid": f"r{i}",
            "variant": "a",
            "pred": pred[i],
            "prob": probs[i] if i % 2 else dict(zip(classes, probs[i])),
        }
        for i in range(6)
    ]
    j = join_labels(log_frame(rows), pd.DataFrame({"request_id": [f"r{i}" for i in range(6)], "label": y}), {})
    assert windowed(j, "accuracy", "multiclass", 6, classes)[0]["value"] == pytest.approx(4 / 6)
    assert windowed(j, "f1", "multiclass", 6, classes)[0]["value"] == pytest.approx(
        skm.f1_score(y, pred, average="macro")
    )
    assert windowed(j, "logloss", "multiclass", 6, classes)[0]["value"] == pytest.approx(
        skm.log_loss(y, probs, labels=classes)
    )
    assert windowed(j, "accuracy", "multiclass", 6)[0]["value"] == pytest.approx(4 / 6)  # classes inferred


def test_a_100k_row_log_joins_vectorised():
    n = 100_000
    rng = np.random.default_rng(1)
    users = rng.integers(0, 5000, n)
    ts = T0 + pd.to_timedelta(np.sort(rng.uniform(0, 86400, n)), unit="s")
    p = rng.uniform(0, 1, n)
    log = pd.DataFrame(
        {
            "ts": ts,
            "request_id": [f"r{i}" for i in range(n)],
            "row": np.zeros(n, dtype="int32"),
            "variant": np.where(np.arange(n) % 2, "a", "b"),
            "role": "primary",
            "model_version": "1",
            "status": np.full(n, 200, dtype="int32"),
            "latency_ms": 1.0,
            "inputs": [f'{{"user":{u},"x":{i}}}' for i, u in enumerate(users)],
            "prediction": (p >= 0.5).astype(int).astype(str),
            "probability": [repr(float(v)) for v in p],
            "error": None,
        }
    ).astype({"ts": "datetime64[us, UTC]"})
    by_id = pd.DataFrame({"request_id": log["request_id"], "label": rng.integers(0, 2, n)})
    assert len(join_labels(log, by_id, {})) == n
    by_key = pd.DataFrame({"user": users, "at": ts + pd.Timedelta(seconds=5), "label": rng.integers(0, 2, n)})
    j = join_labels(log, by_key, {"join": "entity", "keys": ["user"], "timestamp": "at", "max_delay_s": 3600})
    assert 0 < len(j) <= n and j.groupby(["request_id", "row"]).size().max() == 1
    assert len(windowed(j, "auc", "binary", 1000)) >= len(j) // 1000


@pytest.mark.parametrize("join", ["request_id", "entity"])
def test_the_monitor_reads_only_the_answered_rows_and_columns_the_join_needs(tmp_path, join):
    """The app monitor's read of a real request log: errors and other roles are filtered in the Parquet
    scan, the inputs column is read only for the entity join, and the join gives the same rows."""
    import time

    from raymlops.monitoring.app_monitor import read_table, request_columns
    from raymlops.serving.request_log import RequestLog

    log = RequestLog(str(tmp_path / "log"), flush_s=30)
    t = time.time()
    for i in range(20):
        log.add(
            {
                "ts": t + i,
                "request_id": f"r{i}",
                "variant": "a",
                "role": "primary",
                "model_version": "v1",
                "status": 500 if i % 5 == 0 else 200,
                "latency_ms": 3.0,
                "rows": [{"user": i, "x": i}],
                "predictions": [i % 2],
                "probabilities": [0.1 + i / 40],
            }
        )
    assert log.flush(10)
    cfg = {"join": join, "keys": ["user"], "timestamp": "seen_at", "label": "y", "max_delay_s": 3600}
    got = read_table({"format": "parquet", "path": str(tmp_path / "log")}, *request_columns(cfg))
    assert len(got) == 16 and set(got["status"]) == {200}
    assert ("inputs" in got.columns) == (join == "entity") and "latency_ms" not in got.columns
    labels = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(20)],
            "user": range(20),
            "seen_at": pd.to_datetime([t + i + 1 for i in range(20)], unit="s", utc=True),
            "y": [i % 2 for i in range(20)],
        }
    )
    joined = join_labels(got, labels, cfg)
    assert sorted(joined["request_id"]) == sorted(f"r{i}" for i in range(20) if i % 5)
    assert (joined["prediction"] == joined["label"]).all()
    assert read_table({"format": "parquet", "path": str(tmp_path / "missing")}).empty
    first = tmp_path / "first" / "date=2026-11-29"
    first.mkdir(parents=True)
    (first / ".part-000000-x.parquet.tmp").write_bytes(b"PAR1")  # the first flush, still being written
    assert read_table({"format": "parquet", "path": str(tmp_path / "first")}, *request_columns(cfg)).empty


def test_outputs_decode_exactly_as_json_does():
    """The vectorised decode of numeric outputs gives json.loads' values to the last bit (ties in AUC
    depend on it); class names, booleans and probability lists decode as JSON."""
    from raymlops.monitoring.performance import _parse

    texts = pd.Series([json.dumps(float(x)) for x in np.random.default_rng(3).random(20_000)] + [None, "NaN"])
    want = np.array([json.loads(t) if isinstance(t, str) else np.nan for t in texts], dtype=float)
    assert np.array_equal(_parse(texts).to_numpy(float), want, equal_nan=True)
    assert _parse(pd.Series(["1", "0"])).tolist() == [1, 0]
    assert _parse(pd.Series(['"yes"', "true", "[0.25, 0.75]"])).tolist() == ["yes", True, [0.25, 0.75]]
