"""Reads of committed data never substitute fill values or pass NaN on silently.

A missing chunk file reads as zeros in zarr, a damaged one raises a codec error deep inside
it; the store checks the chunk files of every committed range it reads and names the key,
rows, episode and file instead. Unknown tasks and non-finite values get the same treatment.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from robolearn.data import EpisodeStore, SequenceSampler, StoreError
from tests.support import make_episode


@pytest.fixture
def small_chunks(store_path):
    """6 episodes of 20 steps in chunks of 16 rows: episode 1 spans chunks 1 and 2."""
    with EpisodeStore.create(store_path, 5, 2, chunk_len=16) as s:
        for i in range(6):
            s.add_episode(make_episode(i, length=20), task=f"t{i % 2}", seed=i)
    return store_path


class TestMissingChunk:
    def test_load_episode_and_sampler_refuse(self, small_chunks):
        os.unlink(small_chunks / "data/obs/c/2/0")  # rows 32..47: episodes 1 and 2
        with EpisodeStore.open(small_chunks) as r:
            msg = r"data/obs rows 32\.\.47 \(episodes 1\.\.2\) are stored in chunk file .*c/2/0"
            with pytest.raises(StoreError, match=msg + r", which is missing"):
                r.load()
            with pytest.raises(StoreError, match=r"rows 32\.\.39 \(episode 1\)"):
                r.episode(1)
            np.testing.assert_array_equal(r.episode(0).data["obs"], make_episode(0, 20)["obs"])
            with pytest.raises(StoreError, match="fill value 0.0, so robolearn refuses"):
                SequenceSampler(r, 1, 1)

    @pytest.mark.parametrize("chunk", ["c/2/0", "c/7/0"])  # a middle chunk; the last one
    def test_append_refuses_and_changes_nothing(self, small_chunks, chunk):
        # appending would write into the last chunk, recreating a deleted one with zeros
        os.unlink(small_chunks / "data/obs" / chunk)
        before = {p: p.read_bytes() for p in small_chunks.rglob("*") if p.is_file()}
        with pytest.raises(StoreError, match=rf"data chunk file\(s\) data/obs/{chunk} of "
                                             r"committed episodes are missing.*refusing to append"):
            EpisodeStore.open(small_chunks, mode="a")
        after = {p: p.read_bytes() for p in small_chunks.rglob("*") if p.is_file()}
        assert after == before
        with EpisodeStore.open(small_chunks) as r:  # reading what is there still works
            np.testing.assert_array_equal(r.episode(0).data["obs"], make_episode(0, 20)["obs"])

    @pytest.mark.parametrize("damage", ["nan", "garbage"])
    def test_append_refuses_nonfinite_or_damaged_data(self, small_chunks, damage):
        if damage == "nan":
            obs = zarr.open_array(small_chunks / "data/obs", mode="r+")
            obs[45, 3] = np.nan  # episode 2, step 5
            match = r"refusing to append.*data/obs holds a non-finite value \(nan\) at row 45"
        else:
            f = small_chunks / "data/action/c/1/0"
            f.write_bytes(os.urandom(len(f.read_bytes())))
            match = r"refusing to append.*chunk file .*c/1/0 \(rows 16\.\.31\) is damaged"
        before = {p: p.read_bytes() for p in small_chunks.rglob("*") if p.is_file()}
        with pytest.raises(StoreError, match=match):
            EpisodeStore.open(small_chunks, mode="a")
        assert {p: p.read_bytes() for p in small_chunks.rglob("*") if p.is_file()} == before

    def test_bool_chunk_of_all_false_is_stored_and_checked(self, small_chunks):
        # success is False for 16 rows in a row: zarr would omit such a chunk by default
        assert (small_chunks / "data/success/c/0").is_file()
        os.unlink(small_chunks / "data/success/c/0")
        with EpisodeStore.open(small_chunks) as r, pytest.raises(StoreError, match="success"):
            r.load(["success"])


class TestDamagedChunk:
    @pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
    def test_codec_errors_become_store_errors(self, small_chunks, damage):
        f = small_chunks / "data/action/c/1/0"
        raw = f.read_bytes()
        f.write_bytes({"empty": b"", "truncated": raw[: len(raw) // 2],
                       "garbage": os.urandom(len(raw))}[damage])
        with EpisodeStore.open(small_chunks) as r:
            with pytest.raises(StoreError, match=r"cannot read data/action rows 0\.\.119: chunk "
                                                 r"file .*c/1/0 \(rows 16\.\.31\) is damaged"):
                r.load(["action"])
            with pytest.raises(StoreError, match="damaged"):
                r.episode(0)
            r.load(["obs"])  # the other keys still read


class TestNonFinite:
    def test_nan_edited_in_is_caught_naming_key_episode_row(self, small_chunks):
        obs = zarr.open_group(str(small_chunks), mode="r+")["data/obs"]
        obs[45, 3] = np.nan  # episode 2 (rows 40..59), step 5
        with EpisodeStore.open(small_chunks) as r:
            with pytest.raises(StoreError, match=r"data/obs holds a non-finite value \(nan\) at "
                                                 r"row 45 \(episode 2, step 5\)"):
                r.load()
            with pytest.raises(StoreError, match="episode 2, step 5"):
                r.episode(2)
            with pytest.raises(StoreError, match="non-finite"):
                SequenceSampler(r, 1, 1)
            assert np.isnan(r.load(["obs"], check_finite=False)["obs"][45, 3])
            r.episode(3)

    def test_inf_in_an_extra_key(self, store_path):
        with EpisodeStore.create(store_path, 5, 2, extras={"force": ((3,), "float64")}) as s:
            ep = make_episode(0, 10)
            ep["force"] = np.zeros((10, 3))
            s.add_episode(ep, task="t")
        zarr.open_group(str(store_path), mode="r+")["data/force"][7, 1] = -np.inf
        with EpisodeStore.open(store_path) as r, pytest.raises(StoreError,
                                                               match="data/force.*-inf.*row 7"):
            r.load()


def test_unknown_task_is_a_store_error(small_chunks):
    root = zarr.open_group(str(small_chunks), mode="r+")
    root.attrs["tasks"] = ["t0"]  # edited: t1 is gone from the task list
    with EpisodeStore.open(small_chunks) as r:
        with pytest.raises(StoreError, match=r"episode 1 has task 't1', which the store's task "
                                             r"list .*\['t0'\]"):
            r.task_ids()
        with pytest.raises(StoreError, match="unknown task"):
            SequenceSampler(r, 1, 1)
    with pytest.raises(StoreError, match="refusing to append.*episode 1 has task 't1'"):
        EpisodeStore.open(small_chunks, mode="a")
    # recover leaves out the episodes whose task id is unknown (it would have to invent one)
    from robolearn.data import check_store, recover_store

    assert check_store(small_chunks).recoverable == [0, 2, 4]
    rep = recover_store(small_chunks, small_chunks.parent / "fixed.zarr")
    assert rep.copied == [0, 2, 4] and "not in the store's task list" in rep.skipped[1]
    with EpisodeStore.open(small_chunks.parent / "fixed.zarr") as fixed:
        assert fixed.tasks == ["t0"] and len(fixed) == 3
        np.testing.assert_array_equal(fixed.episode(1).data["obs"], make_episode(2, 20)["obs"])


def test_reads_in_append_mode_see_new_chunks(small_chunks):
    with EpisodeStore.open(small_chunks, mode="a") as w:
        w.load()
        w.add_episode(make_episode(9, 40), task="t0")
        np.testing.assert_array_equal(w.load()["obs"][-40:], make_episode(9, 40)["obs"])
