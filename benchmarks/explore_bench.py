"""`raymlops explore` on generated tables against pandas and ydata-profiling, same run, same machine.

Writes a 1M-row x 20-column table (numeric, skewed, integer, categorical of 5 / 200 / ~50k values, boolean,
a timestamp, an id, nulls, a binary label) as 16 Parquet files, and a 10M-row one with the same columns (160
files, written chunk by chunk). Then, in this order:
- raymlops on the 10M table (after an untimed warm-up that starts Ray's workers), with the driver's RSS sampled
  every 20 ms;
- raymlops: `explore(path, label="label")` on the 1M table; its figures are checked against exact pandas results:
  counts, nulls, min and max exactly, each reported quantile's true rank within the KLL rank error, distinct
  counts within 2%;
- pandas: `read_parquet`, then `describe(include="all")` plus `value_counts()` of every column (the baseline
  the issue names), in a fresh subprocess;
- ydata-profiling `ProfileReport(df, minimal=True).to_json()` on the 1M table in a fresh subprocess of
  `--ydata-python` (a separate venv: its pins do not resolve with this stack; `benchmarks/ydata_venv.sh`
  makes one); skipped with a line saying so when not given.

Usage: .venv/bin/python benchmarks/explore_bench.py [--rows 1000000] [--big-rows 10000000] [--ydata-python PY]
       [--keep DIR] [--sketch-costs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 625_000  # rows per generated file chunk (the 10M table is never whole in memory)


def chunk(rng: np.random.Generator, n: int, first_id: int) -> pa.Table:
    """n rows of the generated table (20 columns; label depends on x0, cat5 and skewed)."""
    x0 = rng.normal(0, 1, n)
    cat5 = rng.choice(np.array(["a", "b", "c", "d", "e"]), n, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    skewed = rng.lognormal(1.0, 1.0, n)
    logit = -1.0 + 1.2 * x0 + 0.8 * (cat5 == "a") + 0.2 * np.log(skewed)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)

    def nulls(a: np.ndarray, share: float):
        return pa.array(a, mask=rng.random(n) < share)

    cols = {
        "id": pa.array(np.arange(first_id, first_id + n)),
        "ts": pa.array(
            pd.Timestamp("2024-01-01").value // 1000 + rng.integers(0, 365 * 86400 * 10**6, n), type=pa.timestamp("us")
        ),
        "x0": pa.array(x0),
        "x1": nulls(rng.normal(50, 10, n), 0.05),
        "x2": pa.array(rng.uniform(-1, 1, n)),
        "x3": pa.array(x0 * 0.9 + rng.normal(0, 0.3, n)),  # correlated with x0
        "skewed": pa.array(skewed),
        "counts": nulls(rng.poisson(3, n), 0.02),
        "age": pa.array(rng.integers(18, 90, n)),
        "price": pa.array(np.round(rng.gamma(2, 20, n), 2)),
        "zeros": pa.array(np.where(rng.random(n) < 0.7, 0.0, rng.exponential(5, n))),
        "small": pa.array(rng.integers(0, 10, n).astype(np.int16)),
        "cat5": pa.array(cat5),
        "cat200": nulls(np.char.add("v", rng.integers(0, 200, n).astype(str)), 0.1),
        "city": pa.array(np.char.add("c", rng.zipf(1.3, n).clip(max=10**6).astype(str))),
        "code": pa.array(np.char.add("k", rng.integers(0, 50_000, n).astype(str))),
        "flag": pa.array(rng.random(n) < 0.3),
        "mostly_null": nulls(rng.normal(0, 1, n), 0.9),
        "const": pa.array(np.full(n, 1.0)),
        "label": pa.array(label),
    }
    return pa.table(cols)


def write_table(out: Path, rows: int, files: int, seed: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = rows // files
    for i in range(files):
        n = per if i < files - 1 else rows - per * (files - 1)
        pq.write_table(chunk(rng, n, i * per), out / f"part-{i:04d}.parquet")
    return out


def rss() -> int:
    """This process's resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's RSS every 20 ms (the driver; Ray's workers and object store are other processes)."""

    def __init__(self):
        self.peak, self.stop = 0, threading.Event()
        self.start_rss = rss()

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss())


