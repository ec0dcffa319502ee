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
# A real-world dataset with documented drift for the drift tests and benchmarks: the files of the nannyml wheel
# (not installed: its pins do not resolve with this stack), pinned by hash.
datasets() {
  local dir=.venv/share/datasets whl=nannyml-0.13.1-py3-none-any.whl
  local sum=cf5f4a33489834ae6773cb1baa33a0f98c0a3ee6ed9b43049478b25ce22fe869
  if [ -f "$dir/$whl" ] && echo "$sum  $dir/$whl" | sha256sum -c --status; then return 0; fi
  mkdir -p "$dir"
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: nannyml==0.13.1 -d "$dir"
  echo "$sum  $dir/$whl" | sha256sum -c --status || { echo "$dir/$whl: unexpected sha256" >&2; exit 1; }
}
stamp=.venv/.raymlops-installed
want=$(cat requirements.lock pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then datasets; exit 0; fi
echo "==> setting up .venv (Python: $($PY --version))"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip uv
.venv/bin/python -m uv pip install -q --python .venv/bin/python -r requirements.lock
.venv/bin/python -m uv pip install -q --python .venv/bin/python --no-deps -e .
# Byte-compile everything now: uv installs no .pyc files, and where PYTHONDONTWRITEBYTECODE is set (as on
# these machines) every process, each Ray worker and actor included, would compile ray, pandas, xgboost
# and mlflow from source on every import (a 2-trial quickstart search: 81 s without, 26 s with).
.venv/bin/python -m compileall -q -j 0 .venv/lib/python3.11/site-packages raymlops > /dev/null
datasets
echo "$want" > "$stamp"
echo "==> .venv ready"
