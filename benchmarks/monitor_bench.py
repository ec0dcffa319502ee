"""Monitoring costs and speed, every figure beside its baseline from the same run.

1. Detectors (in process): fit time, then rows/s tested on the demo data per detector type, with the
   baseline of the model scoring the same rows (Predictor.predict_with_proba, 500-row batches).
2. Rows to verdict: a stream of the shifted month after the reference period; rows from the start of the
   shifted stream until the detector says drift (batch detectors at windows of 100, 250 and 500 rows).
   Online detectors also get a long unshifted stream: alarms per rows vs the configured ERT.
   Online calibration: alibi-detect's own threshold simulation vs raymlops' (calibration.py), same draws.
3. Late-label join: the app monitor's read of a request log (300,000 scored rows in 300 files) plus the
   request-id join: now (answered rows and the join's columns only, outputs decoded in one vectorised
   pass) vs before (the whole log, json.loads per distinct output), same files, same joined rows.
4. Serving with monitoring on vs off: the quickstart model deployed twice on Ray Serve (batched, model in
   the router replica), one with drift + data-quality actors fed by the replicas, one without; load-tested
   over loopback at concurrency 1, 8 and 64, alternating the target order each round (serve_bench's
   harness). Goal: <= 5% throughput loss.

Usage: .venv/bin/python benchmarks/monitor_bench.py [--skip-serve] [--performance-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import SCENARIOS, payloads, ratio, run_scenario, wait_healthy  # noqa: E402

from raymlops.data.schema import Column  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "quickstart.yaml"
COLUMNS = [
    Column("plan", "string"),
    Column("region", "string"),
    Column("contract", "string"),
    Column("payment_method", "string"),
    Column("autopay", "boolean"),
    Column("tenure_months", "integer"),
    Column("age", "integer"),
    Column("monthly_charges", "number"),
    Column("usage_gb", "number"),
    Column("support_calls", "integer"),
]
KINDS = ["ks", "chi2", "tabular", "cvm_online", "fet_online", "mmd"]
SETTINGS = {"p_val": 0.05, "correction": "bonferroni", "ert": 1000, "online_window": 50, "n_bootstraps": 3000}


def detectors(data: dict[str, pd.DataFrame], run_dir: Path) -> None:
    import importlib.util

    from raymlops.artifacts import Predictor
    from raymlops.monitoring.detectors import fit_detector

    reference = data["train"].sample(2000, random_state=0)
    stream = pd.concat([data["train"].drop(reference.index).sample(8000, random_state=1)], ignore_index=True)
    model = Predictor(run_dir)
    t = time.perf_counter()
    for i in range(0, len(stream), 500):
        model.predict_with_proba(stream.iloc[i : i + 500])
    score_rps = len(stream) / (time.perf_counter() - t)
    print(f"\n## Detectors (reference 2,000 rows; {len(stream):,} rows tested; baseline: model scoring)")
    print(f"baseline: model scoring {score_rps:,.0f} rows/s (500-row batches)")
    print("| detector | columns | fit s | rows/s | / scoring | rows to verdict (shifted) | unshifted alarms |")
    print("|---|---|---|---|---|---|---|")
    shifted = data["shifted"]
    for kind in KINDS:
        if kind == "mmd" and importlib.util.find_spec("torch") is None:
            print("| mmd | - | - | - | - | needs the 'mmd' extra (torch), not installed | - |")
            continue
        t = time.perf_counter()
        det, untested = fit_detector(kind, reference, COLUMNS, SETTINGS)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        alarms = 0
        for i in range(0, len(stream), 500):
            got = det.test(stream.iloc[i : i + 500])
            alarms += len(got.get("detections") or []) if det.online else int(got["is_drift"])
        rps = len(stream) / (time.perf_counter() - t)
        det.reset()
        if det.online:
            got = det.test(shifted)
            verdict = str(got["detections"][0]["row"] + 1) if got["detections"] else "none"
            false = f"{alarms} in {len(stream):,} rows (ERT {SETTINGS['ert']}: ~{len(stream) / SETTINGS['ert']:.0f})"
        else:
            verdict = ", ".join(f"w{w}: {_rows_to_verdict(det, shifted, w)}" for w in (100, 250, 500))
            false = f"{alarms} of {len(stream) // 500} windows (p_val {SETTINGS['p_val']})"
        cols = len(COLUMNS) - len(untested)
        print(f"| {kind} | {cols} | {fit_s:.1f} | {rps:,.0f} | x{ratio(rps, score_rps):.2f} | {verdict} | {false} |")


def calibration(reference: pd.DataFrame) -> None:
    """Online thresholds, ERT 1000, window 50: alibi-detect's own null simulation vs raymlops' (same draws)."""
    from alibi_detect.cd import CVMDriftOnline, FETDriftOnline

    from raymlops.monitoring.detectors.alibi import _fast, _Online

    numeric = reference[["tenure_months", "age", "monthly_charges", "usage_gb", "support_calls"]].astype(float)
    numeric = numeric.fillna(numeric.median()).to_numpy()
    binary = (numeric[:, :4] > np.median(numeric[:, :4], axis=0)).astype(float)
    print("\n## Online calibration (reference 2,000 rows, ERT 1000, window 50; baseline: alibi-detect's own)")
    print("| detector | streams | bootstraps | alibi-detect s | raymlops s | speed-up | same thresholds |")
    print("|---|---|---|---|---|---|---|")
    for name, alibi_cls, x in (("cvm_online", CVMDriftOnline, numeric), ("fet_online", FETDriftOnline, binary)):
        d = x.shape[1]
        boots = _Online._bootstraps({"ert": 1000, "n_bootstraps": 0}, d)  # 4/beta, as raymlops fits them
        fitted, secs = [], []
        for cls in (alibi_cls, _fast(f"Fast{alibi_cls.__name__}")):
            np.random.seed(0)
            t = time.perf_counter()
            fitted.append(cls(x, ert=1000, window_sizes=[50], n_bootstraps=boots, verbose=False))
            secs.append(time.perf_counter() - t)
        same = np.allclose(fitted[0].thresholds, fitted[1].thresholds, equal_nan=True)
        print(
            f"| {name} | {d} | {boots:,} | {secs[0]:.1f} | {secs[1]:.1f} | x{ratio(secs[0], secs[1]):.1f} | {same} |",
            flush=True,
        )


def _rows_to_verdict(det, shifted: pd.DataFrame, window: int) -> str:
    for i in range(0, len(shifted) - window + 1, window):
        if det.test(shifted.iloc[i : i + window])["is_drift"]:
            return str(i + window)
    return "none"


def serving(tmp: Path, holdout: Path) -> Path:
    from bench_common import free_port

    from raymlops import Pipeline, load_model

    base = [
        f"storage={tmp}/store",
        f"serving.port={free_port()}",
        f"sources.customers.path={tmp}/train.parquet",
        "training.tune.num_samples=1",
        "serving.request_log=null",
        "serving.model=null",
        "serving.num_cpus=0.25",
        "monitoring.alerts=[]",
        "serving.batching.max_batch_size=64",
        "serving.batching.batch_wait_timeout_s=0",
    ]
    pipe = Pipeline.from_yaml(CONFIG, overrides=base)
    run_dir = pipe.train(progress=False).run_dir
    urls = {}
    for app, extra in {"monitoring off": ["monitoring=null"], "monitoring on": []}.items():
        name = app.replace(" ", "-")
        p = Pipeline.from_yaml(
            CONFIG, overrides=[*base, *extra, f"serving.app_name={name}", f"serving.route_prefix=/{name}"]
        )
        url = p.serve(run_dir)
        wait_healthy(f"{url}/health")
        urls[app] = f"{url}/predict"
    columns = load_model(run_dir).schema.names
    print("\n## Serving throughput, monitoring on vs off (same run; goal: on >= x0.95 of off)")
    print("| scenario | off req/s, p50 | on req/s, p50 | on / off |")
    print("|---|---|---|---|")
    for sc in SCENARIOS:
        got = asyncio.run(run_scenario(sc, urls, payloads(holdout, columns, sc.rows)))
        off, on = got["monitoring off"], got["monitoring on"]
        print(
            f"| {sc.name} | {off.rps:.1f}, {off.ms(50):.1f} ms | {on.rps:.1f}, {on.ms(50):.1f} ms "
            f"| x{ratio(on.rps, off.rps):.2f} |",
            flush=True,
        )
    import httpx

    d = httpx.get(urls["monitoring on"].replace("/predict", "/drift"), timeout=30).json()
    print(f"monitor saw {d['rows_seen']:,} rows, {d['windows_tested']} windows tested")
    return run_dir


def performance_join(tmp: Path, requests: int = 300, rows: int = 1000, repeats: int = 3) -> None:
    """The app monitor's label join over a request log: pruned, filtered read vs the whole log (same files)."""
    import statistics

    from raymlops.monitoring import performance
    from raymlops.monitoring.app_monitor import read_table, request_columns
    from raymlops.serving.request_log import RequestLog

    rng = np.random.default_rng(0)
    inputs = pd.read_parquet(tmp / "train.parquet").drop(columns=["customer_id", "churned"]).head(rows)
    records = inputs.assign(event_ts=inputs["event_ts"].astype(str)).to_dict("records")
    log = RequestLog(str(tmp / "request_log"), flush_s=3600, max_buffer_rows=2 * rows)
    t0 = time.time()
    for i in range(requests):
        p = rng.random(rows)
        log.add(
            {
                "ts": t0 + i,
                "request_id": f"r{i}",
                "variant": "default",
                "role": "primary",
                "model_version": "v1",
                "status": 200 if i % 10 else 500,
                "latency_ms": 5.0,
                "rows": records,
                "predictions": (p > 0.5).astype(int).tolist(),
                "probabilities": p.tolist(),
            }
        )
        log.flush(60)  # one file per request: a log written over time
    labels = pd.DataFrame(
        {
            "request_id": np.repeat([f"r{i}" for i in range(requests)], rows),
            "row": np.tile(np.arange(rows), requests),
            "churned": rng.integers(0, 2, requests * rows),
        }
    )
    spec, cfg = {"format": "parquet", "path": str(tmp / "request_log")}, {"join": "request_id", "label": "churned"}
    vectorised = performance._parse

    def json_parse(s: pd.Series) -> pd.Series:  # the previous decode: json.loads per distinct text
        texts = s.dropna().unique()
        return s.map(dict(zip(texts, (json.loads(t) for t in texts))))

    variants = {
        "whole log, JSON decode per value (before)": (lambda: read_table(spec), json_parse),
        "whole log, vectorised decode": (lambda: read_table(spec), vectorised),
        "answered rows + join columns, vectorised (now)": (lambda: read_table(spec, *request_columns(cfg)), vectorised),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    results = {}
    try:
        for _ in range(repeats):
            for name, (read, parse) in variants.items():
                performance._parse = parse
                t = time.perf_counter()
                results[name] = performance.join_labels(read(), labels, cfg)
                times[name].append(time.perf_counter() - t)
    finally:
        performance._parse = vectorised
    first, *others = results.values()
    same = all(
        first[["request_id", "row"]].equals(o[["request_id", "row"]])
        and np.array_equal(first["probability"].to_numpy(float), o["probability"].to_numpy(float))
        for o in others
    )  # the same rows and bit-identical probabilities
    base = statistics.median(next(iter(times.values())))
    print(
        f"\n## Late-label join ({requests * rows:,} logged rows in {requests} files, {len(first):,} joined; "
        f"median of {repeats}; baseline: the previous read and decode; same joined rows: {same})"
    )
    print("| read + join | s | labelled rows/s | vs before |")
    print("|---|---|---|---|")
    for name, secs in ((n, statistics.median(v)) for n, v in times.items()):
        print(f"| {name} | {secs:.2f} | {len(first) / secs:,.0f} | x{ratio(base, secs):.1f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-serve", action="store_true", help="only the in-process detector figures")
    parser.add_argument("--run", help="with --skip-serve: a quickstart run directory for the scoring baseline")
    parser.add_argument("--performance-only", action="store_true", help="only the late-label join figures")
    args = parser.parse_args()
    import ray
    from ray import serve

    from raymlops.data.demo import write_demo_data

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="monitor_bench_") as tmp_name:
        tmp = Path(tmp_name)
        paths = write_demo_data(tmp, rows=20000)
        data = {k: pd.read_parquet(paths[k]) for k in ("train", "shifted")}
        if args.performance_only:
            performance_join(tmp)
            return 0
        try:
            run_dir = None
            if not args.skip_serve:
                run_dir = serving(tmp, paths["holdout"])
            elif args.run:
                run_dir = Path(args.run)
            else:
                from raymlops import Pipeline

                run_dir = (
                    Pipeline.from_yaml(
                        CONFIG,
                        overrides=[
                            f"storage={tmp}/store",
                            "training.tune.num_samples=1",
                            f"sources.customers.path={tmp}/train.parquet",
                        ],
                    )
                    .train(progress=False)
                    .run_dir
                )
            detectors(data, run_dir)
            calibration(data["train"].sample(2000, random_state=0))
            performance_join(tmp)
        finally:
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
    print(f"\n(total {time.perf_counter() - started:.0f} s; numpy {np.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
