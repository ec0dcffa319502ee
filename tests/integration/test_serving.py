"""The quickstart run served over real HTTP by Ray Serve, with its drift actor."""

import time

import httpx
import numpy as np
import pandas as pd
import pytest

from raymlops import load_model
from raymlops.pipeline.probe import _jsonable


@pytest.fixture(scope="module")
def endpoint(quickstart):
    pipe, result = quickstart
    url = pipe.serve(result.run_dir)
    yield url, result
    from raymlops.serving import shutdown

    shutdown(pipe.app_name)


def post(url, body, **kw):
    return httpx.post(f"{url}/predict", json=body, timeout=60, **kw)


def rows_of(path, n, model):
    return _jsonable(pd.read_parquet(path)[model.schema.names].head(n))


def test_http_predictions_equal_offline(endpoint, demo_dir):
    url, result = endpoint
    model = load_model(result.run_dir)
    df = pd.read_parquet(demo_dir / "holdout.parquet").head(200)
    r = post(url, {"instances": _jsonable(df[model.schema.names])}, headers={"x-request-id": "abc"})
    assert r.status_code == 200, r.text
    body = r.json()
    preds, probs = model.predict_with_proba(df)
    assert body["predictions"] == preds
    assert np.allclose(body["probabilities"], probs, atol=1e-6, rtol=0)
    # served decisions are at the threshold stored with the model (training.decision), not at 0.5
    assert model.threshold < 0.4 and body["predictions"] == [int(p >= model.threshold) for p in body["probabilities"]]
    assert any(model.threshold <= p < 0.5 for p in body["probabilities"])  # rows where the two differ
    assert body["model_version"] == result.run_id and body["request_id"] == "abc" and body["variant"] == "default"
    assert r.headers["x-request-id"] == "abc"
    r = post(url, {"instances": _jsonable(df[model.schema.names].head(1))})
    assert r.json()["request_id"] == r.headers["x-request-id"] != "abc"


def test_the_compiled_plan_scores_request_rows_as_the_dataframe_path(quickstart, demo_dir):
    """Serving scores checked request rows through the compiled plan: equal to the DataFrame path of the same
    run on the holdout as clients send it (JSON, nulls as null), to the last bit of the probability."""
    from raymlops.data.schema import check_records

    _, result = quickstart
    model = load_model(result.run_dir)
    assert model.plan is not None
    rows = rows_of(demo_dir / "holdout.parquet", 1000, model)
    assert any(v is None for r in rows for v in r.values())  # nulls included
    check_records(rows, model.schema)
    preds, probs = model.predict_rows(rows)
    want_preds, want_probs = model.predict_with_proba(pd.DataFrame(rows))
    assert preds == want_preds and probs == want_probs
    for r in rows[:50]:  # one row at a time, as single requests arrive
        assert model.predict_rows([r]) == model.predict_with_proba(pd.DataFrame([r]))


def test_schema_and_health(endpoint):
    url, result = endpoint
    schema = httpx.get(f"{url}/schema").json()
    cols = {c["name"]: c for c in schema["columns"]}
    assert cols["tenure_months"]["type"] == "integer" and cols["plan"]["type"] == "string"
    assert cols["usage_gb"]["nullable"] and not cols["monthly_charges"]["nullable"]
    assert schema["classes"] == [0, 1] and schema["task"] == "binary"
    assert httpx.get(f"{url}/health").json() == {
        "status": "ok",
        "model_version": result.run_id,
        "variants": {"default": result.run_id},
    }
    assert schema["variant"] == "default" and schema["model_version"] == result.run_id


