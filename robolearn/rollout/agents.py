"""Agents: what acts in a rollout. Two methods, ``reset()`` and ``act(obs, task)``.

- a trained checkpoint: ``robolearn.load_policy(path)`` (a :class:`~robolearn.runtime.
  PolicyRunner`: observation history, action-chunk queue);
- Meta-World's scripted experts: :class:`ExpertAgent`;
- robomimic's BC-RNN: :class:`robolearn.baselines.bc_rnn.RobomimicAgent` (``robomimic:<pth>``).

:func:`load_agent` maps a ``checkpoint=`` string to one; :func:`agent_spec` describes one so a
Ray rollout actor can build its own copy (:func:`build_agent`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import sim

EXPERT = "expert"
"""The ``checkpoint`` value that stands for Meta-World's scripted experts instead of a policy."""
ROBOMIMIC_PREFIX = "robomimic:"


@runtime_checkable
class Agent(Protocol):
    """What the rollout engine needs from a policy: two methods.

    An agent may also have ``tasks`` (the task names it can act on; checked before rolling out),
    ``attach(envs)`` (called with the batch's envs before every ``reset``, by agents that read
    the simulator directly) and ``last_plan`` (chunked agents: see
    :class:`~robolearn.runtime.PolicyRunner`).
    """

    def reset(self) -> None:
        """Starts new episodes in every batch slot (clears queues and histories)."""

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        """Actions for a batch: obs (B, Do) float (the env's float64) → actions (B, Da)."""


class ExpertAgent:
    """Meta-World's scripted experts behind the :class:`Agent` protocol, one per batch slot.

    By default the experts read each env's :meth:`~sim.MetaWorldEnv.expert_observation`
    (goal-observable, noise-free) rather than the observation passed to :meth:`act`, so they
    also work on ML suites, where the goal is hidden. With ``clean_obs=False`` they act on the
    observation they are given (noise included), as demonstration collection has them do.

    Attributes:
        task_noise: Standard deviation of Gaussian noise added to every expert action.
        train_info: Always empty (the experts were not trained on any dataset).

    Example:
        >>> from robolearn.evaluate import evaluate_agent
        >>> agent = ExpertAgent(task_noise=0.1)
        >>> result = evaluate_agent(agent, "MT1:push-v3", episodes_per_task=2, num_envs=2)
    """

    policy_id = "scripted-expert"

    def __init__(self, task_noise: float = 0.0, *, clean_obs: bool = True) -> None:
        """Builds the agent.

        Args:
            task_noise: Action noise standard deviation in [0, 1]; the noise of each episode is
                seeded with its goal seed, so noisy rollouts are reproducible too.
            clean_obs: Act on the env's noise-free, goal-observable observation (default) or
                on the observation passed to :meth:`act`.
        """
        if not 0.0 <= float(task_noise) <= 1.0:
            raise ValueError(f"Got ExpertAgent(task_noise={task_noise}), expected 0 <= noise <= 1")
        self.task_noise = float(task_noise)
        self.clean_obs = bool(clean_obs)
        self.train_info: dict[str, Any] = {}
        self._envs: list[sim.MetaWorldEnv] = []
        self._experts: list[sim.ScriptedExpert] = []

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every Meta-World v3 task (there is an expert for each)."""
        import sim

        return sim.ALL_TASKS

    def attach(self, envs: Sequence[sim.MetaWorldEnv]) -> None:
        """Binds the batch's envs, slot by slot; called by the engine before :meth:`reset`."""
        import sim

        envs = list(envs)
        if [e.task for e in envs] != [x.task for x in self._experts]:
            self._experts = [sim.ScriptedExpert(e.task, noise_std=self.task_noise) for e in envs]
        self._envs = envs

    def reset(self) -> None:
        """Restarts each expert's noise stream from its env's reset seed."""
        for env, expert in zip(self._envs, self._experts):
            expert.reset(seed=env.seed_used)

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        """Expert actions for the attached envs.

        Args:
            obs: (B, Do) observations (used with ``clean_obs=False``; else only B).
            task: The task of the batch; must match the attached envs.

        Returns:
            (B, Da) float32 actions.
        """
        if not self._envs:
            raise RuntimeError(
                "ExpertAgent.act called before attach(envs); the experts read the simulator, "
                "so pass the batch's envs to attach() first (the rollout engine does this)"
            )
        if len(obs) != len(self._envs) or any(e.task != task for e in self._envs):
            raise ValueError(
                f"ExpertAgent.act got {len(obs)} observations of task {task!r}, but "
                f"{len(self._envs)} envs of {sorted({e.task for e in self._envs})} are attached"
            )
        if self.clean_obs:
            seen = [e.expert_observation() for e in self._envs]
        else:  # the policy's view; the goal must be observable for the expert to use it
            seen = [o if e.goal_observable else e.expert_observation()
                    for o, e in zip(obs, self._envs)]
        return np.stack([x.act(o) for o, x in zip(seen, self._experts)])


