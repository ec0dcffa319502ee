#!/usr/bin/env bash
# mypy over the strictly typed packages (settings: [tool.mypy] in pyproject.toml). A target that does not exist
# (yet) is skipped, so the command works at every commit. Extra arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=(raymlops/config raymlops/contracts)
have=()
for t in "${TARGETS[@]}"; do [ -e "$t" ] && have+=("$t"); done
if [ ${#have[@]} -eq 0 ]; then echo "mypy: none of ${TARGETS[*]} exists; nothing to check"; exit 0; fi
exec .venv/bin/mypy "$@" "${have[@]}"
