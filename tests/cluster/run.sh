#!/usr/bin/env bash
# Runs tests/cluster (a 2-node Ray cluster whose nodes share no disk) inside private namespaces:
#   bash tests/cluster/run.sh [pytest args]
#   bash tests/cluster/run.sh --run COMMAND...     (e.g. benchmarks/pit_cluster_bench.py)
# Own network (loopback + a veth per worker node), own pids (the kernel kills everything left when it
# ends), own /tmp, /dev/shm and HOME: it never touches another Ray on this machine. Needs root (CI is root).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "tests/cluster needs root (unshare, mount, ip); CI runs as root" >&2; exit 1; }
if ! command -v ip >/dev/null; then  # iproute2: the veth between the nodes
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends iproute2 >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends iproute2 >/dev/null; }
fi
command -v unshare >/dev/null || { echo "tests/cluster needs unshare (util-linux)" >&2; exit 1; }
exec unshare --net --pid --mount --fork --mount-proc --propagation private --kill-child=SIGKILL \
  -- bash tests/cluster/namespace.sh "$@"
