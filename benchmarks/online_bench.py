"""Online feature store lookup latency: OnlineStore.read vs the raw client call it wraps, same run, same machine.

Writes --rows entities (10 float features each) to a SqliteOnlineStore and to a RedisOnlineStore on a private
redis-server started here, then times --lookups single-entity reads of random keys (after a warm-up) through
OnlineStore.read and through the same-row baseline: a raw sqlite3 primary-key SELECT and a raw redis-py HGETALL.
Targets alternate round by round so that machine noise hits both alike.

Usage: .venv/bin/python benchmarks/online_bench.py [--rows 100000] [--lookups 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import free_port, start_redis, stop  # noqa: E402,F401

ROUNDS = 4  # measurement rounds per backend; the target order flips every round
WARMUP = 500  # lookups per target before measuring
FEATURES = 10
VIEW = "bench"
T0 = 1_704_067_200_000_000_000
P99_TARGET_MS = 1.0
RAW_LABEL = {"sqlite": "raw sqlite3 SELECT", "redis": "raw HGETALL"}


def rows(n: int):
    """(key, record) pairs of n entities with FEATURES float features each."""
    from raymlops.features.online import OnlineRecord

    rng = np.random.default_rng(0)
    for i in range(n):
        yield (i,), OnlineRecord({f"f{j}": float(x) for j, x in enumerate(rng.random(FEATURES))}, T0 + i, T0)


def timed(fn: Callable[[int], object], keys: list[int]) -> list[float]:
    """Latency (s) of fn(key) for each key."""
    out, clock = [], time.perf_counter
    for k in keys:
        t0 = clock()
        fn(k)
        out.append(clock() - t0)
    return out


def compare(targets: dict[str, Callable[[int], object]], n_rows: int, lookups: int, seed: int) -> dict[str, list]:
    """Warms every target up, then measures them over ROUNDS alternating rounds of random keys."""
    rng = np.random.default_rng(seed)
    for fn in targets.values():
        timed(fn, rng.integers(0, n_rows, WARMUP).tolist())
    results: dict[str, list[float]] = {name: [] for name in targets}
    per_round = max(1, lookups // ROUNDS)
    for rnd in range(ROUNDS):
        keys = rng.integers(0, n_rows, per_round).tolist()
        for name in list(targets) if rnd % 2 == 0 else list(targets)[::-1]:
            results[name] += timed(targets[name], keys)
    return results


def sqlite_section(tmp: Path, n_rows: int, lookups: int) -> tuple[dict[str, list], float]:
    """SqliteOnlineStore.read vs a raw sqlite3 primary-key SELECT; returns (latencies, write seconds)."""
    from raymlops.features.online import encode_key
    from raymlops.features.online.sqlite import SqliteOnlineStore

    path = tmp / "online.db"
    with SqliteOnlineStore(path) as store:
        t0 = time.perf_counter()
        store.write(VIEW, rows(n_rows))
        write_s = time.perf_counter() - t0
        raw = sqlite3.connect(path)
        sql = "SELECT vals, ts, cts FROM online_features WHERE view = ? AND ekey = ?"
        same_row = raw.execute(sql, (VIEW, encode_key((7,)))).fetchone()
        assert json.loads(same_row[0]) == store.read(VIEW, [(7,)])[0].values
        targets = {
            "store": lambda k: store.read(VIEW, [(k,)]),
            "raw": lambda k: raw.execute(sql, (VIEW, encode_key((k,)))).fetchone(),
        }
        try:
            return compare(targets, n_rows, lookups, seed=1), write_s
        finally:
            raw.close()


def redis_section(url: str, n_rows: int, lookups: int) -> tuple[dict[str, list], float]:
    """RedisOnlineStore.read vs a raw redis-py HGETALL of the same key; returns (latencies, write seconds)."""
    import redis

    from raymlops.features.online import encode_key
    from raymlops.features.online.redis import RedisOnlineStore

    with RedisOnlineStore(url, "bench") as store:
        t0 = time.perf_counter()
        store.write(VIEW, rows(n_rows))
        write_s = time.perf_counter() - t0
        raw = redis.Redis.from_url(url, decode_responses=True)
        prefix = f"bench:{VIEW}:"
        assert json.loads(raw.hgetall(prefix + encode_key((7,)))["values"]) == store.read(VIEW, [(7,)])[0].values
        targets = {"store": lambda k: store.read(VIEW, [(k,)]), "raw": lambda k: raw.hgetall(prefix + encode_key((k,)))}
        try:
            return compare(targets, n_rows, lookups, seed=2), write_s
        finally:
            raw.close()


def ms(lat: list[float], q: float) -> float:
    return float(np.percentile(lat, q)) * 1000


def report(sections: dict[str, tuple[dict[str, list], float]], n_rows: int, elapsed: float) -> None:
    """Prints per-target percentiles, the store/raw ratios and the p99 target check."""
    print(
        f"\nOnline store lookups in-process, 1 entity x {FEATURES} features, random keys of {n_rows:,} stored "
        f"entities; store and raw baseline measured in this same run on this machine ({platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M:%S')})."
    )
    print(f"{'backend':<8} {'target':<18} {'lookups':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for backend, (lat, _) in sections.items():
        for name, label in (("store", "OnlineStore.read"), ("raw", RAW_LABEL[backend])):
            print(
                f"{backend:<8} {label:<18} {len(lat[name]):>8} {ms(lat[name], 50):>8.3f} {ms(lat[name], 99):>8.3f} "
                f"{np.mean(lat[name]) * 1000:>8.3f}"
            )
    print("\nstore/raw ratios (>1: the store is slower than the raw client call)")
    for backend, (lat, write_s) in sections.items():
        p50 = ms(lat["store"], 50) / ms(lat["raw"], 50)
        p99 = ms(lat["store"], 99) / ms(lat["raw"], 99)
        verdict = "ok" if ms(lat["store"], 99) <= P99_TARGET_MS else "MISSED"
        print(
            f"{backend:<8} p50 {p50:>5.2f}   p99 {p99:>5.2f}   store p99 <= {P99_TARGET_MS:g} ms: {verdict}   "
            f"(write of {n_rows:,} rows: {write_s:.2f} s, {n_rows / write_s:,.0f} rows/s)"
        )
    print(f"\ntotal runtime {elapsed:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="entities stored per backend")
    parser.add_argument("--lookups", type=int, default=5_000, help="measured lookups per target")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="online_bench_") as tmp_name:
        tmp = Path(tmp_name)
        sections = {}
        print("measuring sqlite ...", file=sys.stderr, flush=True)
        sections["sqlite"] = sqlite_section(tmp, args.rows, args.lookups)
        proc, url = start_redis(tmp)
        try:
            print("measuring redis ...", file=sys.stderr, flush=True)
            sections["redis"] = redis_section(url, args.rows, args.lookups)
        finally:
            stop(proc)
        report(sections, args.rows, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
