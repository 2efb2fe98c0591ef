#!/usr/bin/env bash
# The GPU check of issue 24 (docs/gpu.md): on a GPU machine without network, from the checkout root:
#   bash scripts/gpu_check.sh [--out DIR] [--budget-s S]     # installs the carried wheels, then runs
#   bash scripts/gpu_check.sh --dry-run                      # here, on CPU: the same steps, tiny sizes
# (GPU_CHECK_DRY_RUN=1 does the same as --dry-run.) The wheels come from scripts/gpu_wheels.sh, run
# beforehand where there is network, into gpu_wheels/. Prints one table; exits non-zero when a
# required step failed. Everything, logs and JSON included, goes under --out (outputs/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
dry=${GPU_CHECK_DRY_RUN:-0}
for arg in "$@"; do [ "$arg" = "--dry-run" ] && dry=1; done
if [ -x .venv/bin/python ] && [ "$dry" = 1 ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
start=$(date +%s)

if [ "$dry" = 1 ]; then
  "$PY" scripts/gpu_check.py install --wheels "${GPU_WHEELS:-gpu_wheels}" --dry-run || true
else
  "$PY" scripts/gpu_check.py install --wheels "${GPU_WHEELS:-gpu_wheels}"
  # faketrace itself, editable and without dependencies: the image's torch 2.11 stays as it is.
  PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation -e .
fi
# Eight minutes in all: what the installation took comes off the steps' budget.
spent=$(( $(date +%s) - start ))
budget=$(( ${GPU_CHECK_BUDGET_S:-470} - spent ))
args=()
[ "$dry" = 1 ] && args+=(--dry-run)
exec "$PY" scripts/gpu_check.py run --budget-s "$budget" "${args[@]}" "$@"
