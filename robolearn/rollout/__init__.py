"""The one rollout engine: agents, lock-step episode batches, Ray actor pools, trajectories.

Collection, evaluation, deployment-style flows, alignment and curricula all roll out through
here::

    from robolearn.rollout import EpisodeSpec, RolloutOptions, make_envs, run_batch
    envs = make_envs("push-v3", 4)
    specs = [EpisodeSpec("push-v3", i, episode_seed(1000, "push-v3", i)) for i in range(4)]
    trajs = run_batch(robolearn.load_policy("runs/mt10"), envs, specs,
                      RolloutOptions(record="steps"))
    trajs[0].success, trajs[0].steps["obs"].shape, trajs[0].chunks["action"].shape
"""

from robolearn.rollout.agents import (
    EXPERT,
    Agent,
    ExpertAgent,
    agent_spec,
    build_agent,
    checkpoint_files,
    load_agent,
    policy_id,
)
from robolearn.rollout.engine import make_envs, run_batch
from robolearn.rollout.physics import (
    DistributionPhysics,
    FixedPhysics,
    ParamsConfig,
    Physics,
    RandomizationConfig,
    RangePhysics,
    params_from_config,
    physics_from_config,
    physics_from_ranges,
    ranges_from_config,
)
from robolearn.rollout.pool import RolloutPool, TaskAffinity, rollout_pool, wait_for_workers
from robolearn.rollout.records import (
    INFO_KEYS,
    EpisodeSpec,
    RolloutOptions,
    Trajectory,
    store_extras,
    trajectory_rows,
)
from robolearn.rollout.seeds import episode_seed, eval_seeds

__all__ = [
    "EXPERT",
    "DistributionPhysics",
    "INFO_KEYS",
    "Agent",
    "EpisodeSpec",
    "ExpertAgent",
    "FixedPhysics",
    "ParamsConfig",
    "Physics",
    "RandomizationConfig",
    "RangePhysics",
    "RolloutOptions",
    "RolloutPool",
    "TaskAffinity",
    "Trajectory",
    "agent_spec",
    "build_agent",
    "checkpoint_files",
    "episode_seed",
    "eval_seeds",
    "load_agent",
    "make_envs",
    "params_from_config",
    "physics_from_config",
    "physics_from_ranges",
    "policy_id",
    "ranges_from_config",
    "rollout_pool",
    "run_batch",
    "store_extras",
    "trajectory_rows",
    "wait_for_workers",
]
