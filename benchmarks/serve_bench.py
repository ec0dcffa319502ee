"""raymlops serving vs a bare FastAPI + uvicorn app serving the same model, same run, same machine.

Trains one quickstart run on demo data (or reuses --run) and deploys it three times with Pipeline.serve
(drift and request log off, so the serving path alone is measured): unbatched and batched
(max_batch_size 64, batch_wait_timeout_s 0), both with the model inside the router replica (one variant);
"two-hop", a batched 50/50 split between two model deployments (router -> model replica); and "shadow",
one batched variant plus a shadow (the same model) getting a copy of every request, which also puts the
model behind the router hop. The shadow's own cost is shadow vs two-hop. Starts benchmarks/bare_app.py on another port, then load-tests every target over
loopback with httpx at concurrency 1, 8 and 64, alternating the target order round by round so that
machine noise hits all alike.

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
    Scenario("1 row, c=1", 1, 1, 600, 12),
    Scenario("1 row, c=8", 1, 8, 1500, 12),
    Scenario("1 row, c=64", 1, 64, 3000, 12),
]
# Serve apps: name -> extra config overrides
APPS = {
    "unbatched": [],
    "batched": ["serving.batching.max_batch_size=64", "serving.batching.batch_wait_timeout_s=0"],
    "two-hop": ["serving.batching.max_batch_size=64", "serving.batching.batch_wait_timeout_s=0",
                'serving.variants=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]'],
    "shadow": ["serving.batching.max_batch_size=64", "serving.batching.batch_wait_timeout_s=0",
               'serving.shadow=[{"name": "shadow"}]'],
}


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


def wait_healthy(url: str, timeout: float = 90, method: str = "GET") -> None:
    """Polls url until it answers 200; raises after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.request(method, url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")


def deploy_noop(port: int) -> str:
    """The floor of any Serve app here: a lean deployment that reads the body and returns a constant."""
    from ray import serve
    from starlette.responses import JSONResponse

    @serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
    class Noop:
        async def __call__(self, request):
            await request.body()
            return JSONResponse({"predictions": [0], "model_version": "noop"})

    serve.run(Noop.bind(), name="noop", route_prefix="/noop", blocking=False)
    url = f"http://127.0.0.1:{port}/noop"
    wait_healthy(url, method="POST")
    return url


def deploy(tmp: Path, run: str | None) -> tuple[Path, dict[str, str]]:
    """Trains a run (unless given) and deploys it as each of APPS; returns (run_dir, {app: predict URL})."""
    from raymlops import Pipeline

    port = free_port()
    base = [f"storage={tmp}/store", f"sources.customers.path={tmp}/train.parquet", "training.tune.num_samples=1",
            f"serving.port={port}", "monitoring=null", "serving.request_log=null", "serving.batching=null",
            "serving.model=null", "serving.num_cpus=0.25"]
    pipe = Pipeline.from_yaml(CONFIG, overrides=base)
    run_dir = Path(run).resolve() if run else pipe.train(progress=False).run_dir
    urls = {}
    for app, extra in APPS.items():
        p = Pipeline.from_yaml(CONFIG, overrides=[*base, f"serving.app_name={app}", f"serving.route_prefix=/{app}",
                                                  *extra])
        url = p.serve(run_dir)
        wait_healthy(f"{url}/health")
        urls[app] = f"{url}/predict"
    urls["serve-noop"] = deploy_noop(port)
    return run_dir, urls
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
    """Prints the per-target table and the ratios to the bare baseline measured in the same run."""
    print(f"\nraymlops serving vs bare FastAPI+uvicorn, all measured in this same run on this machine "
          f"({platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}); load generator on the same machine, loopback only.")
    print(f"{'scenario':<12} {'target':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ok reqs':>8} {'errors':>6}")
    for sc, by_target in results.items():
        for name, s in by_target.items():
            print(f"{sc.name:<12} {name:<10} {s.rps:>8.1f} {s.ms(50):>8.2f} {s.ms(99):>8.2f} "
                  f"{len(s.latencies):>8} {s.errors:>6}")
    print("\nratios to bare (throughput >1: faster than bare; p50 overhead in ms)")
    for sc, t in results.items():
        bare = t["bare"]
        print(f"{sc.name:<12} " + "   ".join(
            f"{name}: x{ratio(s.rps, bare.rps):.2f}, +{s.ms(50) - bare.ms(50):.1f} ms"
            for name, s in t.items() if name not in ("bare", "serve-noop")))
    print("\nabove Serve's own floor (p50 minus serve-noop's p50, ms)")
    for sc, t in results.items():
        floor = t["serve-noop"].ms(50)
        print(f"{sc.name:<12} serve-noop p50 {floor:.1f} ms (bare +{floor - t['bare'].ms(50):.1f} ms); " + "   ".join(
            f"{name} +{s.ms(50) - floor:.1f}" for name, s in t.items() if name not in ("bare", "serve-noop")))
    print("\nbatching gain (batched / unbatched throughput), router hop (two-hop / batched), shadow cost "
          "(shadow / two-hop)")
    for sc, t in results.items():
        print(f"{sc.name:<12} batching x{ratio(t['batched'].rps, t['unbatched'].rps):.2f}   "
              f"hop x{ratio(t['two-hop'].rps, t['batched'].rps):.2f}   "
              f"shadow x{ratio(t['shadow'].rps, t['two-hop'].rps):.2f}")
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
            run_dir, urls = deploy(tmp, args.run)
            proc, urls["bare"] = start_bare(run_dir)
            columns = load_model(run_dir).schema.names
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
