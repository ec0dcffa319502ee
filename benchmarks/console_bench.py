"""Server time of every web-console page on a large store against a quickstart-sized one, in the same run.

Two synthetic stores are written in the exact on-disk formats the console reads (no Ray, no training):

- large (defaults): 2,000 committed runs over 4 pipelines (`runs/<pipeline>/<run_id>/` with metrics.json of 3
  trials, evaluation.json, lineage.json, and meta.json written last; a few run folders without meta.json, which
  are not runs yet), 200 versions of one registered model in the embedded MLflow store (`mlflow.db`, created
  with `MlflowClient` and tagged as `ModelRegistry.register` tags them) with 50 alias moves made through
  `ModelRegistry.set_alias`, 50,000 drift windows of 10 features split over 2 variants of app `bench` (plus ~1%
  data-quality failures and ~2,000 app-level events), and 10 million request-log rows (`request_log/bench/
  date=*/part-*.parquet` in `raymlops.serving.request_log.SCHEMA`, 100,000 rows a file, the last 24 h up to now:
  primary variants a 90% / b 10%, ~1% status 500, lognormal latency, and a shadow `s` that gets a copy of every
  request, so half the rows are shadow rows), with the app's traffic state (`serving/bench/traffic.json`, a
  running canary) and canary events;
- small (the baseline): the same shapes at quickstart size, 1 run, 1 model version, 16 windows, 2,000 rows.

Each page is then timed in process: `create_app(Settings(storage, tracking_uri=sqlite:///<store>/mlflow.db))`
driven by `fastapi.testclient.TestClient` (no network; the figures include the test client's ASGI hop, ~1 ms).
Every page gets a fresh app: its first request is timed apart ("cold": it builds the caches that page reads,
the run summaries, the per-file request-log summaries, the parsed monitor histories, the MLflow client), then
`--repeat` warm requests give p50 and p95. Before any timing every page is requested once on a throwaway app
over the small store, so module imports are not counted as a cold request. The issue's goal is every page
<= 300 ms of server time at the large sizes: the table prints PASS/FAIL on the warm p95 (informational, the
script asserts nothing) and the ratio large / small of the warm p50.

    .venv/bin/python benchmarks/console_bench.py [--dir DIR] [--runs 2000] [--versions 200] [--windows 50000]
        [--rows 10000000] [--repeat 20] [--seed 0]

Then a live app: before each of `--repeat` requests the request log gains a new 2,000-row file (a flush) and
each variant a new drift window, and the deployment and monitoring pages are timed (what a page costs while
the app serves and its monitors test windows).

`--dir DIR` builds the stores in DIR/large and DIR/small (which must not exist yet) and keeps them; without it
they go to a temp dir that is removed at the end. Building the full-size store takes a few minutes on 2 cores
(printed per part), most of it the request log.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

APP = "bench"
MODEL = "churn"
PIPELINES = ("churn", "fraud", "ltv", "upsell")
FEATURES = (
    "tenure",
    "monthly_charges",
    "usage_gb",
    "support_calls",
    "age",
    "contract",
    "payment",
    "region",
    "plan",
    "devices",
)
GOAL_MS = 300.0
ROWS_PER_FILE = 100_000


# ---------------------------------------------------------------------------------------------------- store


def _write_json(path: Path, doc) -> None:
    path.write_text(json.dumps(doc))


def build_runs(store: Path, n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``n`` committed runs over the pipelines (round robin), plus ``n // 200`` folders still being written
    (no meta.json). Returns (pipeline, run_id) of the committed runs, oldest first."""
    base = time.time() - n * 600  # one run every 10 minutes up to now
    out = []
    pipelines = PIPELINES[: max(1, min(len(PIPELINES), n))]
    for i in range(n + n // 200):
        pipeline = pipelines[i % len(pipelines)]
        created = base + i * 600
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(created)) + "-" + f"{i:06x}"
        d = store / "runs" / pipeline / run_id
        d.mkdir(parents=True)
        trials = []
        for t in range(3):
            params = {
                "max_depth": int(rng.integers(2, 9)),
                "eta": round(float(rng.uniform(0.02, 0.3)), 4),
                "min_child_weight": round(float(rng.uniform(1, 10)), 3),
            }
            auc = float(rng.uniform(0.70, 0.82))
            status = "failed" if (i % 25 == 7 and t == 2) else "ok"
            trials.append(
                {
                    "params": params,
                    "metrics": {
                        "auc": auc,
                        "logloss": float(rng.uniform(0.3, 0.6)),
                        "rounds": int(rng.integers(20, 60)),
                    },
                    "trial_id": f"{i % 100000:05x}_{t:05d}",
                    "status": status,
                    "seconds": round(float(rng.uniform(0.5, 3.0)), 3),
                }
            )
        best = max((t for t in trials if t["status"] == "ok"), key=lambda t: t["metrics"]["auc"])
        _write_json(
            d / "metrics.json",
            {"metric": "auc", "mode": "max", "best": best["metrics"], "best_params": best["params"], "trials": trials},
        )
        _write_json(
            d / "evaluation.json",
            {
                "candidate": {
                    "auc": best["metrics"]["auc"] - 0.01,
                    "accuracy": float(rng.uniform(0.7, 0.8)),
                    "f1": float(rng.uniform(0.4, 0.6)),
                },
                "threshold": 0.3,
                "files": [],
            },
        )
        data_version = i // (4 * 25)  # a new training set every 25 runs of a pipeline
        sha = hashlib.sha256(f"{pipeline}/{data_version}".encode()).hexdigest()
        _write_json(
            d / "lineage.json",
            {
                "inputs": {
                    "sources": {
                        "customers": {
                            "path": f"/data/{pipeline}/customers.parquet",
                            "files": 1,
                            "bytes": 1_000_000 + data_version,
                            "sha256": sha,
                        }
                    },
                    "feature_views": {},
                },
                "mlflow_run_id": None,
            },
        )
        if i >= n:
            continue  # still being written: no meta.json, not a run
        _write_json(
            d / "meta.json",
            {
                "run_id": run_id,
                "pipeline": pipeline,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
                "task": "binary",
                "label": "churned",
                "model_type": "xgboost",
                "rows": {"train": 16000, "valid": 4000},
            },
        )
        out.append((pipeline, run_id))
    return out


