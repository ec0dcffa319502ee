#!/usr/bin/env bash
# Makes sure redis-server is on PATH (the online-store tests and benchmark start their own; no service is started).
set -euo pipefail
bash "$(dirname "$0")/need.sh" redis-server redis-server
echo "==> $(redis-server --version)"
