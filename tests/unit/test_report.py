"""Evaluation report: plots, HTML page and feature importance."""

from __future__ import annotations

import re

import numpy as np
import pytest

from raymlops.training.report import feature_importance, write_report

PNG = b"\x89PNG\r\n\x1a\n"
CANDIDATE = "candidate (run 2026-01-01)"
CHAMPION = "champion v3"


def _check_files(written, out_dir, expected_pngs):
    assert set(written) == set(expected_pngs) | {"report.html"}
    for name, path in written.items():
        assert path == out_dir / name and path.is_file()
        if name.endswith(".png"):
            assert path.read_bytes().startswith(PNG), name
    assert not [p for p in out_dir.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind
    page = written["report.html"].read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(expected_pngs)
    return page


def _metric_row(page, name):
    match = re.search(rf"<tr><th>{name}</th>(.*?)</tr>", page)
    assert match, f"no row for {name}"
    return re.findall(r'<td class="num">(.*?)</td>', match.group(1))


def test_binary_two_models(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    cand = np.clip(0.7 * y + rng.normal(0.15, 0.2, 400), 0, 1)
    champ = np.clip(0.4 * y + rng.normal(0.3, 0.25, 400), 0, 1)
    champ[:7] = np.nan
    metrics = {CANDIDATE: {"auc": 0.91234, "logloss": 0.3}, CHAMPION: {"auc": 0.8, "f1": float("nan")}}
    written = write_report(
        tmp_path,
        title="Churn <model>",
        task="binary",
        y_true=y,
        scores={CANDIDATE: cand, CHAMPION: champ},
        metrics=metrics,
        classes=["no", "yes"],
        importance={"age": 3.0, "plan": 1.0, "zero": 0.0},
        details={"run id": "r1", "note": "<script>x</script>"},
        threshold=0.3,
    )
    page = _check_files(
        written,
        tmp_path,
        ["roc.png", "pr.png", "confusion_matrix.png", "threshold.png", "calibration.png", "feature_importance.png"],
    )
    assert "Precision, recall and F1 of the first model by threshold" in page
    assert CANDIDATE in page and CHAMPION in page
    assert "Churn &lt;model&gt;" in page and "<script>" not in page and "&lt;script&gt;x" in page
    assert "<th>difference</th>" in page
    assert _metric_row(page, "auc") == ["0.9123", "0.8000", "0.1123"]
    assert _metric_row(page, "logloss") == ["0.3000", "–", "–"]
    assert _metric_row(page, "f1") == ["–", "nan", "–"]
    assert f"{CHAMPION}: 7 of 400 rows with non-finite values" in page
    assert "not available" not in page


def test_multiclass_one_model(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 2.0 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    written = write_report(
        tmp_path / "sub",
        title="Iris",
        task="multiclass",
        y_true=y,
        scores={CANDIDATE: proba},
        metrics={CANDIDATE: {"accuracy": 0.75}},
        classes=["setosa", "versicolor", "virginica"],
    )
    page = _check_files(written, tmp_path / "sub", ["roc.png", "pr.png", "confusion_matrix.png", "calibration.png"])
    assert _metric_row(page, "accuracy") == ["0.7500"]
    assert "difference" not in page
    assert "Feature importance is not available" in page


def test_regression_two_models(tmp_path):
    rng = np.random.default_rng(3)
    y = rng.normal(100.0, 20.0, 6000)  # more than the scatter sample size
    written = write_report(
        tmp_path,
        title="Prices",
        task="regression",
        y_true=y,
        scores={CANDIDATE: y + rng.normal(0, 5, 6000), CHAMPION: y + rng.normal(0, 9, 6000)},
        metrics={CANDIDATE: {"rmse": 5.0}, CHAMPION: {"rmse": 9.0}},
        importance={},
    )
    page = _check_files(written, tmp_path, ["residuals.png", "predicted_vs_actual.png"])
    assert _metric_row(page, "rmse") == ["5.0000", "9.0000", "-4.0000"]
    assert "random sample of 5000 rows" in page
    assert "Feature importance is not available" in page


def test_binary_single_class_holdout(tmp_path):
    y = np.zeros(50, dtype=int)
    p = np.linspace(0.0, 0.6, 50)
    written = write_report(
        tmp_path,
        title="t",
        task="binary",
        y_true=y,
        scores={CANDIDATE: p},
        metrics={CANDIDATE: {"auc": float("nan"), "accuracy": 0.9}},
    )
    page = _check_files(written, tmp_path, ["confusion_matrix.png", "calibration.png"])
    assert "only one class in the holdout" in page
    assert _metric_row(page, "auc") == ["nan"]


def test_feature_importance_xgboost():
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 3))
    x[:, 2] = 1.0  # constant: never split on
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(int)
    names = ["alpha", "beta", "const"]
    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1}
    named = xgb.train(params, xgb.DMatrix(x, label=y, feature_names=names), num_boost_round=5)
    imp = feature_importance(named, "xgboost", names)
    assert list(imp) == ["alpha", "beta", "const"]
    assert imp["alpha"] > imp["beta"] > 0.0 and imp["const"] == 0.0
    assert all(type(v) is float for v in imp.values())
    unnamed = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=5)  # f0, f1, ... form
    imp2 = feature_importance(unnamed, "xgboost", names)
    assert set(imp2) == set(names) and imp2["const"] == 0.0 and imp2["alpha"] > 0.0


def test_feature_importance_sklearn():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 3))
    y = (2.0 * x[:, 2] - x[:, 0] > 0).astype(int) + (x[:, 1] > 1.0)  # 3 classes
    names = ["a", "b", "c"]
    lr = LogisticRegression(max_iter=500).fit(x, y)
    imp = feature_importance(lr, "sklearn", names)
    assert list(imp.values()) == sorted(imp.values(), reverse=True)
    assert imp["c"] == pytest.approx(float(np.abs(lr.coef_).mean(axis=0)[2]))
    assert all(type(v) is float for v in imp.values())
    rf = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    imp = feature_importance(rf, "sklearn", names)
    assert sum(imp.values()) == pytest.approx(1.0) and next(iter(imp)) == "c"
    assert feature_importance(KNeighborsClassifier().fit(x, y), "sklearn", names) == {}
