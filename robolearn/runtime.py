"""Run a trained policy anywhere: ``robolearn.load_policy(path).act(obs, task=name)``.

The runner keeps the observation history (To) and the action-chunk queue: it predicts a chunk
of Ta actions, executes the first ``action_exec_horizon`` of them one per ``act`` call, then
re-plans. The evaluator, the deployment runner and users all go through it.

Example:
    >>> policy = robolearn.load_policy("runs/mt10/checkpoint")      # device="auto"
    >>> policy.reset()
    >>> action = policy.act(obs, task="push-v3")                    # (Do,) → (Da,)
    >>> actions = policy.act(obs_batch, task="push-v3")             # (B, Do) → (B, Da)
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies import make_policy_from_dict
from robolearn.checkpoint import CheckpointError, read_config, read_weights, resolve_checkpoint
from robolearn.train import resolve_device


class PolicyRunner:
    """Stateful wrapper of a policy for closed-loop control (history + chunk queue).

    Args:
        policy: a `policies` policy (``predict_action_chunk(obs (B,To,Do), task (B,))``).
        tasks: task names; a task's position is the index the policy was trained with.
        exec_horizon: actions executed from each predicted chunk before re-planning.
        seed: seed of the sampling noise (flow matching / diffusion), reset by :meth:`reset`.
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        tasks: list[str],
        *,
        exec_horizon: int | None = None,
        seed: int = 0,
        train_info: dict[str, Any] | None = None,
        path: Path | None = None,
    ):
        self.policy = policy.eval()
        self.config = policy.config
        self.tasks = list(tasks)
        self.obs_dim = self.config.obs_dim
        self.action_dim = self.config.action_dim
        self.obs_horizon = self.config.obs_horizon
        self.exec_horizon = exec_horizon or self.config.action_exec_horizon
        if not 1 <= self.exec_horizon <= self.config.action_horizon:
            raise ValueError(
                f"Got exec_horizon={self.exec_horizon}, expected 1..{self.config.action_horizon}"
            )
        self.device = next(policy.parameters()).device
        self.seed = seed
        self.train_info = dict(train_info or {})
        self.path = path
        self._task_index = {t: i for i, t in enumerate(self.tasks)}
        self._takes_generator = "generator" in inspect.signature(policy.predict_action_chunk).parameters
        self.reset()

    def reset(self) -> None:
        """Start new episodes: clear the observation history and the chunk queue."""
        self._history: deque[np.ndarray] = deque(maxlen=self.obs_horizon)
        self._queue: deque[np.ndarray] = deque()
        self._batch: int | None = None
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(self.seed)

    def task_id(self, task: str | int) -> int:
        if isinstance(task, (int, np.integer)):
            if not 0 <= task < len(self.tasks):
                raise ValueError(f"Got task={task}, expected an index in 0..{len(self.tasks) - 1}")
            return int(task)
        if task not in self._task_index:
            match = difflib.get_close_matches(str(task), self.tasks, n=1)
            hint = f" Did you mean {match[0]!r}?" if match else ""
            raise ValueError(
                f"this policy was not trained on task {task!r}.{hint} Its tasks: {self.tasks}"
            )
        return self._task_index[task]

    @torch.inference_mode()
    def predict_chunk(self, obs_history: np.ndarray, task: str | int) -> np.ndarray:
        """(B, To, Do) history → (B, Ta, Da) chunk, without touching the runner's state."""
        obs = torch.as_tensor(obs_history, dtype=torch.float32, device=self.device)
        task_t = torch.full((obs.shape[0],), self.task_id(task), dtype=torch.long,
                            device=self.device)
        kwargs = {"generator": self._generator} if self._takes_generator else {}
        return self.policy.predict_action_chunk(obs, task_t, **kwargs).float().cpu().numpy()

    def act(self, obs: np.ndarray, task: str | int) -> np.ndarray:
        """The next action for observation ``obs`` (Do,) or a batch (B, Do) → (Da,) or (B, Da)."""
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ValueError(
                f"Got obs.shape={obs.shape}, expected ({self.obs_dim},) or (B, {self.obs_dim})"
            )
        if not np.isfinite(batch).all():
            raise ValueError("obs has non-finite values (NaN/Inf); refusing to act on it")
        if self._batch is None:
            self._batch = batch.shape[0]
        elif batch.shape[0] != self._batch:
            raise ValueError(
                f"Got a batch of {batch.shape[0]} observations after {self._batch} in this "
                "episode; call reset() before changing the batch size"
            )
        if not self._history:  # edge padding, as in training: repeat the first observation
            self._history.extend([batch] * self.obs_horizon)
        else:
            self._history.append(batch)
        if not self._queue:
            chunk = self.predict_chunk(np.stack(self._history, axis=1), task)
            self._queue.extend(chunk[:, i] for i in range(self.exec_horizon))
        action = self._queue.popleft()
        return action[0] if single else action


def load_policy(path: str | os.PathLike, device: str = "auto", *, seed: int = 0) -> PolicyRunner:
    """Load a checkpoint written by the trainer (a run dir or a ``checkpoints/step_*`` dir).

    Reads safetensors weights and a JSON config only (never unpickles). Raises
    ``FileNotFoundError`` for a missing path and ``CheckpointError`` for anything that is not a
    robolearn checkpoint.
    """
    ckpt = resolve_checkpoint(path)
    cfg = read_config(ckpt)
    try:
        policy = make_policy_from_dict(cfg["policy"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt}: its policy config cannot be built: {e}") from None
    weights = read_weights(ckpt)
    missing, unexpected = policy.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt}: weights do not match the policy config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    policy.to(resolve_device(device))
    info = {k: cfg.get(k) for k in ("dataset", "collect_seed", "suite", "step", "ema")}
    return PolicyRunner(policy, cfg["tasks"], seed=seed, train_info=info, path=ckpt)