def run_explore(path: Path):
    from raymlops.explore import explore

    with PeakRss() as mem:
        t0 = time.perf_counter()
        profile = explore(str(path), label="label")
        seconds = time.perf_counter() - t0
    return profile, seconds, mem


PANDAS = """
import sys, time, pandas as pd
t0 = time.perf_counter(); df = pd.read_parquet(sys.argv[1]); t1 = time.perf_counter()
df.describe(include="all")
for c in df.columns:
    df[c].value_counts()
t2 = time.perf_counter(); print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""

YDATA = """
import sys, time, warnings, pandas as pd
warnings.filterwarnings("ignore")
from ydata_profiling import ProfileReport
t0 = time.perf_counter(); df = pd.read_parquet(sys.argv[1]); t1 = time.perf_counter()
ProfileReport(df, minimal=True, progress_bar=False).to_json()
t2 = time.perf_counter(); print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def timed_subprocess(python: str, code: str, path: Path) -> tuple[float, float] | str:
    got = subprocess.run([python, "-c", code, str(path)], capture_output=True, text=True)
    if got.returncode:
        return (got.stderr.strip().splitlines() or ["failed"])[-1]
    read, compute = got.stdout.split()[-2:]
    return float(read), float(compute)


def check_exact(profile, path: Path) -> list[str]:
    """Differences between the profile and exact pandas figures beyond the stated errors (empty: all agree)."""
    df = pd.read_parquet(path)
    p = profile.to_dict()
    eps = p["errors"]["quantile_rank"]
    bad, worst_rank, worst_distinct = [], 0.0, 0.0
    for name, c in p["columns"].items():
        s = df[name]
        if c["count"] != int(s.notna().sum()) or c["nulls"] != int(s.isna().sum()):
            bad.append(f"{name}: count/nulls {c['count']}/{c['nulls']} vs {s.notna().sum()}/{s.isna().sum()}")
        exact_distinct = s.nunique()
        rel = abs(c["distinct"] - exact_distinct) / max(exact_distinct, 1)
        worst_distinct = max(worst_distinct, rel)
        if rel > 0.02:
            bad.append(f"{name}: distinct {c['distinct']} vs {exact_distinct} ({rel:.2%})")
        if c["kind"] == "numeric":
            x = np.sort(s.dropna().to_numpy(dtype=np.float64))
            if c["min"] != x[0] or c["max"] != x[-1]:
                bad.append(f"{name}: min/max {c['min']}/{c['max']} vs {x[0]}/{x[-1]}")
            for q, v in c["quantiles"].items():
                lo, hi = np.searchsorted(x, v, "left") / len(x), np.searchsorted(x, v, "right") / len(x)
                err = 0.0 if lo <= float(q) <= hi else min(abs(lo - float(q)), abs(hi - float(q)))
                worst_rank = max(worst_rank, err)
                if err > eps:
                    bad.append(f"{name}: quantile {q} = {v} has rank {lo:.4f}..{hi:.4f} (error {err:.4f} > {eps:.4f})")
        elif c["kind"] == "categorical" and c["top"]:
            exact = s.astype(str).str.lower() if s.dtype == bool else s
            counts = exact.value_counts()
            for t in c["top"][:5]:
                if "lower" not in t and counts.get(t["value"], 0) != t["count"]:
                    bad.append(f"{name}: {t['value']!r} counted {t['count']} vs {counts.get(t['value'], 0)}")
    print(f"  worst quantile rank error {worst_rank:.4%} (stated {eps:.4%}); worst distinct error {worst_distinct:.3%}")
    return bad


