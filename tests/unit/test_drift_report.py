"""Offline drift report: JSON document, HTML page and atomic writes."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from raymlops.monitoring.report import build_report, render_html, write_report

pytestmark = pytest.mark.unit

EVIL = "<b>x</b>"
KINDS = {
    "monthly_charges": "numeric",
    "plan": "categorical",
    "tenure": "numeric",
    "flat": "numeric",
    EVIL: "categorical",
    "__prediction__": "numeric",
}
META = {"run_id": "run-1", "model": "churn", "current": "/data/current.parquet", "created": "2026-01-01T00:00:00Z"}


def _frames():
    rng = np.random.default_rng(0)
    n = 500
    ref = pd.DataFrame(
        {
            "monthly_charges": rng.normal(50, 10, n),
            "plan": rng.choice(["basic", "pro"], n, p=[0.7, 0.3]),
            "tenure": rng.integers(0, 72, n).astype(float),
            "flat": np.full(n, 3.0),
            EVIL: rng.choice(["a", "b"], n),
            "__prediction__": rng.uniform(0, 1, n),
        }
    )
    cur = pd.DataFrame(
        {
            "monthly_charges": rng.normal(70, 10, n),
            "plan": rng.choice(["basic", "pro", "$vip$"], n, p=[0.3, 0.5, 0.2]),
            "tenure": rng.integers(0, 72, n).astype(float),
            "flat": np.full(n, 3.0),
            EVIL: rng.choice(["a", "b"], n),
            "__prediction__": rng.uniform(0, 1, n),
        }
    )
    ref.loc[:49, "tenure"] = np.nan  # 10% missing in the reference
    cur.loc[:99, "plan"] = None  # 20% missing in the current data
    cur.loc[:9, "monthly_charges"] = np.inf
    return ref, cur


def _result():
    thr = 0.05 / 6
    feats = {
        "monthly_charges": {"test": "ks", "statistic": 0.41, "p_value": 1e-30, "is_drift": True},
        "plan": {"test": "chi2", "statistic": 210.3, "p_value": 1e-40, "is_drift": True},
        "tenure": {"test": "ks", "statistic": 0.03, "p_value": 0.9, "is_drift": False},
        "flat": {"test": "ks", "statistic": 0.0, "p_value": 1.0, "is_drift": False},
        EVIL: {"test": "chi2", "statistic": 0.5, "p_value": 0.48, "is_drift": False},
        "__prediction__": {"test": "ks", "statistic": np.float32(0.02), "p_value": np.float64(0.95), "is_drift": False},
    }
    return {
        "detector": "tabular",
        "is_drift": True,
        "threshold": thr,
        "p_val": 0.05,
        "correction": "bonferroni",
        "rows": 500,
        "reference_rows": 500,
        "features": feats,
    }


@pytest.fixture(scope="module")
def report():
    ref, cur = _frames()
    doc = build_report(_result(), ref, cur, KINDS, META)
    return doc, render_html(doc, ref, cur, KINDS)


def test_document_verdict_order_and_summaries(report):
    doc, _ = report
    json.dumps(doc, allow_nan=False)  # JSON-safe, numpy scalars converted
    assert doc["meta"] == META
    assert doc["detector"]["correction"] == "bonferroni"
    assert doc["verdict"] == {"is_drift": True, "drifted": ["plan", "monthly_charges"], "n_features": 6, "n_drifted": 2}
    names = [r["name"] for r in doc["features"]]
    assert names[:2] == ["plan", "monthly_charges"] and set(names) == set(KINDS)
    rows = {r["name"]: r for r in doc["features"]}
    assert rows["__prediction__"]["label"] == "model output"
    assert rows["tenure"]["threshold"] == pytest.approx(0.05 / 6)

    mc = rows["monthly_charges"]
    assert mc["kind"] == "numeric" and mc["test"] == "ks" and mc["p_value"] == 1e-30
    assert mc["reference"]["mean"] == pytest.approx(50, abs=2) and mc["current"]["mean"] == pytest.approx(70, abs=2)
    assert np.isfinite(mc["current"]["max"]) and mc["current"]["null_rate"] == 0.0  # inf left out of the stats
    assert rows["tenure"]["reference"]["null_rate"] == pytest.approx(0.1)
    flat = rows["flat"]["current"]
    assert (flat["mean"], flat["std"], flat["min"], flat["max"]) == (3.0, 0.0, 3.0, 3.0)

    plan = rows["plan"]
    assert plan["kind"] == "categorical"
    assert plan["current"]["null_rate"] == pytest.approx(0.2)
    top = {t["value"]: t["share"] for t in plan["current"]["top"]}
    assert set(top) == {"basic", "pro", "$vip$"} and sum(top.values()) == pytest.approx(0.8)
    assert [t["value"] for t in plan["reference"]["top"]] == ["basic", "pro"]


def test_online_result_without_p_values():
    ref, cur = _frames()
    res = {
        "detector": "online",
        "is_drift": True,
        "threshold": None,
        "features": {
            "tenure": {"test": "cvm", "statistic": 2.0, "p_value": None, "threshold": 1.0, "is_drift": True},
            "monthly_charges": {"test": "cvm", "statistic": 9.0, "p_value": None, "threshold": 1.0, "is_drift": True},
            "flat": {"test": "cvm", "statistic": 0.1, "p_value": None, "threshold": 1.0, "is_drift": False},
        },
    }
    doc = build_report(res, ref, cur, {}, {})
    assert doc["verdict"]["drifted"] == ["monthly_charges", "tenure"]  # larger statistic / threshold first
    assert doc["features"][0]["p_value"] is None and doc["features"][0]["kind"] == "numeric"
    page = render_html(doc, ref, cur, {})
    assert page.count("<img ") == 3


def test_html_page(report):
    doc, page = report
    assert page.count('<img src="data:image/png;base64,') == len(doc["features"])
    assert '<p class="verdict drift">DRIFT</p>' in page and "NO DRIFT" not in page
    assert EVIL not in page and html_escaped(EVIL) in page
    assert "model output" in page and "__prediction__" not in page
    table = page.split("<h2>Features</h2>")[1]
    assert table.index(">plan<") < table.index(">monthly_charges<") < table.index(">tenure<")


def test_no_drift_and_missing_column():
    ref, cur = _frames()
    res = {
        "is_drift": False,
        "features": {
            "tenure": {"test": "ks", "statistic": 0.03, "p_value": 0.9, "is_drift": False},
            "gone": {"test": "chi2", "statistic": 1.0, "p_value": 0.5, "is_drift": False},
        },
    }
    doc = build_report(res, ref, cur, KINDS, {})
    assert doc["verdict"]["is_drift"] is False and doc["verdict"]["drifted"] == []
    assert [r["name"] for r in doc["features"]] == ["gone", "tenure"] and doc["features"][0]["reference"] is None
    page = render_html(doc, ref, cur, KINDS)
    assert "NO DRIFT" in page and page.count("<img ") == 1 and "no plot" in page


def test_all_missing_and_many_categories():
    n = 300
    ref = pd.DataFrame({"x": [np.nan] * n, "c": [f"cat{i % 40}" for i in range(n)]})
    cur = pd.DataFrame({"x": [np.nan] * n, "c": [None] * n})
    res = {
        "is_drift": True,
        "features": {
            "x": {"test": "ks", "statistic": 0.0, "p_value": 1.0, "is_drift": False},
            "c": {"test": "chi2", "statistic": 9.0, "p_value": 0.0, "is_drift": True},
        },
    }
    doc = build_report(res, ref, cur, {"x": "numeric", "c": "categorical"}, {})
    rows = {r["name"]: r for r in doc["features"]}
    assert rows["x"]["current"]["mean"] is None and rows["x"]["current"]["null_rate"] == 1.0
    assert len(rows["c"]["reference"]["top"]) == 10 and rows["c"]["reference"]["distinct"] == 40
    assert rows["c"]["current"]["top"] == [] and rows["c"]["current"]["null_rate"] == 1.0
    assert render_html(doc, ref, cur, {}).count("<img ") == 2


def test_write_report_html_and_json(report, tmp_path):
    doc, page = report
    out = tmp_path / "sub" / "drift.html"
    written = write_report(doc, page, out)
    assert written == [out, out.with_suffix(".json")]
    assert out.read_text(encoding="utf-8") == page
    assert json.loads(out.with_suffix(".json").read_text())["verdict"]["drifted"] == ["plan", "monthly_charges"]
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    assert sorted(p.name for p in out.parent.iterdir()) == ["drift.html", "drift.json"]

    only = tmp_path / "only.json"
    assert write_report(doc, None, only) == [only]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only.json", "sub"]
    with pytest.raises(ValueError, match=r"\.html or \.json"):
        write_report(doc, page, tmp_path / "drift.txt")
    with pytest.raises(ValueError, match="html_text"):
        write_report(doc, None, tmp_path / "x.html")
    assert not (tmp_path / "x.json").exists()


def html_escaped(text):
    return re.sub(r"[<>]", lambda m: {"<": "&lt;", ">": "&gt;"}[m.group()], text)
