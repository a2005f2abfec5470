"""Meta-World's scripted expert policies, with optional seeded Gaussian action noise.

The experts read the goal position from the observation, so they need a goal-observable,
noise-free observation. For ML suites (goal hidden) or noisy observations, feed them
``env.expert_observation()`` instead of the observation the learner sees.

Example:
    >>> from sim import ScriptedExpert, make_env
    >>> env = make_env("reach-v3", goal_observable=False)
    >>> expert = ScriptedExpert("reach-v3", noise_std=0.1, seed=0)
    >>> obs, info = env.reset(seed=1)
    >>> action = expert.act(env.expert_observation())      # (4,) float32 in [-1, 1]
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings

import numpy as np
from metaworld.policies import ENV_POLICY_MAP

from sim.env import ACTION_DIM, OBS_DIM
from sim.tasks import resolve_task

logger = logging.getLogger(__name__)


class ScriptedExpert:
    """Meta-World's hand-written policy for one task.

    Attributes:
        task: The Meta-World task name.
        noise_std: Standard deviation of the Gaussian noise added to every action entry.

    Example:
        >>> expert = ScriptedExpert("push-v3", noise_std=0.05, seed=3)
        >>> expert.reset(seed=3)   # restart the noise stream
    """

    def __init__(self, task: str, noise_std: float = 0.0, seed: int | None = None) -> None:
        """Builds the expert.

        Args:
            task: Meta-World v3 task name, e.g. ``"push-v3"``.
            noise_std: Action noise standard deviation in [0, 1] (action units).
            seed: Seed of the expert's own noise generator; ``None`` draws fresh entropy.
        """
        self.task = resolve_task(task)
        if isinstance(noise_std, bool) or not isinstance(noise_std, numbers.Real):
            raise TypeError(f"ScriptedExpert.noise_std={noise_std!r} must be a number in [0, 1]")
        if not (math.isfinite(noise_std) and 0.0 <= noise_std <= 1.0):
            raise ValueError(f"ScriptedExpert.noise_std={noise_std!r} is out of range [0.0, 1.0]")
        self.noise_std = float(noise_std)
        self._policy = ENV_POLICY_MAP[self.task]()
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Starts a new episode; reseeds the noise generator when ``seed`` is given.

        Meta-World's experts are stateless, so without a seed this changes nothing.
        """
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Computes the expert action.

        Args:
            obs: ``(39,)`` goal-observable, noise-free observation (``env.expert_observation()``
                when the env hides the goal or adds observation noise).

        Returns:
            ``(4,)`` float32 action, noise added then clipped to [-1, 1].
        """
        obs = np.asarray(obs, dtype=np.float64)
        if obs.shape != (OBS_DIM,):
            raise ValueError(
                f"ScriptedExpert({self.task!r}).act: obs has shape {obs.shape}; "
                f"expected ({OBS_DIM},)"
            )
        with warnings.catch_warnings():
            # Meta-World's move() warns on every step its proportional gain saturates.
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            action = np.asarray(self._policy.get_action(obs), dtype=np.float64)
        if self.noise_std:
            action = action + self._rng.normal(0.0, self.noise_std, ACTION_DIM)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
