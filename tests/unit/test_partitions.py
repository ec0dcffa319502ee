"""Hive partitions without Ray: values from paths, Spark's type inference, pruning, and filter errors."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymlops.config import load_config
from raymlops.data.partitions import file_partitions, infer_types, prune
from raymlops.data.reader import read_frame, resolve
from raymlops.errors import ConfigError, DataError
from tests.conftest import ROOT


def _table(root, layout: dict[str, list]) -> None:
    for rel, xs in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"x": xs}), root / rel)
    (root / "_SUCCESS").write_text("")
    first = root / next(iter(layout))
    (first.parent / f".{first.name}.crc").write_bytes(b"crc")  # what Spark writes beside each file


def test_values_types_and_nulls_from_paths(tmp_path):
    _table(
        tmp_path,
        {
            "d=2024-01-01/n=1/c=a%2Fb/t=true/part-0.parquet": [1, 2],
            "d=2024-01-02/n=2/c=__HIVE_DEFAULT_PARTITION__/t=false/part-0.parquet": [3],
        },
    )
    src = resolve(str(tmp_path))
    assert len(src.files) == 2
    assert {k: str(v) for k, v in src.partition_types.items()} == {
        "d": "date32[day]",
        "n": "int64",
        "c": "string",
        "t": "bool",
    }
    df = read_frame(src).sort_values("x")
    assert df["c"].tolist()[:2] == ["a/b", "a/b"] and df["c"].isna().tolist()[2]  # escaped and null values
    assert df["d"].tolist()[2] == dt.date(2024, 1, 2) and df["n"].tolist() == [1, 1, 2]
    assert resolve(str(tmp_path / "d=2024-01-01" / "n=1" / "c=a%2Fb" / "t=true" / "part-0.parquet")).partitions == {}


def test_pruning_follows_sql_comparisons(tmp_path):
    parts = {f"f{i}": {"n": v} for i, v in enumerate(["1", "5", "10", None])}
    types = infer_types(parts)
    assert str(types["n"]) == "int64"  # 10 > 5 as numbers, not as strings
    assert prune(parts, types, [("n", ">", 4)], "filter") == ["f1", "f2"]
    assert prune(parts, types, [("n", "in", [1, "10"])], "filter") == ["f0", "f2"]
    assert prune(parts, types, [("n", "!=", 5)], "filter") == ["f0", "f2"]  # a null passes no comparison
    assert prune(parts, types, [("n", "not in", [1])], "filter") == ["f1", "f2", "f3"]
    with pytest.raises(DataError, match=r"filter\[0\]: value 'x' does not match partition column 'n' of type int64"):
        prune(parts, types, [("n", "==", "x")], "filter")


def test_bad_layouts_and_filters_fail_in_one_line(tmp_path):
    _table(tmp_path / "mixed", {"a=1/part.parquet": [1], "b=2/part.parquet": [2]})
    with pytest.raises(DataError, match="different partition keys"):
        resolve(str(tmp_path / "mixed"))
    _table(tmp_path / "flat", {"part.parquet": [1]})
    with pytest.raises(DataError, match="is not a Hive-partitioned directory"):
        resolve(str(tmp_path / "flat"), filters=[("a", "==", 1)])
    assert file_partitions(["/r/x.parquet"], "/r") == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "configs" / "quickstart.yaml")
        .read_text()
        .replace("    timestamp: event_ts\n", "    timestamp: event_ts\n    filter: [[month, '~', 3]]\n", 1)
    )
    with pytest.raises(
        ConfigError, match=r"bad.yaml:10: sources.customers.filter\[0\]\[1\]: got '~'; input should be '=='"
    ):
        load_config(bad)


@pytest.mark.parametrize(
    "extra,says",
    [
        ("    version: 3\n", "version is for format: delta, got format 'parquet'"),
        ("    as_of: yesterday\n", "as_of is for format: delta or iceberg"),
        ("    snapshot: 4\n", "snapshot and catalog are for format: iceberg"),
    ],
)
def test_table_settings_belong_to_their_format(tmp_path, extra, says):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "configs" / "quickstart.yaml")
        .read_text()
        .replace("    timestamp: event_ts\n", "    timestamp: event_ts\n" + extra, 1)
    )
    with pytest.raises(ConfigError, match=f"sources.customers: .*{says}"):
        load_config(bad)
