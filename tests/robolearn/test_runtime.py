"""load_policy and the PolicyRunner: refuses unusable checkpoints before allocating, keeps a true
observation history, re-plans on a task change."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import robolearn
from policies import config_to_dict, make_policy
from robolearn.checkpoint import CONFIG, save_checkpoint
from robolearn.errors import CheckpointError, ConfigError
from robolearn.runtime import PolicyRunner

TASKS = ["a-v3", "b-v3"]


def _policy(**kw):
    torch.manual_seed(0)
    policy = make_policy("flow_matching", obs_dim=5, action_dim=2, num_tasks=2,
                         action_horizon=4, action_exec_horizon=2, obs_horizon=2,
                         backbone_kwargs={"hidden_dim": 16, "num_blocks": 1}, **kw)
    rng = np.random.default_rng(0)
    return policy.fit_normalizers(rng.normal(size=(50, 5)), rng.uniform(-1, 1, (50, 2)))


def _checkpoint(tmp_path, policy=None, edit=None, weights=None):
    policy = policy or _policy()
    config = {"policy": config_to_dict(policy.config), "tasks": TASKS, "obs_dim": 5,
              "action_dim": 2}
    ckpt = save_checkpoint(tmp_path / "run", 1, weights or policy.state_dict(), config)
    if edit is not None:
        data = json.loads((ckpt / CONFIG).read_text())
        edit(data)
        (ckpt / CONFIG).write_text(json.dumps(data))
    return tmp_path / "run"


def test_a_checkpoint_loads_and_acts(tmp_path):
    runner = robolearn.load_policy(_checkpoint(tmp_path), device="cpu")
    assert runner.act(np.zeros(5), task="a-v3").shape == (2,)


def test_the_history_is_the_past_even_when_the_caller_reuses_its_buffer():
    runner = PolicyRunner(_policy(), TASKS)
    buf = np.zeros((1, 5), np.float32)
    seen = []
    runner.predict_chunk = lambda history, task: seen.append(history.copy()) or np.zeros((1, 4, 2))
    for t in range(5):
        buf[:] = t  # the same array, overwritten in place each step (as the rollout engine does)
        runner.act(buf, task="a-v3")
    # chunks planned at steps 0, 2 and 4 from the histories [o0, o0], [o1, o2], [o3, o4]
    assert [h[0, :, 0].tolist() for h in seen] == [[0, 0], [1, 2], [3, 4]]


def test_a_task_change_re_plans_instead_of_playing_the_old_tasks_queue():
    runner = PolicyRunner(_policy(), TASKS)
    planned = []
    runner.predict_chunk = lambda history, task: planned.append(task) or np.zeros((1, 4, 2))
    runner.act(np.zeros(5), task="a-v3")  # plans a chunk of a-v3, one action used
    runner.act(np.zeros(5), task="b-v3")  # must not play a-v3's second action
    assert planned == [0, 1] and runner.last_plan.step == 1


def test_weights_that_do_not_match_the_config_are_refused_before_allocating(tmp_path):
    def huge(data):  # a 360 GB layer: refused from the file's header, never allocated
        data["policy"]["backbone_kwargs"] = {"hidden_dim": 300_000, "num_blocks": 1}

    with pytest.raises(CheckpointError, match="do not match its config.json.*shapes differ"):
        robolearn.load_policy(_checkpoint(tmp_path, edit=huge), device="cpu")


def test_non_finite_weights_are_refused(tmp_path):
    state = {k: v.clone() for k, v in _policy().state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[first][0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite .*NaN"):
        robolearn.load_policy(_checkpoint(tmp_path, weights=state), device="cpu")


def test_a_task_list_that_disagrees_with_num_tasks_is_refused(tmp_path):
    def three_tasks(data):
        data["tasks"] = ["a-v3", "b-v3", "c-v3"]

    with pytest.raises(CheckpointError, match="num_tasks=2 but it lists 3 tasks"):
        robolearn.load_policy(_checkpoint(tmp_path, edit=three_tasks), device="cpu")


def test_an_unknown_device_names_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="device='gpu'.*cuda"):
        robolearn.load_policy(_checkpoint(tmp_path), device="gpu")