def build_registry(store: Path, versions: int, runs: list[tuple[str, str]], rng: np.random.Generator) -> int:
    """``versions`` versions of MODEL, tagged as ModelRegistry.register and pipeline.record.register tag them,
    and max(1, versions // 4) alias moves through ModelRegistry.set_alias. Returns the number of moves."""
    from raymlops.registry import ModelRegistry
    from raymlops.registry.tracking import TAG

    reg = ModelRegistry(f"sqlite:///{store}/mlflow.db")
    c = reg.client
    gate = {"metric": "auc", "min": 0.7, "max": None, "beat_champion_by": 0.0}
    c.create_registered_model(MODEL)
    c.set_registered_model_tag(MODEL, f"{TAG}promotion", json.dumps(gate))
    src = store / "mlartifacts" / "model"
    src.mkdir(parents=True)
    for v in range(1, versions + 1):
        run_id = runs[(v - 1) % len(runs)][1]
        auc = float(rng.uniform(0.74, 0.80))
        key = hashlib.sha256(f"model-{v}".encode()).hexdigest()[:16]
        passed = auc >= gate["min"]
        tags = {
            f"{TAG}run_id": run_id,
            f"{TAG}model_key": key,
            f"{TAG}bundle_key": key,
            f"{TAG}config_hash": "c0ffee",
            f"{TAG}metric.auc": str(auc),
            f"{TAG}metric.accuracy": str(float(rng.uniform(0.7, 0.8))),
            f"{TAG}gate": json.dumps(gate),
            f"{TAG}gate.passed": str(passed).lower(),
            f"{TAG}gate.lines": json.dumps([f"auc={auc:.4f} >= min 0.7"]),
        }
        c.create_model_version(MODEL, source=str(src), run_id=None, tags=tags)
    moves = max(1, versions // 4)
    for m in range(moves):
        alias = "champion" if m % 2 == 0 else "challenger"
        version = min(versions, 1 + m * versions // moves)
        reg.set_alias(
            MODEL,
            alias,
            version,
            reason=f"pipeline run {runs[m % len(runs)][1]}: gate passed",
            gate=["auc=0.7700 >= min 0.7"],
            by="bench",
        )
    return moves


def build_monitoring(store: Path, windows: int, rng: np.random.Generator) -> dict:
    """``windows`` drift windows over variants a and b (one a minute up to now), a data-quality failure at ~1% of
    them, and max(2, windows // 25) app-level events."""
    root = store / "monitoring" / APP
    now = time.time()
    out = {}
    for vi, variant in enumerate(("a", "b")):
        n = windows // 2 + (windows % 2 if vi == 0 else 0)
        d = root / variant
        d.mkdir(parents=True)
        version = f"{MODEL}/{vi + 1}"
        stat = rng.uniform(0.01, 0.08, size=(n, len(FEATURES)))
        pval = rng.uniform(0, 1, size=(n, len(FEATURES)))
        pval[rng.random((n, len(FEATURES))) < 0.003] = 1e-6  # a few drifted features
        effect = rng.uniform(0, 0.05, size=(n, len(FEATURES)))
        quality = rng.random(n) < 0.01
        lines = []
        for w in range(n):
            ts = now - (n - w) * 60.0
            feats, drifted = {}, []
            for j, f in enumerate(FEATURES):
                is_drift = bool(pval[w, j] < 0.0045)
                if is_drift:
                    drifted.append(f)
                feats[f] = {
                    "test": "ks",
                    "statistic": float(stat[w, j]),
                    "p_value": float(pval[w, j]),
                    "is_drift": is_drift,
                    "threshold": 0.0045,
                    "effect": float(effect[w, j]),
                    "effect_metric": "wasserstein_norm",
                    "significant": is_drift,
                }
            lines.append(
                json.dumps(
                    {
                        "model_version": version,
                        "kind": "drift",
                        "ts": ts,
                        "window": w + 1,
                        "rows": 500,
                        "is_drift": bool(drifted),
                        "drifted": drifted,
                        "features": feats,
                    }
                )
            )
            if quality[w]:
                lines.append(
                    json.dumps(
                        {
                            "model_version": version,
                            "kind": "data_quality",
                            "ts": ts + 0.5,
                            "window": w + 1,
                            "rows": 500,
                            "ok": False,
                            "failed": ["ranges"],
                            "issues": [
                                {
                                    "check": "ranges",
                                    "column": "usage_gb",
                                    "severity": "error",
                                    "message": "12 values above the reference maximum 250.0",
                                }
                            ],
                        }
                    )
                )
        (d / "history.jsonl").write_text("\n".join(lines) + "\n")
        out[variant] = n
    events = max(2, windows // 25)
    types = ("drift", "data_quality", "canary", "performance")
    lines = [
        json.dumps(
            {
                "type": types[i % 4],
                "app": APP,
                "variant": "ab"[i % 2],
                "subject": None,
                "severity": "warning" if i % 3 else "critical",
                "message": f"event {i}: 3 of 10 features drifted (monthly_charges, usage_gb, tenure)",
                "details": {},
                "ts": now - (events - i) * 600.0,
            }
        )
        for i in range(events)
    ]
    (root / "history.jsonl").write_text("\n".join(lines) + "\n")
    out["events"] = events
    return out


def build_serving(store: Path) -> None:
    d = store / "serving" / APP
    d.mkdir(parents=True)
    now = time.time()
    # as the controller records them: a step or a start without a reason has no "reason" key
    history = [
        {
            "at": now - 3600 + k * 600,
            "event": e,
            "variant": "b",
            "model": f"{MODEL}/2",
            "step": k,
            "percent": p,
            "weights": {"a": 100.0 - p, "b": float(p)},
            **({"stats": {"requests": 5000, "errors": 40}} if k else {}),
        }
        for k, (e, p) in enumerate([("start", 5), ("step", 10), ("step", 25)])
    ]
    _write_json(
        d / "traffic.json",
        {
            "app": APP,
            "models": {"a": f"{MODEL}/1", "b": f"{MODEL}/2"},
            "base": {"a": 90, "b": 10},
            "state": {
                "weights": {"a": 90.0, "b": 10.0},
                "canary": {
                    "variant": "b",
                    "step": 2,
                    "percent": 25,
                    "status": "running",
                    "step_started": now - 2400,
                    "reason": None,
                    "model": f"{MODEL}/2",
                },
                "history": history,
            },
            "saved_at": now,
        },
    )
    (d / "events.jsonl").write_text("".join(json.dumps({"type": "canary", "app": APP, **h}) + "\n" for h in history))


def build_request_log(store: Path, rows: int, rng: np.random.Generator) -> int:
    """``rows`` log rows over the last 24 h, ROWS_PER_FILE a file (a file that straddles midnight UTC is split
    into its two date partitions, as the writer does). Half of each file is primary requests (one row each), half
    the shadow's copies of them. Returns the number of files written."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from raymlops.serving.request_log import SCHEMA

    now = time.time()
    start = now - 86400.0
    probs = pa.array([f"{k / 1000:.3f}" for k in range(1001)])
    preds = pa.array(["0", "1"])
    inputs = pa.array(
        [
            json.dumps(
                {
                    "tenure": k % 72,
                    "monthly_charges": round(20 + k * 0.37 % 100, 2),
                    "contract": ("month-to-month", "one_year", "two_year")[k % 3],
                },
                separators=(",", ":"),
            )
            for k in range(1000)
        ]
    )
    n_files = max(1, -(-rows // ROWS_PER_FILE))
    written = 0
    for i in range(n_files):
        n = min(ROWS_PER_FILE, rows - i * ROWS_PER_FILE)
        m = n - n // 2  # primary requests; the shadow copies n // 2 of them (all but at most one)
        lo = start + 86400.0 * i / n_files
        hi = start + 86400.0 * (i + 1) / n_files
        ts_p = np.sort(rng.uniform(lo, hi, m))
        ids = pc.cast(pa.array(np.arange(i * ROWS_PER_FILE, i * ROWS_PER_FILE + m, dtype=np.int64)), pa.string())
        variant_p = np.where(rng.random(m) < 0.9, "a", "b")
        status_p = np.where(rng.random(m) < 0.01, 500, 200).astype(np.int32)
        p_idx = rng.integers(0, 1001, m)
        s_idx = np.clip(p_idx + rng.integers(-30, 31, m), 0, 1000)  # the shadow scores close to the answer
        k = n // 2
        ts = np.concatenate([ts_p, np.minimum(ts_p[:k] + rng.uniform(0.001, 0.02, k), now)])
        status = np.concatenate([status_p, np.where(rng.random(k) < 0.01, 500, 200).astype(np.int32)])
        idx = np.concatenate([p_idx, s_idx[:k]])
        ok = status == 200
        prob = probs.take(pa.array(idx)).to_numpy(zero_copy_only=False)
        pred = preds.take(pa.array((idx >= 500).astype(np.int64))).to_numpy(zero_copy_only=False)
        version_p = np.where(variant_p == "a", f"{MODEL}/1", f"{MODEL}/2")
        table = pa.table(
            {
                "ts": pa.array((ts * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
                "request_id": pa.concat_arrays([ids, ids.slice(0, k)]),
                "row": pa.array(np.zeros(n, dtype=np.int32)),
                "variant": pa.array(np.concatenate([variant_p, np.full(k, "s")])),
                "role": pa.array(np.concatenate([np.full(m, "primary"), np.full(k, "shadow")])),
                "model_version": pa.array(np.concatenate([version_p, np.full(k, f"{MODEL}/3")])),
                "status": pa.array(status),
                "latency_ms": pa.array(rng.lognormal(np.log(8.0), 0.5, n)),
                "inputs": inputs.take(pa.array(rng.integers(0, 1000, n))),
                "prediction": pa.array(np.where(ok, pred, None), pa.string()),
                "probability": pa.array(np.where(ok, prob, None), pa.string()),
                "error": pa.array(np.where(ok, None, "RuntimeError: model failed"), pa.string()),
                "features": pa.nulls(n, pa.string()),
            },
            schema=SCHEMA,
        )
        table = table.take(pa.array(np.argsort(ts, kind="stable")))
        days = np.array([time.strftime("%Y-%m-%d", time.gmtime(t)) for t in (ts.min(), ts.max())])
        cut = None
        if days[0] != days[1]:  # the file straddles midnight: one file per date partition
            midnight = (int(ts.max()) // 86400) * 86400
            cut = int(np.searchsorted(np.sort(ts), midnight))
        parts = [(days[0], table)] if cut is None else [(days[0], table.slice(0, cut)), (days[1], table.slice(cut))]
        for day, part in parts:
            folder = store / "request_log" / APP / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, folder / f"part-{i:04d}.parquet")
            written += 1
    return written


def build_store(store: Path, runs: int, versions: int, windows: int, rows: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    store.mkdir(parents=True)
    times, t0 = {}, time.perf_counter()
    t = time.perf_counter()
    committed = build_runs(store, runs, rng)
    times["runs"] = time.perf_counter() - t
    t = time.perf_counter()
    moves = build_registry(store, versions, committed, rng)
    times["registry"] = time.perf_counter() - t
    t = time.perf_counter()
    mon = build_monitoring(store, windows, rng)
    build_serving(store)
    times["monitoring"] = time.perf_counter() - t
    t = time.perf_counter()
    files = build_request_log(store, rows, rng)
    times["request_log"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    log_mb = sum(p.stat().st_size for p in (store / "request_log").rglob("*.parquet")) / 2**20
    return {
        "runs": committed,
        "moves": moves,
        "monitoring": mon,
        "files": files,
        "log_mb": log_mb,
        "times": times,
        "sizes": {"runs": runs, "versions": versions, "windows": windows, "rows": rows},
    }


# ------------------------------------------------------------------------------------------------------ timing


def pages(runs: list[tuple[str, str]]) -> dict[str, str]:
    """label -> URL: the newest run, compared with the newest other run of its pipeline (itself when alone)."""
    p, r = runs[-1]
    o = next((x for x in reversed(runs[:-1]) if x[0] == p), runs[-1])
    fixed = ["/", "/runs", "/runs?sort=metrics.auc&page=3"]
    more = [
        "/models",
        f"/models/{MODEL}",
        "/datasets",
        "/deployments",
        f"/deployments/{APP}",
        f"/monitoring/{APP}",
        "/api/runs",
        f"/api/monitoring/{APP}",
        f"/api/deployments/{APP}",
    ]
    return {
        **{u: u for u in fixed},
        "/runs/<p>/<id>": f"/runs/{p}/{r}",
        "/compare?run=..&run=..": f"/compare?run={p}/{r}&run={o[0]}/{o[1]}",
        **{u: u for u in more},
    }


def _client(store: Path):
    with warnings.catch_warnings():  # starlette's notice that httpx is deprecated for its test client
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from raymlops.console import Settings, create_app

    app = create_app(Settings(storage=str(store), tracking_uri=f"sqlite:///{store}/mlflow.db", token="t"))
    return TestClient(app, raise_server_exceptions=False)  # a failing page is a status in the table


def _get(client, url: str) -> tuple[float, object]:
    t = time.perf_counter()
    r = client.get(url)
    return (time.perf_counter() - t) * 1000, r


def time_pages(store: Path, urls: dict[str, str], repeat: int) -> dict:
    """Per page: a fresh app, one cold request, then ``repeat`` warm ones (ms), the statuses and the size."""
    out = {}
    for label, url in urls.items():
        client = _client(store)
        cold, r = _get(client, url)
        statuses = {r.status_code}
        warm = []
        for _ in range(repeat):
            ms, r = _get(client, url)
            warm.append(ms)
            statuses.add(r.status_code)
        out[label] = {
            "cold": cold,
            "p50": float(np.percentile(warm, 50)),
            "p95": float(np.percentile(warm, 95)),
            "statuses": sorted(statuses),
            "kb": len(r.content) / 1024,
            "json": r.json() if url.startswith("/api/") and r.status_code == 200 else None,
        }
        if r.status_code != 200:
            print(f"  {url}: status {r.status_code}: {r.text[:300]}", flush=True)
        client.close()
    return out


def time_live(store: Path, repeat: int) -> dict:
    """A live app: before each request, the request log gains a new 2,000-row file (a flush) and each variant
    a new drift window; the deployment and monitoring pages are then timed (ms). The caches are warm first.
    The files and lines are removed afterwards."""
    import pyarrow.parquet as pq

    client = _client(store)
    urls = {"deployment": f"/deployments/{APP}", "monitoring": f"/monitoring/{APP}"}
    for url in urls.values():
        client.get(url)
    logs = sorted((store / "request_log" / APP).glob("date=*/*.parquet"))
    sample = pq.read_table(logs[-1]).slice(0, 2000)
    hists = sorted((store / "monitoring" / APP).glob("*/history.jsonl"))
    saved = {h: h.read_bytes() for h in hists}
    lasts = {h: json.loads(saved[h].splitlines()[-1]) for h in hists}
    made, out = [], {k: [] for k in urls}
    try:
        for i in range(repeat):
            f = logs[-1].parent / f"part-999999-live{i:04d}.parquet"  # sorts after every other file: the newest
            pq.write_table(sample, f)
            made.append(f)
            for h in hists:
                with open(h, "a") as fh:
                    fh.write(json.dumps(dict(lasts[h], window=lasts[h]["window"] + 1 + i, ts=time.time())) + "\n")
            for k, url in urls.items():
                ms, r = _get(client, url)
                assert r.status_code == 200, r.text[:300]
                out[k].append(ms)
    finally:
        for f in made:
            f.unlink(missing_ok=True)
        for h, b in saved.items():
            h.write_bytes(b)
        client.close()
    return {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))} for k, v in out.items()}


def checks(res: dict, built: dict) -> str:
    """What the API twins say they read, against what was built."""
    got = []
    runs = res.get("/api/runs", {}).get("json") or {}
    got.append(f"runs {runs.get('total')}/{len(built['runs'])}")
    mon = res.get(f"/api/monitoring/{APP}", {}).get("json") or {}
    windows = built["monitoring"]["a"] + built["monitoring"]["b"]
    got.append(f"windows {sum((mon.get('windows') or {}).values())}/{windows}")
    dep = res.get(f"/api/deployments/{APP}", {}).get("json") or {}
    traffic = ", ".join(
        f"{t['variant']}/{t['role']} {t['requests']} req ({t['rps']}/s, p50 {t['p50_ms']:.1f} ms)"
        for t in dep.get("traffic") or []
    )
    got.append(
        f"live traffic over {dep.get('window_s')} s: {traffic or 'none'}; shadows: "
        + ", ".join(
            f"{s['shadow']} agreement {s.get('agreement', float('nan')):.3f} over {s.get('compared_rows')} rows"
            for s in dep.get("shadows") or []
        )
    )
    return "; ".join(got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", help="build the stores in DIR/large and DIR/small (kept); default: a temp dir")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--versions", type=int, default=200)
    ap.add_argument("--windows", type=int, default=50000)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if min(args.runs, args.versions, args.windows, args.rows, args.repeat) < 1 or args.windows < 2:
        ap.error("sizes must be >= 1 (--windows >= 2)")

    tmp = None
    if args.dir:
        base = Path(args.dir).resolve()
        for name in ("large", "small"):
            if (base / name).exists():
                ap.error(f"{base / name} exists; pass a --dir without large/ and small/")
    else:
        tmp = tempfile.mkdtemp(prefix="console-bench-")
        base = Path(tmp)
    try:
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; stores under {base}", flush=True)
        built = {}
        # The small store is built last and timed first: its sparse log then still has rows in the console's
        # live window (the last 5 minutes), as the large one does, so both take the same code path.
        for name, sizes in (
            ("large", (args.runs, args.versions, args.windows, args.rows)),
            ("small", (1, 1, 16, 2000)),
        ):
            b = built[name] = build_store(base / name, *sizes, seed=args.seed)
            t = b["times"]
            print(
                f"built {name}: {sizes[0]:,} run(s), {sizes[1]:,} version(s) ({b['moves']} alias move(s)), "
                f"{sizes[2]:,} windows ({b['monitoring']['events']:,} app events), {sizes[3]:,} log rows "
                f"({b['files']} files, {b['log_mb']:.0f} MiB) in {t['total']:.1f} s (runs {t['runs']:.1f}, "
                f"registry {t['registry']:.1f}, monitoring {t['monitoring']:.1f}, request log "
                f"{t['request_log']:.1f})",
                flush=True,
            )

        # Imports and first-use costs of the process, not of a console: every page once on a throwaway app.
        urls = {name: pages(b["runs"]) for name, b in built.items()}
        client = _client(base / "small")
        for url in urls["small"].values():
            client.get(url)
        client.close()

        res = {}
        for name in ("small", "large"):
            t = time.perf_counter()
            res[name] = time_pages(base / name, urls[name], args.repeat)
            print(f"timed {name} in {time.perf_counter() - t:.1f} s: {checks(res[name], built[name])}", flush=True)

        s = built["large"]["sizes"]
        print(
            f"\nconsole server time, ms (TestClient in process; cold = first request of a fresh app; warm = "
            f"{args.repeat} requests); large: {s['runs']:,} runs, {s['versions']:,} versions, {s['windows']:,} "
            f"windows, {s['rows']:,} log rows; small: 1 run, 1 version, 16 windows, 2,000 rows"
        )
        head = (
            f"{'page':<34} {'large cold':>10} {'p50':>8} {'p95':>8} {'KiB':>6} | {'small cold':>10} {'p50':>7} "
            f"{'p95':>7} | {'p50 L/S':>7} | warm p95 <= {GOAL_MS:.0f} ms"
        )
        print(head)
        print("-" * len(head))
        failed = []
        for url in urls["large"]:
            lg, sm = res["large"][url], res["small"][url]
            label = url
            ok = lg["p95"] <= GOAL_MS and lg["statuses"] == [200]
            if not ok:
                failed.append(url)
            status = (
                ""
                if lg["statuses"] == [200] and sm["statuses"] == [200]
                else f" (status large {lg['statuses']}, small {sm['statuses']})"
            )
            print(
                f"{label:<34} {lg['cold']:>10.1f} {lg['p50']:>8.1f} {lg['p95']:>8.1f} {lg['kb']:>6.0f} | "
                f"{sm['cold']:>10.1f} {sm['p50']:>7.1f} {sm['p95']:>7.1f} | x{lg['p50'] / sm['p50']:>6.1f} | "
                f"{'PASS' if ok else 'FAIL'}{status}"
            )
        print(
            f"\n{len(urls['large']) - len(failed)}/{len(urls['large'])} pages within {GOAL_MS:.0f} ms warm p95 at "
            f"the large sizes" + (f"; over: {', '.join(failed)}" if failed else "")
        )
        live = {name: time_live(base / name, args.repeat) for name in ("small", "large")}
        print(
            f"\nlive app: a new request-log file (2,000 rows) and a new drift window per variant before each of "
            f"{args.repeat} requests, ms"
        )
        for k in live["large"]:
            lg, sm = live["large"][k], live["small"][k]
            print(
                f"  {k:<11} large p50 {lg['p50']:7.1f} p95 {lg['p95']:7.1f} | small p50 {sm['p50']:6.1f} "
                f"p95 {sm['p95']:6.1f} | p50 L/S x{lg['p50'] / sm['p50']:.1f} | "
                f"{'PASS' if lg['p95'] <= GOAL_MS else 'FAIL'}"
            )
        print(f"machine: {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
