"""Point-in-time retrieval on a Ray cluster: 1 worker node vs 2 worker nodes, in one run.

Starts the cluster of tests/cluster (a head with no CPUs, worker nodes of 2 CPUs that share no disk, a
real S3-compatible server for the feature data), then runs benchmarks/pit_bench.py --address against it:
with one worker node, with a second one added, and with one again (the second node killed), and prints each
round's raymlops time, the pandas baseline of the same round, and the 2-node/1-node time ratio.

On one machine both worker nodes share the same cores, so this measures what spreading the join over two
nodes costs (object transfers between raylets, S3 reads from two nodes), not a speed-up: on a real
cluster each node brings its own CPUs.

Usage (root; inside the cluster tests' private namespaces):
    bash tests/cluster/run.sh --run .venv/bin/python benchmarks/pit_cluster_bench.py [--entities N] [--features M]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=2_000_000)
    parser.add_argument("--entity-keys", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per node count (pit_bench --rounds)")
    args = parser.parse_args()
    import os

    if os.environ.get("RAYMLOPS_CLUSTER_NS") != "1":
        sys.exit(
            "run inside the cluster namespaces: bash tests/cluster/run.sh --run .venv/bin/python "
            "benchmarks/pit_cluster_bench.py"
        )
    from tests.cluster.conftest import BUCKET, GCS_PORT, HEAD_IP, Cluster

    work = Path(tempfile.mkdtemp(prefix="pit_cluster_"))
    cluster = Cluster(work)
    rounds = []
    try:
        cluster.start_services()
        keep = work / "data"
        sizes = [
            "--entities",
            str(args.entities),
            "--features",
            str(args.features),
            "--entity-keys",
            str(args.entity_keys),
            "--rounds",
            str(args.rounds),
        ]

        def bench(label: str) -> dict:
            summary = work / f"{label}.json"
            cmd = [
                sys.executable,
                str(ROOT / "benchmarks" / "pit_bench.py"),
                *sizes,
                "--address",
                f"{HEAD_IP}:{GCS_PORT}",
                "--store",
                f"s3://{BUCKET}/pit/{label}",
                "--keep",
                str(keep / label),
                "--summary",
                str(summary),
            ]
            print(f"--- {label}: {' '.join(cmd[1:])}", flush=True)
            r = subprocess.run(cmd, env=cluster.node_env(), cwd=ROOT)
            if r.returncode:
                raise SystemExit(f"pit_bench.py failed ({label}): exit {r.returncode}")
            got = json.loads(summary.read_text())
            rounds.append({"label": label, **got})
            return got

        bench("1-node-a")
        cluster.start_worker(replaceable=False)
        bench("2-nodes")
        cluster.worker_name = f"node{cluster.worker_gen}"  # the second node goes
        cluster.kill_worker()
        bench("1-node-b")
    finally:
        cluster.stop()
    one = min(min(r["raymlops_s"]) for r in rounds if r["worker_nodes"] == 1)
    two = min(min(r["raymlops_s"]) for r in rounds if r["worker_nodes"] == 2)
    print(
        f"\nPoint-in-time retrieval on a Ray cluster, {args.entities:,} entity rows x {args.features:,} feature "
        f"rows; head --num-cpus=0, worker nodes of 2 CPUs each on one machine, feature data on a local "
        f"S3-compatible server; {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    print(f"{'round':<10} {'nodes':>5} {'CPUs':>5} {'raymlops s':>11} {'pandas s':>9} {'agree':>6}")
    for r in rounds:
        print(
            f"{r['label']:<10} {r['worker_nodes']:>5} {r['cpus']:>5} {min(r['raymlops_s']):>11.2f} "
            f"{min(r['pandas_s']):>9.2f} {'yes' if r['agree'] else 'no':>6}"
        )
    print(
        f"2-node / 1-node raymlops time: {two / one:.2f} (best 1-node round {one:.2f} s, 2-node {two:.2f} s); "
        f"both nodes share this machine's cores, so >1 is the cost of spreading, not a slowdown a real "
        f"second machine would show"
    )
    return 0 if all(r["agree"] for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
