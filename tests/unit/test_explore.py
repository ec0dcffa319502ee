"""explore's sketches, block partials, label association, warnings and report, without Ray."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raymlops.explore.block import Layout, Partial, dumps, kind_of, loads, profile_block
from raymlops.explore.label import association, label_bins, label_block
from raymlops.explore.profile import _column, _table
from raymlops.explore.report import render
from raymlops.explore.sketches import HLL_ERROR, HyperLogLog, Moments, hash_values, kll_error
from raymlops.explore.warnings import warnings_of


def _frame(n: int = 30_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    x = rng.lognormal(0, 1, n)
    x[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "x": x,
            "k": pd.array(np.where(rng.random(n) < 0.05, None, rng.integers(0, 40, n)), dtype="Int64"),
            "cat": np.where(rng.random(n) < 0.02, None, rng.choice(["a", "bb", "", "dddd"], n, p=[0.5, 0.3, 0.1, 0.1])),
            "flag": rng.random(n) < 0.25,
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 40 * 86400, n), unit="s"),
            "const": np.ones(n),
            "leak": y * 2.0 + rng.normal(0, 0.01, n),
            "noise": rng.normal(0, 1, n),
            "y": y,
        }
    )


def _profile(df: pd.DataFrame, blocks: int = 3, label: str | None = None) -> tuple[dict, Partial]:
    table = pa.Table.from_pandas(df, preserve_index=False)
    layout = Layout({f.name: kind_of(f.type) for f in table.schema}, "ts", 0)
    merged = Partial()
    bounds = np.linspace(0, len(df), blocks + 1).astype(int)
    for a, b in zip(bounds, bounds[1:]):
        merged.merge(loads(dumps(profile_block(table.slice(a, b - a), layout))))  # as between Ray tasks
    types = {f.name: str(f.type) for f in table.schema}
    out = {
        "name": "t",
        "rows": merged.rows,
        "columns": {n: _column(merged.columns[n], types[n], merged.rows) for n in layout.kinds},
        "table": _table(merged, layout),
        "label": label,
        "time": "ts",
        "skipped": [],
        "errors": {"quantile_rank": kll_error(), "distinct_relative": HLL_ERROR},
        "seconds": 0.0,
    }
    if label:
        bins = label_bins(out["columns"], merged.columns, label)
        counts: dict = {}
        for a, b in zip(bounds, bounds[1:]):
            for k, v in label_block(table.slice(a, b - a), bins).items():
                counts[k] = counts[k] + v if k in counts else v
        out["associations"] = association(bins, counts)
    out["warnings"] = warnings_of(out)
    return out, merged


def test_moments_merge_like_pandas():
    x = np.random.default_rng(1).gamma(2.0, 3.0, 10_001)
    m = Moments()
    for part in np.array_split(x, 7):
        m.merge(Moments.of(part))
    s = pd.Series(x)
    assert m.n == len(x)
    assert m.mean == pytest.approx(s.mean(), rel=1e-12)
    assert m.std == pytest.approx(s.std(), rel=1e-10)
    assert m.skew == pytest.approx(s.skew(), rel=1e-9)


@pytest.mark.parametrize("n", [1, 37, 5_000, 300_000])
def test_distinct_counts_within_two_percent_after_merging(n):
    values = np.random.default_rng(n).permutation(np.arange(n, dtype=np.float64) * 1.5)
    a, b = HyperLogLog(), HyperLogLog()
    a.update_hashes(hash_values(values[: n * 2 // 3]))
    b.update_hashes(hash_values(values[n // 3 :]))  # overlapping halves: shared values count once
    a.merge(b)
    assert abs(a.estimate() - n) <= max(0.02 * n, 0.5)


def test_partials_merge_to_exact_figures():
    df = _frame()
    p, _ = _profile(df, blocks=4)
    cols = p["columns"]
    assert p["rows"] == len(df)
    for name in ("x", "k", "cat", "flag", "ts"):
        assert cols[name]["nulls"] == int(df[name].isna().sum()), name
        assert cols[name]["count"] == int(df[name].notna().sum()), name
        assert abs(cols[name]["distinct"] - df[name].nunique()) <= 0.02 * df[name].nunique(), name
    x = np.sort(df["x"].dropna().to_numpy())
    assert (cols["x"]["min"], cols["x"]["max"]) == (x[0], x[-1])
    assert cols["x"]["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert cols["x"]["std"] == pytest.approx(df["x"].std(), rel=1e-10)
    for q, v in cols["x"]["quantiles"].items():
        lo, hi = np.searchsorted(x, v, "left") / len(x), np.searchsorted(x, v, "right") / len(x)
        assert lo - kll_error() <= float(q) <= hi + kll_error(), (q, v)
    assert sum(cols["x"]["histogram"]["counts"]) == pytest.approx(len(x), abs=len(cols["x"]["histogram"]["counts"]))
    exact = df["cat"].value_counts()
    assert [(t["value"], t["count"]) for t in cols["cat"]["top"]] == list(exact.items())  # few values: exact counts
    assert cols["cat"]["empty"] == int((df["cat"] == "").sum())
    assert cols["cat"]["length"]["min"] == 0 and cols["cat"]["length"]["max"] == 4
    assert {t["value"]: t["count"] for t in cols["flag"]["top"]} == {
        "true": int(df["flag"].sum()),
        "false": int((~df["flag"]).sum()),
    }
    assert cols["ts"]["min"] == df["ts"].min().isoformat() and cols["ts"]["max"] == df["ts"].max().isoformat()
    days = p["table"]["rows_per_day"]
    assert sum(days["counts"]) == len(df) and days["first"] == "2024-01-01"
    r = p["table"]["correlation"]
    i, j = r["columns"].index("leak"), r["columns"].index("y")
    assert r["r"][i][j] == pytest.approx(df["leak"].corr(df["y"]), abs=1e-6)  # rounded to 6 places
    i = r["columns"].index("x")
    assert r["r"][i][r["columns"].index("noise")] == pytest.approx(df["x"].corr(df["noise"]), abs=1e-6)  # pairwise


def test_duplicate_rows_are_estimated():
    df = _frame(20_000)
    dup = pd.concat([df, df.iloc[:3_000]], ignore_index=True)
    p, _ = _profile(dup)
    t = p["table"]
    assert abs(t["duplicate_rows"] - 3_000) <= t["duplicate_rows_error"]
    assert any(w["kind"] == "duplicates" for w in p["warnings"])


def test_label_association_and_warnings():
    df = _frame()
    p, _ = _profile(df, label="y")
    a = p["associations"]
    assert a["leak"]["uncertainty"] > 0.9 and a["noise"]["uncertainty"] < 0.01
    assert a["noise"]["positive"] == "1"
    rate = np.average(a["noise"]["positive_rate"], weights=a["noise"]["rows"])
    assert rate == pytest.approx(df["y"].mean(), abs=1e-9)
    kinds = {(w["kind"], w["column"]) for w in p["warnings"]}
    assert ("leakage", "leak") in kinds and ("leakage", "noise") not in kinds
    assert ("constant", "const") in kinds
    assert ("identifier", "id") in kinds
    assert ("skew", "x") in kinds
    assert not any(c == "y" for _, c in kinds)  # the label's balance is no warning
    assert not any(k == "time_gaps" for k, _ in kinds)


def test_time_gaps_and_nulls_warn():
    df = _frame(5_000)
    df = df[(df["ts"] < "2024-01-10") | (df["ts"] >= "2024-01-20")].copy()
    df.loc[df.index[:2_000], "noise"] = np.nan
    p, _ = _profile(df)
    gaps = [w for w in p["warnings"] if w["kind"] == "time_gaps"]
    assert gaps and "10 days from 2024-01-10" in gaps[0]["message"]
    assert any(w["kind"] == "nulls" and w["column"] == "noise" for w in p["warnings"])


def test_report_is_self_contained_and_escapes_values():
    df = _frame(3_000)
    df.loc[:5, "cat"] = "<script>alert(1)</script>"
    p, _ = _profile(df, label="y")
    html = render(json.loads(json.dumps(p)))
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    for name in df.columns:
        assert f"id='col-{name}'" in html
    assert html.count("<svg") >= len(df.columns)


def test_the_merged_sample_is_uniform_and_repeatable():
    from raymlops.explore.block import SAMPLE_ROWS

    df = _frame(40_000)
    _, merged = _profile(df, blocks=8)
    ids = merged.sample.column("id").to_numpy()
    assert len(ids) == SAMPLE_ROWS == len(set(ids))
    per_block = np.bincount(ids // 5_000, minlength=8)  # each block holds 1/8 of the rows, so ~625 of the sample
    assert per_block.min() > 500 and per_block.max() < 750, per_block
    _, again = _profile(df, blocks=8)
    assert np.array_equal(again.sample.column("id").to_numpy(), ids)


def test_raymlops_explore_is_the_function_and_the_modules_still_import():
    import raymlops
    from raymlops.explore import Profile, explore
    from raymlops.explore.report import render as again

    assert raymlops.explore is explore and "explore" in raymlops.__all__
    assert again is render and Profile.__module__ == "raymlops.explore.api"


def test_awkward_values_do_not_break_the_profile():
    n = 4_000
    rng = np.random.default_rng(5)
    y = np.where(rng.random(n) < 0.5, 1_000_000, 1_000_001)
    x = rng.normal(0, 1, n)
    x[:3] = [np.inf, -np.inf, np.nan]
    df = pd.DataFrame(
        {
            "big": np.arange(n, dtype=np.int64) + 2**60,  # 64-bit ids: past float64's exact integers
            "x": x,
            "level": 1.7e9 + rng.normal(0, 1, n),  # a mean that dwarfs the spread
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 30, n), unit="D"),
            "y": y,
        }
    )
    df["level2"] = df["level"] + rng.normal(0, 1, n)
    df["leak"] = (y - 1_000_000) * 3.0 + rng.normal(0, 0.01, n)
    df.loc[0, "ts"] = pd.Timestamp("2199-12-31")  # one sentinel date
    p, _ = _profile(df, blocks=3, label="y")
    cx = p["columns"]["x"]
    assert (cx["infinite"], cx["nulls"], cx["count"]) == (2, 1, n - 3) and np.isfinite(cx["mean"])
    assert any(w["kind"] == "infinite" for w in p["warnings"])
    assert abs(p["columns"]["big"]["distinct"] - n) <= 0.02 * n
    r = p["table"]["correlation"]
    i, j = r["columns"].index("level"), r["columns"].index("level2")
    assert r["r"][i][j] == pytest.approx(df["level"].corr(df["level2"]), abs=1e-4) and r["r"][i][i] == 1.0
    days = p["table"]["rows_per_day"]
    assert days["bucket_days"] > 1 and len(days["counts"]) <= 1_000 and sum(days["counts"]) == n
    a = p["associations"]["leak"]
    assert sum(a["rows"]) == n and a["uncertainty"] > 0.9  # both classes kept apart: 1000000 != 1000001


def test_histogram_bins_are_numpys():
    v = np.random.default_rng(2).integers(0, 5, 50_000).astype(float)
    p, _ = _profile(pd.DataFrame({"v": v}), blocks=2)
    h = p["columns"]["v"]["histogram"]
    want, _ = np.histogram(v, bins=np.asarray(h["edges"]))
    tol = 2 * kll_error() * len(v) + 1
    assert all(abs(a - b) <= tol for a, b in zip(h["counts"], want)), (h["counts"], want.tolist())


def test_a_label_that_cannot_be_profiled_is_named():
    import ray.data  # noqa: F401  (only the schema is read: no Ray starts)

    from raymlops.errors import DataError
    from raymlops.explore.profile import profile_dataset

    class Schema:
        names, types = ["x", "y"], [pa.float64(), pa.null()]

    class Data:
        def schema(self):
            return Schema()

    with pytest.raises(DataError, match="label column 'y' has type null; expected numbers, strings or booleans"):
        profile_dataset(Data(), label="y")


def test_column_names_are_escaped_in_the_report():
    df = pd.DataFrame({"a' onmouseover='x<b>": [1.0, 2.0], "c<script>": ["u", "v"]})
    p, _ = _profile(df, blocks=1)
    html = render(json.loads(json.dumps(p)))
    assert "onmouseover='x" not in html and "<script>" not in html and "&#x27; onmouseover=&#x27;" in html


def test_compare_encodes_booleans_alike_with_or_without_nulls():
    from raymlops.explore.compare import compare_profiles

    rng = np.random.default_rng(9)
    ref = pd.DataFrame({"flag": rng.random(6_000) < 0.3, "x": rng.normal(0, 1, 6_000)})
    cur = pd.DataFrame({"flag": pd.array(rng.random(6_000) < 0.3, dtype="boolean"), "x": rng.normal(0, 1, 6_000)})
    cur.loc[0, "flag"] = None  # one null on one side only
    (a, ma), (b, mb) = _profile(ref), _profile(cur)
    got = compare_profiles({**a, "sample": ma.sample}, {**b, "sample": mb.sample}, ma.columns, mb.columns)
    assert not got["is_drift"], got["columns"]["flag"]
    assert got["columns"]["flag"]["drift"]["p_value"] > 0.01
