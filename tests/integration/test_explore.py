"""`explore` on real Ray Data: the quickstart data, a Ray Dataset, a DataFrame, a 1M-row table checked
against exact pandas figures, and `compare` on the demo's holdout and shifted month."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymlops.errors import DataError
from raymlops.explore import explore
from raymlops.explore.sketches import HLL_ERROR


def _strict_json(text: str) -> dict:
    def no_constant(name):
        raise AssertionError(f"{name} in the JSON")

    return json.loads(text, parse_constant=no_constant)


def _check_exact(profile, df: pd.DataFrame) -> None:
    """Counts, nulls, min and max exact; quantiles within the stated rank error; distinct within 2%."""
    p = profile.to_dict()
    eps = p["errors"]["quantile_rank"]
    assert p["rows"] == len(df)
    for name, c in p["columns"].items():
        s = df[name]
        assert (c["count"], c["nulls"]) == (int(s.notna().sum()), int(s.isna().sum())), name
        assert abs(c["distinct"] - s.nunique()) <= max(0.02 * s.nunique(), 1), (name, c["distinct"], s.nunique())
        if c["kind"] == "numeric":
            x = np.sort(s.dropna().to_numpy(dtype=np.float64))
            assert (c["min"], c["max"]) == (x[0], x[-1]), name
            assert c["mean"] == pytest.approx(x.mean(), rel=1e-9), name
            for q, v in c["quantiles"].items():
                lo, hi = np.searchsorted(x, v, "left") / len(x), np.searchsorted(x, v, "right") / len(x)
                assert lo - eps <= float(q) <= hi + eps, (name, q, v, lo, hi)


def test_explore_the_quickstart_data_with_its_label(ray_session, demo_dir):
    path = demo_dir / "train.parquet"
    profile = explore(str(path), label="churned")
    df = pd.read_parquet(path)
    _check_exact(profile, df)
    p = _strict_json(profile.to_json())
    assert p["time"] == "event_ts" and p["table"]["rows_per_day"]["first"] == "2024-01-01"
    assert set(p["associations"]) == set(df.columns) - {"churned", "event_ts"}
    contract = p["associations"]["contract"]
    exact = df.groupby("contract")["churned"].mean()
    for value, rate in zip(contract["bins"], contract["positive_rate"]):
        assert rate == pytest.approx(exact[value], abs=1e-12)
    # the demo's churn is driven by contract and tenure, not by region
    assert contract["uncertainty"] > 10 * p["associations"]["region"]["uncertainty"]
    kinds = {(w["kind"], w["column"]) for w in p["warnings"]}
    assert ("identifier", "customer_id") in kinds and ("skew", "usage_gb") in kinds
    assert not any(k == "leakage" for k, _ in kinds)
    html = profile.to_html()
    assert html == profile._repr_html_() and "contract" in html and "<script" not in html


def test_a_ray_dataset_and_a_dataframe_profile_alike(ray_session, demo_dir):
    import ray.data

    df = pd.read_parquet(demo_dir / "holdout.parquet")
    from_path = explore(str(demo_dir / "holdout.parquet")).to_dict()
    for data in (ray.data.from_pandas(df), df):
        got = explore(data).to_dict()
        assert got["rows"] == from_path["rows"]
        for name, c in from_path["columns"].items():
            g = got["columns"][name]
            assert (g["count"], g["nulls"], g.get("min"), g.get("max")) == (
                c["count"],
                c["nulls"],
                c.get("min"),
                c.get("max"),
            ), name


def test_compare_flags_the_shifted_month_and_not_the_holdout(ray_session, demo_dir):
    train = str(demo_dir / "train.parquet")
    shifted = explore(train, compare=str(demo_dir / "shifted.parquet")).comparison
    holdout = explore(train, compare=str(demo_dir / "holdout.parquet")).comparison
    assert shifted["is_drift"] and {"plan", "region", "tenure_months", "monthly_charges"} <= set(shifted["drifted"])
    assert not holdout["is_drift"], holdout["drifted"]
    assert shifted["columns"]["customer_id"]["not_tested"].startswith("identifier")
    assert shifted["columns"]["event_ts"]["not_tested"] == "time column"
    price = shifted["columns"]["monthly_charges"]
    assert price["ks_distance"] > 5 * holdout["columns"]["monthly_charges"]["ks_distance"]
    assert sum(price["shares"][0]) == pytest.approx(1.0) and sum(price["shares"][1]) == pytest.approx(1.0)
    plan = shifted["columns"]["plan"]["shares"]
    assert plan["basic"][1] > plan["basic"][0]  # the shifted month sells more basic plans


def test_a_million_rows_against_exact_pandas(ray_session, tmp_path):
    rng = np.random.default_rng(3)
    n, files = 1_000_000, 8
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "normal": rng.normal(10, 3, n),
            "heavy": rng.pareto(1.5, n),
            "ints": pd.array(np.where(rng.random(n) < 0.1, None, rng.poisson(4, n)), dtype="Int64"),
            "ties": rng.integers(0, 5, n).astype(np.float64),
            "cat": rng.choice([f"c{i}" for i in range(300)], n),
            "wide": np.char.add("w", rng.integers(0, 200_000, n).astype(str)),
            "flag": rng.random(n) < 0.5,
            "y": (rng.random(n) < 0.2).astype(np.int8),
        }
    )
    df.loc[rng.random(n) < 0.05, "normal"] = np.nan
    for i in range(files):
        part = df.iloc[i * n // files : (i + 1) * n // files]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), tmp_path / f"part-{i}.parquet")
    profile = explore(str(tmp_path), label="y")
    _check_exact(profile, df)
    top = profile.column("cat")["top"]
    exact = df["cat"].value_counts()
    for t in top:  # 300 values: more than the sketch tracks, so each count comes with bounds around the truth
        assert t.get("lower", t["count"]) <= exact[t["value"]] <= t.get("upper", t["count"])
    t = profile.data["table"]
    assert t["duplicate_rows"] <= t["duplicate_rows_error"] and t["duplicate_rows_error"] <= 3 * HLL_ERROR * n


def test_bad_columns_are_named(ray_session, demo_dir):
    with pytest.raises(DataError, match="label column 'nope' is not in the data"):
        explore(str(demo_dir / "train.parquet"), label="nope")
    with pytest.raises(DataError, match="time column 'plan' must be a timestamp"):
        explore(str(demo_dir / "train.parquet"), time="plan")
    with pytest.raises(DataError, match="does not exist"):
        explore(str(demo_dir / "missing.parquet"))


def test_a_request_log_is_profiled_as_the_rows_it_carried(ray_session, demo_dir, tmp_path):
    import time

    from raymlops.serving.request_log import RequestLog

    holdout = pd.read_parquet(demo_dir / "holdout.parquet")
    inputs = holdout.drop(columns=["churned", "customer_id", "event_ts"])
    log = RequestLog(str(tmp_path / "log"))
    now = time.time()
    for i in range(0, len(inputs), 8):  # requests of 8 rows, each copied to a shadow (not counted)
        rows = json.loads(inputs.iloc[i : i + 8].to_json(orient="records"))
        for role in ("primary", "shadow"):
            assert log.add(
                {
                    "ts": now + i,
                    "request_id": f"r{i}",
                    "variant": "a",
                    "role": role,
                    "model_version": "m/1",
                    "status": 200,
                    "latency_ms": 1.0,
                    "rows": rows,
                    "predictions": [0] * len(rows),
                    "probabilities": [0.1] * len(rows),
                }
            )
    log.close()
    profile = explore(str(tmp_path / "log"))
    assert profile.data["rows"] == len(inputs) and profile.data["time"] == "ts"
    assert set(profile.data["columns"]) == {*inputs.columns, "ts"}
    assert profile.column("age")["nulls"] == int(inputs["age"].isna().sum())
    cmp = explore(str(demo_dir / "train.parquet"), compare=str(tmp_path / "log")).comparison
    assert not cmp["is_drift"] and cmp["only_in_reference"] == ["customer_id", "event_ts", "churned"]
    assert cmp["columns"]["monthly_charges"]["drift"]["p_value"] > 0.01


def test_a_corrupt_file_among_good_ones_is_a_data_error(ray_session, demo_dir, tmp_path):
    import shutil

    shutil.copy(demo_dir / "holdout.parquet", tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1" + b"\0" * 2000)  # magic bytes, no valid footer
    with pytest.raises(DataError, match="cannot read"):
        explore(str(tmp_path))


def test_a_request_log_with_uneven_inputs(ray_session, tmp_path):
    import time

    from raymlops.serving.request_log import RequestLog

    log = RequestLog(str(tmp_path / "log"), flush_s=0.05)
    now = time.time()
    for i in range(300):
        row = {"zip": "02139" if i % 2 else 2139, "amount": i if i % 3 else float(i) + 0.5, "ts": i}
        if i % 5 == 0:
            row["coupon"] = "x"  # an optional key
        log.add(
            {
                "ts": now + i,
                "request_id": f"r{i}",
                "variant": "a",
                "role": "primary",
                "model_version": "m/1",
                "status": 200,
                "latency_ms": 1.0,
                "rows": [row],
                "predictions": [0],
            }
        )
        if i % 100 == 0:
            log.flush()  # files of their own, some with shadow rows only
            log.add(
                {
                    "ts": now + i,
                    "request_id": f"s{i}",
                    "variant": "b",
                    "role": "shadow",
                    "model_version": "m/1",
                    "status": 200,
                    "latency_ms": 1.0,
                    "rows": [row],
                    "predictions": [0],
                }
            )
            log.flush()
    log.close()
    p = explore(str(tmp_path / "log")).to_dict()
    assert p["rows"] == 300 and p["time"] == "request_ts"  # an input named ts keeps its name
    cols = p["columns"]
    assert cols["zip"]["kind"] == "categorical" and cols["amount"]["kind"] == "numeric"
    assert cols["amount"]["count"] == 300 and cols["coupon"]["nulls"] == 240 and cols["ts"]["max"] == 299
