"""TwinRobot: observations, the action record, episodes, real-time pacing, the reality gap."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hardware import TwinRobot
from sim import HORIZON, ScriptedExpert, TaskParams, make_env

pytestmark = pytest.mark.timeout(60)


def test_observation_keys_shapes_and_dtypes(twin):
    obs = twin.get_observation()
    assert obs["state"].shape == (39,) and obs["state"].dtype == np.float64
    assert twin.observation_spec.shape == (39,)
    np.testing.assert_array_equal(obs["ee_pos"], obs["state"][:3])  # no noise by default
    assert obs["gripper"].shape == (1,)
    assert obs["success"].dtype == bool and obs["success"].shape == ()
    assert int(obs["step"]) == 0


def test_matches_the_sim_step_for_step(twin):
    env = make_env("reach-v3", seed=0)
    expected, _ = env.reset(seed=0)
    np.testing.assert_array_equal(twin.get_observation()["state"], expected)
    for a in np.random.default_rng(0).uniform(-1, 1, (5, 4)).astype(np.float32):
        sent = twin.send_action(a)
        expected = env.step(a)[0]
        np.testing.assert_array_equal(sent, a)
        np.testing.assert_array_equal(twin.get_observation()["state"], expected)
    assert len(twin.executed_actions) == 5


def test_expert_reaches_success_and_reset_episode_starts_over(twin):
    expert = ScriptedExpert("reach-v3")
    for _ in range(150):
        twin.send_action(expert.act(twin.env.expert_observation()))
        if twin.episode_success:
            break
    assert twin.episode_success and bool(twin.get_observation()["success"])
    obs = twin.reset_episode(task="push-v3", seed=5)
    assert twin.task == "push-v3" and int(obs["step"]) == 0 and not twin.episode_success


def test_horizon_needs_a_new_episode(twin):
    for _ in range(HORIZON):
        twin.send_action(np.zeros(4, np.float32))
    with pytest.raises(RuntimeError, match="reset_episode"):
        twin.send_action(np.zeros(4, np.float32))
    twin.reset_episode()
    twin.send_action(np.zeros(4, np.float32))


def test_reality_gap_noise_and_latency():
    params = TaskParams(obs_noise_std=0.05, action_latency=2)
    with TwinRobot("reach-v3", params=params, seed=0) as twin:
        obs = twin.get_observation()
        assert not np.allclose(obs["state"][:3], obs["ee_pos"])  # noisy state, clean ee_pos
        start = obs["ee_pos"].copy()
        twin.send_action(np.array([1, 0, 0, 0], np.float32))
        twin.send_action(np.zeros(4, np.float32))
        moved_early = twin.get_observation()["ee_pos"][0] - start[0]
        for _ in range(5):
            twin.send_action(np.zeros(4, np.float32))
        moved_late = twin.get_observation()["ee_pos"][0] - start[0]
    assert abs(moved_early) < 0.002 < moved_late  # the push arrived two steps late


def test_realtime_steps_at_the_control_rate():
    n = 16
    with TwinRobot("reach-v3", realtime=True) as twin:
        assert twin.control_hz == 80.0
        t0 = time.monotonic()
        for _ in range(n + 1):
            twin.send_action(np.zeros(4, np.float32))
        elapsed = time.monotonic() - t0
    # n periods after the first (immediate) step; generous upper bound for a busy 2-core box
    assert n * twin.period_s - 0.002 <= elapsed <= n * twin.period_s + 0.15


def test_realtime_jitter_varies_the_period():
    with TwinRobot("reach-v3", realtime=True, control_hz=200.0, jitter_std_s=0.002,
                   seed=1) as twin:
        stamps = []
        for _ in range(12):
            twin.send_action(np.zeros(4, np.float32))
            stamps.append(time.monotonic())
    periods = np.diff(stamps)
    assert periods.std() > 0.0005


def test_late_calls_count_as_overruns():
    with TwinRobot("reach-v3", realtime=True, control_hz=200.0) as twin:
        twin.send_action(np.zeros(4, np.float32))
        time.sleep(0.02)
        twin.send_action(np.zeros(4, np.float32))
        assert twin.overruns == 1


@pytest.mark.parametrize("kwargs", [{"control_hz": 0}, {"jitter_std_s": -1.0}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TwinRobot("reach-v3", **kwargs)


def test_unknown_task_names_the_closest():
    with pytest.raises(ValueError, match="reach-v3"):
        TwinRobot("reach-v2")
