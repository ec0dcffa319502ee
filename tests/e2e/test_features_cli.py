"""The feature commands as a user runs them: build, materialize, list, describe (each its own process)."""

import json

import pandas as pd

from tests.e2e.conftest import run


def test_features_cli_build_materialize_list_describe(demo, tmp_path):  # noqa: F811
    env = {"DEMO_DATA": str(demo), "RAYMLOPS_STORAGE": str(tmp_path / "store")}
    r = run(["raymlops", "features", "build", "configs/features.yaml"], 600, **env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "txn_stats: version 1 (overwrite)" in r.stdout
    r = run(["raymlops", "features", "materialize", "configs/features.yaml"], 600, **env)
    assert r.returncode == 0, r.stderr[-4000:]
    customers = pd.read_parquet(demo / "transactions.parquet").customer_id.nunique()
    assert f"txn_stats: {customers} entities written" in r.stdout  # every customer's latest row
    r = run(["raymlops", "features", "materialize", "configs/features.yaml", "--incremental"], 600, **env)
    assert r.returncode == 0 and "from offline version 1" in r.stdout, r.stderr[-4000:]
    r = run(["raymlops", "features", "list", "configs/features.yaml"], 120, **env)
    assert r.returncode == 0 and "txn_stats" in r.stdout and "offline_version=1" in r.stdout, r.stderr
    r = run(["raymlops", "features", "describe", "configs/features.yaml", "txn_stats"], 120, **env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["entity"] == "customer" and d["ttl"] == "30d" and d["owner"] == "data-platform@example.com"
    assert d["schema"]["amount"] == "double" and d["offline_versions"][0]["rows"] > 0  # the events, not windows
    assert d["feature_types"]["amount_sum_7d"] == "double" and d["feature_types"]["amount_count_30d"] == "int64"
    assert d["last_materialization"]["offline_version"] == 1 and d["freshness_seconds"] is not None
    r = run(["raymlops", "features", "describe", "configs/features.yaml", "nope"], 120, **env)
    assert r.returncode == 2 and "unknown feature view 'nope'" in r.stderr  # the user's input to fix: exit 2
    # push a file of events: online at once; a bad file names the field and exits 2, writing nothing
    now = pd.Timestamp.now(tz="UTC").floor("s")
    events = pd.DataFrame(
        {
            "customer_id": [424242],
            "event_time": [now],
            "amount": [12.5],
            "merchant_category": ["books"],
            "balance": [3.0],
            "segment": ["pushed"],
        }
    )
    events.to_json(tmp_path / "push.jsonl", orient="records", lines=True, date_format="iso")
    r = run(
        ["raymlops", "features", "push", "configs/features.yaml", "txn_stats", str(tmp_path / "push.jsonl")], 120, **env
    )
    assert r.returncode == 0 and "txn_stats: 1 events pushed (offline version 2" in r.stdout, r.stderr[-4000:]
    events.assign(amount=["lots"]).to_json(tmp_path / "bad.jsonl", orient="records", lines=True, date_format="iso")
    r = run(
        ["raymlops", "features", "push", "configs/features.yaml", "txn_stats", str(tmp_path / "bad.jsonl")], 120, **env
    )
    assert r.returncode == 2 and "rows[0].amount: must be a number, got str 'lots'" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    # nothing served yet: the skew check says so
    r = run(["raymlops", "features", "skew", "configs/features.yaml"], 300, **env)
    assert r.returncode == 0 and "nothing to compare" in r.stdout, r.stderr[-4000:]
