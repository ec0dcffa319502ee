#!/usr/bin/env bash
# Sets up .venv (locked dependencies) and runs the layer contracts and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/redis.sh
bash scripts/chromium.sh
bash scripts/need.sh haproxy haproxy  # serving.ingress: haproxy (tests/e2e/test_ingress.py)
bash scripts/need.sh ss iproute2      # which process holds a port (the same test)
bash scripts/need.sh java openjdk-17-jre-headless  # real PySpark writes the Spark tables the readers are tested on
# Test-only and pinned (~300 MB, so not in requirements.lock that every user installs).
.venv/bin/python -m uv pip install -q --python .venv/bin/python pyspark==4.3.0 py4j==0.10.9.9
export PATH="$PWD/.venv/bin:$PATH"
echo "==> import layers (import-linter)"
lint-imports pyproject.toml
# Exit code 5 (no tests collected) is a failure too: `set -e` propagates any non-zero exit.
# With arguments (`bash scripts/test.sh tests/unit -q`): pytest only, no lint and no coverage.
if [ $# -gt 0 ]; then echo "==> pytest"; exec python -m pytest "$@"; fi
# ruff check, ruff format --check, mypy (raymlops/config, raymlops/contracts): scripts/lint.sh
bash scripts/lint.sh
echo "==> pytest (with coverage)"
# Coverage measures the pytest process only. Ray workers and actors are not measured: coverage's
# `patch = subprocess` / COVERAGE_PROCESS_START does start it in them (they inherit the driver's environment),
# but Ray ends its workers without running atexit, so their data is never written (checked with a task and an
# actor: neither left a data file), while each of them would still pay for tracing.
rm -f .coverage .coverage.*
python -m pytest tests --cov=raymlops --cov-report=term
echo "==> coverage: $(python -m coverage report --format=total)% of raymlops statements (the pytest process)"
echo "==> pytest tests/cluster (a 2-node Ray cluster whose nodes share no disk, in private namespaces)"
exec bash tests/cluster/run.sh
