"""Serve settings of one app, measured side by side in the same run: batching on or off, max_batch_size,
batch_wait_timeout_s, max_ongoing_requests (single variant, the model inside the router replica) and
router_replicas (two variants + a shadow, the model behind the router), each as its own app on one Ray, with
serve-noop as the floor. Same load generator and alternating rounds as serve_bench.py.

Usage: .venv/bin/python benchmarks/serve_settings_bench.py [--ingress haproxy] [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench as sb  # noqa: E402

B = "serving.batching"
SETTINGS = {  # app -> overrides on top of serve_bench's (batched: max_batch_size 64, wait 0)
    "default": [],
    "unbatched": ["serving.batching=null"],
    "mbs16-mor32": [f"{B}.max_batch_size=16", "serving.max_ongoing_requests=32"],
    "mor512": ["serving.max_ongoing_requests=512"],
    "mbs256": [f"{B}.max_batch_size=256"],
    "wait2ms": [f"{B}.batch_wait_timeout_s=0.002"],
    "2v-sh-rr1": sb.SHADOWED,
    "2v-sh-rr2": [*sb.SHADOWED, "serving.router_replicas=2"],
}
SCENARIOS = [
    sb.Scenario("1 row, c=1", 1, 1, 900),
    sb.Scenario("1 row, c=64", 1, 64, 4000),
    sb.Scenario("64 rows, c=8", 64, 8, 2000),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingress", choices=("proxy", "haproxy"), default="proxy")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    if args.ingress != "proxy":
        sb.INGRESS.append(f"serving.ingress={args.ingress}")
    # 0.1 CPU per model replica: the eight apps' replicas fit on 2 CPUs together (they are not reserved cores)
    sb.APPS = {name: ([*extra, "serving.num_cpus=0.1"], False) for name, extra in SETTINGS.items()}
    started = time.perf_counter()

    import ray
    from ray import serve

    from raymlops import Pipeline, load_model
    from raymlops.data.demo import write_demo_data

    with tempfile.TemporaryDirectory(prefix="serve_settings_") as tmp_name:
        tmp = Path(tmp_name)
        os.chdir(tmp)
        try:
            holdout = write_demo_data(tmp, rows=5000)["holdout"]
            port = sb.free_port()
            run_dir = Pipeline.from_yaml(sb.CONFIG, overrides=sb.overrides(tmp, port)).train(progress=False).run_dir
            urls = {name: sb.deploy_one(tmp, port, run_dir, name, None) for name in SETTINGS}
            urls["serve-noop"] = sb.deploy_noop(port)
            columns = load_model(run_dir).schema.names
            results = {}
            for sc in SCENARIOS:
                print(f"measuring {sc.name} ...", file=sys.stderr, flush=True)
                results[sc] = asyncio.run(
                    sb.run_scenario(sc, urls, sb.payloads(holdout, columns, sc.rows), args.seconds)
                )
        finally:
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
    print(
        f"\nServe settings through {'HAProxy' if sb.INGRESS else 'the Python proxy'}, same run "
        f"({platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M:%S')}); overrides: "
        + "; ".join(f"{k}: {' '.join(v) or '-'}" for k, v in SETTINGS.items() if not k.startswith("2v"))
    )
    print(f"{'target':<12}" + "".join(f"{sc.name + ' req/s, p50 ms':>30}" for sc in SCENARIOS))
    for name in urls:
        print(
            f"{name:<12}"
            + "".join(f"{results[sc][name].rps:>20.1f}, {results[sc][name].ms(50):>7.2f}" for sc in SCENARIOS)
        )
    if any(s.errors for t in results.values() for s in t.values()):
        print("WARNING: some requests failed; req/s and latencies count only the 200 responses.")
    print(f"total runtime {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
