"""The robomimic BC-RNN baseline: its config, the agent wrapper, load_agent's dispatch.

These run in the main venv, where robomimic's config and dataset code import but its algorithms
do not (they need torchvision). The last test trains with robomimic's own script for real and
runs only where the robomimic venv exists (`bash scripts/setup_robomimic.sh`).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.baselines import bc_rnn
from robolearn.baselines.bc_rnn import (
    RobomimicAgent,
    RobomimicTrainError,
    bc_rnn_config,
    train_bc_rnn,
)
from robolearn.evaluate import load_agent
from tests.support import make_episode

TASKS = ("reach-v3", "push-v3", "pick-place-v3")


def _leaves(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_leaves(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


# ----------------------------------------------------------------------------- config
def test_config_keys_are_robomimics_bc_keys(tmp_path):
    """robomimic applies the config to its locked defaults: an unknown key would be an error."""
    import robomimic

    template = json.loads(
        (Path(robomimic.__file__).parent / "exps" / "templates" / "bc.json").read_text()
    )
    known = _leaves(template)
    ours = _leaves(bc_rnn_config(tmp_path / "d.hdf5", tmp_path, epochs=3))
    assert sorted(set(ours) - set(known)) == []
    for key, value in ours.items():
        default = known[key]
        if value is not None and default is not None:
            assert isinstance(value, type(default)) or (
                isinstance(value, int | float) and isinstance(default, int | float)
            ), (key, value, default)


def test_config_applies_to_robomimics_config_factory(tmp_path):
    """The same steps as robomimic.scripts.train: defaults, update with our JSON, lock."""
    # robomimic.config needs `six` (not torchvision); scripts/setup.sh installs it.
    from robomimic.config import config_factory

    ours = json.loads(json.dumps(bc_rnn_config(tmp_path / "d.hdf5", tmp_path, epochs=7)))
    config = config_factory(ours["algo_name"])
    with config.values_unlocked():
        config.update(ours)
    config.lock()
    assert config.algo.rnn.enabled and config.algo.rnn.horizon == config.train.seq_length == 10
    assert config.algo.gmm.enabled and config.algo.gmm.num_modes == 5
    assert list(config.algo.actor_layer_dims) == []
    assert config.algo.rnn.hidden_dim == 400 and config.algo.rnn.num_layers == 2
    assert config.algo.optim_params.policy.learning_rate.initial == 1e-4
    assert sorted(config.all_obs_keys) == ["state", "task_onehot"]
    assert config.train.hdf5_filter_key == "train"
    assert config.train.hdf5_validation_filter_key == "valid"
    assert not config.experiment.rollout.enabled
    assert not config.train.cuda and config.train.seed == 1
    assert config.train.num_epochs == 7 and 7 in config.experiment.save.epochs
    assert config.train.output_dir == str(tmp_path.resolve())
    # keys that robomimic's defaults keep (we did not replace the whole tree)
    assert config.observation.encoder.rgb.core_class == "VisualCore"


def test_config_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="epochs=0"):
        bc_rnn_config(tmp_path / "d.hdf5", tmp_path, epochs=0)
    with pytest.raises(ValueError, match="lr=0"):
        bc_rnn_config(tmp_path / "d.hdf5", tmp_path, epochs=1, lr=0)


# ----------------------------------------------------------------------------- agent
class _StubAlgo:
    """Stands in for robomimic's BC_RNN: records what it is given, keeps a 'hidden state'."""

    device = torch.device("cpu")

    def __init__(self, action_value: float = 0.5, noise: bool = False) -> None:
        self.calls: list[dict[str, torch.Tensor]] = []
        self.resets = 0
        self.action_value = action_value
        self.noise = noise

    def reset(self) -> None:
        self.resets += 1

    def get_action(self, obs_dict, goal_dict=None):
        self.calls.append(obs_dict)
        B = obs_dict["state"].shape[0]
        action = torch.full((B, 4), self.action_value)
        return action + torch.rand(B, 4) if self.noise else action


