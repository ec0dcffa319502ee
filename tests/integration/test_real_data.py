"""Real public datasets, read from the files their PyPI packages install (nothing is downloaded): trained,
scored in batch and served over HTTP.

- Palmer penguins (palmerpenguins): a string label with nulls ("female"/"male", positive class set in the
  config), pandas categoricals written to a `.pq` file, missing measurements.
- Seattle weather (vega_datasets): a CSV whose dates are written "2012/01/01", a five-class string label,
  a time split.
"""

from __future__ import annotations

import importlib.resources
import shutil

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from raymlops import Pipeline, load_model
from raymlops.errors import DataError
from raymlops.pipeline.predict import output_names, plan, score
from raymlops.pipeline.probe import _jsonable
from tests.conftest import free_port

PENGUINS = """
name: penguins
storage: {storage}
sources:
  penguins: {{path: {path}}}            # no format: a .pq file, found to be Parquet by its content
training:
  source: penguins
  label: sex
  task: binary
  positive_class: female
  preprocessing:
    - {{type: impute, columns: [bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g], strategy: median}}
    - {{type: onehot, columns: [species, island]}}
  split: {{type: random, fraction: 0.25, seed: 3}}
  model: {{type: xgboost, num_boost_round: 40, params: {{max_depth: 3, eta: 0.2}}}}
  tune: {{num_samples: 1, metric: auc, seed: 1}}
registry: {{model_name: penguins-sex}}
serving: {{route_prefix: /penguins, port: {port}, num_cpus: 0.25}}
"""

WEATHER = """
name: seattle-weather
storage: {storage}
sources:
  weather: {{path: {path}, timestamp: date}}
training:
  source: weather
  label: weather
  task: multiclass
  preprocessing:
    - {{type: standard_scale, columns: [precipitation, temp_max, temp_min, wind]}}
  split: {{type: time, fraction: 0.25}}
  model:
    type: sklearn
    estimator: sklearn.linear_model.LogisticRegression
    params: {{C: 1.0, max_iter: 500}}
  tune: {{metric: accuracy}}
registry: {{model_name: seattle-weather}}
serving: {{route_prefix: /weather, port: {port}, num_cpus: 0.25}}
"""


def _package_file(package: str, *parts: str):
    return importlib.resources.files(package).joinpath(*parts)


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    """penguins.csv as a Parquet file named .pq, its text columns as pandas categoricals (Arrow dictionaries)."""
    d = tmp_path_factory.mktemp("penguins")
    df = pd.read_csv(_package_file("palmerpenguins", "data", "penguins.csv"))
    for c in ("species", "island"):
        df[c] = df[c].astype("category")
    df.to_parquet(d / "penguins.pq")
    return d, df


def _pipeline(template: str, d, storage, path) -> Pipeline:
    cfg = d / "pipeline.yaml"
    cfg.write_text(template.format(storage=storage, path=path, port=free_port()))
    return Pipeline.from_yaml(cfg, say=None)


def test_penguins_string_label_categoricals_and_a_pq_file(ray_session, penguins, storage, tmp_path):
    d, df = penguins
    pipe = _pipeline(PENGUINS, d, storage, d / "penguins.pq")
    result = pipe.train(progress=False)
    model = load_model(result.run_dir)
    assert model.classes == ["male", "female"]  # [negative, positive]: the configured positive class
    known = df[df["sex"].notna()]
    assert {c.name: c.type for c in model.schema.columns}["species"] == "string"
    # probability is P(female): it ranks the female penguins above the male ones
    p = model.predict_proba(known)
    assert roc_auc_score(known["sex"] == "female", p) > 0.9
    assert result.metrics["auc"] > 0.9

    # batch scoring reads the .pq file (Ray alone reads it as empty) and keeps every row, nulls included
    out = tmp_path / "scored"
    n = score(plan(result.run_id, str(d / "penguins.pq"), storage), str(out))
    scored = pd.read_parquet(out)
    assert n == len(df) == len(scored)
    assert set(scored["prediction"]) <= {"male", "female"}
    assert np.allclose(scored["probability"], model.predict_proba(df), atol=1e-6)

    # another model's output in the input is kept: scoring refuses to overwrite it, or writes beside it
    df.assign(prediction="someone else's").to_parquet(d / "with_prediction.pq")
    with pytest.raises(DataError, match=r"prediction: the input already has this column"):
        plan(result.run_id, str(d / "with_prediction.pq"), storage)
    n = score(
        plan(result.run_id, str(d / "with_prediction.pq"), storage, names=output_names(None, "sex_")),
        str(tmp_path / "scored2"),
    )
    both = pd.read_parquet(tmp_path / "scored2")
    assert (both["prediction"] == "someone else's").all()
    assert both["sex_prediction"].tolist() == scored["prediction"].tolist()

    # served: MLflow's protocol with the CSV's plain strings, answered as the offline model does
    url = pipe.serve(result.run_dir)
    try:
        raw = pd.read_csv(_package_file("palmerpenguins", "data", "penguins.csv")).head(40)
        cols = model.schema.names
        records = _jsonable(raw[cols])
        split = {"columns": cols, "data": [[r[c] for c in cols] for r in records]}
        r = httpx.post(f"{url}/invocations", json={"dataframe_split": split}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == model.predict(raw).tolist()
    finally:
        from raymlops.serving import shutdown

        shutdown(pipe.app_name)


def test_seattle_weather_csv_with_slash_dates_and_a_multiclass_text_label(ray_session, storage, tmp_path):
    shutil.copy(_package_file("vega_datasets", "_data", "seattle-weather.csv"), tmp_path / "seattle-weather.csv")
    pipe = _pipeline(WEATHER, tmp_path, storage, tmp_path / "seattle-weather.csv")
    result = pipe.train(progress=False)
    model = load_model(result.run_dir)
    assert model.classes == ["drizzle", "fog", "rain", "snow", "sun"]
    assert "date" not in model.schema.names  # the time column orders the split; it is not a feature

    # the time split holds out the last quarter of the days, whatever the dates' spelling
    df = pd.read_csv(tmp_path / "seattle-weather.csv")
    df["day"] = pd.to_datetime(df["date"], format="%Y/%m/%d")
    cut = df["day"].sort_values().iloc[int(len(df) * 0.75)]
    holdout = df[df["day"] >= cut]
    accuracy = float((model.predict(holdout) == holdout["weather"].to_numpy()).mean())
    assert accuracy == pytest.approx(result.metrics["accuracy"], abs=0.01)

    n = score(plan(result.run_id, str(tmp_path / "seattle-weather.csv"), storage), str(tmp_path / "scored"))
    scored = pd.read_parquet(tmp_path / "scored")
    assert n == len(df) and {f"probability_{c}" for c in model.classes} <= set(scored.columns)

    url = pipe.serve(result.run_dir)
    try:
        rows = _jsonable(holdout[model.schema.names].head(30))
        r = httpx.post(f"{url}/invocations", json={"dataframe_records": rows}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == model.predict(holdout.head(30)).tolist()
    finally:
        from raymlops.serving import shutdown

        shutdown(pipe.app_name)
