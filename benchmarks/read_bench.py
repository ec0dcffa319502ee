"""Ray Data Parquet reads: the V1 reader raymlops selects vs Ray 2.60's default V2 reader, in the same run.

Reads the demo data's train.parquet (one file) and a 40-file directory written from it, each read
materialised, alternating V1 and V2 every round in one Ray session; prints the median seconds per read
and V2 / V1. The V2 reader starts a pool of footer-reader actors (32 by default) for every read.

Usage: .venv/bin/python benchmarks/read_bench.py [--rows 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import pandas as pd
    import ray.data

    from raymlops.config.models import RayConfig
    from raymlops.data.demo import write_demo_data
    from raymlops.data.ray_env import ensure_ray

    tmp = Path(tempfile.mkdtemp(prefix="read-bench-"))
    write_demo_data(tmp, rows=args.rows, seed=7)
    one = tmp / "train.parquet"
    many = tmp / "parts"
    many.mkdir()
    df = pd.read_parquet(one)
    for i, part in enumerate(range(0, len(df), -(-len(df) // 40))):
        df.iloc[part : part + -(-len(df) // 40)].to_parquet(many / f"part-{i:03d}.parquet")
    ensure_ray(RayConfig())
    ctx = ray.data.DataContext.get_current()
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for v2 in (False, True) if r % 2 == 0 else (True, False):
            ctx.use_datasource_v2 = v2
            for name, path in (("1 file", one), ("40 files", many)):
                t = time.perf_counter()
                n = ray.data.read_parquet(str(path)).materialize().count()
                times.setdefault((name, "V2" if v2 else "V1"), []).append(time.perf_counter() - t)
                assert n == len(df), (n, len(df))
    print(f"\n## Ray Data read_parquet + materialize, {len(df):,} rows, median of {args.rounds} (first round included)")
    print("| input | V1 s (raymlops) | V2 s (Ray default) | V2 / V1 |")
    print("|---|---|---|---|")
    for name in ("1 file", "40 files"):
        v1, v2 = statistics.median(times[(name, "V1")]), statistics.median(times[(name, "V2")])
        print(f"| {name} | {v1:.2f} | {v2:.2f} | x{v2 / v1:.1f} |")


if __name__ == "__main__":
    main()
