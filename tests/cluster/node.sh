#!/usr/bin/env bash
# PID 1 of one Ray worker node (own mount, pid and network namespaces), started by the cluster fixture:
#   node.sh REPO NAME IP HEAD_IP NUM_CPUS OBJECT_STORE_BYTES
# Its disk is its own: fresh tmpfs over /tmp (Ray's temp dir, HOME, unpacked working dirs), the storage
# mount point and /dev/shm. Its network is a veth whose other end the fixture keeps in the test namespace.
set -euo pipefail
REPO=$1 NAME=$2 IP=$3 HEAD=$4 NCPU=$5 OSM=$6
for _ in $(seq 200); do ip link show "$NAME" >/dev/null 2>&1 && break; sleep 0.05; done
ip link set lo up
ip addr add "$IP/24" dev "$NAME"
ip link set "$NAME" up
mount --make-rprivate /
source "$REPO/tests/cluster/private_tmp.sh"
private_tmp "$REPO" 4g
mkdir -p /srv/store && mount -t tmpfs -o size=1g tmpfs /srv/store
mount -t tmpfs -o size=2g tmpfs /dev/shm
export HOME=/tmp/home && mkdir -p "$HOME"
echo "$NAME" > /srv/store/node-name
# As a child: this shell, PID 1 here, reaps orphans; killing it (SIGKILL) ends the whole node at once.
ray start --address="$HEAD:6379" --node-ip-address="$IP" --num-cpus="$NCPU" \
  --object-store-memory="$OSM" --resources="{\"$NAME\": 1}" --disable-usage-stats --block &
wait $!
