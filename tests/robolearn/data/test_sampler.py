"""SequenceSampler windows against a naive per-sample reference; the episode split."""

from __future__ import annotations

import numpy as np
import pytest

from robolearn.data import SequenceSampler, split_episodes
from tests.support import make_episode


def reference_window(episodes, ep, t, To, Ta):
    """Edge-padded windows written the slow, obvious way."""
    e = episodes[ep]
    T = len(e["obs"])
    obs = np.stack([e["obs"][max(0, t - To + 1 + k)] for k in range(To)])
    act = np.stack([e["action"][min(T - 1, t + k)] for k in range(Ta)])
    pad = np.array([t + k > T - 1 for k in range(Ta)])
    return obs, act, pad


@pytest.fixture
def filled(store):
    eps = [make_episode(i) for i in range(6)]
    for i, ep in enumerate(eps):
        store.add_episode(ep, task=f"t{i % 3}")
    return store, eps


@pytest.mark.parametrize("To,Ta", [(1, 1), (2, 16), (4, 3)])
def test_every_window_matches_the_reference(filled, To, Ta):
    store, eps = filled
    sampler = SequenceSampler(store, obs_horizon=To, action_horizon=Ta)
    assert len(sampler) == store.num_steps
    batch = sampler.window(np.arange(len(sampler)))
    row = 0
    for ep in range(len(eps)):
        for t in range(len(eps[ep]["obs"])):
            obs, act, pad = reference_window(eps, ep, t, To, Ta)
            np.testing.assert_array_equal(batch["obs"][row], obs)
            np.testing.assert_array_equal(batch["action"][row], act)
            np.testing.assert_array_equal(batch["action_is_pad"][row], pad)
            assert batch["task"][row] == ep % 3
            row += 1


def test_episode_selection_only_yields_those_episodes(filled):
    store, eps = filled
    sampler = SequenceSampler(store, 1, 1, episodes=[1, 4])
    assert len(sampler) == len(eps[1]["obs"]) + len(eps[4]["obs"])
    obs = sampler.window(np.arange(len(sampler)))["obs"][:, 0]
    np.testing.assert_array_equal(obs, np.concatenate([eps[1]["obs"], eps[4]["obs"]]))


def test_sample_shapes_and_determinism(filled):
    store, _ = filled
    sampler = SequenceSampler(store, 2, 8)
    a = sampler.sample(32, np.random.default_rng(1))
    b = sampler.sample(32, np.random.default_rng(1))
    assert a["obs"].shape == (32, 2, 5) and a["action"].shape == (32, 8, 2)
    assert a["task"].dtype == np.int64
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_iter_epoch_visits_every_window_once(filled):
    store, _ = filled
    sampler = SequenceSampler(store, 1, 1)
    seen = np.concatenate([b["obs"][:, 0, 0] for b in sampler.iter_epoch(7, np.random.default_rng(0))])
    assert len(seen) == len(sampler)
    every = sampler.window(np.arange(len(sampler)))["obs"][:, 0, 0]
    np.testing.assert_array_equal(np.sort(seen), np.sort(every))


def test_bad_arguments(filled, store_path, tmp_path):
    store, _ = filled
    with pytest.raises(ValueError, match="obs_horizon=0"):
        SequenceSampler(store, 0, 1)
    with pytest.raises(ValueError, match="episode indices"):
        SequenceSampler(store, 1, 1, episodes=[99])
    from robolearn.data import EpisodeStore

    with EpisodeStore.create(tmp_path / "empty.zarr", 5, 2) as empty, pytest.raises(
        ValueError, match="no committed episodes"
    ):
        SequenceSampler(empty, 1, 1)


class TestSplit:
    def test_split_is_by_episode_stratified_and_disjoint(self):
        task_ids = np.repeat(np.arange(4), 10)
        train, val = split_episodes(task_ids, 0.2, seed=0)
        assert set(train).isdisjoint(val)
        assert len(train) + len(val) == 40
        for t in range(4):
            assert (task_ids[val] == t).sum() == 2

    def test_single_episode_tasks_stay_in_train(self):
        train, val = split_episodes(np.array([0, 1, 1, 1]), 0.5)
        assert 0 in train and len(val) >= 1

    def test_no_validation(self):
        train, val = split_episodes(np.array([0, 0, 1]), 0.0)
        assert len(val) == 0 and len(train) == 3

    def test_bad_fraction(self):
        with pytest.raises(ValueError, match="val_fraction=1.0"):
            split_episodes(np.array([0, 1]), 1.0)
