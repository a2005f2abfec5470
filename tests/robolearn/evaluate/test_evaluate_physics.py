"""Evaluation under physics: a fixed TaskParams point (a reality gap) or a randomisation,
recorded in the report; rollouts kept in an episode store with source=policy."""

from __future__ import annotations

import pytest

from robolearn.cli import compose
from robolearn.data import EpisodeStore
from robolearn.errors import ConfigError
from robolearn.evaluate import ExpertAgent, evaluate_agent, run_evaluate
from robolearn.rollout import FixedPhysics, episode_seed, physics_from_config
from robolearn.rollout.physics import RandomizationConfig

SUITE, TASK = "MT1:reach-v3", "reach-v3"


def _cfg(tmp_path, *extra):
    return compose("evaluate", ["checkpoint=expert", f"suite={SUITE}", "episodes_per_task=3",
                                "num_envs=3", "ray.num_workers=0", f"out={tmp_path}", *extra])


def test_a_reality_gap_is_measured_by_the_same_evaluator(tmp_path):
    import sim

    # 150 steps: three times what the expert needs at stock gain, far too few at a tenth of it
    stock = evaluate_agent(ExpertAgent(), SUITE, episodes_per_task=3, num_envs=3, horizon=150,
                           progress=False)
    weak = evaluate_agent(ExpertAgent(), SUITE, episodes_per_task=3, num_envs=3, horizon=150,
                          physics=FixedPhysics(sim.TaskParams(actuator_gain_scale=0.1)),
                          progress=False)
    assert stock.mean_success == 1.0 and weak.mean_success == 0.0
    assert stock.physics["mode"] == "default" and weak.physics["mode"] == "fixed"
    assert weak.episodes[0].params["actuator_gain_scale"] == 0.1
    assert stock.episodes[0].params is None  # stock physics: not repeated per episode
    assert stock.seeds == weak.seeds  # the same held-out goals


def test_randomised_physics_is_drawn_from_each_goal_seed_and_reported(tmp_path):
    report = run_evaluate(_cfg(tmp_path, "randomize.friction_scale=[0.5,1.5]"), tmp_path)
    physics = physics_from_config(None, RandomizationConfig(friction_scale=[0.5, 1.5]))
    episodes = report["runs"][0]["episodes"]
    for i, ep in enumerate(episodes):
        want, _ = physics.draw(TASK, episode_seed(1000, TASK, i))
        assert ep["params"] == want.to_dict()
    assert report["physics"]["mode"] == "randomized"
    assert report["physics"]["ranges"]["friction_scale"] == [0.5, 1.5]


def test_a_point_and_a_box_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="params.* .*randomize.*give one of them"):
        _cfg(tmp_path, "params.friction_scale=0.8", "randomize.obs_noise_std=[0,0.01]")
    with pytest.raises(ConfigError, match="out of range"):
        _cfg(tmp_path, "params.actuator_gain_scale=50")


def test_rollouts_are_kept_in_a_store_with_source_policy(tmp_path):
    store = tmp_path / "rollouts.zarr"
    report = run_evaluate(_cfg(tmp_path, f"save_rollouts={store}"), tmp_path)
    assert report["runs"][0]["rollouts"] == {"store": str(store), "episodes": [0, 3]}
    with EpisodeStore.open(store) as s:
        assert len(s) == 3 and set(s.meta("source")) == {"policy"}
        ep = s.episode(0)
        assert ep.seed == episode_seed(1000, TASK, 0) and ep.info["success"]
        assert {"applied_action", "chunk_index", "info_near_object"} <= set(ep.data)


def test_a_task_distribution_file_drives_physics_and_initial_states(tmp_path):
    import numpy as np

    import sim
    from curricula import Box, Component, EmpiricalInit, TaskDistribution

    env = sim.make_env(TASK)
    env.reset(seed=123)
    start = tuple(float(x) for x in env.rand_vec)
    dist = TaskDistribution([TASK], [Component("gap", [
        Box({"actuator_gain_scale": (0.1, 0.1)}), EmpiricalInit({TASK: [list(start)]})])])
    path = dist.save(tmp_path / "dist.json")
    report = run_evaluate(_cfg(tmp_path, f"distribution={path}", "horizon=150"), tmp_path)
    assert report["physics"]["mode"] == "distribution"
    assert report["physics"]["fingerprint"] == dist.fingerprint()
    assert report["mean_success"] == 0.0  # a tenth of the arm's gain: 150 steps are too few
    assert all(ep["params"]["actuator_gain_scale"] == 0.1 for ep in report["runs"][0]["episodes"])
    # every episode started from the distribution's initial condition, whatever its goal seed
    physics = physics_from_config(distribution=str(path))
    for i in range(3):
        _, rand_vec = physics.draw(TASK, episode_seed(1000, TASK, i))
        assert np.allclose(rand_vec, start)
    with pytest.raises(ConfigError, match="does not cover task.*push-v3"):
        compose("evaluate", ["checkpoint=expert", "suite=MT1:push-v3", f"distribution={path}"])
    with pytest.raises(ConfigError, match="distribution=.* together with params"):
        _cfg(tmp_path, f"distribution={path}", "params.friction_scale=0.5")
