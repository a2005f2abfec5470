"""LeRobot dataset v3.0: the export's layout, an exact round trip, foreign data (LeRobot's
Meta-World layout) mapped with what cannot be mapped said, refusals that name the problem.
(LeRobot's own reader opening the export: tests/robolearn/data/test_interop.py.)"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robolearn import cli
from robolearn.data import EpisodeStore, StoreError
from robolearn.data import lerobot as lr
from robolearn.data.lerobot import export_lerobot, import_lerobot
from tests.support import make_episode

EXTRAS = {"ee_pos": ((3,), "float32"), "img": ((2, 3, 3), "uint8"), "contact": ((), "bool")}


def fill(path, n=7, incomplete=(4,)):
    """A store with extras of every rank, an incomplete episode and collect's attributes."""
    with EpisodeStore.create(path, 5, 2, extras=EXTRAS, tasks=["task-0", "task-1", "task-2"],
                             attrs={"suite": "MT10", "collect_seed": 0}) as s:
        for i in range(n):
            e = make_episode(i)
            rng = np.random.default_rng(100 + i)
            T = len(e["obs"])
            e["ee_pos"] = rng.normal(size=(T, 3)).astype(np.float32)
            e["img"] = rng.integers(0, 256, size=(T, 2, 3, 3)).astype(np.uint8)
            e["contact"] = rng.random(T) < 0.5
            s.add_episode(e, task=f"task-{i % 2}", seed=100 + i, params={"friction_scale": 1.5},
                          policy_id="scripted", info={"attempt": i}, complete=i not in incomplete)
    return path


def assert_same_episodes(src, back, episodes=None):
    with EpisodeStore.open(src) as a, EpisodeStore.open(back) as b:
        keep = a.complete_episodes() if episodes is None else episodes
        assert len(b) == len(keep) and a.tasks == b.tasks and a.spec == b.spec
        for j, i in enumerate(keep):
            ea, eb = a.episode(int(i)), b.episode(j)
            for k in ea.data:
                assert ea.data[k].dtype == eb.data[k].dtype, k
                np.testing.assert_array_equal(ea.data[k], eb.data[k], err_msg=k)
            assert (ea.task, ea.params, ea.seed, ea.source, ea.policy_id, ea.info,
                    ea.timestamp) == (eb.task, eb.params, eb.seed, eb.source, eb.policy_id,
                                      eb.info, eb.timestamp)
        return {k: v for k, v in b.attrs["user"].items()}


def test_round_trip_is_exact(tmp_path):
    src = fill(tmp_path / "a.zarr")
    info = export_lerobot(src, tmp_path / "lr")
    assert info["episodes"] == 6 and info["skipped_incomplete"] == 1
    res = import_lerobot(tmp_path / "lr", tmp_path / "b.zarr")
    assert res["episodes"] == 6 and res["not_imported"] == {} and res["notes"] == []
    user = assert_same_episodes(src, tmp_path / "b.zarr")
    assert user["suite"] == "MT10" and user["collect_seed"] == 0  # held-out checks still work
    assert user["imported_format"] == "lerobot"


def test_layout_is_lerobots_v3(tmp_path):
    src = fill(tmp_path / "a.zarr")
    export_lerobot(src, tmp_path / "lr", fps=20)
    root = tmp_path / "lr"
    info = json.loads((root / "meta/info.json").read_text())
    with EpisodeStore.open(src) as s:
        keep = s.complete_episodes()
        frames = int(s.episode_lengths[keep].sum())
        obs = s.load()["obs"][np.concatenate([np.arange(s.episode_ends[i] - s.episode_lengths[i],
                                                        s.episode_ends[i]) for i in keep])]
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (6, frames, 3)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] is None and info["splits"] == {"train": "0:6"}
    f = info["features"]
    assert f["observation.state"]["shape"] == [5] and f["action"]["dtype"] == "float32"
    assert f["next.success"] == {"dtype": "bool", "shape": [1], "names": None}
    assert f["img"]["shape"] == [2, 3, 3] and f["contact"]["shape"] == [1]
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert data.num_rows == frames
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 5)
    np.testing.assert_array_equal(
        np.asarray(data.column("observation.state").to_pylist(), np.float32), obs)
    fi = data.column("frame_index").to_numpy()
    np.testing.assert_allclose(data.column("timestamp").to_numpy(), fi / 20, rtol=1e-6)
    # tasks.parquet as pandas writes it: the task strings are the index
    pd = pytest.importorskip("pandas")  # what LeRobot reads it with
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert list(tasks.index) == ["task-0", "task-1", "task-2"]
    assert tasks.loc["task-1"].task_index == 1
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["dataset_to_index"] - e["dataset_from_index"] for e in eps] == \
        [e["length"] for e in eps]
    assert eps[0]["tasks"] == ["task-0"] and eps[3]["robolearn/store_index"] == 3
    assert eps[4]["robolearn/store_index"] == 5  # the incomplete episode 4 is left out
    stats = json.loads((root / "meta/stats.json").read_text())
    np.testing.assert_allclose(stats["observation.state"]["mean"], obs.astype(np.float64).mean(0))
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50",
                                    "q90", "q99"}
    assert stats["observation.state"]["count"] == [frames]


