#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs robolearn into it. Idempotent: a second run is quick.
#
# torch is installed first, as a build chosen for this machine, so that pip never pulls a
# multi-GB CUDA build onto a machine without a GPU (PyPI's default Linux wheel is the CUDA one):
#   - no NVIDIA GPU: the CPU build torch==2.13.0+cpu, from the package index pip is configured
#     with if it serves one, else from PyTorch's CPU index (download.pytorch.org/whl/cpu); if
#     neither can be reached, PyPI's default build, with a warning (it is the CUDA one, ~3 GB);
#   - an NVIDIA GPU (nvidia-smi lists one): the CUDA build, torch===2.13.0 from PyPI.
# It prints which build it installed. Overrides: ROBOLEARN_TORCH_BUILD=cpu|cuda (instead of
# detecting), ROBOLEARN_TORCH="<pip arguments>" (install exactly that, e.g.
# "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"). An existing torch is
# kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
TORCH_VERSION=2.13.0
CPU_INDEX=https://download.pytorch.org/whl/cpu

has_nvidia_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

torch_build() {  # what the installed torch is, in one line
  python -c 'import torch; c = torch.version.cuda
print("torch", torch.__version__, "(CUDA %s build)" % c if c else "(CPU build)")'
}

install_torch() {
  local build=${ROBOLEARN_TORCH_BUILD:-auto} log=.venv/.torch-install.log
  if [ -n "${ROBOLEARN_TORCH:-}" ]; then
    echo "installing torch as ROBOLEARN_TORCH says: $ROBOLEARN_TORCH"
    # shellcheck disable=SC2086
    python -m pip install -q $ROBOLEARN_TORCH
    return
  fi
  case "$build" in
    auto) if has_nvidia_gpu; then build=cuda; else build=cpu; fi ;;
    cpu|cuda) ;;
    *) echo "error: ROBOLEARN_TORCH_BUILD=$build, expected cpu, cuda or auto" >&2; exit 2 ;;
  esac
  if [ "$build" = cuda ]; then
    echo "NVIDIA GPU found (or ROBOLEARN_TORCH_BUILD=cuda): installing the CUDA build of torch"
    # ===: exactly this version string, so a local +cpu build on the index is not taken
    python -m pip install -q "torch===$TORCH_VERSION"
    return
  fi
  echo "no NVIDIA GPU (or ROBOLEARN_TORCH_BUILD=cpu): installing the CPU build of torch"
  if python -m pip install -q "torch==$TORCH_VERSION+cpu" >"$log" 2>&1; then
    return  # the configured index (or --find-links) serves the CPU build
  fi
  echo "  the configured package index has no torch $TORCH_VERSION+cpu; trying $CPU_INDEX"
  # PyTorch's CPU index also serves torch's own dependencies (sympy, networkx, ...)
  if python -m pip install -q "torch==$TORCH_VERSION+cpu" --index-url "$CPU_INDEX" \
      --timeout 20 --retries 1 >>"$log" 2>&1; then
    return
  fi
  echo "warning: no CPU build of torch $TORCH_VERSION could be installed (pip's messages are in" \
       "$log); installing PyPI's default build instead, which on Linux is the CUDA one" \
       "(about 3 GB more). ROBOLEARN_TORCH=\"<pip arguments>\" chooses another." >&2
  python -m pip install -q "torch==$TORCH_VERSION"
}

main() {
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
  fi
  . .venv/bin/activate
  local stamp=.venv/.robolearn-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]
  then
    if ! python -c "import torch" 2>/dev/null; then  # a first install; an update takes little
      . scripts/_disk.sh
      check_disk . "the robolearn venv (.venv)" 2.5 3
    fi
    python -m pip install -q --upgrade pip
    python -c "import torch" 2>/dev/null || install_torch
    echo "torch in .venv: $(torch_build)"
    python -m pip install -q -e ".[dev,video,ray,rl,align,wandb]"
    # robomimic's dataset classes (used to check our HDF5 export) need no torchvision, but its
    # package metadata asks for one, which would replace the CPU torch with a CUDA build.
    # Install it without dependencies here; `pip install robolearn[robomimic]` is the full extra.
    python -m pip install -q --no-deps "robomimic==0.3.0"
    python -m pip install -q termcolor psutil six
    touch "$stamp"
  fi
}

# `source scripts/setup.sh` defines the functions only (to try the torch choice by itself)
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main
fi
