"""EpisodeStore: round trip, validation, locking, foreign/corrupt stores, crash-tail repair."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr
from zarr.core.array import AsyncArray
from zarr.core.sync import sync

from robolearn.data import EpisodeStore, StoreError
from tests.support import ACTION_DIM, OBS_DIM, make_episode


def _snapshot(path):
    """Every file under the store with its bytes (to prove 'nothing changed')."""
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith(".robolearn.lock")
    }


class TestRoundTrip:
    def test_episodes_and_meta_round_trip(self, store, store_path):
        eps = [make_episode(i) for i in range(4)]
        for i, ep in enumerate(eps):
            idx = store.add_episode(
                ep, task=f"task-{i % 2}", source="expert", params={"friction_scale": 1.0 + i},
                seed=i, policy_id="scripted", info={"attempt": i},
            )
            assert idx == i
        store.close()
        r = EpisodeStore.open(store_path)
        assert len(r) == 4
        assert r.num_steps == sum(len(e["obs"]) for e in eps)
        assert r.tasks == ["task-0", "task-1"]
        for i, ep in enumerate(eps):
            got = r.episode(i)
            for k in ep:
                np.testing.assert_array_equal(got.data[k], ep[k])
            assert got.task == f"task-{i % 2}"
            assert got.params == {"friction_scale": 1.0 + i}
            assert (got.seed, got.source, got.policy_id, got.info) == (i, "expert", "scripted", {"attempt": i})
        np.testing.assert_array_equal(r.task_ids(), [0, 1, 0, 1])

    def test_float64_input_is_stored_as_float32(self, store):
        ep = make_episode(0)
        ep["obs"] = ep["obs"].astype(np.float64)
        store.add_episode(ep, task="t")
        assert store.episode(0).data["obs"].dtype == np.float32

    def test_seed_none_and_layout_on_disk(self, store, store_path):
        store.add_episode(make_episode(1), task="t", seed=None)
        assert store.episode(0).seed is None
        root = zarr.open_group(str(store_path), mode="r")
        assert root["meta/episode_ends"][:].tolist() == [len(make_episode(1)["obs"])]
        assert root["data/obs"].shape == (len(make_episode(1)["obs"]), OBS_DIM)
        assert root.attrs["format"] == "robolearn.episode_store"

    def test_extras_are_declared_up_front(self, tmp_path):
        s = EpisodeStore.create(tmp_path / "x.zarr", OBS_DIM, ACTION_DIM,
                                extras={"ee_pos": ((3,), "float32")})
        ep = make_episode(2)
        ep["ee_pos"] = np.zeros((len(ep["obs"]), 3), np.float32)
        s.add_episode(ep, task="t")
        assert s.episode(0).data["ee_pos"].shape == (len(ep["obs"]), 3)
        s.close()

    def test_negative_and_out_of_range_episode_index(self, store):
        store.add_episode(make_episode(0), task="t")
        assert store.episode(-1).index == 0
        with pytest.raises(IndexError, match="out of range"):
            store.episode(1)


BAD_EPISODES = {
    "missing key": (lambda e: e.pop("reward"), "missing key"),
    "unknown key": (lambda e: e.__setitem__("rewrd", e["reward"]), "Did you mean 'reward'"),
    "wrong obs dim": (lambda e: e.__setitem__("obs", np.zeros((len(e["obs"]), 4), np.float32)),
                      r"obs.shape=.*expected \('T', 5\)"),
    "length mismatch": (lambda e: e.__setitem__("action", e["action"][:-1]), "one row per step"),
    "nan obs": (lambda e: e["obs"].__setitem__((1, 2), np.nan), "non-finite value nan at index"),
    "inf action": (lambda e: e["action"].__setitem__((0, 0), np.inf), "non-finite"),
    "bool as float": (lambda e: e.__setitem__("success", e["success"].astype(np.float32)),
                      "expected bool"),
    "string obs": (lambda e: e.__setitem__("obs", e["obs"].astype(str)), "expected a float"),
}


class TestValidation:
    @pytest.mark.parametrize("case", list(BAD_EPISODES))
    def test_bad_episode_is_refused_and_nothing_changes(self, store, store_path, case):
        store.add_episode(make_episode(0), task="t")
        before = _snapshot(store_path)
        ep = make_episode(1)
        mutate, message = BAD_EPISODES[case]
        mutate(ep)
        with pytest.raises(StoreError, match=message):
            store.add_episode(ep, task="t")
        assert _snapshot(store_path) == before
        assert len(store) == 1

    def test_empty_episode(self, store):
        with pytest.raises(StoreError, match="T=0"):
            store.add_episode(make_episode(0, length=0), task="t")

    @pytest.mark.parametrize(
        "meta, message",
        [
            (dict(task=""), "non-empty task"),
            (dict(task="t", source="simulated"), "expected one of"),
            (dict(task="t", seed=-3), "non-negative"),
            (dict(task="t", params={"x": float("nan")}), "finite"),
            (dict(task="t", params=[1, 2]), "expected a dict"),
        ],
    )
    def test_bad_metadata_is_refused(self, store, store_path, meta, message):
        before = _snapshot(store_path)
        with pytest.raises((StoreError, ValueError, TypeError), match=message):
            store.add_episode(make_episode(0), **meta)
        assert _snapshot(store_path) == before

    def test_read_only_store_refuses_writes(self, store, store_path):
        store.add_episode(make_episode(0), task="t")
        with EpisodeStore.open(store_path, mode="r") as r, pytest.raises(StoreError, match="read-only"):
            r.add_episode(make_episode(1), task="t")


class TestOpenErrors:
    def test_missing_path(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no episode store"):
            EpisodeStore.open(tmp_path / "nope.zarr")

    def test_a_file(self, tmp_path):
        p = tmp_path / "file.zarr"
        p.write_text("hello")
        with pytest.raises(StoreError, match="is a file"):
            EpisodeStore.open(p)

    def test_empty_directory(self, tmp_path):
        with pytest.raises(StoreError, match="no zarr.json"):
            EpisodeStore.open(tmp_path)

    def test_foreign_zarr_group(self, tmp_path):
        zarr.open_group(str(tmp_path / "other.zarr"), mode="w").create_array("x", shape=(3,), dtype="f4")
        with pytest.raises(StoreError, match="not a robolearn episode store"):
            EpisodeStore.open(tmp_path / "other.zarr")

    def test_zarr_v2_directory(self, tmp_path):
        p = tmp_path / "v2.zarr"
        p.mkdir()
        (p / ".zgroup").write_text('{"zarr_format": 2}')
        with pytest.raises(StoreError, match="zarr v2"):
            EpisodeStore.open(p)

    def test_corrupt_metadata(self, store, store_path):
        store.close()
        (store_path / "zarr.json").write_text("{not json")
        with pytest.raises(StoreError, match="corrupt"):
            EpisodeStore.open(store_path)

    def test_missing_array(self, store, store_path):
        store.add_episode(make_episode(0), task="t")
        store.close()
        import shutil

        shutil.rmtree(store_path / "meta" / "task")
        with pytest.raises(StoreError, match="corrupt or incomplete"):
            EpisodeStore.open(store_path)

    def test_create_refuses_to_clobber(self, store, store_path, tmp_path):
        with pytest.raises(FileExistsError, match="mode='a'"):
            EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM)
        other = tmp_path / "precious"
        other.mkdir()
        (other / "thesis.tex").write_text("...")
        with pytest.raises(StoreError, match="refusing to overwrite"):
            EpisodeStore.create(other, OBS_DIM, ACTION_DIM, overwrite=True)
        assert (other / "thesis.tex").exists()

    def test_one_writer_at_a_time(self, store, store_path):
        with pytest.raises(StoreError, match=f"pid {os.getpid()}"):
            EpisodeStore.open(store_path, mode="a")
        store.close()
        EpisodeStore.open(store_path, mode="a").close()


class TestCrashTailRepair:
    """A crash leaves rows/meta (and maybe a fill-value end) past the last commit."""

    def _simulate_crash_tail(self, store_path, with_fill_end: bool):
        root = zarr.open_group(str(store_path), mode="r+")
        n_rows = root["data/obs"].shape[0]
        extra = 7
        for key in ("obs", "action", "reward", "success"):
            a = root[f"data/{key}"]
            a.resize((n_rows + extra, *a.shape[1:]))
        n_ep = root["meta/task"].shape[0]
        root["meta/task"].resize((n_ep + 1,))
        if with_fill_end:  # the new end entry written past the shape, the commit not saved
            # (since schema 2 the shape grows last, with the commit record, in one metadata
            # write; a bare resize is refused, see test_store_corruption.py)
            ends = root["meta/episode_ends"]._async_array
            ahead = AsyncArray(metadata=ends.metadata.update_shape((n_ep + 1,)),
                               store_path=ends.store_path, config=ends.config)
            sync(ahead.setitem(slice(n_ep, n_ep + 1), np.array([n_rows + extra])))
        (store_path / "data" / "obs" / "c.abc.partial").write_bytes(b"torn")

    @pytest.mark.parametrize("with_fill_end", [False, True])
    def test_reader_ignores_and_writer_repairs_the_tail(self, store, store_path, with_fill_end):
        eps = [make_episode(i) for i in range(3)]
        for ep in eps:
            store.add_episode(ep, task="t")
        store.close()
        self._simulate_crash_tail(store_path, with_fill_end)

        with EpisodeStore.open(store_path, mode="r") as r:
            assert len(r) == 3
            np.testing.assert_array_equal(r.episode(2).data["obs"], eps[2]["obs"])

        with EpisodeStore.open(store_path, mode="a") as w:
            assert len(w) == 3
            assert not list(store_path.rglob("*.partial"))
            w.add_episode(make_episode(9), task="t")
        root = zarr.open_group(str(store_path), mode="r")
        total = sum(len(e["obs"]) for e in eps) + len(make_episode(9)["obs"])
        assert root["data/obs"].shape[0] == total
        assert root["meta/task"].shape[0] == 4
        with EpisodeStore.open(store_path) as r:
            np.testing.assert_array_equal(r.episode(3).data["action"], make_episode(9)["action"])
            np.testing.assert_array_equal(r.episode(1).data["action"], eps[1]["action"])


def test_attrs_record_spec_and_tasks(store, store_path):
    store.add_episode(make_episode(0), task="push-v3")
    meta = json.loads((store_path / "zarr.json").read_text())["attributes"]
    assert meta["schema_version"] == 2  # 2 since every chunk is stored (see store.py)
    assert meta["data_spec"]["obs"] == {"shape": [OBS_DIM], "dtype": "float32"}
    assert meta["tasks"] == ["push-v3"]


def test_a_crash_while_creating_leaves_no_half_made_store(store_path, monkeypatch):
    # the attrs are the last thing create() writes: fail there, as a kill would stop it
    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(zarr.core.attributes.Attributes, "update", boom)
    with pytest.raises(KeyboardInterrupt):
        EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM)
    monkeypatch.undo()
    assert not store_path.exists()
    EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM).close()  # and a retry works
    assert not list(store_path.parent.glob(".*creating*"))