def test_data_past_the_file_size_goes_to_more_files_whole_episodes_each(tmp_path, monkeypatch):
    src = fill(tmp_path / "a.zarr", n=12, incomplete=())
    monkeypatch.setattr(lr, "DATA_FILE_MB", 0.004)  # ~4 KB: a couple of episodes a file
    info = export_lerobot(src, tmp_path / "lr")
    assert info["files"] > 3
    files = sorted((tmp_path / "lr" / "data").glob("chunk-000/file-*.parquet"))
    assert len(files) == info["files"]
    eps = pq.read_table(tmp_path / "lr/meta/episodes/chunk-000/file-000.parquet").to_pylist()
    for e in eps:
        rows = pq.read_table(files[e["data/file_index"]]).column("episode_index").to_numpy()
        assert (rows == e["episode_index"]).sum() == e["length"]
    import_lerobot(tmp_path / "lr", tmp_path / "b.zarr")
    assert_same_episodes(src, tmp_path / "b.zarr")


def _metaworld_like(root, n_eps=3, T=6):
    """A dataset in the layout of LeRobot's Meta-World data (lerobot/metaworld_mt50, v3.0):
    4-d state, 39-d environment state, an image, task_id, language task strings."""
    rng = np.random.default_rng(0)
    tasks = ["Push the puck to a goal", "Reach a goal position"]
    n = n_eps * T
    cols = {
        "observation.state": rng.normal(size=(n, 4)).astype(np.float32),
        "action": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
        "next.reward": rng.uniform(0, 1, n).astype(np.float32),
        "next.success": rng.random(n) < 0.3,
        "observation.environment_state": rng.normal(size=(n, 39)).astype(np.float32),
        "task_id": np.repeat(np.arange(n_eps) % 2, T).astype(np.int16),
        "timestamp": np.tile(np.arange(T) / 80, n_eps).astype(np.float32),
        "frame_index": np.tile(np.arange(T), n_eps).astype(np.int64),
        "episode_index": np.repeat(np.arange(n_eps), T).astype(np.int64),
        "index": np.arange(n, dtype=np.int64),
        "task_index": np.repeat(np.arange(n_eps) % 2, T).astype(np.int64),
    }
    table = {k: lr._arrow(v) for k, v in cols.items()}
    table["observation.image"] = pa.array([{"bytes": b"\x89PNG", "path": None}] * n)
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(table), root / "data/chunk-000/file-000.parquet")
    lr._write_tasks(root / "meta/tasks.parquet", tasks)
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table({
        "episode_index": np.arange(n_eps), "tasks": [[tasks[i % 2]] for i in range(n_eps)],
        "length": np.full(n_eps, T), "data/chunk_index": np.zeros(n_eps, int),
        "data/file_index": np.zeros(n_eps, int), "dataset_from_index": np.arange(n_eps) * T,
        "dataset_to_index": np.arange(1, n_eps + 1) * T}),
        root / "meta/episodes/chunk-000/file-000.parquet")
    feats = {k: lr._feature(v) for k, v in cols.items()}
    feats["observation.image"] = {"dtype": "image", "shape": [3, 480, 480], "names": None}
    (root / "meta/info.json").write_text(json.dumps({
        "codebase_version": "v3.0", "robot_type": "metaworld", "total_episodes": n_eps,
        "total_frames": n, "total_tasks": 2, "chunks_size": 1000, "fps": 80,
        "data_path": lr.DATA_PATH, "video_path": lr.VIDEO_PATH, "features": feats}))
    return cols, tasks


