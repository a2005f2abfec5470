"""Incomplete episodes (a deploy that faulted mid-episode): kept, marked, skipped by training."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from robolearn.data import EpisodeStore, EpisodeWriter, SequenceSampler, StoreError, split_episodes
from robolearn.data.robomimic import export_robomimic
from tests.support import make_episode


@pytest.fixture
def mixed(store):
    """6 episodes; 1 and 4 stopped early (complete=False)."""
    for i in range(6):
        store.add_episode(make_episode(i), task=f"t{i % 2}", seed=i, complete=i not in (1, 4),
                          info={"fault": "watchdog"} if i in (1, 4) else None)
    return store


def test_incomplete_episode_is_kept_and_marked(mixed, store_path):
    mixed.close()
    with EpisodeStore.open(store_path) as r:
        assert len(r) == 6
        ep = r.episode(1)
        np.testing.assert_array_equal(ep.data["obs"], make_episode(1)["obs"])
        assert not ep.complete and ep.info == {"fault": "watchdog", "incomplete": True}
        assert r.episode(0).complete
        assert r.complete_episodes().tolist() == [0, 2, 3, 5]
        assert r.incomplete_episodes().tolist() == [1, 4]


def test_sampler_defaults_to_complete_episodes(mixed):
    s = SequenceSampler(mixed, 1, 1)
    assert s.episodes.tolist() == [0, 2, 3, 5]
    assert len(s) == sum(len(make_episode(i)["obs"]) for i in (0, 2, 3, 5))
    everything = SequenceSampler(mixed, 1, 1, include_incomplete=True)
    assert everything.episodes.tolist() == list(range(6))


def test_explicit_selection_skips_incomplete_with_a_warning(mixed, caplog):
    with caplog.at_level(logging.WARNING):
        s = SequenceSampler(mixed, 1, 1, episodes=[0, 1, 2])
    assert s.episodes.tolist() == [0, 2] and "skipping 1 incomplete episode(s)" in caplog.text
    with pytest.raises(ValueError, match="every selected episode is incomplete"):
        SequenceSampler(mixed, 1, 1, episodes=[1, 4])


def test_split_on_complete_episodes(mixed):
    train, val = split_episodes(mixed.task_ids(), 0.5, seed=0, episodes=mixed.complete_episodes())
    assert sorted([*train, *val]) == [0, 2, 3, 5]
    # with every episode given the split is the one split_episodes always made
    ids = np.repeat(np.arange(3), 5)
    a = split_episodes(ids, 0.3, seed=4)
    b = split_episodes(ids, 0.3, seed=4, episodes=np.arange(15))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_export_skips_incomplete(mixed, store_path, tmp_path):
    mixed.close()
    info = export_robomimic(store_path, tmp_path / "d.hdf5", val_fraction=0.0)
    assert info["episodes"] == 4 and info["skipped_incomplete"] == 2
    with h5py.File(tmp_path / "d.hdf5") as f:
        assert sorted(f["data"]) == ["demo_0", "demo_1", "demo_2", "demo_3"]
        assert [int(f["data"][f"demo_{j}"].attrs["robolearn_episode"]) for j in range(4)] == [
            0, 2, 3, 5]
        np.testing.assert_array_equal(f["data/demo_1/actions"][:], make_episode(2)["action"])
        assert f["data"].attrs["total"] == sum(len(make_episode(i)["obs"]) for i in (0, 2, 3, 5))


def test_background_writer_carries_the_flag(store_path):
    EpisodeStore.create(store_path, 5, 2).close()
    with EpisodeWriter(store_path) as w:
        w.add_episode(make_episode(0), task="t")
        w.add_episode(make_episode(1), task="t", complete=False)
    with EpisodeStore.open(store_path) as r:
        assert r.incomplete_episodes().tolist() == [1]


def test_the_reserved_info_key(store):
    with pytest.raises(StoreError, match="reserved"):
        store.add_episode(make_episode(0), task="t", info={"incomplete": True})
    with pytest.raises(StoreError, match="reserved"):
        store.add_episode(make_episode(0), task="t", complete=False, info={"incomplete": False})
    with pytest.raises(StoreError, match="complete='no'"):
        store.add_episode(make_episode(0), task="t", complete="no")
    assert len(store) == 0
    # a nested key of the same name is the user's business
    store.add_episode(make_episode(0), task="t", info={"x": {"incomplete": True}})
    assert store.complete_episodes().tolist() == [0]
