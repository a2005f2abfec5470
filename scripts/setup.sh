#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs robolearn into it. Idempotent: a second run is quick.
# torch is installed first as the CPU wheel so pip never pulls a multi-GB CUDA build on a CPU box;
# set ROBOLEARN_TORCH="torch==2.14.1" (or a CUDA index) on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.robolearn-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  if ! python -c "import torch" 2>/dev/null; then  # a first install; an update takes little
    . scripts/_disk.sh
    check_disk . "the robolearn venv (.venv)" 2.5 3
  fi
  python -m pip install -q --upgrade pip
  python -c "import torch" 2>/dev/null || python -m pip install -q "${ROBOLEARN_TORCH:-torch==2.13.0}"
  python -m pip install -q -e ".[dev,video,ray,align]"
  # robomimic's dataset classes (used to check our HDF5 export) need no torchvision, but its
  # package metadata asks for one, which would replace the CPU torch with a CUDA build. Install
  # it without dependencies here; `pip install robolearn[robomimic]` is the full extra.
  python -m pip install -q --no-deps "robomimic==0.3.0"
  python -m pip install -q termcolor psutil six
  touch "$stamp"
fi
