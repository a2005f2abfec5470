"""The chosen-vs-rejected MP4s replay the rollouts they show, exactly."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from robolearn.align.videos import pair_video, replay_trajectories
from robolearn.rollout import EpisodeSpec, ExpertAgent, RolloutOptions, make_envs, run_batch

TASK = "push-v3"


def _rollouts(params: sim.TaskParams, n: int = 2, horizon: int = 60) -> list:
    specs = [EpisodeSpec(TASK, j, 123 + j, params) for j in range(n)]
    envs = make_envs(TASK, n)
    return run_batch(ExpertAgent(task_noise=0.3), envs, specs,
                     RolloutOptions(horizon=horizon, record="steps"))


def test_replay_reproduces_rollouts_under_latency_and_noise():
    # latency and action noise are in the recorded applied actions; gain and friction are
    # physics the replay keeps
    params = sim.TaskParams(action_latency=2, action_noise_std=0.1, obs_noise_std=0.01,
                            actuator_gain_scale=0.8, friction_scale=1.3)
    trajs = _rollouts(params)
    assert not np.array_equal(trajs[0].steps["applied_action"], trajs[1].steps["applied_action"])
    replays = replay_trajectories(trajs)
    for t, r in zip(trajs, replays):
        assert r.length == t.length and r.success == t.success
        np.testing.assert_array_equal(r.steps["applied_action"], t.steps["applied_action"])
        np.testing.assert_array_equal(r.steps["reward"], t.steps["reward"])
        for key in ("info_obj_to_target", "info_near_object", "info_grasp_success"):
            np.testing.assert_array_equal(r.steps[key], t.steps[key])


def test_a_replay_that_forgets_the_physics_would_differ():
    """The check above can fail: the same actions under other physics give another rollout."""
    params = sim.TaskParams(actuator_gain_scale=0.8)
    (t,) = _rollouts(params, n=1)
    other = t.__class__(**{**t.__dict__, "spec": EpisodeSpec(TASK, 0, 123, sim.TaskParams())})
    (r,) = replay_trajectories([other])
    assert not np.array_equal(r.steps["reward"], t.steps["reward"])


def test_bad_input_is_refused():
    trajs = _rollouts(sim.TaskParams(), n=1, horizon=5)
    other = run_batch(ExpertAgent(), make_envs("reach-v3", 1), [EpisodeSpec("reach-v3", 0, 1)],
                      RolloutOptions(horizon=5, record="steps"))
    with pytest.raises(ValueError, match="one task at a time"):
        replay_trajectories(trajs + other)
    summary = run_batch(ExpertAgent(), make_envs(TASK, 1), [EpisodeSpec(TASK, 0, 1)],
                        RolloutOptions(horizon=5))
    with pytest.raises(ValueError, match="record='steps'"):
        replay_trajectories(summary)


@pytest.mark.slow
def test_pair_video_is_side_by_side(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    trajs = _rollouts(sim.TaskParams(), horizon=12)
    path = pair_video(trajs[0], trajs[1], tmp_path / "pair.mp4", size=64)
    frames = imageio.mimread(path)
    longest = max(t.length for t in trajs)
    assert len(frames) == longest + 1  # the reset frame + every step of the longer one
    assert frames[0].shape == (64, 128, 3)
