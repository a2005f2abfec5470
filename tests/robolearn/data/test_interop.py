"""The foreign readers open our exports, in their own venvs (bash scripts/setup_interop.sh;
CI's .ci/run sets them up): LeRobot's LeRobotDataset (LeRobot 0.4.4, in .venv-robomimic, which
has the torch + torchvision pair its dataset code imports) and zarr 2, the zarr diffusion_policy's
ReplayBuffer is written for (.venv-zarr2). Without those venvs these tests are skipped."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from robolearn.data import EpisodeStore
from robolearn.data.diffusion_policy import export_diffusion_policy
from robolearn.data.lerobot import export_lerobot
from tests.robolearn.data.test_lerobot import fill
from tests.support import ROOT

HERE = ROOT / "tests" / "robolearn" / "data"


def side_python(venv: str, package_file: str) -> str | None:
    """The venv's python when it exists and holds ``package_file`` (a cheap look at the
    files: importing torch in a subprocess at collection would cost seconds every run)."""
    python = ROOT / venv / "bin" / "python"
    found = list((ROOT / venv).glob(f"lib/python3*/site-packages/{package_file}"))
    return str(python) if python.exists() and found else None


def run_check(python: str, script: str, path, **env) -> dict:
    out = subprocess.run([python, str(HERE / script), str(path)], capture_output=True,
                         text=True, timeout=300, cwd=ROOT,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                              "HOME": str(path.parent), **env})
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


LEROBOT = side_python(".venv-robomimic", "lerobot/datasets/lerobot_dataset.py")
ZARR2 = side_python(".venv-zarr2", "zarr/__init__.py")


def _rows(store):
    keep = store.complete_episodes()
    return keep, np.concatenate([np.arange(store.episode_ends[i] - store.episode_lengths[i],
                                           store.episode_ends[i]) for i in keep])


@pytest.mark.slow
@pytest.mark.skipif(LEROBOT is None, reason="needs LeRobot's side venv: bash "
                    "scripts/setup_interop.sh")
def test_lerobots_own_dataset_class_reads_our_export(tmp_path):
    src = fill(tmp_path / "a.zarr")
    export_lerobot(src, tmp_path / "lr")
    got = run_check(LEROBOT, "lerobot_check.py", tmp_path / "lr")
    with EpisodeStore.open(src) as s:
        keep, rows = _rows(s)
        data = {k: v[rows] for k, v in s.load().items()}
        assert got["codebase_version"] == "v3.0" and got["fps"] == 80
        assert got["len"] == len(rows) and got["episodes"] == len(keep)
        assert got["tasks"] == s.tasks
        assert got["episode_lengths"] == s.episode_lengths[keep].tolist()
    np.testing.assert_allclose(got["stats_obs_mean"], data["obs"].astype(np.float64).mean(0))
    # frame 0: the observation history pads with frame 0, the action chunk is frames 0..3
    first = got["items"]["0"]
    np.testing.assert_array_equal(np.float32(first["observation.state"]),
                                  data["obs"][[0, 0]])
    assert first["observation.state_is_pad"] == [True, False]
    np.testing.assert_array_equal(np.float32(first["action"]), data["action"][0:4])
    assert first["task"] == "task-0" and first["next.success"] == bool(data["success"][0])
    np.testing.assert_array_equal(np.uint8(first["img"]), data["img"][0])
    assert first["next.reward"] == pytest.approx(float(data["reward"][0]))
    # the last frame: the chunk runs past the episode's end and is padded
    last = got["items"][str(len(rows) - 1)]
    assert last["action_is_pad"] == [False, True, True, True] and last["next.done"] is True
    np.testing.assert_array_equal(np.float32(last["action"]), data["action"][[-1] * 4])
    assert got["batch"]["action"] == [8, 4, 2] and got["batch"]["observation.state"] == [8, 2, 5]


@pytest.mark.skipif(ZARR2 is None, reason="needs the zarr 2 side venv: bash "
                    "scripts/setup_interop.sh")
def test_zarr_2_opens_our_diffusion_policy_export_as_replay_buffer_does(tmp_path):
    src = fill(tmp_path / "a.zarr")
    export_diffusion_policy(src, tmp_path / "dp.zarr")
    got = run_check(ZARR2, "dp_check.py", tmp_path / "dp.zarr")
    assert got["zarr"].startswith("2.")
    with EpisodeStore.open(src) as s:
        keep, rows = _rows(s)
        data = {k: v[rows] for k, v in s.load().items()}
        assert got["ends"] == np.cumsum(s.episode_lengths[keep]).tolist()
        assert got["keys"] == sorted([*s.spec, "task_id"]) and got["attrs_tasks"] == s.tasks
    assert got["dtypes"]["obs"] == "float32" and got["dtypes"]["success"] == "bool"
    assert got["compressor"].startswith("Blosc(cname='lz4'")
    np.testing.assert_array_equal(np.float32(got["first_window"]["obs"]), data["obs"][[0, 0, 1, 2]])


@pytest.mark.skipif(ZARR2 is None, reason="needs the zarr 2 side venv: bash "
                    "scripts/setup_interop.sh")
def test_zarr_2_cannot_open_our_zarr_3_store(tmp_path):
    """Why the export exists: the episode store itself is zarr v3, which zarr 2 cannot read."""
    src = fill(tmp_path / "a.zarr")
    out = subprocess.run([ZARR2, str(HERE / "dp_check.py"), str(src)], capture_output=True,
                         text=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
