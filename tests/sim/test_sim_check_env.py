"""Every MT50 task passes Gymnasium's env checker."""

import warnings

import pytest
from gymnasium.utils.env_checker import check_env

from sim import TaskParams, get_suite, make_env


@pytest.mark.parametrize("task", get_suite("MT50").tasks)
def test_check_env(task):
    env = make_env(task)
    with warnings.catch_warnings():
        # Expected: infinite observation bounds (noise can leave any box), no env.spec.
        warnings.filterwarnings("ignore", message=".*infinity.*")
        warnings.filterwarnings("ignore", message=".*spec.*")
        check_env(env, skip_render_check=True)
    env.close()


def test_check_env_goal_hidden_with_noise_and_latency():
    params = TaskParams(obs_noise_std=0.1, action_noise_std=0.1, action_latency=2)
    env = make_env("reach-v3", params=params, goal_observable=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")
        warnings.filterwarnings("ignore", message=".*spec.*")
        check_env(env, skip_render_check=True)
    env.close()
