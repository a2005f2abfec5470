"""robolearn align: groups share their initial state, pairs stay within a group, the TPO
objective trains a loadable checkpoint that records its parent; one tiny iteration end to end,
killed mid-iteration and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import robolearn
from robolearn import cli
from robolearn.align.config import AlignConfig
from robolearn.align.loop import group_specs, score_and_pair
from robolearn.errors import ConfigError
from robolearn.rollout import FixedPhysics
from tests.support import ROOT

TASK = "reach-v3"


def test_groups_share_goal_and_physics_and_iterations_use_new_goals():
    cfg = AlignConfig(checkpoint="x", groups_per_task=3, rollouts_per_group=4)
    first = group_specs(cfg, [TASK, "push-v3"], 0, FixedPhysics())
    second = group_specs(cfg, [TASK, "push-v3"], 1, FixedPhysics())
    assert len(first) == 6 and all(len(g) == 4 for g in first)
    for g in first:
        assert len({(s.task, s.seed, s.params) for s in g}) == 1
        assert len({s.index for s in g}) == 4
    seeds = {s.seed for g in first for s in g} | {s.seed for g in second for s in g}
    assert len(seeds) == 12  # no goal twice, across iterations and tasks


def test_bad_align_options_are_refused():
    with pytest.raises(ConfigError, match="unknown align method 'tp'. Did you mean 'tpo'"):
        cli.compose("align", ["checkpoint=x", "method=tp"])
    with pytest.raises(ConfigError, match="missing required option checkpoint"):
        AlignConfig()
    with pytest.raises(ConfigError, match="eval_seed=4000, the rollout goals"):
        cli.compose("align", ["checkpoint=x", "eval_seed=4000"])


def test_pairs_never_cross_groups(tmp_path):
    from robolearn.rollout import EpisodeSpec, Trajectory

    def traj(group, success, steps):
        t = np.arange(steps)
        rec = {"obs": np.zeros((steps, 39), np.float32), "action": np.zeros((steps, 4), np.float32),
               "success": t == steps - 1 if success else np.zeros(steps, bool),
               "chunk_index": t // 4, "info_near_object": (t > 2).astype(np.float32),
               "info_grasp_success": np.zeros(steps, np.float32),
               "info_obj_to_target": np.ones(steps, np.float32)}
        return Trajectory(EpisodeSpec(TASK, group, group), "p", success, steps if success else None,
                          steps, 0.0, steps=rec)

    groups = [[traj(0, True, 20), traj(0, False, 30)], [traj(1, True, 10), traj(1, True, 40)]]
    cfg = AlignConfig(checkpoint="x", preset="efficiency", min_margin=0.0)
    scores, pairs = score_and_pair(cfg, groups)
    assert {(p.chosen, p.rejected) for p in pairs} == {(0, 1), (2, 3)}  # best vs worst, per group


def _debug_policy(tmp_path):
    run = tmp_path / "base"
    cli.run("pipeline", [f"collect.out={tmp_path}/demos.zarr", f"train.out={run}",
                         "train.progress=false", "ray.num_workers=0", "train.steps=40",
                         f"run_dir={tmp_path}/p"], preset="debug")
    return run


def _align_args(base, out):
    return [f"checkpoint={base}", f"out={out}", "ray.num_workers=0", "steps_per_iteration=6",
            "rollouts_per_group=3", "groups_per_task=2", "eval_episodes=2", "min_margin=0.0",
            "preset=efficiency"]


@pytest.mark.slow
def test_one_align_iteration_end_to_end_then_kill_9_and_resume(tmp_path):
    base = _debug_policy(tmp_path)
    out = tmp_path / "aligned"
    # One torch thread here and in the killed subprocesses below: CPU float reductions differ
    # with the thread count, and a rollout amplifies the last bit into another trajectory.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = cli.run("align", [*_align_args(base, out), f"run_dir={tmp_path}/a"],
                          preset="debug")
    finally:
        torch.set_num_threads(threads)
    rec = summary["iterations"][0]
    assert rec["pairs"] >= 1 and rec["rollouts"] == 6
    pairs = json.loads((out / "iter_0" / "pairs.json").read_text())
    assert all(p["margin"] >= 0 for p in pairs["pairs"])
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert config["objective"]["name"] == "tpo" and config["objective"]["iteration"] == 1
    assert config["objective"]["parent"] == str((base / "checkpoint").resolve())
    policy = robolearn.load_policy(out)
    assert policy.act(np.zeros(39, np.float32), task=TASK).shape == (4,)
    assert (out / "align.png").exists()
    # the held-out evaluation measures what the safe preset lowers (contacts recorded)
    nominal = rec["eval"]["nominal"]
    assert nominal["contact_steps"] is not None and nominal["peak_force"] is not None

    # the same command, killed at random moments, then run to the end: the same record
    out2 = tmp_path / "killed"
    argv = [sys.executable, "-m", "robolearn", "align", "--preset", "debug",
            *_align_args(base, out2), f"run_dir={tmp_path}/b"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    kills = 0
    # kill by progress, not by the clock (a fast machine finishes the tiny run in seconds):
    # once its rollouts are being written, then once its training has started
    for marker in (out2 / "iter_0", out2 / "iter_0" / "train"):
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 300
        while proc.poll() is None and not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(60)
    # (progress= is not a setting of the run: the resume may drop the bars)
    done = subprocess.run([*argv, "progress=false"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "step/s" not in done.stderr and "ep/s" not in done.stderr
    assert kills >= 1, "the command finished before it could be killed"
    a = json.loads((out / "align.json").read_text())["iterations"][0]
    b = json.loads((out2 / "align.json").read_text())["iterations"][0]
    assert (a["pairs"], a["eval"]) == (b["pairs"], b["eval"])
    # the baselines on the same settings run to a loadable checkpoint too (sft: beta = 0)
    for method in ("sft", "dpo", "bc"):
        o = tmp_path / f"m_{method}"
        s = cli.run("align", [*_align_args(base, o), f"method={method}",
                              f"run_dir={tmp_path}/{method}"], preset="debug")
        assert s["iterations"][0]["pairs"] == rec["pairs"]  # the same rollouts and pairs
        assert robolearn.load_policy(o).act(np.zeros(39, np.float32), task=TASK).shape == (4,)


@pytest.mark.slow
def test_videos_show_each_pair_side_by_side(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    base = _debug_policy(tmp_path)
    out = tmp_path / "aligned"
    args = [*_align_args(base, out), "method=sft", f"run_dir={tmp_path}/a"]
    summary = cli.run("align", [*args, "videos=1", "video_size=48"], preset="debug")
    rec = summary["iterations"][0]
    assert rec["videos"] == [str(out / "iter_0" / "videos" / f"pair0_{TASK}.mp4")]
    frames = imageio.mimread(rec["videos"][0])
    assert frames[0].shape == (48, 96, 3)  # chosen | rejected, each video_size pixels
    pair = json.loads((out / "iter_0" / "pairs.json").read_text())["pairs"][0]
    flat = json.loads((out / "align.json").read_text())["iterations"][0]
    assert flat["videos"] == rec["videos"] and pair["chosen"] != pair["rejected"]
    # the videos are not part of the run's settings: the run continues without them
    again = cli.run("align", [*args, "videos=0"], preset="debug")
    assert again["checkpoint"] == summary["checkpoint"]
