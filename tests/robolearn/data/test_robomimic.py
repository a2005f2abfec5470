"""robomimic HDF5: our export loads in robomimic's own SequenceDataset; import round-trips."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from robolearn.data import EpisodeStore, StoreError
from robolearn.data.robomimic import export_robomimic, import_robomimic
from tests.support import make_episode


@pytest.fixture
def filled_path(store, store_path):
    for i in range(6):
        store.add_episode(
            make_episode(i), task=f"task-{i % 2}", seed=100 + i, params={"friction_scale": 1.5},
            policy_id="scripted", info={"attempt": i},
        )
    store.close()
    return store_path


@pytest.mark.robomimic
def test_export_loads_in_robomimics_sequence_dataset(filled_path, tmp_path):
    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset

    out = tmp_path / "demos.hdf5"
    info = export_robomimic(filled_path, out, val_fraction=0.34)
    assert info["episodes"] == 6 and info["valid"] == 2

    ObsUtils.initialize_obs_utils_with_obs_specs(
        {"obs": {"low_dim": ["state", "task_onehot"], "rgb": [], "depth": [], "scan": []}}
    )
    ds = SequenceDataset(
        hdf5_path=str(out), obs_keys=("state", "task_onehot"),
        dataset_keys=("actions", "rewards", "dones"), load_next_obs=True, frame_stack=1,
        seq_length=10, pad_frame_stack=True, pad_seq_length=True, get_pad_mask=False,
        goal_mode=None, hdf5_cache_mode="all", hdf5_use_swmr=True, hdf5_normalize_obs=False,
        filter_by_attribute=None,
    )
    with EpisodeStore.open(filled_path) as r:
        assert len(ds) == r.num_steps
        sample = ds[0]  # demo_0, t=0: a 10-step action sequence, edge padded
        ep0 = r.episode(0)
        T = len(ep0)
        expected = ep0.data["action"][np.minimum(np.arange(10), T - 1)]
        np.testing.assert_allclose(sample["actions"], expected)
        np.testing.assert_allclose(sample["obs"]["state"][0], ep0.data["obs"][0])
        assert sample["obs"]["task_onehot"][0].tolist() == [1.0, 0.0]

    train = SequenceDataset(
        hdf5_path=str(out), obs_keys=("state",), dataset_keys=("actions",), load_next_obs=False,
        frame_stack=1, seq_length=1, pad_frame_stack=True, pad_seq_length=True,
        get_pad_mask=False, goal_mode=None, hdf5_cache_mode=None, hdf5_use_swmr=True,
        hdf5_normalize_obs=False, filter_by_attribute="train",
    )
    assert len(train.demos) == 4


def test_export_import_round_trip_is_exact(filled_path, tmp_path):
    out = tmp_path / "demos.hdf5"
    export_robomimic(filled_path, out)
    back = tmp_path / "back.zarr"
    info = import_robomimic(out, back)
    assert info["episodes"] == 6
    with EpisodeStore.open(filled_path) as a, EpisodeStore.open(back) as b:
        assert len(a) == len(b) and a.tasks == b.tasks
        for i in range(len(a)):
            ea, eb = a.episode(i), b.episode(i)
            for k in ea.data:
                np.testing.assert_array_equal(ea.data[k], eb.data[k])
            assert (ea.task, ea.params, ea.seed, ea.source, ea.policy_id, ea.info) == (
                eb.task, eb.params, eb.seed, eb.source, eb.policy_id, eb.info)


def test_import_foreign_file_needs_obs_keys_and_task(tmp_path):
    src = tmp_path / "foreign.hdf5"
    with h5py.File(src, "w") as f:
        for i in range(2):
            g = f.create_group(f"data/demo_{i}")
            g.create_dataset("obs/robot0_eef_pos", data=np.zeros((4, 3)))
            g.create_dataset("obs/object", data=np.ones((4, 2)))
            g.create_dataset("actions", data=np.zeros((4, 7)))
            g.create_dataset("rewards", data=np.zeros(4))
            g.create_dataset("dones", data=np.array([0, 0, 0, 1]))
    with pytest.raises(StoreError, match="obs key 'state' not found.*robot0_eef_pos"):
        import_robomimic(src, tmp_path / "a.zarr")
    with pytest.raises(StoreError, match="records no task"):
        import_robomimic(src, tmp_path / "b.zarr", obs_keys=["robot0_eef_pos", "object"])
    info = import_robomimic(src, tmp_path / "c.zarr", obs_keys=["robot0_eef_pos", "object"],
                            task="lift")
    with EpisodeStore.open(tmp_path / "c.zarr") as r:
        assert info["episodes"] == 2 and r.obs_dim == 5 and r.action_dim == 7
        assert r.episode(1).data["success"].tolist() == [False, False, False, True]


def test_import_rejects_non_hdf5(tmp_path):
    bad = tmp_path / "x.hdf5"
    bad.write_text("not hdf5")
    with pytest.raises(StoreError, match="not a readable HDF5"):
        import_robomimic(bad, tmp_path / "y.zarr")


def test_export_refuses_to_overwrite(filled_path, tmp_path):
    out = tmp_path / "demos.hdf5"
    out.write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_robomimic(filled_path, out)
    assert out.read_text() == "keep me"
