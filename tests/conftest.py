"""Shared fixtures: tiny synthetic episodes, stores in tmp_path."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

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


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "demos.zarr"


@pytest.fixture
def store(store_path):
    from robolearn.data import EpisodeStore

    s = EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM)
    yield s
    s.close()
