#!/usr/bin/env bash
# PID 1 of the cluster tests' namespaces (started by run.sh): a private /tmp (the checkout bound back in
# when it lives there), /dev/shm and HOME, loopback up; then pytest on tests/cluster (or, after --run, the
# given command) as a child, so that this shell reaps orphans. When it exits, the kernel kills every process
# left in the namespace.
set -euo pipefail
REPO=$PWD
ip link set lo up
mount --make-rprivate /
source tests/cluster/private_tmp.sh
private_tmp "$REPO" 8g
mount -t tmpfs -o size=2g tmpfs /dev/shm   # Ray's object store
export HOME=/tmp/home && mkdir -p "$HOME"
export RAYMLOPS_CLUSTER_NS=1 RAY_USAGE_STATS_ENABLED=0
export PATH="$REPO/.venv/bin:$PATH"
if [ "${1:-}" = "--run" ]; then
  shift
  "$@" &
else
  python -m pytest tests/cluster -p no:cacheprovider "$@" &
fi
wait $!