@pytest.mark.parametrize(
    "mutate,loc",
    [
        (lambda r: r.pop("tenure_months"), ["body", "instances", 0, "tenure_months"]),
        (lambda r: r.update(tenure_months="ten"), ["body", "instances", 0, "tenure_months"]),
        (lambda r: r.update(plan=3), ["body", "instances", 0, "plan"]),
        (lambda r: r.update(monthly_charges=None), ["body", "instances", 0, "monthly_charges"]),
        (lambda r: r.update(autopay="yes"), ["body", "instances", 0, "autopay"]),
    ],
)
def test_bad_fields_are_422_naming_the_field(endpoint, demo_dir, mutate, loc):
    url, result = endpoint
    row = rows_of(demo_dir / "holdout.parquet", 1, load_model(result.run_dir))[0]
    mutate(row)
    r = post(url, {"instances": [row]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize(
    "content,loc",
    [
        (b'{"instances": [', ["body"]),
        (b'{"rows": []}', ["body", "instances"]),
        (b'{"instances": []}', ["body", "instances"]),
        (b'{"instances": [1]}', ["body", "instances", 0]),
        (b"[1, 2]", ["body"]),
    ],
)
def test_malformed_bodies_are_422(endpoint, content, loc):
    url, _ = endpoint
    r = httpx.post(f"{url}/predict", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][: len(loc)] == loc


def test_mlflow_scoring_protocol(endpoint, demo_dir):
    """POST /invocations takes what an MLflow client sends (dataframe_split, dataframe_records, instances)
    and answers as /predict does; 422s name the field as it was sent."""
    url, result = endpoint
    model = load_model(result.run_dir)
    df = pd.read_parquet(demo_dir / "holdout.parquet").head(20)[model.schema.names]
    records = _jsonable(df)
    expected = post(url, {"instances": records}).json()["predictions"]
    split = {
        "columns": list(df.columns),
        "data": [[r[c] for c in df.columns] for r in records],
        "index": list(range(len(records))),
    }
    for body in (
        {"dataframe_split": split},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": records},
    ):
        r = httpx.post(f"{url}/invocations", json=body, timeout=60)
        assert r.status_code == 200, (list(body), r.text)
        assert r.json()["predictions"] == expected and r.json()["model_version"] == result.run_id
    bad = dict(records[3], tenure_months="ten")
    cases = [
        ({"dataframe_records": [records[0], bad]}, ["body", "dataframe_records", 1, "tenure_months"]),
        (
            {"dataframe_split": {**split, "data": [split["data"][0], [r for r in split["data"][1][:-1]]]}},
            ["body", "dataframe_split", "data", 1],
        ),
        (
            {"dataframe_split": {"columns": split["columns"], "data": [[bad[c] for c in split["columns"]]]}},
            ["body", "dataframe_split", "data", 0, "tenure_months"],
        ),
        ({"dataframe_records": records, "instances": records}, ["body", "instances"]),
        ({"params": {}}, ["body"]),
    ]
    for body, loc in cases:
        r = httpx.post(f"{url}/invocations", json=body, timeout=60)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"][0]["loc"] == loc, r.text
    assert "/invocations" in httpx.get(f"{url}/openapi.json").json()["paths"]


def _wait_drift(url, key, n, timeout=60):
    """GET /drift until ``key`` (windows_tested, rows_seen) reaches ``n``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = httpx.get(f"{url}/drift").json()
        if d[key] >= n:
            return d
        time.sleep(0.2)
    raise AssertionError(f"the monitor's {key} is {d[key]}, expected {n}: {d}")


def test_drift_flags_a_shifted_window_and_not_an_unshifted_one(endpoint, demo_dir):
    url, result = endpoint
    model = load_model(result.run_dir)
    start = httpx.get(f"{url}/drift").json()
    assert start["enabled"] and start["window"] == 500
    # Earlier traffic (and a redeploy of the same model resumes its monitor's pending rows) leaves a partial
    # window: make one of shifted rows, then close it, so the windows below hold only this test's rows.
    assert post(url, {"instances": rows_of(demo_dir / "shifted.parquet", 123, model)}).status_code == 200
    d = _wait_drift(url, "rows_seen", start["rows_seen"] + 123)
    base = d["windows_tested"]
    if d["rows_pending"]:
        assert (
            post(url, {"instances": rows_of(demo_dir / "holdout.parquet", 500 - d["rows_pending"], model)}).status_code
            == 200
        )
        base = _wait_drift(url, "windows_tested", base + 1)["windows_tested"]
    for chunk in np.array_split(np.arange(500), 5):  # several requests make one window
        rows = rows_of(demo_dir / "holdout.parquet", 500, model)
        assert post(url, {"instances": [rows[i] for i in chunk]}).status_code == 200
    d = _wait_drift(url, "windows_tested", base + 1)
    assert d["is_drift"] is False, d
    assert d["rows_seen"] >= 500 and set(d["features"]) == {*model.schema.names, "__prediction__"}
    assert d["prediction_drift"] is False
    calm = d["features"]
    assert (
        calm["monthly_charges"]["effect_metric"] == "wasserstein_norm"
        and calm["plan"]["effect_metric"] == "jensen_shannon"
        and all(0 <= f["effect"] < 0.2 for f in calm.values())
    ), calm
    assert post(url, {"instances": rows_of(demo_dir / "shifted.parquet", 500, model)}).status_code == 200
    d = _wait_drift(url, "windows_tested", base + 2)
    assert d["features"]["monthly_charges"]["effect"] > 3 * calm["monthly_charges"]["effect"]
    history = httpx.get(f"{url}/monitoring").json()["monitor"]["history"]
    drift_lines = [h for h in history if h["kind"] == "drift"]
    assert drift_lines and all("effect" in f for f in drift_lines[-1]["features"].values()), drift_lines[-1:]
    assert d["is_drift"] is True and d["prediction_drift"] is True  # the shifted month also scores higher
    drifted = {f for f, v in d["features"].items() if v["is_drift"]}
    assert {"monthly_charges", "tenure_months", "support_calls"} <= drifted, d["features"]
    assert d["features"]["plan"]["test"] == "chi2" and d["features"]["tenure_months"]["test"] == "ks"


def test_schemathesis_over_every_route_finds_nothing(endpoint, tmp_path):
    """The served OpenAPI document is exact: schemathesis (coverage and fuzzing phases, valid and invalid
    bodies and parameters) gets no 5xx, no response outside the document, no valid request refused and no
    warning on any route of the quickstart app."""
    from tests.fuzz import schemathesis

    url, _ = endpoint
    out = schemathesis(f"{url}/openapi.json", url, tmp_path)
    assert "Selected: 7/7" in out and "Tested: 7" in out  # every route of the document