def test_lerobots_metaworld_data_maps_what_it_has_and_says_what_it_cannot(tmp_path):
    cols, tasks = _metaworld_like(tmp_path / "mw")
    res = import_lerobot(tmp_path / "mw", tmp_path / "mw.zarr")
    assert set(res["not_imported"]) == {"observation.image", "observation.environment_state",
                                        "task_id"}
    assert "image" in res["not_imported"]["observation.image"]
    assert any("4-d (hand xyz + gripper)" in n and "39-d" in n for n in res["notes"])
    assert any("obs_keys=[observation.environment_state]" in n for n in res["notes"])
    with EpisodeStore.open(tmp_path / "mw.zarr") as s:
        assert s.obs_dim == 4 and s.action_dim == 4 and s.tasks == tasks and len(s) == 3
        ep = s.episode(1)
        np.testing.assert_array_equal(ep.data["obs"], cols["observation.state"][6:12])
        np.testing.assert_array_equal(ep.data["reward"], cols["next.reward"][6:12])
        np.testing.assert_array_equal(ep.data["success"], cols["next.success"][6:12])
        assert ep.task == tasks[1] and ep.info["lerobot_episode"] == 1
    res = import_lerobot(tmp_path / "mw", tmp_path / "mw39.zarr", task="push-v3",
                         obs_keys=["observation.environment_state"])
    assert "observation.state" in res["not_imported"]
    with EpisodeStore.open(tmp_path / "mw39.zarr") as s:
        assert s.obs_dim == 39 and s.tasks == ["push-v3"]


@pytest.mark.slow
def test_cli_export_and_import_format_lerobot(tmp_path, capsys):
    src = fill(tmp_path / "a.zarr")
    cli.run("export", [f"dataset={src}", "format=lerobot", f"out={tmp_path / 'lr'}",
                       f"run_dir={tmp_path / 'r1'}"])
    assert "exported 6 episodes" in capsys.readouterr().out
    summary = cli.run("import", [f"src={tmp_path / 'lr'}", f"out={tmp_path / 'b.zarr'}",
                                 "format=lerobot", f"run_dir={tmp_path / 'r2'}"])
    assert summary["format"] == "lerobot" and summary["episodes"] == 6
    _metaworld_like(tmp_path / "mw")
    cli.run("import", [f"src={tmp_path / 'mw'}", f"out={tmp_path / 'mw.zarr'}",
                       f"run_dir={tmp_path / 'r3'}"])  # format=auto finds meta/info.json
    out = capsys.readouterr().out
    assert "not imported: observation.image: image" in out and "note: LeRobot's Meta-World" in out


# ------------------------------------------------------------------------------- refusals
@pytest.fixture
def exported(tmp_path):
    src = fill(tmp_path / "a.zarr")
    export_lerobot(src, tmp_path / "lr")
    return tmp_path / "lr"


def _refused(src, out, match, **kw):
    with pytest.raises(StoreError, match=match):
        import_lerobot(src, out, **kw)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))  # nothing left


def test_a_directory_that_is_not_a_lerobot_dataset_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    _refused(tmp_path / "x", tmp_path / "b.zarr", r"not a LeRobot dataset: .*meta/info.json")


def test_a_v2_dataset_is_refused_with_the_conversion(exported, tmp_path):
    path = exported / "meta/info.json"
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    _refused(exported, tmp_path / "b.zarr", r"codebase_version='v2.1'.*convert_dataset_v21_to_v30")


def test_a_truncated_data_file_is_refused_naming_it(exported, tmp_path):
    data = exported / "data/chunk-000/file-000.parquet"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    _refused(exported, tmp_path / "b.zarr", r"file-000.parquet.*damaged or truncated")


def test_a_missing_data_file_is_refused_naming_it(exported, tmp_path):
    (exported / "data/chunk-000/file-000.parquet").unlink()
    _refused(exported, tmp_path / "b.zarr", r"data file .*file-000.parquet is missing")


def test_frames_that_do_not_match_the_episode_table_are_refused(exported, tmp_path):
    data = exported / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data)
    pq.write_table(table.slice(0, table.num_rows - 3), data)  # the last 3 frames gone
    _refused(exported, tmp_path / "b.zarr", r"episode 5 should be frames .* truncated")


def test_a_truncated_info_json_is_refused(exported, tmp_path):
    path = exported / "meta/info.json"
    path.write_text(path.read_text()[:100])
    _refused(exported, tmp_path / "b.zarr", r"info.json is not valid JSON")


def test_unknown_obs_keys_are_named(exported, tmp_path):
    _refused(exported, tmp_path / "b.zarr", r"feature 'observation.pos' not found; its "
             r"features: \['observation.state'", obs_keys=["observation.pos"])


def test_export_replaces_only_its_own_output(tmp_path):
    src = fill(tmp_path / "a.zarr")
    out = tmp_path / "lr"
    export_lerobot(src, out)
    with pytest.raises(FileExistsError, match="overwrite=true"):
        export_lerobot(src, out)
    export_lerobot(src, out, overwrite=True)  # an earlier export: replaced
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="refusing to overwrite"):
        export_lerobot(src, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_failed_export_leaves_nothing(tmp_path, monkeypatch):
    src = fill(tmp_path / "a.zarr")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(lr, "_write_tasks", boom)
    with pytest.raises(OSError, match="disk full"):
        export_lerobot(src, tmp_path / "lr")
    assert not (tmp_path / "lr").exists() and not list(tmp_path.glob(".lr*"))
