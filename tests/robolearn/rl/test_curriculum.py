"""The curriculum's arms, learning-progress updates and JSON state; the PPO RLModule."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("ray.rllib")

from curricula import Box, RegionGrid, TaskDistribution  # noqa: E402
from robolearn.rl.callbacks import ArmSpace, Curriculum  # noqa: E402
from robolearn.rl.module import ResidualPPOModule, model_config  # noqa: E402


def _regions():
    box = Box({"actuator_gain_scale": (0.6, 1.0)})
    return RegionGrid(box, {"actuator_gain_scale": 2}).distribution(["push-v3", "reach-v3"])


def _episodes(arm, successes):
    return [{"arm": arm, "task": arm.split("|")[0], "success": bool(s), "return": 10.0 * s,
             "length": 10} for s in successes]


def test_arms_are_task_region_pairs_and_their_distribution_draws_each_arm():
    space = ArmSpace(_regions())
    assert len(space.arms) == 4 and space.arms[0] == "push-v3|actuator_gain_scale:0/2"
    probs = dict.fromkeys(space.arms, 0.0) | {space.arms[3]: 1.0}
    dist = space.distribution(probs)
    s = dist.sample(np.random.default_rng(0))
    assert s.component == space.arms[3] and s.task == "reach-v3"
    assert 0.8 <= s.params.actuator_gain_scale <= 1.0


def test_learning_progress_moves_episodes_to_the_arm_that_improves():
    cur = Curriculum(_regions(), window=4, epsilon=0.0, min_episodes=2)
    improving, flat = cur.arms[1], cur.arms
    versions = []
    for k in range(4):
        for arm in flat:
            rate = min(1.0, 0.25 * k) if arm == improving else 0.5
            cur.observe(_episodes(arm, [1] * int(4 * rate) + [0] * (4 - int(4 * rate))))
        cur.update()
        versions.append(cur.distribution.version)
    probs = cur.probabilities()
    assert max(probs, key=probs.get) == improving
    # no estimate before two scores (uniform), then a new version once the arms differ
    assert versions[0] == 1 and versions[-1] > 1
    assert cur.distribution.component_probabilities("push-v3")[improving] > 0.5


def test_arms_are_scored_only_once_they_have_min_episodes():
    cur = Curriculum(_regions(), min_episodes=3)
    cur.observe(_episodes(cur.arms[0], [1, 1]))
    assert not cur.update() and cur.sampler.counts()[cur.arms[0]] == 0
    cur.observe(_episodes(cur.arms[0], [0]))
    cur.update()
    assert cur.sampler.scores(cur.arms[0]) == (2 / 3,)


def test_uniform_mode_records_scores_but_never_moves_the_distribution():
    cur = Curriculum(_regions(), mode="uniform", min_episodes=1)
    for k in range(4):
        cur.observe(_episodes(cur.arms[0], [k % 2]))
        assert not cur.update()
    assert cur.distribution.version == 1 and len(cur.sampler.scores(cur.arms[0])) == 4


def test_the_state_round_trips_through_json_and_continues_identically():
    a = Curriculum(_regions(), window=4, min_episodes=2, score="return", seed=3)
    for k in range(3):
        for i, arm in enumerate(a.arms):
            a.observe(_episodes(arm, [k % 2, (k + i) % 2, 1]))
        a.update()
    b = Curriculum.from_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    for cur in (a, b):
        cur.observe(_episodes(cur.arms[2], [1, 1]))
        cur.update()
    assert b.state_dict() == a.state_dict() and b.sampler.sample(5) == a.sampler.sample(5)
    assert TaskDistribution.from_dict(b.state_dict()["distribution"]) == a.distribution


class TestResidualPPOModule:
    def _module(self, k=2):
        torch.manual_seed(0)
        obs = gym.spaces.Box(-np.inf, np.inf, (39 + k + 4,), np.float32)
        act = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        return ResidualPPOModule(observation_space=obs, action_space=act, inference_only=False,
                                 model_config=model_config(obs_dim=39, action_dim=4, num_tasks=k,
                                                           hidden_dim=16, vf_hidden_dim=16))

    def test_the_initial_correction_is_zero_and_values_have_one_per_sample(self):
        m = self._module()
        batch = {"obs": torch.randn(6, 45)}
        out = m.forward_exploration(batch)["action_dist_inputs"]
        assert out.shape == (6, 8) and torch.equal(out[:, :4], torch.zeros(6, 4))
        assert torch.allclose(out[:, 4:], torch.full((6, 4), -1.0))
        assert m.compute_values(batch).shape == (6,)

    def test_policy_and_value_losses_reach_the_actor_and_the_critic(self):
        m = self._module()
        batch = {"obs": torch.randn(6, 45)}
        out = m.forward_train(batch)["action_dist_inputs"]
        (out[:, :4] - 1.0).square().sum().add(m.compute_values(batch).sum()).backward()
        assert m.actor.net[-1].weight.grad.abs().sum() > 0
        assert m.critic[-1].weight.grad.abs().sum() > 0

    def test_a_wrong_observation_space_is_refused_with_the_expected_shape(self):
        with pytest.raises(ValueError, match=r"needs \(45,\)"):
            ResidualPPOModule(observation_space=gym.spaces.Box(-1, 1, (44,), np.float32),
                              action_space=gym.spaces.Box(-1, 1, (4,), np.float32),
                              model_config=model_config(obs_dim=39, action_dim=4, num_tasks=2))