def load_agent(checkpoint: str, device: str = "auto") -> Agent:
    """``"expert"`` → :class:`ExpertAgent`; ``"robomimic:<model.pth>"`` →
    :class:`robolearn.baselines.bc_rnn.RobomimicAgent`; anything else → ``robolearn.load_policy``."""
    if checkpoint == EXPERT:
        return ExpertAgent(task_noise=0.0)
    if checkpoint.startswith(ROBOMIMIC_PREFIX):
        from robolearn.baselines import bc_rnn

        return bc_rnn.RobomimicAgent(checkpoint.removeprefix(ROBOMIMIC_PREFIX), device=device)
    from robolearn.runtime import load_policy

    return load_policy(checkpoint, device=device)


def policy_id(agent: Any, default: str = "") -> str:
    """The id stored with an agent's episodes: its checkpoint path, or its own ``policy_id``."""
    path = getattr(agent, "path", None)
    if path is not None:
        return str(path)
    return str(getattr(agent, "policy_id", default) or default or type(agent).__name__)


def checkpoint_files(checkpoint: str) -> dict[str, bytes] | None:
    """The files an actor needs to load a robolearn checkpoint (weights + config), or None for
    agents that need no files (``expert``) or load by path (``robomimic:``)."""
    from robolearn.checkpoint import CONFIG, WEIGHTS, resolve_checkpoint

    if checkpoint == EXPERT or checkpoint.startswith(ROBOMIMIC_PREFIX):
        return None
    ckpt = resolve_checkpoint(checkpoint)
    return {name: (ckpt / name).read_bytes() for name in (WEIGHTS, CONFIG)}


def agent_spec(checkpoint: str = EXPERT, *, device: str = "cpu", ship_files: bool = True,
               expert_noise: float = 0.0, clean_obs: bool = True) -> dict[str, Any]:
    """How a rollout actor builds its agent: a checkpoint (its files shipped through Ray's object
    store, so actors on other machines need no shared disk) or the scripted experts."""
    spec: dict[str, Any] = {"checkpoint": checkpoint, "device": device}
    if checkpoint == EXPERT:
        spec |= {"expert_noise": float(expert_noise), "clean_obs": bool(clean_obs)}
    elif ship_files:
        spec["files"] = checkpoint_files(checkpoint)
    return spec


def build_agent(spec: dict[str, Any]) -> Agent:
    """The agent :func:`agent_spec` describes (in a rollout actor)."""
    spec = dict(spec)
    checkpoint = spec["checkpoint"]
    if checkpoint == EXPERT:
        return ExpertAgent(spec.get("expert_noise", 0.0), clean_obs=spec.get("clean_obs", True))
    files = spec.pop("files", None)
    device = spec.get("device", "cpu")
    if not files:
        return load_agent(checkpoint, device)
    # written to a temporary directory only to be loaded: the policy then lives in memory
    with tempfile.TemporaryDirectory(prefix="robolearn_ckpt_") as ckpt:
        for name, data in files.items():
            (Path(ckpt) / name).write_bytes(data)
        agent = load_agent(ckpt, device)
    if hasattr(agent, "path"):
        agent.path = Path(os.fspath(checkpoint))  # the driver's path is the policy id
    return agent
