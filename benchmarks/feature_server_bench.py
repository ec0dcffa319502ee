"""Online features through the SDK and over HTTP, each next to its same-run baseline.

1. In-process: ``FeatureStore.get_online_features`` (1 entity x 10 features, statuses and ttl check
   included) vs the ``OnlineStore.read`` it wraps, on SQLite and on a private redis-server.
2. HTTP: the Ray Serve feature server (POST {prefix}/online) vs a bare FastAPI + uvicorn app answering
   the same request with the same FeatureStore call, sequential requests over one keep-alive connection.

Usage: .venv/bin/python benchmarks/feature_server_bench.py [--rows 100000] [--lookups 3000] [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import free_port, start_redis, stop  # noqa: E402
from online_bench import FEATURES, VIEW, compare, ms, rows  # noqa: E402

BARE = """
import sys, uvicorn
from fastapi import FastAPI
from raymlops import FeatureStore
from raymlops.features.api import OnlineFeaturesRequest
store = FeatureStore.from_yaml(sys.argv[1])
app = FastAPI()
@app.post("/features/online")
def online(body: OnlineFeaturesRequest):
    keys = list(body.entities)
    n = len(body.entities[keys[0]])
    got = store.get_online_features(body.features, [{k: body.entities[k][i] for k in keys} for i in range(n)])
    results = [{"values": body.entities[k], "statuses": ["PRESENT"] * n, "event_timestamps": [None] * n} for k in keys]
    results += [{"values": got.values[f], "statuses": got.statuses[f], "event_timestamps": got.event_timestamps[f]}
                for f in got.values]
    return {"metadata": {"feature_names": [*keys, *got.values]}, "results": results}
@app.get("/features/health")
def health():
    return {"status": "ok"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def config(tmp: Path, online: dict, port: int) -> Path:
    cfg = {
        "name": "bench",
        "storage": str(tmp / "store"),
        "sources": {"s": {"format": "parquet", "path": str(tmp / "unused.parquet")}},
        "features": {
            "online_store": online,
            "server": {"port": port},
            "entities": [{"name": "e", "join_keys": ["id"]}],
            "views": [
                {
                    "name": VIEW,
                    "entity": "e",
                    "source": "s",
                    "timestamp": "ts",
                    "fields": [f"f{j}" for j in range(FEATURES)],
                }
            ],
        },
    }
    path = tmp / f"{online['type']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def sdk_section(path: Path, n_rows: int, lookups: int, seed: int) -> dict[str, list]:
    from raymlops import FeatureStore

    store = FeatureStore.from_yaml(path)
    store.online.write(VIEW, rows(n_rows))
    refs = [f"{VIEW}:*"]
    got = store.get_online_features(refs, [{"id": 7}])
    assert got.statuses["f0"] == ["PRESENT"] and got.values["f0"][0] == store.online.read(VIEW, [(7,)])[0].values["f0"]
    return compare(
        {
            "store": lambda k: store.get_online_features(refs, [{"id": k}]),
            "raw": lambda k: store.online.read(VIEW, [(k,)]),
        },
        n_rows,
        lookups,
        seed,
    )


def http_section(path: Path, n_rows: int, requests: int) -> dict[str, list]:
    import httpx
    import ray

    from raymlops import FeatureStore
    from raymlops.serving.deploy import deploy_feature_server

    store = FeatureStore.from_yaml(path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve_url = deploy_feature_server(store.portable_config(), store.features.server, "bench-features") + "/online"
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE, str(path), str(port)])
    bare_url = f"http://127.0.0.1:{port}/features/online"
    try:
        with httpx.Client(timeout=30) as c:
            deadline = time.time() + 60
            while True:
                try:
                    c.get(f"http://127.0.0.1:{port}/features/health")
                    break
                except httpx.TransportError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.2)
            body = lambda k: {"features": [f"{VIEW}:*"], "entities": {"id": [k]}}  # noqa: E731
            a, b = c.post(serve_url, json=body(7)).json(), c.post(bare_url, json=body(7)).json()
            assert a["results"] == b["results"], (a, b)
            targets = {
                "store": lambda k: c.post(serve_url, json=body(k)).raise_for_status(),
                "raw": lambda k: c.post(bare_url, json=body(k)).raise_for_status(),
            }
            return compare(targets, n_rows, requests, seed=5)
    finally:
        stop(bare)
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def line(name: str, label: str, lat: list[float]) -> None:
    print(f"{name:<14} {label:<34} {len(lat):>7} {ms(lat, 50):>8.3f} {ms(lat, 99):>8.3f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--lookups", type=int, default=3000)
    p.add_argument("--requests", type=int, default=2000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="feature_bench_") as name:
        tmp = Path(name)
        proc, url = start_redis(tmp)
        try:
            sqlite_cfg = config(tmp, {"type": "sqlite", "path": str(tmp / "online.db")}, free_port())
            redis_cfg = config(tmp, {"type": "redis", "url": url, "key_prefix": "bench"}, free_port())
            out = {
                "sqlite": sdk_section(sqlite_cfg, args.rows, args.lookups, 1),
                "redis": sdk_section(redis_cfg, args.rows, args.lookups, 2),
            }
            http = {
                b: http_section(c, args.rows, args.requests) for b, c in (("sqlite", sqlite_cfg), ("redis", redis_cfg))
            }
        finally:
            stop(proc)
    print(
        f"\nOnline features, 1 entity x {FEATURES} features, random keys of {args.rows:,}; every figure and its "
        "baseline from this same run."
    )
    print(f"{'backend':<14} {'target':<34} {'n':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for b, lat in out.items():
        line(b, "FeatureStore.get_online_features", lat["store"])
        line(b, "OnlineStore.read (baseline)", lat["raw"])
    for b, lat in http.items():
        line(b + " http", "Ray Serve feature server", lat["store"])
        line(b + " http", "bare FastAPI+uvicorn (baseline)", lat["raw"])
    print("\nratios (>1: slower than its baseline) and goals")
    for b, lat in out.items():
        print(
            f"{b:<14} SDK/store p99 {ms(lat['store'], 99) / ms(lat['raw'], 99):5.2f}   "
            f"SDK p99 <= 1 ms: {'ok' if ms(lat['store'], 99) <= 1 else 'MISSED'}"
        )
    for b, lat in http.items():
        print(
            f"{b + ' http':<14} Serve/bare p50 {ms(lat['store'], 50) / ms(lat['raw'], 50):5.2f} "
            f"p99 {ms(lat['store'], 99) / ms(lat['raw'], 99):5.2f}   "
            f"HTTP p99 <= 5 ms: {'ok' if ms(lat['store'], 99) <= 5 else 'MISSED'}"
        )
    print(json.dumps({b: {"p50_ms": ms(v["store"], 50), "p99_ms": ms(v["store"], 99)} for b, v in http.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
