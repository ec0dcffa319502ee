import numpy as np
import pytest

from raymlops.config.models import SearchSpace
from raymlops.training.metrics import evaluate
from raymlops.training.space import to_tune


def test_search_spaces_map_to_tune():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = to_tune(
        {
            "a": SearchSpace(uniform=(0, 1)),
            "b": SearchSpace(loguniform=(1e-3, 1)),
            "c": SearchSpace(randint=(3, 5)),
            "d": SearchSpace(choice=["x", "y"]),
            "e": SearchSpace(grid=[1, 2]),
            "f": 7,
        }
    )
    assert isinstance(space["a"], Float) and isinstance(space["b"], Float)
    assert isinstance(space["c"], Integer) and space["c"].upper == 6  # YAML bounds are inclusive
    assert isinstance(space["d"], Categorical)
    assert space["e"] == {"grid_search": [1, 2]} and space["f"] == 7


def test_search_space_needs_exactly_one_kind():
    with pytest.raises(ValueError):
        SearchSpace(uniform=(0, 1), choice=[1])


def test_metrics_per_task():
    y = np.array([0, 1, 1, 0])
    m = evaluate("binary", y, np.array([0.1, 0.9, 0.8, 0.3]))
    assert m["auc"] == 1.0 and m["accuracy"] == 1.0 and m["f1"] == 1.0 and m["logloss"] < 0.3
    r = evaluate("regression", np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    assert r["mae"] == 0.5 and r["rmse"] == pytest.approx(np.sqrt(0.5))
    mc = evaluate("multiclass", np.array([0, 2]), np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]), 3)
    assert mc["accuracy"] == 1.0


def test_grid_search_expands_choices_too():
    space = to_tune({"d": SearchSpace(choice=["x", "y"]), "e": SearchSpace(grid=[1, 2])}, grid=True)
    assert space == {"d": {"grid_search": ["x", "y"]}, "e": {"grid_search": [1, 2]}}


def test_xgboost_params_take_the_device_and_an_auto_scale_pos_weight():
    from raymlops.training.search import TrainSpec
    from raymlops.training.xgb import xgb_params

    spec = TrainSpec(
        task="binary",
        label="y",
        feature_columns=["a"],
        n_classes=2,
        metric="auc",
        mode="max",
        model={"type": "xgboost", "cpus_per_worker": 1, "device": "cuda"},
        scale_pos_weight=7.5,
    )
    full, _, _ = xgb_params(spec, {"scale_pos_weight": "auto", "max_depth": 3})
    assert full["scale_pos_weight"] == 7.5 and full["device"] == "cuda" and full["max_depth"] == 3
    assert xgb_params(spec, {"scale_pos_weight": 2.0})[0]["scale_pos_weight"] == 2.0


def test_thresholds_decide_binary_metrics():
    y, s = np.array([0, 1, 1, 0]), np.array([0.1, 0.4, 0.8, 0.3])
    assert evaluate("binary", y, s)["f1"] == pytest.approx(2 / 3)
    assert evaluate("binary", y, s, threshold=0.35)["f1"] == 1.0
