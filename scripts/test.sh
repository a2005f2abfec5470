#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite, lint and layer contracts included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # no OpenMP spin-waiting on a shared 2-core box
ruff check .
lint-imports
python -m pytest -q "$@"
