#!/usr/bin/env bash
# Creates .venv-robomimic (Python 3.11) for the robomimic BC-RNN peer baseline
# (robolearn/baselines/bc_rnn.py): robomimic==0.3.0 with its training code, and robolearn itself,
# so `robolearn evaluate checkpoint=robomimic:<model.pth>` runs in it too. Idempotent: a second
# run is quick.
#
# Why a second venv: robomimic's algorithms import torchvision, and no torchvision wheel matches
# the CPU torch 2.13 of .venv. The pair below (a CUDA build of torch; it runs on CPU as well) is
# one that works together. Override with ROBOMIMIC_TORCH="torch==X torchvision==Y".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=.venv-robomimic
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp=$VENV/.robolearn-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup_robomimic.sh -nt "$stamp" ]; then
  if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    . scripts/_disk.sh
    check_disk . "the robomimic venv ($VENV, a CUDA build of torch)" 6.5 7
  fi
  pip="$VENV/bin/python -m pip"
  $pip install -q --upgrade pip
  # shellcheck disable=SC2086
  $pip install -q ${ROBOMIMIC_TORCH:-torch==2.14.1 torchvision==0.29.1}
  $pip install -q -e ".[dev]"
  # robomimic's declared dependencies, less egl_probe: an sdist that needs cmake and is only used
  # to pick a GPU for robosuite/iGibson rendering, which this baseline never does. six is
  # imported by robomimic.config but missing from robomimic's metadata.
  $pip install -q --no-deps "robomimic==0.3.0"
  $pip install -q six psutil termcolor tensorboardX "imageio>=2.34" imageio-ffmpeg
  $VENV/bin/python -c "import torchvision, robomimic.algo, robomimic.scripts.train, robolearn"
  touch "$stamp"
fi
echo "robomimic venv ready: $VENV ($($VENV/bin/python -c 'import torch, robomimic; print("torch", torch.__version__, "robomimic", robomimic.__version__)'))"
