"""Flamegraphs of the serving hot path: py-spy records the router replica (which scores the model inline with
one variant) of the "before" and "after" apps of serve_bench.py while httpx loads it, one SVG per scenario
and app (plus the Serve proxy's, under the after app's load).

Usage: .venv/bin/python benchmarks/serve_profile.py --out docs/serving/flamegraphs [--run RUN_DIR] [--seconds 10]
       [--ingress haproxy]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench as sb  # noqa: E402

PY_SPY = Path(sys.executable).with_name("py-spy")
SCENARIOS = [
    sb.Scenario("1 row, c=1", 1, 1, 10**9),
    sb.Scenario("1 row, c=64", 1, 64, 10**9),
    sb.Scenario("64 rows, c=8", 64, 8, 10**9),
]


def replica_pid(title: str) -> int:
    """The pid of the Ray worker whose process title contains ``title`` (e.g. 'ServeReplica:after:router')."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    pids = [int(line.split(None, 1)[0]) for line in out.splitlines()[1:] if title in line]
    if len(pids) != 1:
        raise SystemExit(f"expected one process titled {title!r}, found {pids}")
    return pids[0]


async def load(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> sb.Sample:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers={"content-type": "application/json"}, timeout=60) as client:
        await sb.measure(client, url, bodies, concurrency, 50, 10)
        return await sb.measure(client, url, bodies, concurrency, 10**9, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the SVG flamegraphs")
    parser.add_argument("--run", help="an existing run directory to serve (skips training)")
    parser.add_argument("--before", default=sb.BEFORE)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ingress", choices=("proxy", "haproxy"), default="proxy")
    args = parser.parse_args()
    if args.ingress != "proxy":
        sb.INGRESS.append(f"serving.ingress={args.ingress}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sb.APPS = {k: v for k, v in sb.APPS.items() if k in ("after", "before")}

    import ray
    from ray import serve

    from raymlops import load_model
    from raymlops.data.demo import write_demo_data

    with tempfile.TemporaryDirectory(prefix="serve_profile_") as tmp_name:
        tmp = Path(tmp_name)
        os.chdir(tmp)
        try:
            before = sb.before_code(tmp, args.before)
            holdout = write_demo_data(tmp, rows=5000)["holdout"]
            run_dir, urls = sb.deploy(tmp, args.run, before)
            columns = load_model(run_dir).schema.names
            for sc in SCENARIOS:
                bodies = sb.payloads(holdout, columns, sc.rows)
                slug = f"{sc.rows}row-c{sc.concurrency}"
                for app in ("before", "after"):
                    targets = [(f"ServeReplica:{app}:router", f"{app}-router-{slug}.svg")]
                    if app == "after" and args.ingress == "proxy":
                        targets.append(("ray::ProxyActor", f"proxy-{slug}.svg"))
                    spies = [
                        subprocess.Popen(
                            [
                                str(PY_SPY),
                                "record",
                                "-p",
                                str(replica_pid(title)),
                                "-o",
                                str(out / name),
                                "-d",
                                str(int(args.seconds)),
                                "-r",
                                "200",
                                "--nonblocking",
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                        )
                        for title, name in targets
                    ]
                    time.sleep(1)  # py-spy attached
                    got = asyncio.run(load(urls[app], bodies, sc.concurrency, args.seconds - 1))
                    for spy in spies:
                        spy.wait(timeout=60)
                    print(
                        f"{sc.name:<14} {app:<7} {got.rps:7.1f} req/s  p50 {got.ms(50):6.2f} ms  -> "
                        + ", ".join(name for _, name in targets),
                        flush=True,
                    )
        finally:
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
