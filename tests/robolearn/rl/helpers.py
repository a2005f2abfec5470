"""A tiny base checkpoint for the RL tests: a real (tiny) ``robolearn train`` run of a small
chunked flow-matching policy on synthetic Meta-World-shaped episodes (39-d obs, 4-d actions).

Built once per test session and task tuple, then copied to each test's ``root/base``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.support import SMALL_POLICY, make_episode

OBS_DIM, ACTION_DIM = 39, 4

_BUILT: dict[tuple[tuple[str, ...], int], Path] = {}


def _train(tasks: tuple[str, ...], seed: int) -> Path:
    from robolearn import cli
    from robolearn.data import EpisodeStore

    root = Path(tempfile.mkdtemp(prefix="rl_base_"))
    store = root / "demos.zarr"
    with EpisodeStore.create(store, OBS_DIM, ACTION_DIM) as s:
        for i in range(4 * len(tasks)):
            s.add_episode(make_episode(seed * 100 + i, length=30, obs_dim=OBS_DIM,
                                       action_dim=ACTION_DIM),
                          task=tasks[i % len(tasks)], seed=i)
    run = root / "run"
    cli.run("train", [f"dataset={store}", f"out={run}",
                      "policy=flow_matching", "steps=2", "batch_size=8", "warmup_steps=1",
                      "tensorboard=false", "progress=false", f"seed={seed}",
                      "policy.num_inference_steps=2", *SMALL_POLICY])
    return run


def tiny_base(root: Path, tasks: tuple[str, ...] = ("reach-v3",), seed: int = 0) -> Path:
    """A trained (2 steps) chunked flow-matching run directory over ``tasks`` at ``root/base``."""
    key = (tuple(tasks), seed)
    if key not in _BUILT or not _BUILT[key].exists():
        _BUILT[key] = _train(key[0], seed)
    if not (root / "base").exists():
        shutil.copytree(_BUILT[key], root / "base")
    return root / "base"
