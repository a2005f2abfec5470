"""``robolearn finetune`` on RLlib: config checks, two PPO iterations end to end and a resume,
the curriculum reaching the env runners, checkpoint → restore, a killed env runner restarted."""

from __future__ import annotations

import json
import os
import signal
import time

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ray.rllib")

from robolearn import cli  # noqa: E402
from robolearn.cli import compose  # noqa: E402
from robolearn.errors import ConfigError, ReuseError  # noqa: E402
from robolearn.rl.finetune import (  # noqa: E402
    CURRICULUM,
    RLLIB_DIR,
    _prepare_out,
    base_distribution,
    build_config,
    run_finetune,
)
from tests.robolearn.rl.helpers import tiny_base  # noqa: E402

SMALL = ["suite=MT1:reach-v3", "horizon=25", "ppo.train_batch_size=100", "ppo.minibatch_size=50",
         "ppo.num_epochs=1", "ray.num_workers=1", "ray.num_envs_per_worker=2",
         "ray.restart_delay_s=1.0", "eval_num_envs=2", "tensorboard=false", "progress=false",
         "randomize.actuator_gain_scale=[0.8,1.2]", "+curriculum.bins={actuator_gain_scale:2}",
         "curriculum.score=return", "curriculum.min_episodes=1", "curriculum.window=2",
         "curriculum.epsilon=0.0", "residual.hidden_dim=16", "residual.vf_hidden_dim=16"]


def _cfg(tmp_path, *extra):
    base = tiny_base(tmp_path)
    return compose("finetune", [f"checkpoint={base}", f"out={tmp_path / 'ft'}", *SMALL, *extra])


@pytest.fixture(scope="module")
def ray_instance():
    from robolearn.cluster import RayConfig, ray_session

    with ray_session(RayConfig()) as ray:
        yield ray


def test_bad_settings_are_refused_naming_the_key(tmp_path):
    for override, match in (("curriculum.window=3", "curriculum.window=3.*even"),
                            ("residual.alpha=0", "residual.alpha=0"),
                            ("curriculum.mode=alp", "unknown curriculum.mode 'alp'"),
                            ("+curriculum.bins={frction_scale:2}", "Did you mean 'friction_scale'"),
                            ("ppo.minibatch_size=200", "minibatch_size=200 > ppo.train")):
        with pytest.raises(ConfigError, match=match):
            _cfg(tmp_path, override)
    assert compose("finetune", ["checkpoint=x"], preset="debug").env_steps == 200


def test_a_resume_with_other_settings_is_refused_with_the_difference(tmp_path):
    out = tmp_path / "ft"
    _prepare_out(out, {"seed": 0, "ppo": {"lr": 0.0003}}, overwrite=False)
    with pytest.raises(ReuseError, match=r"ppo.lr: run 0.0003, asked 0.001"):
        _prepare_out(out, {"seed": 0, "ppo": {"lr": 0.001}}, overwrite=False)
    assert _prepare_out(out, {"seed": 0, "ppo": {"lr": 0.0003}}, overwrite=False) is None


