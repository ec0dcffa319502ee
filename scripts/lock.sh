#!/usr/bin/env bash
# Re-resolves requirements.in into requirements.lock (run after changing dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Seeded with the current lock: uv keeps every pin that still fits and moves only what the change needs.
grep -v '^# Locked with' requirements.lock > requirements.lock.tmp || true
.venv/bin/python -m uv pip compile --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --no-header requirements.in -o requirements.lock.tmp
{ echo "# Locked with: bash scripts/lock.sh (uv pip compile, Python 3.11, manylinux x86_64). Do not edit by hand."; cat requirements.lock.tmp; } > requirements.lock
rm requirements.lock.tmp
