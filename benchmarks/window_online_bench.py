"""Online window aggregates and push: read latency of a 7-day window over 1-minute tiles, and push throughput.

One view, 10 window features over 7 days and 1 day (sum, count, mean, min, max, std, last, distinct_count) plus
10 plain fields, on SQLite and on a private redis-server started here. Events go in through FeatureStore.push
(so push throughput is measured on the way): a 'hot' entity with one event every minute for 7 days (10,080
level-0 tiles: the worst case for a 1-minute tile) and --entities typical ones with ~50 events each.

  * read, in-process: FeatureStore.get_online_features of the 10 window features for one entity, against the
    same-run baseline: the same call for the 10 plain fields (a latest-value read, what online reads were
    before windows); p50/p99 for the hot entity and for random typical ones;
  * read, over HTTP (--http): POST {prefix}/online to the feature server on Serve, windows vs fields;
  * push: rows/s of FeatureStore.push in batches of 1 and of 500 rows, against the same-run baseline of
    OnlineStore.write of the same rows' latest values (online only, no offline version, no tiles).

Usage: .venv/bin/python benchmarks/window_online_bench.py [--entities 200] [--lookups 2000] [--http]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import free_port, start_redis, stop  # noqa: E402

MIN = pd.Timedelta(minutes=1)
FIELDS = [f"f{i}" for i in range(10)]
WINDOWS = [
    ("amount", "sum", "7d"),
    ("amount", "count", "7d"),
    ("amount", "mean", "7d"),
    ("amount", "min", "7d"),
    ("amount", "max", "7d"),
    ("amount", "std", "7d"),
    ("cat", "last", "7d"),
    ("cat", "distinct_count", "7d"),
    ("amount", "sum", "1d"),
    ("amount", "count", "1d"),
]
HOT = 0


def config(tmp: Path, online: dict) -> Path:
    data = tmp / "empty.parquet"
    view = {
        "name": "v",
        "entity": "e",
        "source": "s",
        "timestamp": "ts",
        "created_timestamp": "created",
        "fields": FIELDS,
        "tile": "1m",
        "aggregations": [{"column": c, "function": f, "window": w} for c, f, w in WINDOWS],
    }
    cfg = {
        "name": "window-bench",
        "storage": str(tmp / "store"),
        "sources": {"s": {"path": str(data)}},
        "features": {
            "online_store": online,
            "entities": [{"name": "e", "join_keys": ["k"]}],
            "views": [view],
            "server": {"port": free_port(), "route_prefix": "/features"},
        },
    }
    path = tmp / f"cfg-{online['type']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def events(rng, key: int, times: pd.DatetimeIndex) -> pd.DataFrame:
    n = len(times)
    df = pd.DataFrame(
        {"k": key, "ts": times, "amount": rng.normal(50, 20, n).round(2), "cat": rng.choice(list("abcdefghij"), n)}
    )
    for f in FIELDS:
        df[f] = rng.random(n)
    return df


def load(fs, rng, now: pd.Timestamp, entities: int) -> dict:
    """Pushes the hot entity and the typical ones; returns push timings."""
    hot = events(rng, HOT, pd.date_range(now - pd.Timedelta(days=7) + MIN, now, freq="1min"))
    t0 = time.perf_counter()
    for i in range(0, len(hot), 1000):
        fs.push("v", hot.iloc[i : i + 1000])
    bulk_s = time.perf_counter() - t0
    typical = pd.concat(
        [
            events(rng, k, now - pd.to_timedelta(rng.integers(0, 7 * 86400, 50), unit="s"))
            for k in range(1, entities + 1)
        ],
        ignore_index=True,
    ).sample(frac=1, random_state=0)
    timings = {"hot_rows": len(hot), "hot_s": bulk_s}
    t0 = time.perf_counter()
    for i in range(0, len(typical), 500):
        fs.push("v", typical.iloc[i : i + 500])
    timings["batch500"] = (len(typical), time.perf_counter() - t0)
    singles = typical.iloc[:200]
    t0 = time.perf_counter()
    for i in range(len(singles)):
        fs.push("v", singles.iloc[i : i + 1])
    timings["batch1"] = (len(singles), time.perf_counter() - t0)
    # baseline: the same rows' latest values written online only (what a push costs without windows/offline)
    from raymlops.features.online import OnlineRecord

    def records(df):
        for r in df.itertuples(index=False):
            yield (r.k,), OnlineRecord({f: getattr(r, f) for f in FIELDS}, int(r.ts.value), time.time_ns())

    t0 = time.perf_counter()
    for i in range(0, len(typical), 500):
        fs.online.write("baseline", records(typical.iloc[i : i + 500]))
    timings["base500"] = (len(typical), time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(len(singles)):
        fs.online.write("baseline", records(singles.iloc[i : i + 1]))
    timings["base1"] = (len(singles), time.perf_counter() - t0)
    return timings


def lookups(fs, keys: list[int], refs: list[str]) -> list[float]:
    out = []
    for k in keys:
        t0 = time.perf_counter()
        fs.get_online_features(refs, [{"k": k}])
        out.append(time.perf_counter() - t0)
    return out


def measure(fs, rng, n: int, entities: int) -> dict:
    windows = [f"v:{c}_{f}_{w}" for c, f, w in WINDOWS]
    fields = [f"v:{f}" for f in FIELDS]
    out = {}
    for who, keys in (("hot", [HOT] * n), ("typical", rng.integers(1, entities + 1, n).tolist())):
        lookups(fs, keys[:200], windows), lookups(fs, keys[:200], fields)  # warm-up
        w, f = [], []
        for rnd in range(4):  # alternate the order round by round
            part = keys[rnd * n // 4 : (rnd + 1) * n // 4]
            for target in ((windows, w), (fields, f)) if rnd % 2 == 0 else ((fields, f), (windows, w)):
                target[1].extend(lookups(fs, part, target[0]))
        out[who] = {"windows": w, "fields": f}
    return out


def http(fs, n: int) -> dict:
    import httpx
    import ray

    from raymlops.serving.deploy import deploy_feature_server

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        url = deploy_feature_server(fs.portable_config(), fs.features.server, "window-bench")
        bodies = {
            "windows": {"features": [f"v:{c}_{f}_{w}" for c, f, w in WINDOWS], "entities": {"k": [HOT]}},
            "fields": {"features": [f"v:{f}" for f in FIELDS], "entities": {"k": [HOT]}},
        }
        out = {k: [] for k in bodies}
        with httpx.Client(timeout=30) as client:
            for body in bodies.values():  # warm-up
                for _ in range(100):
                    assert client.post(f"{url}/online", json=body).status_code == 200
            for rnd in range(4):
                for name in list(bodies) if rnd % 2 == 0 else list(bodies)[::-1]:
                    for _ in range(n // 4):
                        t0 = time.perf_counter()
                        r = client.post(f"{url}/online", json=bodies[name])
                        out[name].append(time.perf_counter() - t0)
                        assert r.status_code == 200
        return out
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def ms(v: list[float], q: float) -> float:
    return float(np.percentile(v, q)) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entities", type=int, default=200)
    p.add_argument("--lookups", type=int, default=2000)
    p.add_argument("--http", action="store_true", help="also time POST /online on the feature server")
    args = p.parse_args()
    from raymlops import FeatureStore

    rng = np.random.default_rng(0)
    now = pd.Timestamp.now(tz="UTC").floor("min")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="window_bench_") as tmp_name:
        tmp = Path(tmp_name)
        proc, url = start_redis(tmp)
        results = {}
        try:
            for backend, online in (
                ("sqlite", {"type": "sqlite", "path": str(tmp / "online.db")}),
                ("redis", {"type": "redis", "url": url, "key_prefix": "wb"}),
            ):
                print(f"loading and measuring {backend} ...", file=sys.stderr, flush=True)
                (tmp / backend).mkdir()
                fs = FeatureStore.from_yaml(config(tmp / backend, online))
                push = load(fs, rng, now, args.entities)
                reads = measure(fs, rng, args.lookups, args.entities)
                results[backend] = (
                    push,
                    reads,
                    http(fs, args.lookups // 2) if args.http and backend == "sqlite" else None,
                )
                fs.close()
        finally:
            stop(proc)
    print(
        f"\nOnline window reads and pushes, same run, {platform.node()} ({os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M:%S')}); 10 features per read, 1 entity."
    )
    print(f"{'backend':<7} {'entity':<8} {'read':<26} {'p50 ms':>8} {'p99 ms':>8}   windows/fields p50, p99")
    for backend, (_push, reads, _) in results.items():
        for who, r in reads.items():
            for name, label in (("windows", "10 windows (1m tiles)"), ("fields", "10 fields (baseline)")):
                print(f"{backend:<7} {who:<8} {label:<26} {ms(r[name], 50):>8.3f} {ms(r[name], 99):>8.3f}", end="")
                print(
                    f"   x{ms(r['windows'], 50) / ms(r['fields'], 50):.2f}, x{ms(r['windows'], 99) / ms(r['fields'], 99):.2f}"
                    if name == "fields"
                    else ""
                )
    for backend, (_, _, h) in results.items():
        if h:
            print(
                f"\nHTTP POST /online ({backend}, hot entity): windows p50 {ms(h['windows'], 50):.2f} ms p99 "
                f"{ms(h['windows'], 99):.2f} ms; fields p50 {ms(h['fields'], 50):.2f} ms p99 {ms(h['fields'], 99):.2f} "
                f"ms; windows/fields p50 x{ms(h['windows'], 50) / ms(h['fields'], 50):.2f}"
            )
    print(f"\n{'backend':<7} {'push':<22} {'rows':>7} {'rows/s':>10}   baseline online-only write rows/s (ratio)")
    for backend, (push, _, _) in results.items():
        for size in ("1", "500"):
            n, s = push[f"batch{size}"]
            bn, bs = push[f"base{size}"]
            print(
                f"{backend:<7} {'batches of ' + size:<22} {n:>7} {n / s:>10,.0f}   {bn / bs:>10,.0f} (x{(n / s) / (bn / bs):.3f})"
            )
        print(
            f"{backend:<7} {'hot entity, 1000/batch':<22} {push['hot_rows']:>7} {push['hot_rows'] / push['hot_s']:>10,.0f}"
        )
    print(f"\ntotal runtime {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
