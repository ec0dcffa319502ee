"""raymlops serving before and after the hot-path work, against bare FastAPI + uvicorn and Serve's own floor,
same run, same machine.

Trains one quickstart run on demo data (or reuses --run) and deploys it four times with Pipeline.serve (drift
and request log off, batching on: max_batch_size 64, batch_wait_timeout_s 0):
- "after": this checkout, one variant (the model runs inside the router replica);
- "after+sh": this checkout, two variants 50/50 plus a shadow getting a copy of every request;
- "before" and "before+sh": the same two apps with the replicas importing raymlops from commit --before
  (default 3c6d411, the code before the hot-path work), put first on their PYTHONPATH by a Ray runtime env;
  the bench checks that they really run that code (their OpenAPI rows are untyped there).
Plus "serve-noop" (a lean deployment returning a constant: Serve's floor here) and "bare" (benchmarks/bare_app.py:
the same row checks and model path on FastAPI + uvicorn, one worker). It load-tests every target over loopback
with httpx at concurrency 1, 8 and 64, with 1 and 64 rows per request, alternating the target order round by
round so that machine noise hits all alike, and prints the issue's goals against the figures of this run.

Usage: .venv/bin/python benchmarks/serve_bench.py [--run RUN_DIR] [--before REV] [--seconds S] [--ingress haproxy]
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
BEFORE = "3c6d411"  # the last commit before the compiled plan and the lean request path


@dataclass(frozen=True)
class Scenario:
    name: str
    rows: int  # rows per request
    concurrency: int
    max_requests: int  # per target, over all rounds


SCENARIOS = [
    Scenario(f"{rows} row{'s' if rows > 1 else ''}, c={c}", rows, c, n)
    for rows in (1, 64)
    for c, n in ((1, 900), (8, 2000), (64, 4000))
]
BATCHED = ["serving.batching.max_batch_size=64", "serving.batching.batch_wait_timeout_s=0"]
SHADOWED = [
    'serving.variants=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]',
    'serving.shadow=[{"name": "shadow"}]',
]
# Serve apps: name -> (extra config overrides, runs the --before code)
APPS = {"after": ([], False), "after+sh": (SHADOWED, False), "before": ([], True), "before+sh": (SHADOWED, True)}


@dataclass
class Sample:
    """Latencies (s) of the 200 responses, error count and wall time of one or more measurement rounds."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def add(self, other: Sample) -> None:
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


def before_code(tmp: Path, rev: str, folder: str = "before") -> Path:
    """The raymlops package of commit ``rev`` (git archive), for the "before" apps' replicas."""
    out = tmp / folder / "before"
    out.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "raymlops"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "raymlops"


INGRESS: list[str] = []  # ["serving.ingress=haproxy"] with --ingress haproxy (the driver that starts Ray)


def overrides(tmp: Path, port: int) -> list[str]:
    return [
        *INGRESS,
        f"storage={tmp}/store",
        f"sources.customers.path={tmp}/train.parquet",
        "training.tune.num_samples=1",
        f"serving.port={port}",
        "monitoring=null",
        "serving.request_log=null",
        "serving.model=null",
        "serving.num_cpus=0.25",
        *BATCHED,
    ]


def config_for_before(tmp: Path) -> Path:
    """The quickstart config without the keys the --before code does not know (``training.explore`` came
    later; its loader refuses unknown keys). Serving reads none of them."""
    import yaml

    doc = yaml.safe_load(CONFIG.read_text())
    doc["training"].pop("explore", None)
    out = tmp / "quickstart-before.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def deploy_one(tmp: Path, port: int, run_dir: Path, app: str, before: Path | None) -> str:
    """Deploys the run as APPS[app]; with ``before``, every deployment's replicas import raymlops from there.
    Returns the predict URL."""
    from raymlops import Pipeline
    from raymlops.serving import app as serve_app

    options = serve_app.deployment_options

    def with_code(args):
        opts = options(args)
        for o in opts.values() if before else ():
            o["ray_actor_options"] = {
                **o["ray_actor_options"],
                "runtime_env": {"env_vars": {"PYTHONPATH": str(before.parent)}},
            }
        return opts

    serve_app.deployment_options = with_code
    try:
        name = app.replace("+", "-")
        p = Pipeline.from_yaml(
            CONFIG if before is None else config_for_before(tmp),
            overrides=[
                *overrides(tmp, port),
                f"serving.app_name={name}",
                f"serving.route_prefix=/{name}",
                *APPS[app][0],
            ],
        )
        url = p.serve(run_dir)
    finally:
        serve_app.deployment_options = options
    wait_healthy(f"{url}/health")
    return f"{url}/predict"


