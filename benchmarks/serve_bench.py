"""Ray Serve deployment vs a bare FastAPI + uvicorn app serving the same model, same run, same machine.

Trains one quickstart run on demo data (or reuses --run), deploys it with Pipeline.serve (drift on),
starts benchmarks/bare_app.py on another port, then load-tests both over loopback with httpx, alternating
the targets round by round so that machine noise hits both alike.

Usage: .venv/bin/python benchmarks/serve_bench.py [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import free_port, stop  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "quickstart.yaml"
BARE_APP = Path(__file__).resolve().parent / "bare_app.py"
ROUNDS = 3  # measurement rounds per scenario; the target order flips every round
WARMUP = 20  # requests per target before each scenario


@dataclass(frozen=True)
class Scenario:
    name: str
    rows: int  # rows per request
    concurrency: int
    max_requests: int  # per target, over all rounds
    max_seconds: float  # per target, over all rounds


SCENARIOS = [
    Scenario("a: 1 row, c=1", 1, 1, 600, 15),
    Scenario("b: 1 row, c=16", 1, 16, 1000, 15),
    Scenario("c: 100 rows, c=8", 100, 8, 400, 15),
]


@dataclass
class Sample:
    """Latencies (s) of the 200 responses, error count and wall time of one or more measurement rounds."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def add(self, other: "Sample") -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.seconds += other.seconds

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


def wait_healthy(url: str, timeout: float = 90) -> None:
    """Polls GET url until it answers 200; raises after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")


def deploy(tmp: Path, run: str | None) -> tuple[Path, str]:
    """Trains a run (unless given) and deploys it on Ray Serve; returns (run_dir, predict URL)."""
    from raymlops import Pipeline

    overrides = [f"storage={tmp}/store", f"sources.customers.path={tmp}/train.parquet",
                 "training.tune.num_samples=1", f"serving.port={free_port()}", "monitoring.drift.window=500"]
    pipe = Pipeline.from_yaml(CONFIG, overrides=overrides)
    run_dir = Path(run).resolve() if run else pipe.train(progress=False).run_dir
    url = pipe.serve(run_dir)
    wait_healthy(f"{url}/health")
    return run_dir, f"{url}/predict"


def start_bare(run_dir: Path) -> tuple[subprocess.Popen, str]:
    """Starts bare_app.py in a subprocess; returns (process, predict URL) once it answers /health."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(BARE_APP), str(run_dir), str(port)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/health")
    except BaseException:
        stop(proc)
        raise
    return proc, f"{base}/predict"


def payloads(holdout: Path, columns: list[str], rows: int) -> list[bytes]:
    """The holdout rows as pre-encoded {"instances": [...]} bodies of `rows` rows each."""
    from raymlops.pipeline.probe import _jsonable

    records = _jsonable(pd.read_parquet(holdout)[columns])
    return [json.dumps({"instances": records[i: i + rows]}).encode()
            for i in range(0, len(records) - rows + 1, rows)]


async def measure(client: httpx.AsyncClient, url: str, bodies: list[bytes], concurrency: int,
                  max_requests: int, max_seconds: float) -> Sample:
    """Sends up to max_requests POSTs from `concurrency` workers, stopping after max_seconds."""
    sample, sent = Sample(), 0
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal sent
        while sent < max_requests and time.perf_counter() < deadline:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            try:
                ok = (await client.post(url, content=body)).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                sample.latencies.append(time.perf_counter() - t0)
            sample.errors += not ok

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sample.seconds = time.perf_counter() - start
    return sample


async def run_scenario(sc: Scenario, urls: dict[str, str], bodies: list[bytes]) -> dict[str, Sample]:
    """Warms both targets up, then measures them in ROUNDS alternating rounds."""
    limits = httpx.Limits(max_connections=sc.concurrency, max_keepalive_connections=sc.concurrency)
    headers = {"content-type": "application/json"}
    results = {name: Sample() for name in urls}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as client:
        for url in urls.values():
            await measure(client, url, bodies, sc.concurrency, WARMUP, 10)
        for rnd in range(ROUNDS):
            order = list(urls) if rnd % 2 == 0 else list(urls)[::-1]
            for name in order:
                results[name].add(await measure(client, urls[name], bodies, sc.concurrency,
                                                sc.max_requests // ROUNDS, sc.max_seconds / ROUNDS))
    return results


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(results: dict[Scenario, dict[str, Sample]], elapsed: float) -> None:
    """Prints the per-target table and the serve/bare ratios."""
    print(f"\nRay Serve vs bare FastAPI+uvicorn, both measured in this same run on this machine "
          f"({platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}); load generator on the same machine, loopback only.")
    print(f"{'scenario':<18} {'target':<6} {'req/s':>8} {'rows/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'ok reqs':>8} {'errors':>6}")
    for sc, by_target in results.items():
        for name, s in by_target.items():
            print(f"{sc.name:<18} {name:<6} {s.rps:>8.1f} {s.rps * sc.rows:>9.1f} {s.ms(50):>8.2f} "
                  f"{s.ms(99):>8.2f} {len(s.latencies):>8} {s.errors:>6}")
    print("\nserve/bare ratios (throughput >1: Serve faster; p50 >1: Serve slower)")
    for sc, t in results.items():
        print(f"{sc.name:<18} throughput {ratio(t['serve'].rps, t['bare'].rps):>5.2f}   "
              f"p50 latency {ratio(t['serve'].ms(50), t['bare'].ms(50)):>5.2f}")
    if any(s.errors for t in results.values() for s in t.values()):
        print("WARNING: some requests failed; req/s and latencies count only the 200 responses.")
    print(f"\ntotal runtime {elapsed:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing run directory to serve (skips training)")
    args = parser.parse_args()
    started = time.perf_counter()

    import ray
    from ray import serve

    from raymlops import load_model
    from raymlops.data.demo import write_demo_data

    proc = None
    with tempfile.TemporaryDirectory(prefix="serve_bench_") as tmp_name:
        tmp = Path(tmp_name)
        try:
            holdout = write_demo_data(tmp, rows=5000)["holdout"]
            run_dir, serve_url = deploy(tmp, args.run)
            proc, bare_url = start_bare(run_dir)
            columns = load_model(run_dir).schema.names
            urls = {"serve": serve_url, "bare": bare_url}
            results = {}
            for sc in SCENARIOS:
                print(f"measuring {sc.name} ...", file=sys.stderr, flush=True)
                results[sc] = asyncio.run(run_scenario(sc, urls, payloads(holdout, columns, sc.rows)))
            report(results, time.perf_counter() - started)
        finally:
            if proc is not None:
                stop(proc)
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
