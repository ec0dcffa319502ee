#!/usr/bin/env bash
# Fresh clone -> trained, served and monitored churn model, checked over HTTP, on a local Ray.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
raymlops demo-data data/demo
raymlops validate configs/quickstart.yaml
# Trains (Ray Data + Tune over Ray Train XGBoost), deploys on Ray Serve with the drift actor, then sends
# the July hold-out (no drift) and the shifted September data through /predict and prints /drift.
raymlops run configs/quickstart.yaml --quiet --probe data/demo/holdout.parquet --probe data/demo/shifted.parquet "$@"
