"""Data-quality profiles and checks (raymlops.data.quality)."""

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from raymlops.data import quality
from raymlops.data.quality import DataProfile, check
from raymlops.data.schema import Column
from raymlops.data.stats import MISSING, CategoricalStats, NumericStats, _py

pytestmark = pytest.mark.unit

COLUMNS = [
    Column("usage_gb", "number"),
    Column("age", "integer"),
    Column("plan", "string"),
    Column("active", "boolean"),
    Column("signup", "timestamp"),
]


def frame(n=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    usage = rng.uniform(0, 100, n)
    usage[::20] = np.nan  # 5% nulls
    if n >= 3:
        usage[1:3] = 0, 100  # training ranges are exactly [0, 100] and [18, 79]
    return pd.DataFrame(
        {
            "usage_gb": usage,
            "age": np.clip(rng.integers(17, 81, n), 18, 79),
            "plan": pd.Series(rng.choice(["basic", "pro", "team"], n), dtype=object),
            "active": rng.random(n) < 0.5,
            "signup": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        }
    )


@pytest.fixture
def profile():
    return DataProfile.fit(frame(), COLUMNS)


def errors(report, check_name=None):
    return [i for i in report.issues if i["severity"] == "error" and check_name in (None, i["check"])]


def test_fit_profile(profile):
    cols = {c.name: c for c in profile.columns}
    assert profile.rows == 200
    assert cols["usage_gb"].null_rate == pytest.approx(0.05)
    assert 0 <= cols["usage_gb"].min < cols["usage_gb"].max <= 100
    assert cols["age"].min >= 18 and cols["age"].max < 80
    assert cols["plan"].categories == ["basic", "pro", "team"]
    assert cols["active"].categories == ["False", "True"]
    assert cols["signup"].type == "timestamp" and cols["signup"].min is None and cols["signup"].categories is None


def test_too_many_categories_skips_unseen_check():
    df = pd.DataFrame({"id": [f"u{i}" for i in range(quality.MAX_CATEGORIES + 1)]})
    p = DataProfile.fit(df, [Column("id", "string")])
    assert p.columns[0].categories is None
    assert check(pd.DataFrame({"id": ["new"] * 10}), p).ok


def test_json_round_trip_and_atomic_save(profile, tmp_path):
    d = json.loads(json.dumps(profile.to_dict()))
    assert DataProfile.from_dict(d) == profile
    path = tmp_path / "profile.json"
    path.write_text("old")
    profile.save(path)
    assert DataProfile.load(path) == profile
    assert os.listdir(tmp_path) == ["profile.json"]  # no temporary file left behind


def test_atomic_save_keeps_old_file_when_write_fails(profile, tmp_path, monkeypatch):
    path = tmp_path / "profile.json"
    profile.save(path)
    before = path.read_text()
    monkeypatch.setattr(quality.os, "replace", lambda *_: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        DataProfile([], 0).save(path)
    assert path.read_text() == before


def test_from_stats_matches_fit():
    df = frame(300, seed=1)
    df.loc[::7, "plan"] = None
    nstats, cstats = {}, {}
    for c in ("usage_gb", "age"):
        x = df[c].to_numpy(dtype=float)
        ok = x[~np.isnan(x)]
        nstats[c] = NumericStats(count=ok.size, nulls=int(x.size - ok.size), min=float(ok.min()), max=float(ok.max()))
    nstats["signup"] = NumericStats(count=len(df))
    for c in ("plan", "active"):
        # as column_stats stores them: python values, missing under MISSING, through JSON
        pairs = json.loads(json.dumps([[_py(k), int(v)] for k, v in df[c].value_counts(dropna=False).items()]))
        cstats[c] = CategoricalStats({k: v for k, v in pairs})
    assert MISSING in cstats["plan"].counts
    assert DataProfile.from_stats(COLUMNS, nstats, cstats, len(df)) == DataProfile.fit(df, COLUMNS)


def test_clean_data_passes(profile):
    report = check(frame(500, seed=2), profile)
    assert report.ok, report.format()
    assert report.format().startswith("data quality: OK on 500 rows")


def test_nulls_within_tolerance_pass_above_fail(profile):
    df = frame(100, seed=3)
    df.loc[1:4, "usage_gb"] = np.nan  # 5% + 4% null: under 5% + 5%
    assert not errors(check(df, profile), "nulls")
    df.loc[:30, "usage_gb"] = None
    report = check(df, profile)
    (issue,) = errors(report, "nulls")
    assert issue["column"] == "usage_gb" and issue["observed"] > issue["allowed"] == pytest.approx(0.10)
    assert "(training 5.0% + 5.0% allowed)" in report.format()
    assert not errors(check(df, profile, {"null_tolerance": 0.5}), "nulls")
    assert not errors(check(df, profile, {"nulls": False}))


def test_null_kinds_all_count():
    p = DataProfile.fit(pd.DataFrame({"s": ["a"] * 4}), [Column("s", "string")])
    report = check(pd.DataFrame({"s": pd.Series(["a", None, np.nan, pd.NA], dtype=object)}), p)
    assert errors(report, "nulls")[0]["observed"] == pytest.approx(0.75)


def test_out_of_range(profile):
    df = frame(200, seed=4)
    hi = profile.columns[0].max
    assert not errors(check(df, profile), "ranges")
    df.loc[:1, "usage_gb"] = hi + 1  # 2 of ~190 non-null values: ~1.05% > 1%
    (issue,) = errors(check(df, profile), "ranges")
    assert issue["column"] == "usage_gb" and "outside training" in issue["message"]
    assert f"{hi + 1:g}" in issue["message"]
    assert not errors(check(df, profile, {"range_tolerance": 0.05}), "ranges")
    df.loc[:50, "age"] = -1
    assert {i["column"] for i in errors(check(df, profile), "ranges")} == {"usage_gb", "age"}


def test_unseen_categories(profile):
    df = frame(200, seed=5)
    assert not errors(check(df, profile), "unseen_categories")
    df.loc[:9, "plan"] = "enterprise"
    df.loc[10:11, "plan"] = "trial"
    (issue,) = errors(check(df, profile), "unseen_categories")
    assert issue["column"] == "plan" and issue["observed"] == pytest.approx(12 / 200)
    assert "{'enterprise': 10, 'trial': 2}" in issue["message"]
    assert not errors(check(df, profile, {"unseen_categories": False}))


def test_booleans_compare_as_strings(profile):
    df = frame(50, seed=6)
    df["active"] = pd.Series([True, False, None] * 16 + [True, True], dtype=object)
    assert not errors(check(df, profile), "unseen_categories")


def test_missing_and_extra_columns(profile):
    df = frame(50, seed=7).drop(columns=["plan"]).assign(request_id="r")
    report = check(df, profile)
    (issue,) = errors(report)
    assert (issue["check"], issue["column"], issue["message"]) == ("schema", "plan", "missing column")
    info = [i for i in report.issues if i["severity"] == "info"]
    assert info and "request_id" in info[0]["message"]
    assert check(df.assign(plan="pro"), profile).ok  # extra columns alone do not fail


def test_wrong_type_values(profile):
    df = frame(100, seed=8)
    df["usage_gb"] = df["usage_gb"].astype(object)
    df.loc[:2, "usage_gb"] = "n/a"
    df["age"] = df["age"].astype(float)
    df.loc[5, "age"] = 30.5
    df["plan"] = df["plan"].astype(object)
    df.loc[0, "plan"] = 7
    df["signup"] = df["signup"].astype(str)
    df.loc[0, "signup"] = "yesterday"
    report = check(df, profile)
    by_col = {i["column"]: i for i in errors(report, "schema")}
    assert set(by_col) == {"usage_gb", "age", "plan", "signup"}
    assert by_col["usage_gb"]["observed"] == 3 and "'n/a'" in by_col["usage_gb"]["message"]
    assert by_col["age"]["observed"] == 1 and by_col["signup"]["observed"] == 1
    assert not errors(check(df, profile, {"schema_check": False}), "schema")


def test_format_and_to_dict(profile):
    df = frame(100, seed=9)
    df.loc[:40, "usage_gb"] = np.nan
    df.loc[:20, "plan"] = "zzz"
    report = check(df, profile)
    text = report.format()
    assert text.splitlines()[0] == "data quality: FAILED (2 of 4 checks) on 100 rows"
    assert "FAIL nulls" in text and "usage_gb:" in text and "plan:" in text
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and d["failed"] == ["nulls", "unseen_categories"] and d["rows"] == 100


def test_empty_frame_is_ok_with_info(profile):
    report = check(frame(0), profile)
    assert report.ok and report.issues[0]["message"] == "no rows" and report.issues[0]["severity"] == "info"


def test_bad_options_are_rejected(profile):
    with pytest.raises(ValueError):
        check(frame(10), profile, {"null_tolerence": 0.1})


def test_100k_rows_under_a_second(profile):
    df = frame(100_000, seed=10)
    df["plan"] = df["plan"].astype(object)
    df.loc[::3, "plan"] = "new"
    df["usage_gb"] = df["usage_gb"] * 2
    check(df.head(100), profile)  # warm up imports
    start = time.perf_counter()
    report = check(df, profile)
    assert time.perf_counter() - start < 1.0
    assert not report.ok
