#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite, lint and layer contracts included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
lint-imports
python -m pytest -q "$@"
