#!/usr/bin/env bash
# The main job on its default config: sets up .venv (scripts/setup.sh), then `robolearn pipeline`:
# collect MT10 demonstrations (data/mt10_demos.zarr, reused if present) → train the flow-matching
# policy (runs/mt10_flow_matching) → evaluate it on held-out goals, and print where the report,
# plot and checkpoint are. Extra arguments are hydra overrides, e.g. `train.steps=20000`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
robolearn pipeline "$@"