def sketch_costs() -> None:
    """The per-value cost of DataSketches' hll_sketch (one Python call per value), against NumPy's hashing of the
    same values, to keep the sketch choice honest (see raymlops/explore/sketches.py)."""
    from raymlops.explore.sketches import HyperLogLog, hash_values

    x = np.random.default_rng(0).normal(size=1_000_000)
    t0 = time.perf_counter()
    hashes = hash_values(x)
    t1 = time.perf_counter()
    hll = HyperLogLog()
    hll.update_hashes(hashes)
    t2 = time.perf_counter()
    print(
        f"1M float64 values: pd.util.hash_array {t1 - t0:.3f} s; datasketches hll_sketch updates {t2 - t1:.3f} s "
        f"(estimate {hll.estimate():,.0f} of 1,000,000)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000, help="0 skips the big table")
    parser.add_argument("--ydata-python", help="python of a venv with ydata-profiling (benchmarks/ydata_venv.sh)")
    parser.add_argument("--keep", help="write the tables here and keep them (default: a temp dir)")
    parser.add_argument("--sketch-costs", action="store_true", help="only time the HLL sketch's updates")
    args = parser.parse_args()
    if args.sketch_costs:
        sketch_costs()
        return 0
    root = Path(args.keep or tempfile.mkdtemp(prefix="explore_bench_"))
    print(
        f"explore_bench on {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    t0 = time.perf_counter()
    small = write_table(root / "small", args.rows, 16, 1)
    big = write_table(root / "big", args.big_rows, max(args.big_rows // CHUNK, 1), 2) if args.big_rows else None
    print(f"generated tables in {time.perf_counter() - t0:.1f} s under {root}")

    from raymlops.explore import explore

    warm = write_table(root / "warm", 20_000, 2, 3)
    explore(str(warm), label="label")  # starts Ray and its workers: not timed
    if big:  # first, so that the driver's RSS is not inflated by the exact checks' pandas frames below
        profile, seconds, mem = run_explore(big)
        print(
            f"\nraymlops explore, {args.big_rows:,} rows x 20 columns, with label: {seconds:.2f} s; driver peak RSS "
            f"{mem.peak / 2**20:.0f} MiB (goal: < 500 MiB; {mem.start_rss / 2**20:.0f} MiB before, Ray and pyarrow "
            "loaded)"
        )
        t = profile.data["table"]
        print(
            f"  rows counted {profile.data['rows']:,}; duplicate rows ~{t['duplicate_rows']:,} "
            f"(± {t['duplicate_rows_error']:,}; the table has none)"
        )
    profile, seconds, mem = run_explore(small)
    print(
        f"\nraymlops explore, {args.rows:,} rows x 20 columns, with label: {seconds:.2f} s "
        f"(driver RSS {mem.start_rss / 2**20:.0f} MiB before, peak {mem.peak / 2**20:.0f} MiB)"
    )
    print(f"  warnings: {', '.join(sorted({w['kind'] for w in profile.warnings}))}")
    bad = check_exact(profile, small)
    print(f"  figures against exact pandas: {'all within stated error' if not bad else 'MISMATCH'}")
    for b in bad:
        print(f"    {b}")

    got = timed_subprocess(sys.executable, PANDAS, small)
    if isinstance(got, str):
        print(f"pandas baseline failed: {got}")
        pandas_s = float("nan")
    else:
        pandas_s = sum(got)
        print(
            f"pandas read_parquet + describe + value_counts: {pandas_s:.2f} s (read {got[0]:.2f} s, compute "
            f"{got[1]:.2f} s): raymlops x{pandas_s / seconds:.2f} the speed"
        )
    if args.ydata_python:
        got = timed_subprocess(args.ydata_python, YDATA, small)
        if isinstance(got, str):
            print(f"ydata-profiling minimal failed: {got}")
        else:
            ydata_s = sum(got)
            print(
                f"ydata-profiling minimal: {ydata_s:.2f} s (read {got[0]:.2f} s, profile {got[1]:.2f} s): raymlops "
                f"x{ydata_s / seconds:.1f} the speed (goal: >= 5x)"
            )
    else:
        print("ydata-profiling: not run (pass --ydata-python; benchmarks/ydata_venv.sh makes a venv for it)")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"ok": not bad}))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
