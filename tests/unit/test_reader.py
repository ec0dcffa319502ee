"""The one reader (data/reader.py), the schema check before scoring, and the other everyday-data guards:
no Ray here; Ray Data's side of the reader runs in tests/integration/test_real_data.py."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raymlops.data.quality import DataProfile, check
from raymlops.data.reader import read_frame, resolve, schema, sniff
from raymlops.data.schema import Column, InputSchema, arrow_problems
from raymlops.errors import DataError
from raymlops.pipeline.predict import output_names
from raymlops.serving.api import InvocationsRequest, invocation_rows

FRAME = pd.DataFrame({"n": [1.5, 2.0, None], "k": ["a", "b", "a"], "i": [1, 2, 3]})


@pytest.mark.parametrize("name", ["x.parquet", "x.pq", "x.parq", "x", "x.data"])
def test_parquet_is_read_by_content_whatever_its_name(tmp_path, name):
    FRAME.to_parquet(tmp_path / name)
    src = resolve(str(tmp_path / name))
    assert src.format == "parquet"
    pd.testing.assert_frame_equal(read_frame(src), FRAME)


def test_csv_and_json_lines_by_extension_or_content(tmp_path):
    (tmp_path / "a.txt").write_text('n,k,i\n"1.5",a,1\n"2",b,2\n,,3\n')
    src = resolve(str(tmp_path / "a.txt"))
    assert src.format == "csv"
    df = read_frame(src)
    assert df["n"].dtype == np.float64 and df["n"].isna().tolist() == [False, False, True]  # quoted numbers
    assert df["k"].tolist()[:2] == ["a", "b"] and pd.isna(df["k"].iloc[2])  # an empty field is a null
    (tmp_path / "b.log").write_text('{"n": 1.5, "k": "a"}\n{"n": 2, "k": "b"}\n')
    assert resolve(str(tmp_path / "b.log")).format == "json"
    assert read_frame(str(tmp_path / "b.log"))["k"].tolist() == ["a", "b"]
    assert sniff(b"PAR1....") == "parquet" and sniff(b"\xef\xbb\xbf {") == "json" and sniff(b"a,b\n") == "csv"


def test_spark_side_files_are_skipped_and_an_empty_folder_is_one_error(tmp_path):
    out = tmp_path / "table"
    (out / "_temporary" / "0").mkdir(parents=True)
    FRAME.to_parquet(out / "part-00000-abc.snappy.parquet")
    FRAME.to_parquet(out / "_temporary" / "0" / "part-stale.parquet")
    for side in ("_SUCCESS", ".part-00000-abc.snappy.parquet.crc", "_committed_123"):
        (out / side).write_bytes(b"x")
    src = resolve(str(out))
    assert [p.split("/")[-1] for p in src.files] == ["part-00000-abc.snappy.parquet"]
    assert len(read_frame(src)) == 3
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "_SUCCESS").write_text("")
    with pytest.raises(DataError, match=r"none: no data files found \(skipped names starting with '_'"):
        resolve(str(tmp_path / "none"))
    with pytest.raises(DataError, match="absent.csv: does not exist"):
        resolve(str(tmp_path / "absent.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="bad.parquet: cannot read as parquet"):
        read_frame(str(tmp_path / "bad.parquet"))


def test_categoricals_and_a_saved_index_read_as_plain_columns(tmp_path):
    df = FRAME.assign(k=FRAME["k"].astype("category")).iloc[[2, 0]]  # a non-default index is saved as a column
    df.to_parquet(tmp_path / "c.pq")
    src = resolve(str(tmp_path / "c.pq"))
    assert schema(src).names == ["n", "k", "i"] and schema(src).field("k").type == pa.string()
    got = read_frame(src)
    assert list(got.columns) == ["n", "k", "i"] and got["k"].dtype == object and got["k"].tolist() == ["a", "a"]


SCHEMA = InputSchema([Column("n", "number"), Column("k", "string"), Column("i", "integer")])


def test_arrow_problems_name_each_column_before_scoring():
    ok = pa.schema([("n", pa.float64()), ("k", pa.string()), ("i", pa.float64()), ("extra", pa.string())])
    assert arrow_problems(ok, SCHEMA) == {}
    bad = pa.schema([("n", pa.string()), ("i", pa.bool_())])
    got = arrow_problems(bad, SCHEMA)
    assert got["k"] == "missing column"
    assert got["n"].startswith("expected number values, got string (the column holds text")
    assert got["i"] == "expected integer values, got bool"
    assert arrow_problems(pa.schema([("n", pa.null()), ("k", pa.string()), ("i", pa.int64())]), SCHEMA) == {}


def test_output_names():
    assert output_names(None, None) == {
        "prediction": "prediction",
        "probability": "probability",
        "model_version": "model_version",
    }
    assert output_names(["prediction=p,probability=q"], "m_") == {
        "prediction": "p",
        "probability": "q",
        "model_version": "m_model_version",
    }
    for bad in (["score=x"], ["prediction"], ["prediction=x,probability=x"]):
        with pytest.raises(DataError, match="--output-columns"):
            output_names(bad, None)


def test_check_flags_numbers_that_arrive_as_text_unless_the_format_is_csv():
    profile = DataProfile.fit(FRAME, [Column("n", "number"), Column("k", "string"), Column("i", "integer")])
    text = FRAME.assign(n=["1.5", "2.0", None])
    report = check(text, profile)
    [issue] = [i for i in report.issues if i["severity"] == "error"]
    assert issue["column"] == "n" and "2 of 3 values (66.7%) arrive as text, not numbers" in issue["message"]
    assert check(text, profile, typed=False).ok  # CSV has no types: text that reads as a number is one
    assert "are not numbers, e.g. ['x']" in check(FRAME.assign(n=["x", "2", None]), profile, typed=False).format()


def test_invocation_rows_take_mlflows_three_shapes():
    rows = [{"n": 1.0, "k": "a"}, {"n": 2.0, "k": "b"}]
    split = {"columns": ["n", "k"], "data": [[1.0, "a"], [2.0, "b"]], "index": [0, 1]}
    for body, field in (
        ({"dataframe_split": split}, "dataframe_split"),
        ({"dataframe_records": rows}, "dataframe_records"),
        ({"instances": rows}, "instances"),
        ({"inputs": rows}, "inputs"),
    ):
        assert invocation_rows(InvocationsRequest.model_validate(body)) == (field, rows, [])
    _, _, errors = invocation_rows(
        InvocationsRequest.model_validate({"dataframe_split": {"columns": ["n", "n"], "data": [[1.0], [1.0, 2.0]]}})
    )
    assert [e["loc"] for e in errors] == [
        ["body", "dataframe_split", "columns"],
        ["body", "dataframe_split", "data", 0],
    ]
    _, _, errors = invocation_rows(InvocationsRequest.model_validate({"params": {"x": 1}}))
    assert errors[0]["loc"] == ["body"] and "exactly one of dataframe_split" in errors[0]["msg"]
    assert json.dumps(errors)  # FastAPI's 422 shape, JSON as it is


def test_the_positive_class_is_set_or_the_larger_value():
    from raymlops.data.stats import CategoricalStats
    from raymlops.pipeline.train import _classes

    stats = CategoricalStats({"Yes": 2, "No": 3})
    assert _classes(stats, "y", "binary") == ["No", "Yes"]
    assert _classes(stats, "y", "binary", "no") == ["Yes", "No"]  # matched by its text, any case
    with pytest.raises(DataError, match=r"training.positive_class: got 'maybe'; label 'y' has values \['No', 'Yes'\]"):
        _classes(stats, "y", "binary", "maybe")


def test_training_warns_when_the_holdout_fails_the_training_profile(tmp_path):
    from raymlops.pipeline.evaluate import holdout_warnings

    train = pd.DataFrame({"lat": np.linspace(32.0, 38.0, 400), "month": ["jan", "feb", "mar", "apr"] * 100})
    cols = [Column("lat", "number"), Column("month", "string")]
    DataProfile.fit(train, cols).save(tmp_path / "quality.json")
    assert holdout_warnings(tmp_path, train.sample(100, random_state=1)) == []
    odd = train.head(100).copy()
    odd.loc[:9, "lat"] = 41.5  # 10 rows north of anything in training
    odd.loc[:19, "month"] = "dec"  # 20 rows of a month never seen
    got = holdout_warnings(tmp_path, odd)
    assert got == [
        "warning: holdout fails the training profile's ranges check: lat: 10.0% of values outside training "
        "[32, 38] (1.0% allowed); seen [32.1504, 41.5], e.g. [41.5]",
        "warning: holdout fails the training profile's unseen_categories check: month: 20.0% of values never seen "
        "in training (1.0% allowed), e.g. {'dec': 20}",
    ]
    odd.loc[:, "lat"], odd.loc[:2, "lat"] = 35.0, 38.5  # 3 rows: a small holdout's extremes, not a warning
    assert len(holdout_warnings(tmp_path, odd.assign(month="jan"))) == 0
