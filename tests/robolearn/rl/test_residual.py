"""The residual network (policies.residual) and the base + residual checkpoint that
robolearn.load_policy, evaluate and the Ray rollout actors run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import robolearn
from policies.residual import ResidualConfig, ResidualPolicy, one_hot
from robolearn.checkpoint import CONFIG
from robolearn.errors import CheckpointError
from robolearn.evaluate import evaluate_agent
from robolearn.rl.residual import save_residual_checkpoint
from robolearn.rollout import agent_spec, build_agent
from robolearn.runtime import ResidualRunner
from tests.robolearn.rl.helpers import ACTION_DIM, OBS_DIM, tiny_base

TASKS = ("reach-v3", "push-v3")


def _residual(num_tasks=1, alpha=0.3, trained=False):
    torch.manual_seed(1)
    r = ResidualPolicy(ResidualConfig(OBS_DIM, ACTION_DIM, num_tasks, hidden_dim=8, alpha=alpha))
    if trained:  # what PPO would have moved: a non-zero last layer
        torch.nn.init.normal_(r.net[-1].weight, std=2.0)
    return r


def _checkpoint(tmp_path, residual, tasks=("reach-v3",), base_tasks=None):
    base = tiny_base(tmp_path, tuple(base_tasks or tasks))
    ckpt = tmp_path / "finetuned"
    ckpt.mkdir()
    save_residual_checkpoint(ckpt, base, residual, list(tasks), info={"iteration": 3})
    return base, ckpt


class TestResidualPolicy:
    def test_the_correction_is_zero_at_initialisation_and_the_last_layer_gets_gradients(self):
        r = _residual(num_tasks=2)
        obs, a = torch.randn(5, OBS_DIM), torch.rand(5, ACTION_DIM) * 2 - 1
        task = one_hot(torch.tensor([0, 1, 1, 0, 1]), 2)
        delta = r(obs, a, task)
        assert torch.equal(delta, torch.zeros(5, ACTION_DIM))
        delta.square().add(delta).sum().backward()
        assert r.net[-1].weight.grad.abs().sum() > 0

    def test_the_applied_action_is_bounded_by_alpha_and_clipped(self):
        r = _residual(alpha=0.3)
        a = torch.tensor([[0.9, -0.95, 0.0, 0.5]])
        out = r.apply_residual(a, torch.tensor([[1.0, -5.0, -0.5, 0.0]]))
        assert torch.allclose(out, torch.tensor([[1.0, -1.0, -0.15, 0.5]]))

    def test_bad_shapes_and_configs_are_refused_with_the_field(self):
        r = _residual()
        with pytest.raises(ValueError, match=r"obs.shape=\(2, 7\)"):
            r(torch.zeros(2, 7), torch.zeros(2, 4), torch.zeros(2, 1))
        with pytest.raises(ValueError, match="alpha=0"):
            ResidualConfig(OBS_DIM, ACTION_DIM, alpha=0)


def test_load_policy_runs_base_plus_residual_as_the_formula_says(tmp_path):
    residual = _residual(num_tasks=2, trained=True)
    base_dir, ckpt = _checkpoint(tmp_path, residual, tasks=TASKS)
    runner = robolearn.load_policy(ckpt, device="cpu")
    base = robolearn.load_policy(base_dir, device="cpu")
    assert isinstance(runner, ResidualRunner) and runner.tasks == list(TASKS)
    obs = np.random.default_rng(0).normal(0.3, 0.3, size=(3, OBS_DIM))
    for step in range(3):  # chunked: steps 0 and 2 plan, step 1 plays the queue
        got = runner.act(obs + step, task="push-v3")
        a_base = torch.as_tensor(base.act(obs + step, task="push-v3"))
        with torch.no_grad():
            want = residual.apply_residual(a_base, residual.delta(
                torch.as_tensor(obs + step, dtype=torch.float32), a_base,
                one_hot(torch.ones(3, dtype=torch.long), 2)))
        assert np.allclose(got, want.numpy(), atol=1e-6)
        assert not np.allclose(got, np.clip(a_base.numpy(), -1, 1))  # the residual acts
    runner.reset()
    assert runner.act(obs[0], task=1).shape == (ACTION_DIM,)  # deploy's int task ids too
    assert runner.train_info["residual"]["rl"]["iteration"] == 3


def test_a_zero_residual_checkpoint_evaluates_exactly_as_its_base(tmp_path):
    base_dir, ckpt = _checkpoint(tmp_path, _residual())
    kw = dict(episodes_per_task=4, num_envs=2, horizon=30, progress=False)
    a = evaluate_agent(robolearn.load_policy(base_dir, device="cpu"), "MT1:reach-v3", **kw)
    b = evaluate_agent(robolearn.load_policy(ckpt, device="cpu"), "MT1:reach-v3", **kw)
    assert [r.to_dict() for r in a.episodes] == [r.to_dict() for r in b.episodes]


def test_rollout_actors_build_it_from_the_two_shipped_files(tmp_path):
    _, ckpt = _checkpoint(tmp_path, _residual())
    spec = agent_spec(str(ckpt), device="cpu", ship_files=True)
    assert sorted(spec["files"]) == ["config.json", "model.safetensors"]
    agent = build_agent(spec)
    assert isinstance(agent, ResidualRunner) and str(agent.path) == str(ckpt)


def test_an_edited_or_mismatched_residual_checkpoint_is_refused(tmp_path):
    _, ckpt = _checkpoint(tmp_path, _residual(), base_tasks=TASKS)
    data = json.loads((ckpt / CONFIG).read_text())
    data["residual"]["num_tasks"] = 2
    (ckpt / CONFIG).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="inconsistent"):
        robolearn.load_policy(ckpt, device="cpu")
    data["residual"]["num_tasks"], data["residual"]["hidden_dim"] = 1, 4096
    (ckpt / CONFIG).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="do not match its config.json.*shapes differ"):
        robolearn.load_policy(ckpt, device="cpu")
    data["residual"]["hidden_dim"], data["tasks"] = 8, ["door-open-v3"]
    (ckpt / CONFIG).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="base policy's tasks"):
        robolearn.load_policy(ckpt, device="cpu")
