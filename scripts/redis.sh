#!/usr/bin/env bash
# Makes sure redis-server is on PATH (the online-store tests and benchmark start their own; no service is started).
set -euo pipefail
command -v redis-server >/dev/null && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo -n); else
  echo "redis-server is missing and installing it needs root: run 'apt-get install -y redis-server' as root" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "redis-server is missing and apt-get is not available: install redis-server (>= 6) yourself" >&2; exit 1; }
echo "==> installing redis-server (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null; then
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
command -v redis-server >/dev/null || { echo "redis-server still not on PATH after apt-get install" >&2; exit 1; }
echo "==> $(redis-server --version)"
