"""The laptop quickstart with the storage layer vs the code before it, in the same run.

Runs `raymlops run configs/quickstart.yaml --no-cache --exit --probe ...` (local Ray, local storage, the
embedded MLflow store: train, register, serve, probe over HTTP, drift verdicts) as a whole process,
alternating this checkout and a baseline commit (a git worktree, imported first on PYTHONPATH) on the same
demo data, each run into fresh storage. Prints each run's wall time, the medians and the median ratio of
the pairs (now / baseline).

    .venv/bin/python benchmarks/quickstart_bench.py [--baseline a5bc228] [--pairs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "a5bc228"  # main before the storage layer (issue 14)


def run_once(code: Path, data: Path, work: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAYMLOPS_STORAGE", "RAY_ADDRESS")}
    env.update(
        PYTHONPATH=str(code),
        DEMO_DATA=str(data),
        RAYMLOPS_STORAGE=str(work / "store"),
        RAYMLOPS_CACHE=str(work / "cache"),
        RAYMLOPS_PORT="8123",
    )
    cmd = [
        sys.executable,
        "-m",
        "raymlops.cli",
        "run",
        str(code / "configs" / "quickstart.yaml"),
        "--quiet",
        "--no-cache",
        "--exit",
        "--probe",
        str(data / "holdout.parquet"),
        "--probe",
        str(data / "shifted.parquet"),
    ]
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0 or "is_drift=True" not in r.stdout:
        raise SystemExit(f"quickstart failed with {code}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=BASELINE, help="commit to compare with (default: before issue 14)")
    p.add_argument("--pairs", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="qs-bench-") as tmp:
        tmp = Path(tmp)
        base = tmp / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.baseline],
            check=True,
            capture_output=True,
        )
        try:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(base / "raymlops")], check=True)
            data = tmp / "demo"
            subprocess.run(
                [sys.executable, "-m", "raymlops.cli", "demo-data", str(data)], check=True, capture_output=True
            )
            now, before = [], []
            for i in range(args.pairs):
                for label, code, out in (("now", ROOT, now), ("baseline", base, before))[:: 1 if i % 2 == 0 else -1]:
                    work = tmp / f"{label}-{i}"
                    work.mkdir()
                    out.append(run_once(code, data, work))
                    print(f"pair {i + 1}: {label:<8} {out[-1]:6.1f} s", flush=True)
            ratios = [a / b for a, b in zip(now, before)]
            print(f"\nquickstart (train 3 trials, register, serve, probe 2 x 2000 rows), {args.pairs} pairs:")
            print(f"  baseline {args.baseline}: median {statistics.median(before):.1f} s")
            print(f"  now:               median {statistics.median(now):.1f} s")
            print(
                f"  now / baseline: median x{statistics.median(ratios):.3f} "
                f"(pairs: {', '.join(f'x{r:.3f}' for r in ratios)})"
            )
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)


if __name__ == "__main__":
    main()
