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


# A policy small enough that a training step takes milliseconds (tests of the trainers).
SMALL_POLICY = ["+policy.backbone_kwargs.hidden_dim=64", "+policy.backbone_kwargs.num_blocks=1",
                "policy.action_horizon=4", "policy.action_exec_horizon=2",
                "policy.task_embed_dim=4"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """12 synthetic episodes of 3 tasks: what the trainer tests train on."""
    from robolearn.data import EpisodeStore

    path = tmp_path_factory.mktemp("data") / "demos.zarr"
    with EpisodeStore.create(path, OBS_DIM, ACTION_DIM) as s:
        for i in range(12):
            s.add_episode(make_episode(i), task=f"task-{i % 3}", seed=i)
    return path


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "demos.zarr"


@pytest.fixture
def store(store_path):
    from robolearn.data import EpisodeStore

    s = EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM)
    yield s
    s.close()
