"""Simulation: Meta-World v3 tasks, suites, randomisable physics and scripted experts.

``sim`` is the bottom layer of robolearn: it imports no other robolearn package. Envs step
through :mod:`sim.fast` by default (cached views, lean rewrites of Meta-World's rewards guarded by
its source; bit-identical results); ``make_env(task, fast=False)`` gives Meta-World's own step.

Example:
    >>> from sim import ScriptedExpert, TaskParams, get_suite, make_env
    >>> suite = get_suite("MT10")
    >>> env = make_env(suite.train_tasks[0], params=TaskParams(friction_scale=0.8), seed=0)
    >>> expert = ScriptedExpert(env.task)
    >>> obs, info = env.reset(seed=12345)
    >>> obs, reward, terminated, truncated, info = env.step(expert.act(env.expert_observation()))
"""

from sim.env import (
    ACTION_DIM,
    HORIZON,
    OBS_DIM,
    REWARD_VERSION,
    MetaWorldEnv,
    make_env,
)
from sim.experts import ScriptedExpert
from sim.params import ParamRanges, TaskParams
from sim.tasks import ALL_TASKS, SUITE_NAMES, Suite, get_suite, resolve_task

__all__ = [
    "ACTION_DIM",
    "ALL_TASKS",
    "HORIZON",
    "OBS_DIM",
    "REWARD_VERSION",
    "SUITE_NAMES",
    "MetaWorldEnv",
    "ParamRanges",
    "ScriptedExpert",
    "Suite",
    "TaskParams",
    "get_suite",
    "make_env",
    "resolve_task",
]
