#!/usr/bin/env bash
# Usage: need.sh COMMAND PACKAGE... — makes sure COMMAND is on PATH, installing the Debian PACKAGEs with apt-get
# when it is missing (root, or passwordless sudo). The tests start their own servers; no service is started.
set -euo pipefail
cmd=$1; shift
command -v "$cmd" >/dev/null && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo -n); else
  echo "$cmd is missing and installing it needs root: run 'apt-get install -y $*' as root" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "$cmd is missing and apt-get is not available: install $* yourself" >&2; exit 1; }
echo "==> installing $* (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
fi
command -v "$cmd" >/dev/null || { echo "$cmd still not on PATH after apt-get install $*" >&2; exit 1; }
