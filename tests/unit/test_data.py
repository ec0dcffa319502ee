import json

import numpy as np
import pandas as pd
import pytest

from raymlops.data.preprocessing import STEPS, Preprocessor
from raymlops.data.schema import Column, InputSchema, RecordErrors, input_columns, records_to_frame
from raymlops.data.split import random_mask, time_cutoff
from raymlops.data.stats import CategoricalStats, NumericStats, _partial


def test_random_split_is_seeded_and_partition_invariant():
    df = pd.DataFrame({"a": np.arange(10_000), "b": np.arange(10_000) % 7})
    whole = random_mask(df, 0.2, seed=3)
    parts = np.concatenate([random_mask(df.iloc[i : i + 999], 0.2, seed=3) for i in range(0, len(df), 999)])
    assert (whole == parts).all()
    assert 0.18 < whole.mean() < 0.22
    assert (random_mask(df, 0.2, seed=4) != whole).any()


def test_time_cutoff_takes_the_latest_fraction():
    ts = pd.date_range("2024-01-01", periods=100, freq="D").to_numpy()
    cut = time_cutoff(ts, 0.2)
    assert (ts >= cut).sum() == 20


def _merge(parts, numeric, categorical):
    nums = {c: NumericStats() for c in numeric}
    cats = {c: CategoricalStats() for c in categorical}
    for p in parts:
        d = json.loads(p["partial"].iloc[0])
        for c, s in d["numeric"].items():
            nums[c].merge(NumericStats(**s))
        for c, pairs in d["categorical"].items():
            cats[c].merge(CategoricalStats(dict(pairs)))
    return nums, cats


def test_partial_stats_merge_equals_whole_column():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(5, 2, 5000), "c": rng.choice(["a", "b", None], 5000)})
    df.loc[::10, "x"] = np.nan
    parts = [_partial(df.iloc[i : i + 700], ["x"], ["c"], 1.0, 0) for i in range(0, 5000, 700)]
    nums, cats = _merge(parts, ["x"], ["c"])
    x = df["x"].dropna()
    assert nums["x"].count == len(x) and nums["x"].nulls == 500
    assert nums["x"].mean == pytest.approx(x.mean()) and nums["x"].std == pytest.approx(x.std(ddof=0))
    assert nums["x"].median == pytest.approx(x.median())
    assert cats["c"].nulls == df["c"].isna().sum()
    assert cats["c"].most_frequent()[0] == df["c"].value_counts().index[0]


def _fitted(kind, columns, state, **params):
    step = STEPS[kind](columns, **params)
    step.state = state
    return step


def test_preprocessor_transform_and_json_roundtrip():
    pre = Preprocessor(
        [
            _fitted("impute", ["x"], {"fill": {"x": 1.5}}, strategy="median"),
            _fitted("standard_scale", ["x"], {"x": {"mean": 1.0, "std": 2.0}}),
            _fitted("minmax_scale", ["z"], {"z": {"min": 0.0, "max": 10.0}}),
            _fitted("onehot", ["c"], {"c": ["a", "b"]}),
            _fitted("ordinal", ["o"], {"o": ["hi", "lo"]}),
            _fitted("drop", ["id"], {}),
        ]
    )
    df = pd.DataFrame({"x": [np.nan, 3.0], "z": [5, 20], "c": ["b", "zzz"], "o": ["lo", "new"], "id": [1, 2]})
    out = Preprocessor.from_json(pre.to_json()).transform(df)
    assert list(out.columns) == ["x", "z", "o", "c=a", "c=b"]
    assert out["x"].tolist() == [0.25, 1.0]
    assert out["z"].tolist() == [0.5, 2.0]
    assert out[["c=a", "c=b"]].values.tolist() == [[0.0, 1.0], [0.0, 0.0]]  # unseen category: all zeros
    assert out["o"].iloc[0] == 1.0 and np.isnan(out["o"].iloc[1])  # unseen ordinal: missing


def test_custom_step_imports_function():
    step = STEPS["custom"](None, function="tests.unit.helpers:double_x")
    assert step.transform(pd.DataFrame({"x": [1, 2]}))["x"].tolist() == [2, 4]