def deploy(tmp: Path, run: str | None, before: Path) -> tuple[Path, dict[str, str]]:
    """Trains a run (unless given) and deploys it as each of APPS; returns (run_dir, {app: predict URL}).
    The "before" apps are deployed by a driver that imports the --before code too (Serve pickles the
    deployment classes with references into their modules)."""
    from raymlops import Pipeline

    port = free_port()
    run_dir = (
        Path(run).resolve()
        if run
        else Pipeline.from_yaml(CONFIG, overrides=overrides(tmp, port)).train(progress=False).run_dir
    )
    urls = {}
    for app, (_, old) in APPS.items():
        if old:
            import ray

            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--deploy",
                    app,
                    "--run",
                    str(run_dir),
                    "--port",
                    str(port),
                    "--tmp",
                    str(tmp),
                    "--address",
                    ray.get_runtime_context().gcs_address,
                ],
                env={**os.environ, "PYTHONPATH": str(before.parent)},
                cwd=tmp,
                check=False,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(f"deploying {app} with the --before code failed:\n{out.stderr[-4000:]}")
            urls[app] = [line[4:] for line in out.stdout.splitlines() if line.startswith("URL=")][-1]
        else:
            urls[app] = deploy_one(tmp, port, run_dir, app, None)
        doc = httpx.get(urls[app].replace("/predict", "/openapi.json"), timeout=30)
        doc.raise_for_status()
        typed = "PredictRequestRows" in doc.text
        # The default --before predates typed OpenAPI rows, which tells its replicas from ours; a later
        # --before (a check of a newer change) has them too, so only its own import path tells them apart.
        if typed == old and (not old or before.parent.parent.name != "custom-before"):
            raise SystemExit(f"{app}: the replicas do not run the {'--before' if old else 'current'} code")
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
    return [json.dumps({"instances": records[i : i + rows]}).encode() for i in range(0, len(records) - rows + 1, rows)]


async def measure(
    client: httpx.AsyncClient, url: str, bodies: list[bytes], concurrency: int, max_requests: int, max_seconds: float
) -> Sample:
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


async def run_scenario(sc: Scenario, urls: dict[str, str], bodies: list[bytes], seconds: float) -> dict[str, Sample]:
    """Warms every target up, then measures them in ROUNDS alternating rounds of seconds / ROUNDS each."""
    limits = httpx.Limits(max_connections=sc.concurrency, max_keepalive_connections=sc.concurrency)
    headers = {"content-type": "application/json"}
    results = {name: Sample() for name in urls}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=60) as client:
        for url in urls.values():
            await measure(client, url, bodies, sc.concurrency, WARMUP, 10)
        for rnd in range(ROUNDS):
            order = list(urls) if rnd % 2 == 0 else list(urls)[::-1]
            for name in order:
                results[name].add(
                    await measure(
                        client, urls[name], bodies, sc.concurrency, sc.max_requests // ROUNDS, seconds / ROUNDS
                    )
                )
    return results


