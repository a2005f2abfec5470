"""Helpers shared by the tests: tiny synthetic episodes and a small policy config.

Imported by tests as ``from tests.support import ...`` (conftest.py holds fixtures only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (subprocesses of the tests run there)."""

OBS_DIM, ACTION_DIM = 5, 2


def make_episode(seed: int, length: int | None = None, obs_dim: int = OBS_DIM,
                 action_dim: int = ACTION_DIM) -> dict[str, np.ndarray]:
    """A deterministic synthetic episode: a pure function of (seed, length)."""
    rng = np.random.default_rng(seed)
    T = int(length if length is not None else rng.integers(3, 40))
    success = np.zeros(T, bool)
    success[-1:] = True
    return {
        "obs": rng.normal(size=(T, obs_dim)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(T, action_dim)).astype(np.float32),
        "reward": rng.uniform(0, 10, size=T).astype(np.float32),
        "success": success,
    }


# A policy small enough that a training step takes milliseconds (tests of the trainers).
SMALL_POLICY = ["+policy.backbone_kwargs.hidden_dim=64", "+policy.backbone_kwargs.num_blocks=1",
                "policy.action_horizon=4", "policy.action_exec_horizon=2",
                "policy.task_embed_dim=4"]
