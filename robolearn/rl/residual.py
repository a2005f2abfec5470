"""The residual env and the base+residual checkpoint: ``robolearn/MetaWorldResidual-v0``.

:class:`ResidualEnv` wraps a :class:`~robolearn.rl.env.TaskEnv` around a frozen base policy
(any robolearn checkpoint, run exactly as evaluation runs it: observation history, action
chunks of ``action_exec_horizon``, re-planning; ``reset`` clears them). At each step the base
proposes ``a_base = base.act(o_t, task)``; the RL policy sees ``[obs, task one-hot, a_base]``
and returns δ ∈ [-1, 1]^4; the env applies ``clip(a_base + α·δ, -1, 1)``. With δ = 0 the
episodes are the base policy's own (tested against the evaluator, episode for episode).

:func:`save_residual_checkpoint` writes what :func:`robolearn.load_policy` loads as base +
residual: ``config.json`` (``"format": "robolearn.residual"``, the residual's config, α, its
task list and the base checkpoint's whole ``config.json``) and ``model.safetensors`` (the base
weights under ``base.``, the residual's under ``residual.``). The two files make the whole
checkpoint, so Ray rollout actors (which receive a checkpoint's two files) and other machines
need nothing else. No pickle.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from robolearn.rl.env import RESIDUAL_ENV_ID, TaskEnv  # noqa: F401 - RESIDUAL_ENV_ID re-exported

log = logging.getLogger(__name__)


def load_base(base: Any = None, base_files: Mapping[str, bytes] | None = None,
              device: str = "cpu") -> Any:
    """The frozen base policy: a loaded runner, a checkpoint path, or a checkpoint's files."""
    from robolearn.runtime import load_policy

    if base is not None and not isinstance(base, (str, os.PathLike)):
        return base
    if base_files:
        with tempfile.TemporaryDirectory(prefix="robolearn_base_") as tmp:
            for name, data in base_files.items():
                (Path(tmp) / name).write_bytes(data)
            runner = load_policy(tmp, device=device)
        runner.path = Path(str(base)) if base is not None else None
        return runner
    if base is None:
        raise ValueError("ResidualEnv needs base=<checkpoint or run dir> (the frozen policy)")
    return load_policy(base, device=device)