def in_process(run_dir: Path, holdout: Path, before: Path) -> dict[str, float]:
    """Median ms of the model path alone for one row and for 64 rows: row checks + compiled plan + model
    (this checkout), and the --before code's path (row checks into a DataFrame + predict_with_proba), each in
    a fresh interpreter."""
    code = """
import json, sys, time, numpy as np, pandas as pd
from raymlops import load_model
from raymlops.pipeline.probe import _jsonable
m = load_model(sys.argv[1]); records = _jsonable(pd.read_parquet(sys.argv[2])[m.schema.names])
try:
    from raymlops.data.schema import check_records
    def path(rows):
        check_records(rows, m.schema)
        return m.predict_rows(rows)
except ImportError:
    from raymlops.data.schema import records_to_frame
    def path(rows):
        return m.predict_with_proba(records_to_frame(rows, m.schema))
out = {}
for n in (1, 64):
    batches = [records[i: i + n] for i in range(0, 64 * n, n)]
    for b in batches: path(b)
    times = []
    for _ in range(20):
        for b in batches:
            t0 = time.perf_counter(); path(b); times.append(time.perf_counter() - t0)
    out[n] = float(np.median(times)) * 1000
print(json.dumps(out))
"""
    got = {}
    for name, env in (("after", {}), ("before", {"PYTHONPATH": str(before.parent)})):
        res = subprocess.run(
            [sys.executable, "-c", code, str(run_dir), str(holdout)],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=True,
            cwd=before.parent.parent,
        )
        for n, ms in json.loads(res.stdout.strip().splitlines()[-1]).items():
            got[f"{name} {n}"] = ms
    return got


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(results: dict[Scenario, dict[str, Sample]], model_ms: dict[str, float], elapsed: float) -> None:
    """Prints the per-target table, the goals of the hot-path issue and the before/after ratios."""
    print(
        f"\nraymlops serving through Serve's {'HAProxy ingress' if INGRESS else 'HTTP proxy'}, all measured in "
        f"this same run on this machine ({platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M:%S')}); "
        f"load generator on the same machine, loopback only."
    )
    print(
        f"{'scenario':<14} {'target':<10} {'req/s':>8} {'rows/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ok reqs':>8} "
        f"{'errors':>6}"
    )
    for sc, by_target in results.items():
        for name, s in by_target.items():
            print(
                f"{sc.name:<14} {name:<10} {s.rps:>8.1f} {s.rps * sc.rows:>9.0f} {s.ms(50):>8.2f} {s.ms(99):>8.2f} "
                f"{len(s.latencies):>8} {s.errors:>6}"
            )
    print("\nmodel path in-process (median ms: row checks + transform + model)")
    for n in (1, 64):
        print(
            f"  {n:>2} row(s): after {model_ms[f'after {n}']:.3f} ms, before {model_ms[f'before {n}']:.3f} ms "
            f"(x{ratio(model_ms[f'before {n}'], model_ms[f'after {n}']):.1f} faster)"
        )

    def goal(ok: bool, text: str) -> None:
        print(f"  [{'met ' if ok else 'MISS'}] {text}")

    by = {(sc.rows, sc.concurrency): t for sc, t in results.items()}
    print("\ngoals (issue 20)")
    goal(model_ms["after 1"] <= 0.5, f"model path for one row <= 0.5 ms: {model_ms['after 1']:.3f} ms")
    t = by[(1, 1)]
    floor = t["serve-noop"].ms(50)
    goal(
        t["after"].ms(50) <= floor + 2,
        f"p50 at c=1 <= serve-noop + 2 ms: {t['after'].ms(50):.2f} ms vs "
        f"{floor:.2f} + 2 ms (before {t['before'].ms(50):.2f} ms, bare {t['bare'].ms(50):.2f} ms)",
    )
    t = by[(1, 64)]
    goal(
        t["after"].rps >= t["serve-noop"].rps,
        f"req/s at c=64 (batched) >= serve-noop's: {t['after'].rps:.1f} vs "
        f"{t['serve-noop'].rps:.1f} (before {t['before'].rps:.1f}, bare {t['bare'].rps:.1f})",
    )
    for c in (1, 8, 64):
        t = by[(64, c)]
        goal(
            t["after"].rps >= 0.8 * t["bare"].rps,
            f"rows/s at 64 rows per request, c={c}, >= 0.8x bare: "
            f"x{ratio(t['after'].rps, t['bare'].rps):.2f} ({t['after'].rps * 64:.0f} vs {t['bare'].rps * 64:.0f}; "
            f"before x{ratio(t['before'].rps, t['bare'].rps):.2f})",
        )
    floor_share(by)
    print("\nafter / before throughput (single variant; two variants + shadow), p50 after - serve-noop")
    for sc, t in results.items():
        print(
            f"{sc.name:<14} x{ratio(t['after'].rps, t['before'].rps):.2f}; "
            f"x{ratio(t['after+sh'].rps, t['before+sh'].rps):.2f}; "
            f"+{t['after'].ms(50) - t['serve-noop'].ms(50):.1f} ms (before +{t['before'].ms(50) - t['serve-noop'].ms(50):.1f})"
        )
    if any(s.errors for t in results.values() for s in t.values()):
        print("WARNING: some requests failed; req/s and latencies count only the 200 responses.")
    print(f"\ntotal runtime {elapsed:.1f} s")


