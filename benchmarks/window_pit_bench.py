"""Exact window aggregates at retrieval time: raymlops vs its latest-row retrieval vs pandas, same data, same run.

Generates M events (customer_id, event_time, ingested_at, amount, balance; --entity-keys keys over --days days,
ties in event time) and N entity rows at random times (2% unknown keys), commits the events to a raymlops
offline store, then times

  * windows: FeatureStore.get_historical_features of 4 exact window aggregates over (T - w, T] at each entity
    row's time T (amount sum 7d, count 7d, mean 30d, max 30d), on a local Ray with every CPU;
  * latest-row (baseline): the same call for 2 plain fields (amount, balance), the as-of join that retrieval
    did before (and what the windows were: the aggregate as of the entity's latest event);
  * pandas (baseline): entity rows appended to the events as empty rows, sorted per key, then
    groupby(key).rolling('7D'/'30D', on=event_time) per aggregate, in this process;

checks that windows and pandas agree on every row (exit 1 if not) and prints seconds, rows/s and the ratios.
Ray worker start-up is not timed (a small warm-up retrieval runs first).

Usage: .venv/bin/python benchmarks/window_pit_bench.py [--entities 1000000] [--features 10000000]
       [--entity-keys 100000] [--days 90] [--seed 0]
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
import pyarrow as pa
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

T0 = pd.Timestamp("2024-01-01", tz="UTC")
AGGS = [("amount", "sum", "7d"), ("amount", "count", "7d"), ("amount", "mean", "30d"), ("amount", "max", "30d")]
NAMES = [f"{c}_{f}_{w}" for c, f, w in AGGS]


def generate(rng, n: int, m: int, keys: int, days: int) -> tuple[pa.Table, pd.DataFrame]:
    minutes = rng.integers(0, days * 24 * 60, m)
    minutes[rng.random(m) < 0.1] //= 60 * 60  # ~10% share an hour boundary with others: ties in event time
    ts = T0.value + minutes.astype(np.int64) * 60 * 10**9
    events = pa.table(
        {
            "customer_id": rng.integers(0, keys, m),
            "event_time": pa.array(ts, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "ingested_at": pa.array(ts + rng.integers(0, 3600, m) * 10**9, pa.int64()).cast(
                pa.timestamp("ns", tz="UTC")
            ),
            "amount": pa.array(
                np.where(rng.random(m) < 0.03, np.nan, rng.gamma(2.0, 30.0, m).round(2)), from_pandas=True
            ),
            "balance": rng.normal(1000, 300, m).round(2),
        }
    )
    entity = pd.DataFrame(
        {
            "customer_id": rng.integers(0, int(keys * 1.02), n),
            "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, days * 86400, n), unit="s"),
        }
    )
    return events, entity


def write_config(tmp: Path, name: str) -> Path:
    view = {
        "name": "txn",
        "entity": "customer",
        "source": "events",
        "timestamp": "event_time",
        "created_timestamp": "ingested_at",
        "fields": ["amount", "balance"],
        "aggregations": [{"column": c, "function": f, "window": w} for c, f, w in AGGS],
    }
    cfg = {
        "name": name,
        "storage": str(tmp / name),
        "sources": {"events": {"path": str(tmp / "unused.parquet")}},
        "features": {"entities": [{"name": "customer", "join_keys": ["customer_id"]}], "views": [view]},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def pandas_windows(events: pa.Table, entity: pd.DataFrame) -> pd.DataFrame:
    """Exact (T - w, T] windows per entity row with pandas: rolling over events plus empty entity rows."""
    ev = events.select(["customer_id", "event_time", "ingested_at", "amount"]).to_pandas()
    ev["_row"] = -1
    q = entity.rename(columns={"event_timestamp": "event_time"}).assign(amount=np.nan, _row=np.arange(len(entity)))
    q["ingested_at"] = pd.Timestamp.max.tz_localize("UTC")  # after the events at the same time
    both = pd.concat([ev, q], ignore_index=True).sort_values(
        ["customer_id", "event_time", "ingested_at"], kind="stable"
    )
    out = pd.DataFrame(index=np.arange(len(entity)))
    for (c, f, w), name in zip(AGGS, NAMES):
        rolled = both.groupby("customer_id", sort=False).rolling(w.upper(), on="event_time")[c]
        vals = getattr(rolled, f)().to_numpy()
        pick = both["_row"].to_numpy() >= 0
        col = np.full(len(entity), np.nan)
        col[both["_row"].to_numpy()[pick]] = vals[pick]
        out[name] = col
    out["amount_sum_7d"] = out["amount_sum_7d"].fillna(0.0)  # an empty window sums to 0
    out["amount_count_7d"] = out["amount_count_7d"].fillna(0)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entities", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=10_000_000)
    p.add_argument("--entity-keys", type=int, default=100_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import ray

    from raymlops import FeatureStore

    rng = np.random.default_rng(args.seed)
    events, entity = generate(rng, args.entities, args.features, args.entity_keys, args.days)
    with tempfile.TemporaryDirectory(prefix="window_pit_") as tmp_name:
        tmp = Path(tmp_name)
        fs = FeatureStore.from_yaml(write_config(tmp, "bench"))
        fs.offline.write("txn", events, "event_time")
        warm = FeatureStore.from_yaml(write_config(tmp, "warm"))
        warm.offline.write("txn", events.slice(0, 100_000), "event_time")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        warm.get_historical_features(entity.iloc[:20_000], [f"txn:{n}" for n in NAMES])
        timings = {}
        t0 = time.perf_counter()
        ours = fs.get_historical_features(entity, [f"txn:{n}" for n in NAMES])
        timings["windows"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fs.get_historical_features(entity, ["txn:amount", "txn:balance"])
        timings["latest-row"] = time.perf_counter() - t0
        ray.shutdown()
        t0 = time.perf_counter()
        theirs = pandas_windows(events, entity)
        timings["pandas"] = time.perf_counter() - t0
    bad = []
    for name in NAMES:
        a, b = ours[name].astype("float64").to_numpy(), theirs[name].to_numpy()
        same = (np.isnan(a) & np.isnan(b)) | np.isclose(a, b, rtol=1e-9, atol=1e-6)
        if not same.all():
            bad.append(f"{name}: {(~same).sum()} rows differ")
    n = len(entity)
    print(
        f"\nExact window retrieval, {n:,} entity rows x {args.features:,} events ({args.entity_keys:,} keys, "
        f"{args.days} days), {len(NAMES)} windows; {platform.node()} ({os.cpu_count()} CPUs), "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}, all in this run."
    )
    for name, s in timings.items():
        print(f"  {name:<32} {s:>8.2f} s  {n / s:>12,.0f} entity rows/s")
    print(
        f"  windows / latest-row time: x{timings['windows'] / timings['latest-row']:.2f}; windows / pandas time: "
        f"x{timings['windows'] / timings['pandas']:.2f}"
    )
    print(f"results agree with pandas: {'yes' if not bad else 'no: ' + '; '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
