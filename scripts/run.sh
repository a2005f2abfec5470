#!/usr/bin/env bash
# The main job on its default config: sets up .venv (scripts/setup.sh), then collects MT10
# demonstrations with the scripted experts into data/mt10_demos.zarr (resumed if present) and
# prints a summary. Extra arguments are hydra overrides, e.g. `bash scripts/run.sh suite=MT50`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
robolearn collect "$@"