class _StubRolloutPolicy:
    obs_normalization_stats = None

    def __init__(self, algo: _StubAlgo) -> None:
        self.policy = algo

    def start_episode(self) -> None:
        self.policy.reset()


def _agent(algo: _StubAlgo | None = None, **kw) -> tuple[RobomimicAgent, _StubAlgo]:
    algo = algo or _StubAlgo()
    shapes = {"state": [39], "task_onehot": [len(TASKS)]}
    return RobomimicAgent.from_policy(_StubRolloutPolicy(algo), TASKS, shapes, **kw), algo


def test_obs_dict_has_state_and_the_tasks_onehot():
    agent, _ = _agent()
    obs = np.random.default_rng(0).normal(size=(3, 39)).astype(np.float32)
    d = agent.obs_dict(obs, "push-v3")
    assert sorted(d) == ["state", "task_onehot"]
    np.testing.assert_array_equal(d["state"], obs)
    assert d["task_onehot"].dtype == np.float32
    assert d["task_onehot"].tolist() == [[0.0, 1.0, 0.0]] * 3
    assert agent.tasks == TASKS


def test_act_batches_one_policy_call_and_clips():
    agent, algo = _agent(_StubAlgo(action_value=3.0))
    agent.reset()
    obs = np.zeros((5, 39), np.float32)
    action = agent.act(obs, "pick-place-v3")
    assert action.shape == (5, 4) and action.dtype == np.float32
    assert np.all(action == 1.0)  # clipped to the action space
    (call,) = algo.calls
    assert call["state"].dtype == torch.float32 and call["state"].shape == (5, 39)
    assert call["task_onehot"][:, 2].tolist() == [1.0] * 5
    assert algo.resets == 1


def test_act_accepts_a_single_observation():
    agent, _ = _agent()
    agent.reset()
    assert agent.act(np.zeros(39, np.float32), "reach-v3").shape == (4,)


def test_unknown_task_names_the_closest():
    agent, _ = _agent()
    with pytest.raises(ValueError, match=r"did you mean \['push-v3'\]"):
        agent.act(np.zeros((1, 39)), "push-v2")


def test_wrong_observation_size_is_refused():
    agent, _ = _agent()
    with pytest.raises(ValueError, match=r"\(B, 39\)"):
        agent.act(np.zeros((2, 38)), "push-v3")


def test_batch_size_is_fixed_until_reset():
    agent, _ = _agent()
    agent.reset()
    agent.act(np.zeros((4, 39)), "push-v3")
    with pytest.raises(ValueError, match="call reset"):
        agent.act(np.zeros((3, 39)), "push-v3")
    agent.reset()
    assert agent.act(np.zeros((3, 39)), "push-v3").shape == (3, 4)


def test_sampling_uses_the_agents_own_generator():
    before = torch.get_rng_state()
    a, _ = _agent(_StubAlgo(action_value=-0.5, noise=True), seed=3)
    b, _ = _agent(_StubAlgo(action_value=-0.5, noise=True), seed=3)
    for agent in (a, b):
        agent.reset()
    np.testing.assert_array_equal(a.act(np.zeros((2, 39)), "push-v3"),
                                  b.act(np.zeros((2, 39)), "push-v3"))
    assert torch.equal(torch.get_rng_state(), before)


def test_checkpoint_with_other_obs_keys_is_refused():
    with pytest.raises(ValueError, match="robot0_eef_pos"):
        RobomimicAgent.from_policy(_StubRolloutPolicy(_StubAlgo()), TASKS,
                                   {"state": [39], "robot0_eef_pos": [3]})
    with pytest.raises(ValueError, match="lists 3 tasks"):
        RobomimicAgent.from_policy(_StubRolloutPolicy(_StubAlgo()), TASKS,
                                   {"state": [39], "task_onehot": [10]})


