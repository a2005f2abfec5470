"""EpisodeWriter: background commits, errors at the call site, the wire format."""

from __future__ import annotations

import numpy as np
import pytest

from robolearn.data import EpisodeStore, EpisodeWriter, StoreError
from robolearn.data.writer import decode_episode, encode_episode
from tests.support import ACTION_DIM, OBS_DIM, make_episode


def test_wire_format_round_trip():
    ep = make_episode(3)
    steps, meta = decode_episode(encode_episode(ep, {"task": "x", "seed": 3}))
    assert meta == {"task": "x", "seed": 3}
    for k in ep:
        np.testing.assert_array_equal(steps[k], ep[k])
        assert steps[k].dtype == ep[k].dtype


@pytest.mark.parametrize("background", [True, False])
def test_writer_commits_everything_on_close(store_path, background):
    EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM).close()
    with EpisodeWriter(store_path, background=background) as w:
        for i in range(5):
            w.add_episode(make_episode(i), task="t", seed=i, params={"k": i})
    assert w.committed == 5
    with EpisodeStore.open(store_path) as r:
        assert len(r) == 5
        for i in range(5):
            got = r.episode(i)
            np.testing.assert_array_equal(got.data["obs"], make_episode(i)["obs"])
            assert got.params == {"k": i} and got.seed == i


def test_bad_episode_raises_in_the_caller_and_the_writer_goes_on(store_path):
    EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM).close()
    with EpisodeWriter(store_path) as w:
        w.add_episode(make_episode(0), task="t")
        bad = make_episode(1)
        bad["obs"][0, 0] = np.nan
        with pytest.raises(StoreError, match="non-finite"):
            w.add_episode(bad, task="t")
        with pytest.raises(StoreError, match="source"):
            w.add_episode(make_episode(2), task="t", source="nope")
        w.add_episode(make_episode(3), task="t")
    with EpisodeStore.open(store_path) as r:
        assert len(r) == 2


def test_writer_refuses_a_store_locked_by_another_writer(store_path):
    s = EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM)
    with pytest.raises(StoreError, match="open for writing by another process"):
        EpisodeWriter(store_path, lock_timeout=0.2)
    s.close()


def test_writer_on_a_missing_store(tmp_path):
    with pytest.raises(FileNotFoundError):
        EpisodeWriter(tmp_path / "missing.zarr")
