"""RLlib in robolearn: residual PPO fine-tuning on top of a trained policy, with a curriculum.

- :mod:`robolearn.rl.env`: :class:`TaskEnv` (``robolearn/MetaWorld-v0``), Meta-World episodes
  drawn from a ``curricula.TaskDistribution``; ``set_task`` swaps it at the next reset.
- :mod:`robolearn.rl.residual`: :class:`ResidualEnv` (``robolearn/MetaWorldResidual-v0``), the
  frozen base policy's action plus a bounded correction; the base + residual checkpoint.
- :mod:`robolearn.rl.module`: the PPO ``TorchRLModule`` (actor = ``policies.residual``).
- :mod:`robolearn.rl.callbacks`: the learning-progress curriculum as an ``RLlibCallback``.
- :mod:`robolearn.rl.finetune`: ``robolearn finetune`` (:class:`FinetuneConfig`,
  :func:`run_finetune`).

Importing this package registers the Gymnasium ids; Ray/RLlib are imported only by the
modules that need them (``module``, ``callbacks`` and ``finetune``'s functions), so
``gymnasium.make("robolearn/MetaWorld-v0", ...)`` works without them.

Example:
    >>> import gymnasium as gym
    >>> import robolearn.rl
    >>> env = gym.make("robolearn/MetaWorld-v0", tasks=["reach-v3"])
"""

from robolearn.rl.env import ENV_ID, TaskEnv, as_distribution, register_envs
from robolearn.rl.residual import RESIDUAL_ENV_ID, ResidualEnv, save_residual_checkpoint

register_envs()

__all__ = [
    "ENV_ID",
    "RESIDUAL_ENV_ID",
    "ResidualEnv",
    "TaskEnv",
    "as_distribution",
    "register_envs",
    "save_residual_checkpoint",
]
