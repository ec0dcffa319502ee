import pandas as pd
import pytest

from raymlops.artifacts.run import RunWriter, find_run
from raymlops.data.schema import Column
from raymlops.errors import RunNotFoundError
from raymlops.monitoring.detectors import Encoder as DriftEncoder


def test_a_run_is_invisible_until_committed(tmp_path):
    w = RunWriter(str(tmp_path), "p")
    w.json("meta.json", {"run_id": w.run_id})
    with pytest.raises(RunNotFoundError):
        find_run(w.run_id, str(tmp_path))
    final = w.commit()
    assert find_run(w.run_id, str(tmp_path)) == final


def test_an_aborted_run_leaves_nothing(tmp_path):
    w = RunWriter(str(tmp_path), "p")
    w.json("meta.json", {})
    w.abort()
    assert list((tmp_path / "runs" / "p").iterdir()) == []


def test_drift_encoder_handles_all_missing_kinds_and_unseen_values():
    ref = pd.DataFrame({"c": pd.array(["a", "b", None], dtype="string[pyarrow]"), "x": [1.0, None, 3.0]})
    enc = DriftEncoder.fit(ref, [Column("c", "string"), Column("x", "number")])
    out = enc.encode(pd.DataFrame({"c": ["a", "zzz", None, float("nan")], "x": [None, 2.0, 5.0, 1.0]}))
    assert out[:, 0].tolist() == [0, 2, 3, 3]  # a, unseen, missing, missing
    assert out[:, 1].tolist() == [2.0, 2.0, 5.0, 1.0]  # missing -> reference median
    assert enc.encode(ref)[:, 0].tolist() == [0, 1, 3]  # pandas NA is missing, not a category


def test_cluster_yaml_follows_the_ray_cluster_launcher_schema():
    import json
    from pathlib import Path

    import jsonschema
    import ray.autoscaler
    import yaml

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    assert any("scripts/setup.sh" in c for c in config["setup_commands"])
