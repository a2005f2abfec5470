"""diffusion_policy's zarr layout: the export is a zarr v2 store with ReplayBuffer's layout, an
exact round trip, foreign stores, refusals that name the problem. (zarr 2 opening the export
the way ReplayBuffer does: tests/robolearn/data/test_interop.py.)"""

from __future__ import annotations

import json

import numcodecs
import numpy as np
import pytest
import zarr

from robolearn import cli
from robolearn.data import EpisodeStore, StoreError
from robolearn.data.diffusion_policy import export_diffusion_policy, import_diffusion_policy
from tests.robolearn.data.test_lerobot import assert_same_episodes, fill


def test_round_trip_is_exact(tmp_path):
    src = fill(tmp_path / "a.zarr")
    info = export_diffusion_policy(src, tmp_path / "dp.zarr")
    assert info["episodes"] == 6 and info["skipped_incomplete"] == 1
    res = import_diffusion_policy(tmp_path / "dp.zarr", tmp_path / "b.zarr")
    assert res["episodes"] == 6 and res["not_imported"] == {}
    user = assert_same_episodes(src, tmp_path / "b.zarr")
    assert user["suite"] == "MT10" and user["imported_format"] == "diffusion_policy"


def test_layout_is_replay_buffers_in_zarr_v2(tmp_path):
    src = fill(tmp_path / "a.zarr")
    out = tmp_path / "dp.zarr"
    export_diffusion_policy(src, out)
    assert (out / ".zgroup").is_file() and not (out / "zarr.json").exists()
    zarray = json.loads((out / "data/obs/.zarray").read_text())
    assert zarray["zarr_format"] == 2 and zarray["dtype"] == "<f4"
    assert zarray["compressor"]["id"] == "blosc" and zarray["compressor"]["cname"] == "lz4"
    ends_meta = json.loads((out / "meta/episode_ends/.zarray").read_text())
    assert ends_meta["dtype"] == "<i8" and ends_meta["compressor"] is None
    root = zarr.open_group(str(out), mode="r", zarr_format=2)
    with EpisodeStore.open(src) as s:
        keep = s.complete_episodes()
        lengths = s.episode_lengths[keep]
        np.testing.assert_array_equal(root["meta/episode_ends"][:], np.cumsum(lengths))
        assert sorted(k for k, _ in root["data"].arrays()) == sorted(
            [*s.spec, "task_id"])
        rows = np.concatenate([np.arange(s.episode_ends[i] - s.episode_lengths[i],
                                         s.episode_ends[i]) for i in keep])
        np.testing.assert_array_equal(root["data/obs"][:], s.load()["obs"][rows])
        np.testing.assert_array_equal(root["data/task_id"][:],
                                      np.repeat(s.task_ids()[keep], lengths))
        assert root.attrs["robolearn"]["tasks"] == s.tasks


def test_a_foreign_store_needs_a_task_and_maps_its_state(tmp_path):
    path = tmp_path / "pusht.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    data = root.create_group("data")
    blosc = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
    rng = np.random.default_rng(0)
    for key, value in (("state", rng.normal(size=(10, 5)).astype(np.float32)),
                       ("keypoint", rng.normal(size=(10, 9, 2)).astype(np.float32)),
                       ("action", rng.normal(size=(10, 2)).astype(np.float32))):
        data.create_array(key, shape=value.shape, dtype=value.dtype, chunks=value.shape,
                          compressors=blosc)[:] = value
    ends = root.create_group("meta").create_array("episode_ends", shape=(2,), dtype="int64",
                                                  chunks=(2,), compressors=None)
    ends[:] = [4, 10]
    with pytest.raises(StoreError, match="records no task per episode: pass task="):
        import_diffusion_policy(path, tmp_path / "a.zarr")
    res = import_diffusion_policy(path, tmp_path / "a.zarr", task="push-v3")
    assert list(res["not_imported"]) == ["keypoint"]
    with EpisodeStore.open(tmp_path / "a.zarr") as s:
        assert len(s) == 2 and s.obs_dim == 5 and s.tasks == ["push-v3"]
        np.testing.assert_array_equal(s.episode(1).data["obs"], data["state"][4:10])
        assert not s.episode(0).data["success"].any()
    res = import_diffusion_policy(path, tmp_path / "b.zarr", task="push-v3",
                                  obs_keys=["state", "keypoint"])
    with EpisodeStore.open(tmp_path / "b.zarr") as s:
        assert s.obs_dim == 5 + 18


