"""Shared fixtures: tiny synthetic episodes, stores in tmp_path (helpers: tests/support.py)."""

from __future__ import annotations

import os

import pytest

from tests.support import ACTION_DIM, OBS_DIM, make_episode

os.environ.setdefault("MUJOCO_GL", "egl")


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
