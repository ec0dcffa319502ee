"""Step cache: the quickstart CLI run from scratch, then again with nothing changed, then with --no-cache.

Each run is a fresh `raymlops run configs/quickstart.yaml` process (Ray start included, serving off) in one
temp storage; prints the wall time of each and the ratios re-run / first and re-run / --no-cache (the
baseline: the same work with the cache off, from the same run of this script).

    .venv/bin/python benchmarks/cache_bench.py [--rows 20000] [--samples 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(args: list[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run([str(BIN / "raymlops"), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"raymlops {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return took, r.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--samples", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "DEMO_DATA": f"{tmp}/demo",
            "RAYMLOPS_STORAGE": f"{tmp}/store",
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        run(["demo-data", f"{tmp}/demo", "--rows", str(a.rows)], env)
        base = [
            "run",
            "configs/quickstart.yaml",
            "--set",
            "serving=null",  # not --quiet: it hides the step lines
            "--set",
            f"training.tune.num_samples={a.samples}",
        ]
        first, _ = run(base, env)
        again, log = run(base, env)
        skipped = [ln.split("step ")[1].split(":")[0] for ln in log.splitlines() if "skipped" in ln]
        forced, _ = run([*base, "--no-cache"], env)
    print(f"quickstart ({a.rows} rows, {a.samples} trials), serving off, one CLI process per run:")
    print(f"  first run            {first:7.1f} s")
    print(f"  no-change re-run     {again:7.1f} s  (skipped: {', '.join(skipped)})")
    print(f"  --no-cache re-run    {forced:7.1f} s  (baseline: the same work with the cache off)")
    print(f"  ratio re-run / first      {again / first:.2f}")
    print(f"  ratio re-run / --no-cache {again / forced:.2f}")


if __name__ == "__main__":
    main()
