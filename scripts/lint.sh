#!/usr/bin/env bash
# Lint, format check and types, as scripts/test.sh and the pre-commit hooks run them (settings: pyproject.toml).
# Checks only: nothing is rewritten. To fix what ruff can: .venv/bin/ruff check --fix PATHS; .venv/bin/ruff format PATHS
set -euo pipefail
cd "$(dirname "$0")/.."
PATHS=(raymlops tests benchmarks jobs scripts)
echo "==> ruff check"
.venv/bin/ruff check "${PATHS[@]}"
echo "==> ruff format --check"
.venv/bin/ruff format --check "${PATHS[@]}"
echo "==> mypy"
bash scripts/typecheck.sh
