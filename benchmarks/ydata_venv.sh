#!/usr/bin/env bash
# A separate venv with ydata-profiling, the baseline of explore_bench.py (its pins do not resolve with this
# stack). Usage: bash benchmarks/ydata_venv.sh [DIR]  (default .venv-ydata); then
#   .venv/bin/python benchmarks/explore_bench.py --ydata-python DIR/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.venv-ydata}
python3.11 -m venv "$dir"
"$dir/bin/python" -m pip install -q --upgrade pip uv
"$dir/bin/python" -m uv pip install -q --python "$dir/bin/python" "ydata-profiling==4.18.4" pyarrow
echo "$dir/bin/python"