def floor_share(by: dict[tuple[int, int], dict[str, Sample]]) -> None:
    """Splits the 64-row goal figure by figure: per request (1 / req/s at that concurrency), what Serve's floor
    (serve-noop, which reads the body and answers a constant) costs, what the app costs above that floor, and
    what bare costs in all (its own server floor included). When the app's share above the floor fits in the
    goal's budget (1.25x bare's time) and the floor pushes it over, the floor blocks the goal at that point."""
    print(
        "  64 rows per request, ms per request (1 / req/s): serve-noop floor + the app above it vs bare; "
        "the goal allows 1.25x bare"
    )
    for c in (1, 8, 64):
        t = by[(64, c)]
        floor, app, bare = (1000 / t[k].rps if t[k].rps else float("nan") for k in ("serve-noop", "after", "bare"))
        budget, ours = 1.25 * bare, app - floor
        verdict = (
            "met"
            if app <= budget
            else "Serve's floor blocks it: the app's share alone fits the budget"
            if ours <= budget
            else "not the floor: the app's own share is over the budget"
        )
        print(
            f"    c={c:<3} floor {floor:.2f} + app {ours:.2f} = {app:.2f} ms; bare {bare:.2f} ms, budget "
            f"{budget:.2f} ms: {verdict}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing run directory to serve (skips training)")
    parser.add_argument("--before", default=BEFORE, help=f"the commit of the 'before' apps (default {BEFORE})")
    parser.add_argument("--seconds", type=float, default=9.0, help="measured seconds per target and scenario")
    parser.add_argument(
        "--ingress",
        choices=("proxy", "haproxy"),
        default="proxy",
        help="serving.ingress of the Ray this bench starts (every Serve target goes through it)",
    )
    parser.add_argument("--deploy", help=argparse.SUPPRESS)  # internal: deploy one "before" app, print its URL
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)  # this bench's Ray, not another on the machine
    args = parser.parse_args()
    if args.ingress != "proxy":
        INGRESS.append(f"serving.ingress={args.ingress}")
    if args.deploy:
        import ray

        import raymlops

        ray.init(address=args.address, namespace="raymlops", log_to_driver=False)
        print(
            "URL=" + deploy_one(Path(args.tmp), args.port, Path(args.run), args.deploy, Path(raymlops.__file__).parent),
            flush=True,
        )
        return 0
    started = time.perf_counter()

    import ray
    from ray import serve

    from raymlops import load_model
    from raymlops.data.demo import write_demo_data

    proc = None
    with tempfile.TemporaryDirectory(prefix="serve_bench_") as tmp_name:
        tmp = Path(tmp_name)
        os.chdir(tmp)  # Ray puts the driver's working directory first on its workers' sys.path
        try:
            before = before_code(tmp, args.before, "before" if args.before == BEFORE else "custom-before")
            holdout = write_demo_data(tmp, rows=5000)["holdout"]
            run_dir, urls = deploy(tmp, args.run, before)
            proc, urls["bare"] = start_bare(run_dir)
            columns = load_model(run_dir).schema.names
            model_ms = in_process(run_dir, holdout, before)
            results = {}
            for sc in SCENARIOS:
                print(f"measuring {sc.name} ...", file=sys.stderr, flush=True)
                results[sc] = asyncio.run(run_scenario(sc, urls, payloads(holdout, columns, sc.rows), args.seconds))
            report(results, model_ms, time.perf_counter() - started)
        finally:
            if proc is not None:
                stop(proc)
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
