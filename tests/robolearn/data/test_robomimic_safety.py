"""robomimic import/export never leave a partial result, and refuse to clobber foreign files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from robolearn.data import EpisodeStore, StoreError
from robolearn.data import store as store_mod
from robolearn.data.robomimic import export_robomimic, import_robomimic
from tests.support import make_episode


def _foreign(path, n=3, actions=lambda T: np.zeros((T, 7)), bad_demo=None):
    with h5py.File(path, "w") as f:
        for i in range(n):
            g = f.create_group(f"data/demo_{i}")
            T = 4
            obs = np.full((T, 3), float(i))
            if i == bad_demo:
                obs[2, 1] = np.nan
            g.create_dataset("obs/pos", data=obs)
            g.create_dataset("actions", data=actions(T))
            g.create_dataset("rewards", data=np.zeros(T))
            g.create_dataset("dones", data=np.array([0, 0, 0, 1]))
    return path


def _leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))


class TestImport:
    def test_failed_import_leaves_nothing_and_a_rerun_works(self, tmp_path):
        src = _foreign(tmp_path / "f.hdf5", bad_demo=2)
        out = tmp_path / "out.zarr"
        with pytest.raises(StoreError, match=r"demo_2 cannot be imported: obs has a non-finite "
                                             r"value.*nothing was written"):
            import_robomimic(src, out, obs_keys=["pos"], task="lift")
        assert not out.exists() and _leftovers(tmp_path) == []
        _foreign(src)  # fixed file: the re-run does not say "already exists"
        assert import_robomimic(src, out, obs_keys=["pos"], task="lift")["episodes"] == 3

    def test_interrupted_import_leaves_nothing(self, tmp_path, monkeypatch):
        src = _foreign(tmp_path / "f.hdf5")
        calls = {"n": 0}
        real = store_mod.EpisodeStore.add_episode

        def add(self, *a, **k):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # Ctrl-C half way
            return real(self, *a, **k)

        monkeypatch.setattr(store_mod.EpisodeStore, "add_episode", add)
        with pytest.raises(KeyboardInterrupt):
            import_robomimic(src, tmp_path / "out.zarr", obs_keys=["pos"], task="lift")
        assert not (tmp_path / "out.zarr").exists() and _leftovers(tmp_path) == []

    def test_killed_import_leftover_is_invisible_and_cleaned(self, tmp_path):
        # what kill -9 leaves: a hidden build dir of a dead process, never the store itself
        out = tmp_path / "out.zarr"
        dead = tmp_path / ".out.zarr.building-999999999-deadbeef"
        (dead / "data").mkdir(parents=True)
        import_robomimic(_foreign(tmp_path / "f.hdf5"), out, obs_keys=["pos"], task="lift")
        assert not dead.exists() and out.is_dir()

    def test_overwrite_replaces_only_when_done(self, tmp_path):
        src = _foreign(tmp_path / "f.hdf5")
        out = tmp_path / "out.zarr"
        import_robomimic(src, out, obs_keys=["pos"], task="lift")
        with pytest.raises(FileExistsError, match="already exists"):
            import_robomimic(src, out, obs_keys=["pos"], task="lift")
        bad = _foreign(tmp_path / "bad.hdf5", n=2, bad_demo=1)
        with pytest.raises(StoreError):
            import_robomimic(bad, out, obs_keys=["pos"], task="lift", overwrite=True)
        with EpisodeStore.open(out) as r:  # the old store is untouched
            assert len(r) == 3

    def test_one_dimensional_actions_are_one_column(self, tmp_path):
        src = _foreign(tmp_path / "f.hdf5", actions=lambda T: np.arange(T, dtype=float))
        import_robomimic(src, tmp_path / "o.zarr", obs_keys=["pos"], task="lift")
        with EpisodeStore.open(tmp_path / "o.zarr") as r:
            assert r.action_dim == 1
            np.testing.assert_array_equal(r.episode(0).data["action"][:, 0], np.arange(4))

    def test_other_action_shapes_are_refused_clearly(self, tmp_path):
        src = _foreign(tmp_path / "f.hdf5", actions=lambda T: np.zeros((T, 2, 2)))
        with pytest.raises(StoreError, match=r"actions have shape \(4, 2, 2\), expected \(T, Da\)"):
            import_robomimic(src, tmp_path / "o.zarr", obs_keys=["pos"], task="lift")
        with h5py.File(src, "a") as f:  # demos that disagree on the action size
            del f["data/demo_1/actions"]
            f["data/demo_1/actions"] = np.zeros((4, 3))
            del f["data/demo_0/actions"]
            f["data/demo_0/actions"] = np.zeros((4, 2))
            del f["data/demo_2/actions"]
            f["data/demo_2/actions"] = np.zeros((4, 2))
        with pytest.raises(StoreError, match="demo_1: actions have 3 columns"):
            import_robomimic(src, tmp_path / "o.zarr", obs_keys=["pos"], task="lift")
        assert not (tmp_path / "o.zarr").exists()


class TestExport:
    @pytest.fixture
    def dataset(self, store, store_path):
        for i in range(3):
            store.add_episode(make_episode(i), task="t")
        store.close()
        return store_path

    def test_overwrite_onto_a_directory_is_refused(self, dataset, tmp_path):
        out = tmp_path / "exp"
        out.mkdir()
        (out / "keep.txt").write_text("x")
        with pytest.raises(StoreError, match="it is a directory"):
            export_robomimic(dataset, out, overwrite=True)
        assert (out / "keep.txt").exists() and _leftovers(tmp_path) == []

    def test_overwrite_onto_a_foreign_file_is_refused(self, dataset, tmp_path):
        out = tmp_path / "notes.hdf5"
        out.write_text("my notes")
        with pytest.raises(StoreError, match="not a robomimic file written by robolearn"):
            export_robomimic(dataset, out, overwrite=True)
        other = _foreign(tmp_path / "other.hdf5")  # HDF5, but not ours
        with pytest.raises(StoreError, match="not a robomimic file written by robolearn"):
            export_robomimic(dataset, other, overwrite=True)
        assert out.read_text() == "my notes"

    def test_overwrite_our_own_export(self, dataset, tmp_path):
        out = tmp_path / "d.hdf5"
        export_robomimic(dataset, out)
        assert export_robomimic(dataset, out, overwrite=True)["episodes"] == 3

    def test_failed_export_leaves_no_partial(self, dataset, tmp_path, monkeypatch):
        def boom(*a, **k):
            raise OSError("disk full")

        monkeypatch.setattr(h5py.Group, "create_dataset", boom)
        with pytest.raises(OSError, match="disk full"):
            export_robomimic(dataset, tmp_path / "d.hdf5")
        assert not (tmp_path / "d.hdf5").exists() and _leftovers(tmp_path) == []
