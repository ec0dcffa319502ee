#!/usr/bin/env bash
# Creates .venv with the locked dependency set and raymlops installed (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "raymlops needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
stamp=.venv/.raymlops-installed
want=$(cat requirements.lock pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
echo "==> setting up .venv (Python: $($PY --version))"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip uv
.venv/bin/python -m uv pip install -q --python .venv/bin/python -r requirements.lock
.venv/bin/python -m uv pip install -q --python .venv/bin/python --no-deps -e .
# Byte-compile everything now: uv installs no .pyc files, and where PYTHONDONTWRITEBYTECODE is set (as on
# these machines) every process, each Ray worker and actor included, would compile ray, pandas, xgboost
# and mlflow from source on every import (a 2-trial quickstart search: 81 s without, 26 s with).
.venv/bin/python -m compileall -q -j 0 .venv/lib/python3.11/site-packages raymlops > /dev/null
echo "$want" > "$stamp"
echo "==> .venv ready"
