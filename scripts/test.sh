#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite, lint and layer contracts included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # no OpenMP spin-waiting on a shared 2-core box
ruff check .
lint-imports
# Two pytest-xdist workers, a file each at a time (a file's tests share fixtures and a process):
# on 2 cores the suite's Ray start-ups, subprocesses and waits overlap (12 min instead of
# ~25). ROBOLEARN_TEST_WORKERS=0 runs it in this one process; any other count, that many.
python -m pytest -q -n "${ROBOLEARN_TEST_WORKERS:-2}" --dist loadfile "$@"