@pytest.mark.slow
def test_two_ppo_iterations_end_to_end_then_a_resume_continues(tmp_path, ray_instance):
    import robolearn
    from robolearn.runtime import ResidualRunner

    cfg = _cfg(tmp_path, "env_steps=200", "eval_episodes=2", "checkpoint_every=1")
    report = run_finetune(cfg, tmp_path / "run")
    out = tmp_path / "ft"
    assert report["iterations"] == 2 and report["env_steps"] >= 200
    assert set(report["base"]["success_by_task"]) == set(report["finetuned"]["success_by_task"])
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2] and lines[-1]["rl/episodes"] > 0
    assert "rl/success/reach-v3" in lines[-1] and "learner/vf_loss" in lines[-1]
    assert isinstance(robolearn.load_policy(out, device="cpu"), ResidualRunner)
    # the output checkpoint runs in `robolearn evaluate` like any other
    ev = cli.run("evaluate", [f"checkpoint={out}", "suite=MT1:reach-v3", "episodes_per_task=2",
                              "num_envs=2", "horizon=25", "ray.num_workers=0", "device=cpu",
                              f"run_dir={tmp_path / 'eval'}"])
    assert str(out) in json.dumps(ev) and "reach-v3" in json.dumps(ev)
    saved = json.loads((out / "checkpoint" / CURRICULUM).read_text())

    more = _cfg(tmp_path, "env_steps=300", "eval_episodes=0", "checkpoint_every=1")
    again = run_finetune(more, tmp_path / "run2")
    launches = [json.loads(x) for x in (out / "launches.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in launches] == [0, 2] and again["iterations"] == 3
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2, 3]
    resumed = json.loads((out / "checkpoint" / CURRICULUM).read_text())
    # the resumed curriculum continued the saved one: every arm's history grew from it
    for arm, n in saved["sampler"]["updates"].items():
        assert resumed["sampler"]["updates"][arm] >= n
    assert sum(resumed["sampler"]["updates"].values()) > sum(saved["sampler"]["updates"].values())


def _algo(tmp_path, cfg):
    from robolearn.rl.callbacks import Curriculum, find_callback
    from robolearn.rl.module import model_config

    dist = base_distribution(cfg, ["reach-v3"])
    c = cfg.curriculum
    curriculum = Curriculum(dist, window=c.window, epsilon=c.epsilon, min_episodes=1,
                            score=c.score)
    env_config = {"base": cfg.checkpoint, "tasks": ["reach-v3"], "horizon": cfg.horizon,
                  "distribution": curriculum.distribution.to_dict()}
    spaces = (gym.spaces.Box(-np.inf, np.inf, (44,), np.float32),
              gym.spaces.Box(-1.0, 1.0, (4,), np.float32))
    mcfg = model_config(obs_dim=39, action_dim=4, num_tasks=1, hidden_dim=16, vf_hidden_dim=16)
    algo = build_config(cfg, env_config, spaces, mcfg).build_algo()
    find_callback(algo).curriculum = curriculum
    return algo, curriculum, env_config, spaces, mcfg


@pytest.mark.slow
def test_the_curriculum_reaches_the_runners_and_a_checkpoint_restores_it(tmp_path, ray_instance):
    from robolearn.rl.callbacks import Curriculum, task_distributions
    from robolearn.rl.finetune import _save

    cfg = _cfg(tmp_path)
    algo, curriculum, env_config, spaces, mcfg = _algo(tmp_path, cfg)
    try:
        for _ in range(3):
            algo.train()
        assert curriculum.distribution.version > 1  # the returns of the two regions differ
        assert task_distributions(algo.env_runner_group) == [curriculum.distribution.version] * 2
        state = {"iteration": 3, "env_steps": 300, "wall_s": 1.0, "restarts": 0}
        ckpt = _save(algo, tmp_path / "ft", tmp_path / "base", ["reach-v3"], curriculum, state,
                     mcfg, keep=2)
        weights = algo.learner_group.get_weights()["default_policy"]
    finally:
        algo.stop()
    restored = Curriculum.from_state_dict(json.loads((ckpt / CURRICULUM).read_text()))
    assert restored.state_dict() == curriculum.state_dict()
    algo2 = build_config(cfg, env_config, spaces, mcfg).build_algo()
    try:
        algo2.restore_from_path(str(ckpt / RLLIB_DIR))
        again = algo2.learner_group.get_weights()["default_policy"]
        assert all(np.array_equal(np.asarray(weights[k]), np.asarray(again[k])) for k in weights)
    finally:
        algo2.stop()


@pytest.mark.slow
def test_a_killed_env_runner_is_restarted_and_gets_the_curriculum_again(tmp_path, ray_instance):
    from robolearn.rl.callbacks import (
        find_callback,
        push_distribution,
        runner_pids,
        task_distributions,
    )

    cfg = _cfg(tmp_path)
    algo, curriculum, *_ = _algo(tmp_path, cfg)
    callback = find_callback(algo)
    try:
        algo.train()
        # a version the new runner can only have if the callback re-applies it
        curriculum.distribution = curriculum.space.distribution(
            dict.fromkeys(curriculum.arms, 0.5), curriculum.distribution)
        push_distribution(algo.env_runner_group, curriculum.distribution.to_dict())
        (pid,) = runner_pids(algo.env_runner_group)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 240  # Ray restarts the actor; RLlib probes every iteration
        sampled = 0
        while time.monotonic() < deadline and not (callback.recreated and sampled):
            result = algo.train()
            steps = result["env_runners"].get("num_env_steps_sampled", 0)
            sampled = steps if callback.recreated and steps == steps else 0
        assert callback.recreated == 1 and sampled > 0
        assert runner_pids(algo.env_runner_group) != [pid]
        assert task_distributions(algo.env_runner_group) == [curriculum.distribution.version] * 2
    finally:
        algo.stop()