@pytest.mark.slow
def test_cli_export_format_diffusion_policy(tmp_path, capsys):
    src = fill(tmp_path / "a.zarr")
    out = tmp_path / "dp.zarr"
    assert cli.main(["export", f"dataset={src}", "format=diffusion_policy", f"out={out}",
                     f"run_dir={tmp_path / 'r'}"]) == 0
    assert "exported 6 episodes" in capsys.readouterr().out and (out / ".zgroup").exists()


# ------------------------------------------------------------------------------- refusals
@pytest.fixture
def exported(tmp_path):
    export_diffusion_policy(fill(tmp_path / "a.zarr"), tmp_path / "dp.zarr")
    return tmp_path / "dp.zarr"


def _refused(src, out, match, **kw):
    with pytest.raises(StoreError, match=match):
        import_diffusion_policy(src, out, **kw)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_our_zarr_v3_store_is_refused_with_what_to_do(tmp_path):
    src = fill(tmp_path / "a.zarr")
    _refused(src, tmp_path / "b.zarr", r"no .zgroup.*zarr v3 store.*format=diffusion_policy")


def test_a_missing_chunk_is_refused_naming_the_file(exported, tmp_path):
    (exported / "data/action/0.0").unlink()
    _refused(exported, tmp_path / "b.zarr", r"chunk file .*data/action/0.0 of data/action is "
             r"missing")


def test_a_truncated_chunk_is_refused(exported, tmp_path):
    chunk = exported / "data/obs/0.0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    _refused(exported, tmp_path / "b.zarr", r"chunk file .*data/obs/0.0 of data/obs is truncated"
             r" or damaged \(its Blosc header says \d+ bytes, the file has 20\)")


def test_arrays_shorter_than_the_episode_ends_are_refused(exported, tmp_path):
    meta = exported / "data/reward/.zarray"
    z = json.loads(meta.read_text())
    z["shape"] = [z["shape"][0] - 5]
    meta.write_text(json.dumps(z))
    _refused(exported, tmp_path / "b.zarr", r"data/reward has .* rows but meta/episode_ends says"
             r" .*truncated")


def test_episode_ends_that_do_not_increase_are_refused(exported, tmp_path):
    root = zarr.open_group(str(exported), mode="r+", zarr_format=2)
    ends = root["meta/episode_ends"][:]
    ends[2] = ends[1]
    root["meta/episode_ends"][:] = ends
    _refused(exported, tmp_path / "b.zarr", r"not strictly increasing at entry 2")


def test_a_directory_without_episode_ends_is_refused(tmp_path):
    root = zarr.open_group(str(tmp_path / "x.zarr"), mode="w", zarr_format=2)
    root.create_group("data")
    _refused(tmp_path / "x.zarr", tmp_path / "b.zarr", r"meta/episode_ends is missing")


def test_export_replaces_only_its_own_output(tmp_path):
    src = fill(tmp_path / "a.zarr")
    export_diffusion_policy(src, tmp_path / "dp.zarr")
    with pytest.raises(FileExistsError):
        export_diffusion_policy(src, tmp_path / "dp.zarr")
    export_diffusion_policy(src, tmp_path / "dp.zarr", overwrite=True)
    with pytest.raises(StoreError, match="refusing to overwrite"):
        export_diffusion_policy(src, src, overwrite=True)  # our zarr v3 store is not an export