class ResidualEnv(gym.Env):
    """Residual RL on a frozen base policy (see the module docstring).

    Args:
        base: The base policy: a checkpoint or run directory, or a loaded
            :class:`~robolearn.runtime.PolicyRunner`.
        tasks: The tasks (the one-hot order); default: the distribution's, else the base's.
        distribution: The task distribution (what :meth:`TaskEnv.set_task` accepts).
        alpha: α, the bound of the correction.
        base_files: The base checkpoint's files (name → bytes), used instead of reading
            ``base`` from disk (how RLlib env runners on other machines get it).
        device: Where the base policy runs (CPU: the env runner's own thread).
        torch_threads: Threads torch may use in this process (0: leave as is); one per env
            runner keeps a 2-core machine from oversubscribing.
        **task_env: :class:`TaskEnv`'s keyword arguments (horizon, reward_scale, ...).
    """

    metadata = {"render_modes": []}

    def __init__(self, base: Any = None, tasks: Sequence[str] | None = None,
                 distribution: Any = None, *, alpha: float = 0.2,
                 base_files: Mapping[str, bytes] | None = None, device: str = "cpu",
                 torch_threads: int = 1, **task_env: Any) -> None:
        super().__init__()
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        if not 0.0 < float(alpha) <= 2.0:
            raise ValueError(f"ResidualEnv: Got alpha={alpha}, expected 0 < alpha <= 2")
        self.base = load_base(base, base_files, device)
        self.alpha = float(alpha)
        if tasks is None and distribution is None:
            tasks = list(self.base.tasks)
        self.task_env = TaskEnv(tasks, distribution, **task_env)
        missing = [t for t in self.task_env.tasks if t not in set(self.base.tasks)]
        if missing:
            raise ValueError(f"the base policy {getattr(self.base, 'path', '')} was not trained "
                             f"on {missing}; it knows {list(self.base.tasks)}")
        self.tasks = self.task_env.tasks
        self.obs_dim = int(self.base.obs_dim)
        self.action_dim = int(self.base.action_dim)
        dim = self.obs_dim + len(self.tasks) + self.action_dim
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), dtype=np.float32)
        self._task: str | None = None
        self._a_base = np.zeros(self.action_dim, np.float32)

    # the curriculum hook and stats, as TaskEnv's
    def set_task(self, spec: Any) -> int:
        """See :meth:`TaskEnv.set_task`."""
        return self.task_env.set_task(spec)

    def pop_episode_stats(self) -> list[dict[str, Any]]:
        """See :meth:`TaskEnv.pop_episode_stats`."""
        return self.task_env.pop_episode_stats()

    @property
    def task_distribution(self) -> Any:
        return self.task_env.task_distribution

    @property
    def base_action(self) -> np.ndarray:
        """a_base for the current observation (what the next step adds α·δ to)."""
        return self._a_base.copy()

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Draws an episode (see :meth:`TaskEnv.reset`) and clears the base's history/queue."""
        super().reset(seed=seed)
        obs, info = self.task_env.reset(seed=seed, options=options)
        self._task = info["task"]
        self.base.reset()
        self._a_base = self._propose()
        return self._observe(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Applies clip(a_base + α·clip(δ, -1, 1), -1, 1); the next a_base comes with the
        observation (not after a termination: no step follows it)."""
        if self._task is None:
            raise RuntimeError("ResidualEnv.step called before reset(); call env.reset() first")
        delta = np.clip(np.asarray(action, np.float32).reshape(self.action_dim), -1.0, 1.0)
        applied = np.clip(self._a_base + np.float32(self.alpha) * delta, -1.0, 1.0)
        obs, reward, terminated, truncated, info = self.task_env.step(applied)
        info["base_action"] = self._a_base
        info["applied_action"] = applied
        if terminated:
            self._a_base = np.zeros(self.action_dim, np.float32)
        else:  # truncation too: PPO bootstraps from the last observation's value
            self._a_base = self._propose()
        if terminated or truncated:
            self._task = None
        return self._observe(obs), reward, terminated, truncated, info

    def close(self) -> None:
        self.task_env.close()

    def _propose(self) -> np.ndarray:
        return np.asarray(self.base.act(self.task_env.raw_obs, task=self._task), np.float32)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, self._a_base]).astype(np.float32, copy=False)


class RLlibResidualEnv(ResidualEnv):
    """:class:`ResidualEnv` as RLlib's env runners build it: from one ``env_config`` (an
    ``EnvContext``, whose ``worker_index`` is mixed into the episode stream so runners differ)."""

    def __init__(self, config: Any) -> None:
        kwargs = dict(config or {})
        kwargs.pop("num_envs", None)
        kwargs.setdefault("worker_index", getattr(config, "worker_index", 0))
        super().__init__(**kwargs)


# ---------------------------------------------------------------------------- checkpoints
def save_residual_checkpoint(directory: Path, base_checkpoint: str | os.PathLike,
                             residual: Any, tasks: Sequence[str],
                             info: Mapping[str, Any] | None = None) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` of base + residual into ``directory``.

    Args:
        directory: An existing directory (the caller installs it atomically).
        base_checkpoint: The base policy's checkpoint or run directory (copied in whole).
        residual: The trained :class:`policies.residual.ResidualPolicy`.
        tasks: The residual's task list (its one-hot order).
        info: Provenance recorded under ``"rl"`` (iteration, env steps, curriculum version).
    """
    from safetensors.torch import save_file

    from robolearn.checkpoint import CONFIG, WEIGHTS, read_config, read_weights, resolve_checkpoint
    from robolearn.runtime import RESIDUAL_FORMAT, RESIDUAL_VERSION

    base_ckpt = resolve_checkpoint(base_checkpoint)
    base_cfg = read_config(base_ckpt)
    weights = {f"base.{k}": v for k, v in read_weights(base_ckpt).items()}
    weights |= {f"residual.{k}": v.detach().to("cpu").contiguous()
                for k, v in residual.state_dict().items()}
    config = {
        "format": RESIDUAL_FORMAT,
        "version": RESIDUAL_VERSION,
        "step": int((info or {}).get("iteration", 0)),
        "tasks": list(tasks),
        "obs_dim": int(residual.config.obs_dim),
        "action_dim": int(residual.config.action_dim),
        "residual": residual.config.to_dict(),
        "base": base_cfg,
        "base_checkpoint": str(base_ckpt),
        # the base's provenance: the evaluator checks held-out goals against its demonstrations
        **{k: base_cfg.get(k) for k in ("dataset", "collect_seed", "suite") if k in base_cfg},
        "rl": dict(info or {}),
    }
    save_file(weights, str(directory / WEIGHTS))
    (directory / CONFIG).write_text(json.dumps(config, indent=2))
    return directory
