"""The curriculum env and the residual env: gymnasium's checks, set_task at the next reset,
held-out goals, and δ = 0 reproducing the base policy's evaluation episode for episode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robolearn
import robolearn.rl  # noqa: F401  (registers the ids)
import sim
from robolearn.evaluate import evaluate_agent
from robolearn.rl.env import ENV_ID, TaskEnv
from robolearn.rl.residual import RESIDUAL_ENV_ID, ResidualEnv
from robolearn.rollout import FixedPhysics, episode_seed
from tests.robolearn.rl.helpers import tiny_base

pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space.*:UserWarning")


def test_the_env_is_made_by_its_id_and_passes_check_env():
    env = gym.make(ENV_ID, tasks=["reach-v3", "push-v3"])
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs.shape == (sim.OBS_DIM + 2,) and obs.dtype == np.float32
    assert obs[-2:].tolist() == ([1, 0] if info["task"] == "reach-v3" else [0, 1])


def test_set_task_changes_the_sampled_task_params_at_the_next_reset_not_before():
    env = TaskEnv(["reach-v3", "push-v3"])
    env.reset(seed=0)
    inner = env._envs[env._episode["task"]]
    env.set_task({"task": "push-v3", "params": {"actuator_gain_scale": 0.7, "action_latency": 2}})
    env.step(np.zeros(4, np.float32))  # the running episode keeps its physics
    assert inner.params == sim.TaskParams() and env._episode["arm"] == "stock"
    for _ in range(3):
        _, info = env.reset()
        assert info["task"] == "push-v3" and info["arm"] == "point"
        assert env._envs["push-v3"].params == sim.TaskParams(actuator_gain_scale=0.7,
                                                             action_latency=2)


def test_set_task_takes_a_whole_distribution_and_refuses_tasks_the_env_cannot_run():
    from curricula import Box, Component, TaskDistribution

    env = TaskEnv(["reach-v3"])
    dist = TaskDistribution(["reach-v3"], [Component("gap", (Box({"friction_scale": (0.5, 0.6)}),))])
    assert env.set_task(dist.to_dict()) == dist.version
    env.reset(seed=1)
    assert 0.5 <= env._envs["reach-v3"].params.friction_scale <= 0.6
    with pytest.raises(ValueError, match=r"\[.push-v3.\] this env cannot run"):
        env.set_task("push-v3")


def test_a_reset_seed_gives_the_same_episode():
    env = TaskEnv(["reach-v3", "push-v3"], seed=5)
    a, ia = env.reset(seed=11)
    b, ib = env.reset(seed=11)
    assert np.array_equal(a, b) and ia == ib


def test_training_goals_never_are_the_evaluations_held_out_goals():
    env = TaskEnv(["reach-v3"], heldout_seed=1000, heldout_episodes=5)
    held = episode_seed(1000, "reach-v3", 3)

    class Draws:  # the stream draws a held-out goal twice, then another one
        values = iter([held, held, 42])

        def integers(self, *args, **kwargs):
            return next(self.values)

    env._rng = Draws()
    assert env._goal_seed("reach-v3") == 42
    assert env._goal_seed.__self__._heldout >= {("reach-v3", held)}


def test_episodes_end_at_success_with_the_bonus_and_report_their_stats():
    env = TaskEnv(["reach-v3"], success_bonus=5.0, reward_scale=0.01)
    env.reset(seed=0)
    expert = sim.ScriptedExpert("reach-v3")
    for _ in range(500):
        obs, reward, terminated, truncated, info = env.step(
            expert.act(env._envs["reach-v3"].expert_observation()))
        if terminated or truncated:
            break
    assert terminated and info["episode_success"] and reward == pytest.approx(
        0.01 * info["mw_reward"] + 5.0)
    (stats,) = env.pop_episode_stats()
    assert stats["success"] and stats["task"] == "reach-v3" and env.pop_episode_stats() == []


def test_the_residual_env_is_made_by_its_id_and_passes_check_env(tmp_path):
    env = gym.make(RESIDUAL_ENV_ID, base=str(tiny_base(tmp_path)), horizon=20)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (sim.OBS_DIM + 1 + sim.ACTION_DIM,)
    assert np.array_equal(obs[-4:], env.unwrapped.base_action)


def test_zero_residual_reproduces_the_base_policys_evaluation_episode_for_episode(tmp_path):
    base_dir = tiny_base(tmp_path)
    horizon, n = 40, 3
    gap = sim.TaskParams(actuator_gain_scale=0.7, action_latency=1)
    for params in (sim.TaskParams(), gap):
        ref = evaluate_agent(robolearn.load_policy(base_dir, device="cpu"), "MT1:reach-v3",
                             episodes_per_task=n, num_envs=1, horizon=horizon,
                             physics=FixedPhysics(params), progress=False)
        env = ResidualEnv(base_dir, ["reach-v3"], horizon=horizon, terminate_on_success=True)
        for rec in ref.episodes:
            env.reset(options={"episode": {"task": "reach-v3", "seed": rec.seed,
                                           "params": params}})
            steps, ret, success = 0, 0.0, False
            while True:
                _, _, terminated, truncated, info = env.step(np.zeros(4, np.float32))
                steps += 1
                if not success:
                    ret += info["mw_reward"]
                success = success or info["success"]
                if terminated or truncated:
                    break
            # exactly the same floats: the same physics, step for step
            assert (success, steps if success else horizon, ret) == (
                rec.success, rec.steps, rec.episode_return)
