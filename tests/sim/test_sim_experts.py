"""Scripted experts: they solve tasks, and their noise is seeded."""

import numpy as np
import pytest

from sim import HORIZON, ScriptedExpert, get_suite, make_env

HELD_OUT_SEED = 12345


def first_success(env, expert, seed):
    """Runs one episode (Meta-World protocol); returns the 1-based step of first success."""
    env.reset(seed=seed)
    for step in range(1, HORIZON + 1):
        _, _, _, _, info = env.step(expert.act(env.expert_observation()))
        if info["success"]:
            return step
    return None


@pytest.mark.parametrize("task", ["reach-v3", "push-v3"])
def test_expert_succeeds_on_held_out_goals(task):
    assert task in get_suite("MT10").tasks
    env = make_env(task)
    expert = ScriptedExpert(task)
    steps = [first_success(env, expert, HELD_OUT_SEED + i) for i in range(2)]
    assert None not in steps


def test_expert_succeeds_with_goal_hidden_via_expert_observation():
    env = make_env("reach-v3", goal_observable=False)
    assert first_success(env, ScriptedExpert("reach-v3"), HELD_OUT_SEED) is not None


def test_act_returns_clipped_float32():
    env = make_env("push-v3", seed=0)
    obs, _ = env.reset()
    action = ScriptedExpert("push-v3", noise_std=1.0, seed=0).act(obs)
    assert action.dtype == np.float32 and action.shape == (4,)
    assert np.all(np.abs(action) <= 1.0)


def test_noise_changes_actions_and_is_seeded():
    obs, _ = make_env("push-v3", seed=0).reset()
    clean = ScriptedExpert("push-v3").act(obs)
    a = ScriptedExpert("push-v3", noise_std=0.1, seed=1)
    b = ScriptedExpert("push-v3", noise_std=0.1, seed=1)
    c = ScriptedExpert("push-v3", noise_std=0.1, seed=2)
    first = a.act(obs)
    assert np.array_equal(first, b.act(obs))
    assert not np.array_equal(first, clean)
    assert not np.array_equal(first, c.act(obs))
    assert not np.array_equal(a.act(obs), first)  # the stream moves on
    a.reset(seed=1)
    assert np.array_equal(a.act(obs), first)  # and restarts on reset(seed)


def test_no_warning_per_step(recwarn):
    env = make_env("push-v3", seed=0)
    obs, _ = env.reset()
    expert = ScriptedExpert("push-v3")
    for _ in range(5):
        obs, *_ = env.step(expert.act(obs))
    assert not [w for w in recwarn if "Constant(s) may be too high" in str(w.message)]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="did you mean 'push-v3'"):
        ScriptedExpert("psh-v3")
    with pytest.raises(ValueError, match="noise_std=-0.1 is out of range"):
        ScriptedExpert("push-v3", noise_std=-0.1)
    with pytest.raises(ValueError, match=r"expected \(39,\)"):
        ScriptedExpert("push-v3").act(np.zeros(18))