# ----------------------------------------------------------------------------- load_agent
def test_load_agent_dispatches_the_robomimic_prefix(monkeypatch):
    seen = {}

    class Fake:
        def __init__(self, path, device="auto"):
            seen.update(path=path, device=device)

    monkeypatch.setattr(bc_rnn, "RobomimicAgent", Fake)
    assert isinstance(load_agent("robomimic:runs/x/model_epoch_5.pth", "cpu"), Fake)
    assert seen == {"path": "runs/x/model_epoch_5.pth", "device": "cpu"}


def test_load_agent_without_robomimic_says_how_to_install(monkeypatch, tmp_path):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"not loaded")
    monkeypatch.setitem(sys.modules, "robomimic.utils.file_utils", None)  # import fails
    with pytest.raises(ImportError, match="bash scripts/setup_robomimic.sh"):
        load_agent(f"robomimic:{ckpt}")


def test_load_agent_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no robomimic checkpoint"):
        load_agent(f"robomimic:{tmp_path / 'nope.pth'}")


# ----------------------------------------------------------------------------- training
@pytest.fixture
def small_store(tmp_path):
    from robolearn.data import EpisodeStore

    path = tmp_path / "demos.zarr"
    with EpisodeStore.create(path, 5, 2, tasks=["task-0", "task-1"]) as store:
        for i in range(6):
            store.add_episode(make_episode(i, length=12 + i), task=f"task-{i % 2}", seed=100 + i)
    return path


def _fake_python(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake_python"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def test_train_reports_robomimics_failure_with_the_log_tail(small_store, tmp_path):
    # robomimic's train script catches its exceptions, prints this and exits 0
    fake = _fake_python(tmp_path, 'echo "Train Epoch 1"\necho "run failed with error:"\n'
                        'echo "KeyError: boom"\n')
    with pytest.raises(RobomimicTrainError, match=r"(?s)reported a failure.*KeyError: boom"):
        train_bc_rnn(small_store, tmp_path / "run", epochs=1, python=fake, val_fraction=0.34)
    assert "KeyError: boom" in (tmp_path / "run" / "robomimic_train.log").read_text()


def test_train_without_torchvision_gives_the_install_hint(small_store, tmp_path):
    fake = _fake_python(
        tmp_path, "echo \"ModuleNotFoundError: No module named 'torchvision'\"\nexit 1\n"
    )
    with pytest.raises(RobomimicTrainError, match="setup_robomimic.sh"):
        train_bc_rnn(small_store, tmp_path / "run", epochs=1, python=fake, val_fraction=0.34)


def test_train_refuses_to_replace_a_run(small_store, tmp_path):
    (tmp_path / "run" / "bc_rnn").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        train_bc_rnn(small_store, tmp_path / "run", epochs=1)


def _robomimic_python() -> str | None:
    python = bc_rnn.robomimic_python()
    if python != sys.executable:
        return python
    return python if importlib.util.find_spec("torchvision") else None


@pytest.mark.slow
@pytest.mark.robomimic
@pytest.mark.skipif(_robomimic_python() is None,
                    reason="needs the robomimic venv: bash scripts/setup_robomimic.sh")
def test_robomimic_trains_and_the_agent_acts(small_store, tmp_path):
    """End to end with robomimic's own code: train 2 tiny epochs, load, act."""
    ckpt = train_bc_rnn(small_store, tmp_path / "run", epochs=2, steps_per_epoch=2, batch_size=4,
                        hidden_dim=16, val_fraction=0.34)
    assert ckpt.name == "model_epoch_2.pth"
    info = json.loads((tmp_path / "run" / "robolearn_train.json").read_text())
    assert info["checkpoint"] == str(ckpt) and info["tasks"] == ["task-0", "task-1"]
    code = textwrap.dedent(f"""
        import numpy as np
        from robolearn.evaluate import load_agent
        agent = load_agent("robomimic:{ckpt}", "cpu")
        agent.reset()
        actions = [agent.act(np.zeros((3, 5), np.float32), "task-1") for _ in range(12)]
        print("RESULT", agent.tasks, actions[-1].shape, agent.train_info["dataset"])
    """)
    out = subprocess.run([_robomimic_python(), "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"RESULT ('task-0', 'task-1') (3, 2) {small_store.resolve()}" in out.stdout
