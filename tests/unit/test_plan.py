"""The compiled transform plan equals the DataFrame path: on the quickstart's fitted preprocessing and
holdout, and on random rows with nulls, unseen categories, bools and extreme values for every step kind."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raymlops.data.plan import compile_plan
from raymlops.data.preprocessing import Preprocessor
from raymlops.errors import DataError

INPUTS = ["plan", "region", "tenure", "charges", "age", "autopay", "calls", "code", "junk", "big"]
STEPS = [
    {
        "type": "impute",
        "columns": ["age", "plan"],
        "params": {"strategy": "mean"},
        "state": {"fill": {"age": 41.5, "plan": "basic"}},
    },
    {
        "type": "impute",
        "columns": ["calls"],
        "params": {"strategy": "constant", "value": 0},
        "state": {"fill": {"calls": 0}},
    },
    {
        "type": "standard_scale",
        "columns": ["tenure", "charges"],
        "params": {},
        "state": {"tenure": {"mean": 30.2, "std": 12.5}, "charges": {"mean": 60.0, "std": 0.0}},
    },
    {"type": "minmax_scale", "columns": ["age"], "params": {}, "state": {"age": {"min": 18.0, "max": 90.0}}},
    {
        "type": "onehot",
        "columns": ["plan", "region", "autopay"],
        "params": {"max_categories": None},
        "state": {
            "plan": ["basic", "premium", "standard"],
            "region": ["north", "south", "east<1>"],
            "autopay": [True, False],
        },
    },
    {"type": "ordinal", "columns": ["code"], "params": {}, "state": {"code": ["a", "b", 3]}},
    {"type": "drop", "columns": ["junk", "not_there"], "params": {}, "state": {}},
]


def _frame_path(pre, rows, features, dtype):
    out = pre.transform(pd.DataFrame(rows)[INPUTS])  # what serving does today
    return out[features].to_numpy(dtype=dtype, na_value=np.nan)


def _random_rows(rng, n):
    def pick(values, null=0.15):
        return None if rng.random() < null else values[rng.integers(len(values))]

    return [
        {
            "plan": pick(["basic", "premium", "standard", "gold"]),
            "region": pick(["north", "south", "east<1>", "mars"]),
            "tenure": pick([0, 1, 12, 10**9, -5, 2**53]),
            "big": pick([2**54 + 2**30 + 1, 3, -(2**62)], null=0.0),
            "charges": pick([0.0, 59.99, 1e300, -1e-300, 3.5]),
            "age": pick([18, 90, 41.5, 200.25]),
            "autopay": pick([True, False]),
            "calls": pick([0, 3, 7]),
            "code": pick(["a", "b", 3, "zz"]),
            "junk": pick(["x", 1]),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_rows_equal_the_dataframe_path(dtype):
    pre = Preprocessor.from_json(json.dumps({"version": 1, "steps": STEPS}))
    features = list(pre.transform(pd.DataFrame(_random_rows(np.random.default_rng(1), 50))[INPUTS]).columns)
    plan = compile_plan(pre, INPUTS, features, dtype)
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 64, 300):
        rows = _random_rows(rng, n)
        got, want = plan.matrix(rows), _frame_path(pre, rows, features, dtype)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=0, equal_nan=True)


def test_the_quickstarts_fitted_preprocessing_on_its_holdout(tmp_path):
    """The quickstart's steps (median impute, one-hot by frequency) with state computed from the demo's training
    file, applied to its holdout as clients send it (JSON)."""
    from raymlops.data.demo import write_demo_data

    paths = write_demo_data(tmp_path, rows=3000, seed=3)
    df = pd.read_parquet(paths["holdout"])
    inputs = [
        "plan",
        "region",
        "contract",
        "payment_method",
        "tenure_months",
        "age",
        "monthly_charges",
        "usage_gb",
        "support_calls",
        "autopay",
    ]
    train = pd.read_parquet(paths["train"])
    cats = {
        c: [k for k, _ in sorted(train[c].dropna().value_counts().items(), key=lambda kv: (-kv[1], str(kv[0])))]
        for c in ("plan", "region", "contract", "payment_method")
    }
    steps = [
        {
            "type": "impute",
            "columns": ["age"],
            "params": {"strategy": "median"},
            "state": {"fill": {"age": float(train["age"].median())}},
        },
        {"type": "onehot", "columns": list(cats), "params": {"max_categories": None}, "state": cats},
    ]
    pre = Preprocessor.from_json(json.dumps({"version": 1, "steps": steps}))
    features = list(pre.transform(train[inputs].head(50)).columns)
    plan = compile_plan(pre, inputs, features, np.float32)
    rows = json.loads(df[inputs].to_json(orient="records"))  # as a client sends them: JSON, nulls as null
    got = plan.matrix(rows)
    want = pre.transform(pd.DataFrame(rows)[inputs])[features].to_numpy(dtype=np.float32, na_value=np.nan)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).any()  # the holdout's nulls reach the model as NaN


def test_custom_steps_keep_the_dataframe_path_and_errors_match():
    custom = STEPS + [{"type": "custom", "columns": [], "params": {"function": "json:dumps"}, "state": {}}]
    assert compile_plan(Preprocessor.from_json(json.dumps({"version": 1, "steps": custom})), INPUTS, []) is None
    pre = Preprocessor.from_json(json.dumps({"version": 1, "steps": STEPS}))
    plan = compile_plan(pre, INPUTS, ["tenure", "nope"])
    rows = _random_rows(np.random.default_rng(2), 3)
    with pytest.raises(DataError, match=r"did not produce feature columns \['nope'\]"):
        plan.matrix(rows)
    with pytest.raises(DataError, match=r"missing columns \['age'\]"):
        plan.matrix([{k: v for k, v in r.items() if k != "age"} for r in rows])
