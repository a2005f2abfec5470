"""Corrupt stores are refused (never "repaired" into fewer episodes); crash leftovers are not.

Two halves: states a crash can leave must still open (and append mode trims only what follows
the last commit); states it cannot leave must be refused in read and append mode without any
file changing, and check_store / recover_store must get every provable episode out.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from robolearn.data import EpisodeStore, StoreError, check_store, recover_store
from robolearn.data import store as store_mod
from robolearn.errors import RobolearnError
from tests.support import make_episode


def _snapshot(path):
    """Every file under the store with its bytes (to prove 'nothing changed')."""
    return {p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _fill(path, n, start=0, **create):
    with EpisodeStore.create(path, 5, 2, **create) as s:
        for i in range(start, start + n):
            s.add_episode(make_episode(i), task=f"t{i % 2}", seed=i)


def _assert_episodes(path, seeds):
    """The store holds exactly the episodes make_episode(seed) for these seeds, in order."""
    with EpisodeStore.open(path) as r:
        assert len(r) == len(seeds)
        for i, seed in enumerate(seeds):
            ep, ref = r.episode(i), make_episode(seed)
            for k in ref:
                np.testing.assert_array_equal(ep.data[k], ref[k], err_msg=f"episode {i} {k}")
            assert ep.seed == seed


def _raw_ends(path):
    return zarr.open_group(str(path), mode="r+")["meta/episode_ends"]


def test_store_error_is_a_robolearn_error():
    assert issubclass(StoreError, RobolearnError) and issubclass(StoreError, ValueError)


# ---------------------------------------------------------------------- refused, unchanged
class TestCorruptEndsAreRefused:
    def _refused(self, path, match):
        before = _snapshot(path)
        for mode in ("r", "a"):
            with pytest.raises(StoreError, match=match) as err:
                EpisodeStore.open(path, mode=mode)
            assert "recover_store" in str(err.value) and "check_store" in str(err.value)
        after = _snapshot(path)
        after.pop(".robolearn.lock", None)  # append mode takes the lock before it reads
        before.pop(".robolearn.lock", None)
        assert after == before, "a refused open changed files"

    def test_equal_entries_the_issue_repro(self, store_path):
        _fill(store_path, 4)
        ends = _raw_ends(store_path)
        v = ends[:]
        v[1] = v[0]
        ends[:] = v
        self._refused(store_path, r"not strictly increasing at entries 1 \(episode_ends\[1\]=")
        report = check_store(store_path)
        assert not report.ok and report.entries == 4
        # entries 0 and 1 contradict each other: episodes 0..2 have an unprovable boundary
        assert report.recoverable == [3]
        dst = store_path.parent / "rec.zarr"
        before = _snapshot(store_path)
        out = recover_store(store_path, dst)
        assert _snapshot(store_path) == before
        assert out.copied == [3] and set(out.skipped) == {0, 1, 2}
        _assert_episodes(dst, [3])

    def test_deleted_episode_ends_chunk(self, store_path):
        _fill(store_path, 4)
        os.unlink(store_path / "meta/episode_ends/c/0")
        self._refused(store_path, r"read as the fill value 0 \(chunk file\(s\) "
                                  r"meta/episode_ends/c/0 missing\); they were committed")
        report = check_store(store_path)
        assert report.recoverable == [] and report.unrecoverable == 4
        # the data rows are all still there: nothing was deleted
        root = zarr.open_group(str(store_path), mode="r")
        assert root["data/obs"].shape[0] == sum(len(make_episode(i)["obs"]) for i in range(4))

    def test_swapped_entries_keep_every_provable_episode(self, store_path):
        _fill(store_path, 30)
        ends = _raw_ends(store_path)
        v = ends[:]
        v[[11, 12]] = v[[12, 11]]
        ends[:] = v
        self._refused(store_path, r"not strictly increasing at entries 12")
        report = check_store(store_path)
        # entries 11 and 12 are suspect: episodes 11, 12 and 13 use one of them
        assert report.recoverable == [*range(11), *range(14, 30)]
        dst = store_path.parent / "rec.zarr"
        recover_store(store_path, dst)
        _assert_episodes(dst, [*range(11), *range(14, 30)])
        with EpisodeStore.open(dst) as r:
            assert r.tasks == ["t0", "t1"]
            assert r.attrs["user"]["recovered_from"]["episodes"] == [[0, 11], [14, 30]]

    def test_deleted_chunk_in_the_middle_later_episodes_recovered(self, store_path, monkeypatch):
        monkeypatch.setattr(store_mod, "META_CHUNK", 4)  # small chunks of meta/episode_ends
        _fill(store_path, 12)
        os.unlink(store_path / "meta/episode_ends/c/1")  # entries 4..7
        self._refused(store_path, r"not strictly increasing at entries 4.*c/1 missing")
        report = check_store(store_path)
        # 0..3 intact; 8 starts at the lost entry 7; 9..11 have both boundaries
        assert report.recoverable == [0, 1, 2, 3, 9, 10, 11]

    def test_ends_beyond_the_data(self, store_path):
        _fill(store_path, 3)
        obs = zarr.open_group(str(store_path), mode="r+")["data/obs"]
        obs.resize((obs.shape[0] - 5, obs.shape[1]))
        self._refused(store_path, r"episode_ends\[2\]=\d+ is beyond the end of data/obs")
        assert check_store(store_path).recoverable == [0, 1]

    def test_meta_shorter_than_the_commit(self, store_path):
        _fill(store_path, 3)
        zarr.open_group(str(store_path), mode="r+")["meta/task"].resize((2,))
        self._refused(store_path, r"meta/task has 2 entries but 3 episodes are committed")

    def test_bare_resize_of_episode_ends_is_not_a_commit(self, store_path):
        # a schema-2 commit writes its record with the resize; without it, it was not robolearn
        _fill(store_path, 3)
        _raw_ends(store_path).resize((5,))
        self._refused(store_path, r"commit record says the last commit wrote entries 2\.\.2")

    def test_shrunk_episode_ends_does_not_trim_the_data(self, store_path):
        _fill(store_path, 4)
        _raw_ends(store_path).resize((1,))  # would look like 3 uncommitted episodes
        self._refused(store_path, r"added or removed outside robolearn")

    def test_missing_meta_chunk(self, store_path):
        _fill(store_path, 3)
        os.unlink(store_path / "meta/task/c/0")
        self._refused(store_path, r"meta/task/c/0 of committed episodes are missing")
        assert check_store(store_path).recoverable == []

    def test_damaged_episode_ends_chunk(self, store_path):
        _fill(store_path, 3)
        (store_path / "meta/episode_ends/c/0").write_bytes(b"")
        for mode in ("r", "a"):
            with pytest.raises(StoreError, match=r"meta/episode_ends/c/0 \(rows 0\.\.2\)"):
                EpisodeStore.open(store_path, mode=mode)
        assert "cannot be decoded" in check_store(store_path).summary()

    def test_recover_refuses_its_own_source(self, store_path):
        _fill(store_path, 2)
        with pytest.raises(StoreError, match="source store"):
            recover_store(store_path, store_path)
        with pytest.raises(FileExistsError):
            recover_store(store_path, store_path.parent)


def test_check_and_recover_a_healthy_store(store_path, tmp_path):
    _fill(store_path, 5)
    report = check_store(store_path)
    assert report.ok and report.committed == 5 and report.recoverable == [0, 1, 2, 3, 4]
    assert json.loads(json.dumps(report.to_dict()))["unrecoverable"] == 0
    out = recover_store(store_path, tmp_path / "copy.zarr")
    assert out.copied == [0, 1, 2, 3, 4] and not out.skipped
    _assert_episodes(tmp_path / "copy.zarr", range(5))


# ---------------------------------------------------------------------- crash leftovers open
class _Crash(BaseException):
    """Stands in for kill -9 inside a commit."""


@pytest.fixture
def die_after(monkeypatch):
    """die_after(prefix, k): the process 'dies' at its (k+1)-th file write under ``prefix``.

    From then on every write fails too, as nothing runs after a kill, including zarr's
    concurrent writes of the same batch; the hook is removed once they have settled.
    """

    def arm(prefix: str, k: int = 0):
        real_set = LocalStore.set
        state = {"n": 0, "dead": False}

        async def set_(self, key, value):
            if not state["dead"] and key.startswith(prefix):
                state["n"] += 1
                state["dead"] = state["n"] > k
            if state["dead"]:
                raise _Crash(key)
            return await real_set(self, key, value)

        monkeypatch.setattr(LocalStore, "set", set_)

        def undo():
            time.sleep(0.2)  # let the batch's other (failing) writes finish
            monkeypatch.undo()

        return undo

    return arm


def _crash_commit(path, seeds, arm, prefix, k=0):
    """Open, arm the crash, commit ``seeds`` as one group commit, 'die' (drop the store)."""
    s = EpisodeStore.open(path, mode="a")
    undo = arm(prefix, k)
    with pytest.raises(_Crash):
        s._commit_many([(s.validate_episode(make_episode(i)),
                         store_mod.episode_meta(task=f"t{i % 2}", seed=i)) for i in seeds])
    undo()
    s.close()  # the kernel drops a dead process's flock the same way


# Each point of _commit_many, as the (k+1)-th write under a prefix: inside the row writes, inside
# the per-episode writes, before/after the end entries' chunk, and at the commit itself.
CRASH_POINTS = {
    "first-row-write": ("data/", 0),
    "mid-rows": ("data/", 3),
    "first-meta-write": ("meta/", 0),
    "mid-meta": ("meta/", 5),
    "ends-chunk": ("meta/episode_ends/c/", 0),
    "commit-metadata": ("meta/episode_ends/zarr.json", 0),
}


class TestCrashLeftoversAreNotRefused:
    @pytest.mark.parametrize("point", list(CRASH_POINTS))
    def test_each_crash_point_of_a_commit(self, store_path, die_after, point, caplog):
        _fill(store_path, 3)
        _crash_commit(store_path, [3, 4], die_after, *CRASH_POINTS[point])
        with EpisodeStore.open(store_path) as r:  # the batch in flight is not committed
            assert len(r) == 3
        assert check_store(store_path).ok
        with caplog.at_level(logging.WARNING), EpisodeStore.open(store_path, mode="a") as w:
            assert len(w) == 3
            w.add_episode(make_episode(9), task="t1", seed=9)
        if point != "first-row-write":
            assert "repaired" in caplog.text and "committed episodes are untouched" in caplog.text
        _assert_episodes(store_path, [0, 1, 2, 9])

    @pytest.mark.parametrize("written", [0, 1, 2])
    def test_crash_mid_group_commit_across_chunks(self, store_path, die_after, monkeypatch,
                                                  written):
        # chunks of 4 entries: a 6-episode commit from entry 3 writes chunks 0, 1 and 2
        monkeypatch.setattr(store_mod, "META_CHUNK", 4)
        _fill(store_path, 3)
        _crash_commit(store_path, range(3, 9), die_after, "meta/episode_ends/c/", written)
        with EpisodeStore.open(store_path) as r:  # entries past the shape stay invisible
            assert len(r) == 3
        with EpisodeStore.open(store_path, mode="a") as w:
            w.add_episode(make_episode(20), task="t0", seed=20)
        _assert_episodes(store_path, [0, 1, 2, 20])

    def test_stale_entries_past_the_end_never_show(self, store_path, die_after):
        # the old repair shrank meta/episode_ends over real entries and left them in its last
        # chunk, past the shape; a crash of the next commit must not make them visible
        _fill(store_path, 4)
        _raw_ends(store_path).resize((1,))  # zarr keeps chunk 0 with entries 1..3
        zarr.open_group(str(store_path), mode="r+")["meta/episode_ends"].attrs[
            store_mod.COMMIT_ATTR] = {"from": 0, "to": 1}
        for key in ("data/obs", "data/action", "data/reward", "data/success"):
            a = zarr.open_group(str(store_path), mode="r+")[key]
            a.resize((len(make_episode(0)["obs"]), *a.shape[1:]))
        for f in store_mod.META_FIELDS:
            zarr.open_group(str(store_path), mode="r+")[f"meta/{f}"].resize((1,))
        _assert_episodes(store_path, [0])
        _crash_commit(store_path, [5], die_after, "meta/episode_ends/zarr.json")
        _assert_episodes(store_path, [0])
        with EpisodeStore.open(store_path, mode="a") as w:
            w.add_episode(make_episode(6), task="t0", seed=6)
        _assert_episodes(store_path, [0, 6])

    def test_torn_rows_without_any_commit(self, store_path):
        # a crash inside the row writes: some data arrays longer, with partial chunks
        _fill(store_path, 2)
        root = zarr.open_group(str(store_path), mode="r+")
        obs = root["data/obs"]
        n = obs.shape[0]
        obs.resize((n + 50, 5))
        obs[n : n + 20] = np.ones((20, 5), np.float32)
        root["meta/seed"].resize((3,))
        _assert_episodes(store_path, [0, 1])
        with EpisodeStore.open(store_path, mode="a") as w:
            w.add_episode(make_episode(7), task="t1", seed=7)
        _assert_episodes(store_path, [0, 1, 7])

    def test_crash_while_repairing(self, store_path, die_after):
        _fill(store_path, 3)
        _crash_commit(store_path, [3], die_after, "meta/episode_ends/zarr.json")
        # the repair trims the arrays one by one; die after the first
        undo = die_after("", 1)
        with pytest.raises(_Crash):
            EpisodeStore.open(store_path, mode="a")
        undo()
        with EpisodeStore.open(store_path, mode="a") as w:
            assert len(w) == 3
        _assert_episodes(store_path, [0, 1, 2])

    def test_a_reader_during_a_commit_sees_the_committed_prefix(self, store_path, die_after):
        # what a concurrent reader can see mid-commit is a crash state: never refused
        _fill(store_path, 3)
        _crash_commit(store_path, [3, 4], die_after, "meta/episode_ends/zarr.json")
        with EpisodeStore.open(store_path) as r:
            assert len(r) == 3


class TestSchemaOneStores:
    """Stores written before schema 2: no commit record, chunks of fill values omitted."""

    def _make_v1(self, path, n=3):
        _fill(path, n)
        root = zarr.open_group(str(path), mode="r+")
        root.attrs["schema_version"] = 1
        del root["meta/episode_ends"].attrs[store_mod.COMMIT_ATTR]
        return root

    def test_reads_and_appends_as_version_1(self, store_path):
        self._make_v1(store_path)
        with EpisodeStore.open(store_path, mode="a") as w:
            assert w.schema_version == 1
            w.add_episode(make_episode(3), task="t1", seed=3)
        _assert_episodes(store_path, range(4))
        assert zarr.open_group(str(store_path)).attrs["schema_version"] == 1

    def test_single_fill_entry_is_an_old_crash_tail(self, store_path):
        root = self._make_v1(store_path)
        root["meta/episode_ends"].resize((4,))  # what the old code's crash left
        with EpisodeStore.open(store_path, mode="a") as w:
            assert len(w) == 3
        _assert_episodes(store_path, range(3))

    def test_several_fill_entries_are_not_guessed(self, store_path):
        root = self._make_v1(store_path)
        root["meta/episode_ends"].resize((5,))
        with pytest.raises(StoreError, match="robolearn does not guess"):
            EpisodeStore.open(store_path, mode="a")
        assert check_store(store_path).recoverable == [0, 1, 2]

    def test_absent_data_chunk_reads_as_zeros_with_a_warning(self, store_path, caplog):
        self._make_v1(store_path)
        os.unlink(store_path / "data/obs/c/0/0")
        os.unlink(store_path / "data/success/c/0")
        with caplog.at_level(logging.WARNING), EpisodeStore.open(store_path) as r:
            obs = r.load(["obs"])["obs"]
        assert not obs.any() and "either all-zero data or a deleted chunk" in caplog.text
        assert check_store(store_path).ok  # schema 1 cannot tell; the report says so
        assert "cannot be told" in check_store(store_path).summary()
