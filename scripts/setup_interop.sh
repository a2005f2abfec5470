#!/usr/bin/env bash
# Side venvs in which the foreign readers open our exports (tests/robolearn/data/test_interop.py
# runs them; without these venvs those tests are skipped). Idempotent: a second run is quick.
#
# - LeRobot: its own LeRobotDataset opens our LeRobot v3.0 export. LeRobot 0.4.4 is the newest
#   release for Python 3.11 that reads dataset v3.0 (later ones need Python >= 3.12). It goes in
#   without its dependency list (policies, robots, video encoders, wandb pins): only what
#   lerobot.datasets imports. That code imports torch and torchvision, and no torchvision wheel
#   works with the CPU torch of .venv; .venv-robomimic (scripts/setup_robomimic.sh) already
#   holds a working pair (torch 2.14.1 + torchvision 0.29.1), so LeRobot is added there (about
#   0.5 GB) instead of into a third venv of 6 GB. LeRobot 0.4.4's metadata asks for torch < 2.11;
#   its dataset code runs on 2.14 (the test shows it).
# - .venv-zarr2: numpy + zarr 2 + numcodecs (about 0.1 GB), the zarr that diffusion_policy's
#   ReplayBuffer is written for; it opens our diffusion_policy export. diffusion_policy itself is
#   not on PyPI: tests/robolearn/data/dp_check.py makes the zarr-2 calls ReplayBuffer makes to
#   open a store, and uses the real class when DIFFUSION_POLICY_SRC names a checkout of it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
t0=$(date +%s)

bash scripts/setup_robomimic.sh
RM=.venv-robomimic
Z2=.venv-zarr2
stamp=$RM/.lerobot-installed
if [ ! -f "$stamp" ] || [ scripts/setup_interop.sh -nt "$stamp" ]; then
  if ! HF_HUB_OFFLINE=1 "$RM/bin/python" -c "import lerobot.datasets.lerobot_dataset" 2>/dev/null
  then
    . scripts/_disk.sh
    check_disk . "LeRobot's dataset code in $RM and $Z2" 0.8 1.2
  fi
  pip="$RM/bin/python -m pip"
  $pip install -q --no-deps "lerobot==0.4.4"
  # What lerobot.datasets.lerobot_dataset imports (besides torch/torchvision, already there),
  # within LeRobot 0.4.4's own ranges where it states them.
  $pip install -q "datasets>=4,<5" "huggingface-hub>=0.34.2,<0.36" "av>=15,<16" \
    "accelerate>=1.10,<2" pandas pyarrow pillow "packaging>=24.2"
  HF_HUB_OFFLINE=1 $RM/bin/python -c "import lerobot.datasets.lerobot_dataset"
  touch "$stamp"
fi

if [ ! -x "$Z2/bin/python" ]; then
  "$PY" -m venv "$Z2"
fi
stamp=$Z2/.robolearn-installed
if [ ! -f "$stamp" ] || [ scripts/setup_interop.sh -nt "$stamp" ]; then
  "$Z2/bin/python" -m pip install -q --upgrade pip
  "$Z2/bin/python" -m pip install -q numpy "zarr>=2.18,<3" numcodecs
  "$Z2/bin/python" -c "import zarr; assert zarr.__version__.startswith('2.'), zarr.__version__"
  touch "$stamp"
fi
echo "interop venvs ready in $(( $(date +%s) - t0 )) s: $RM ($($RM/bin/python -c \
'import lerobot, torch; print("lerobot", lerobot.__version__, "torch", torch.__version__)' \
2>/dev/null || echo "lerobot ?")), $Z2 (zarr $($Z2/bin/python -c 'import zarr; print(zarr.__version__)'))"
