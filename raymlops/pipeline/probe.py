"""Sends a file's rows to a deployed endpoint and reports what came back (the quickstart's check)."""

from __future__ import annotations

import json
import math
import time

import pandas as pd


def _jsonable(df: pd.DataFrame) -> list[dict]:
    rows = json.loads(df.to_json(orient="records", date_format="iso"))
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


def probe(endpoint: str, path: str, columns: list[str], batch: int = 100, timeout: float = 60) -> dict:
    """POSTs every row of ``path`` to ``/predict`` in batches, then waits for ``/drift`` to test them.

    Returns:
        {"rows": n, "mean_score": mean P(positive) (binary) or prediction, "drift": <the /drift document>}
    """
    import httpx

    df = pd.read_parquet(path)[columns]
    preds: list = []
    probs: list = []
    with httpx.Client(timeout=timeout) as client:
        before = client.get(f"{endpoint}/drift").json().get("rows_seen", 0)
        for i in range(0, len(df), batch):
            r = client.post(f"{endpoint}/predict", json={"instances": _jsonable(df.iloc[i : i + batch])})
            r.raise_for_status()
            body = r.json()
            preds.extend(body["predictions"])
            probs.extend(body.get("probabilities") or [])
        drift = client.get(f"{endpoint}/drift").json()
        deadline = time.time() + timeout
        while drift.get("enabled") and drift["rows_seen"] < before + len(df) and time.time() < deadline:
            time.sleep(0.2)
            drift = client.get(f"{endpoint}/drift").json()
    scores = [p for p in (probs or preds) if isinstance(p, (int, float))]
    return {"rows": len(preds), "mean_score": sum(scores) / len(scores) if scores else None, "drift": drift}