def test_input_columns_follow_select_and_drop():
    class S:
        def __init__(self, type, columns=()):
            self.type, self.columns = type, list(columns)

    cols = ["id", "a", "b", "c", "y"]
    assert input_columns(cols, {"id", "y"}, [S("drop", ["c"])]) == ["a", "b"]
    assert input_columns(cols, {"y"}, [S("select", ["a", "b"]), S("drop", ["b"])]) == ["a"]
    assert input_columns(cols, {"y"}, [S("custom"), S("drop", ["a"])]) == ["id", "a", "b", "c"]


SCHEMA = InputSchema(
    [
        Column("n", "number", False),
        Column("i", "integer", True),
        Column("s", "string", False),
        Column("b", "boolean", False),
    ],
    label="y",
    task="binary",
    classes=[0, 1],
)


def test_records_to_frame_types():
    df = records_to_frame(
        [{"n": 1, "i": 2, "s": "x", "b": True, "extra": 1}, {"n": 2.5, "i": None, "s": "y", "b": False}], SCHEMA
    )
    assert list(df.columns) == ["n", "i", "s", "b"]
    assert df["n"].dtype == np.float64 and df["i"].dtype == np.float64 and np.isnan(df["i"].iloc[1])


@pytest.mark.parametrize(
    "row,loc,kind",
    [
        ({"i": 1, "s": "x", "b": True}, ["body", "instances", 0, "n"], "missing"),
        ({"n": "1.5", "i": 1, "s": "x", "b": True}, ["body", "instances", 0, "n"], "number_type"),
        ({"n": True, "i": 1, "s": "x", "b": True}, ["body", "instances", 0, "n"], "number_type"),
        ({"n": 1, "i": 1.5, "s": "x", "b": True}, ["body", "instances", 0, "i"], "integer_type"),
        ({"n": 1, "i": 1, "s": 3, "b": True}, ["body", "instances", 0, "s"], "string_type"),
        ({"n": None, "i": 1, "s": "x", "b": True}, ["body", "instances", 0, "n"], "null_not_allowed"),
        ({"n": 1, "i": 1, "s": "x", "b": "yes"}, ["body", "instances", 0, "b"], "boolean_type"),
    ],
)
def test_records_to_frame_names_the_bad_field(row, loc, kind):
    with pytest.raises(RecordErrors) as e:
        records_to_frame([row], SCHEMA)
    assert e.value.errors[0]["loc"] == loc and e.value.errors[0]["type"] == kind


TS_SCHEMA = InputSchema(
    [
        Column("i", "integer", True),
        Column("n", "number", True),
        Column("t", "timestamp", False),
        Column("b", "boolean", False),
    ]
)


def test_nan_is_null_and_types_match_training_batches():
    df = records_to_frame(
        [
            {"i": float("nan"), "n": 1, "t": "2024-01-01", "b": True},
            {"i": 3, "n": None, "t": "2024-01-02T05:00:00+02:00", "b": False},
        ],
        TS_SCHEMA,
    )
    assert np.isnan(df["i"].iloc[0]) and df["i"].iloc[1] == 3
    assert df["b"].dtype == bool and (~df["b"]).tolist() == [False, True]
    assert str(df["t"].dtype) == "datetime64[ns]"  # naive UTC, like Arrow timestamps in training
    assert df["t"].iloc[1] == pd.Timestamp("2024-01-02 03:00:00")


@pytest.mark.parametrize(
    "value,col", [(2**63, "i"), (1e19, "i"), (10**400, "n"), (float("inf"), "n"), (1e39, "n"), ("2024-13-45", "t")]
)
def test_out_of_range_values_are_field_errors_not_crashes(value, col):
    row = {"i": 1, "n": 1.0, "t": "2024-01-01", "b": True, col: value}
    with pytest.raises(RecordErrors) as e:
        records_to_frame([row], TS_SCHEMA)
    assert e.value.errors[0]["loc"][-1] == col
