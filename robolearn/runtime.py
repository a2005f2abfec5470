"""Run a trained policy anywhere: ``robolearn.load_policy(path).act(obs, task=name)``.

The runner keeps the observation history (To) and the action-chunk queue: it predicts a chunk
of Ta actions, executes the first ``action_exec_horizon`` of them one per ``act`` call, then
re-plans. The rollout engine, the deployment runner and users all go through it. A base +
residual checkpoint (``robolearn finetune``, ``"format": "robolearn.residual"``) loads as a
:class:`ResidualRunner`: the frozen base runs exactly so, and a learned bounded correction is
added to each of its actions.

Example:
    >>> policy = robolearn.load_policy("runs/mt10/checkpoint")      # device="auto"
    >>> policy.reset()
    >>> action = policy.act(obs, task="push-v3")                    # (Do,) → (Da,)
    >>> actions = policy.act(obs_batch, task="push-v3")             # (B, Do) → (B, Da)
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from policies import make_policy_from_dict
from robolearn.checkpoint import (
    CONFIG,
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    read_config,
    read_weights,
    resolve_checkpoint,
    weight_shapes,
)
from robolearn.devices import resolve_device
from robolearn.errors import did_you_mean

log = logging.getLogger(__name__)


class Plan(NamedTuple):
    """The chunk a :class:`PolicyRunner` generated: at episode step ``step`` (0-based, counted
    in ``act`` calls since ``reset``), ``chunk`` (B, Ta, Da) from ``obs`` (B, To, Do)."""

    step: int
    chunk: np.ndarray
    obs: np.ndarray


class PolicyRunner:
    """Stateful wrapper of a policy for closed-loop control (history + chunk queue).

    Args:
        policy: a `policies` policy (``predict_action_chunk(obs (B,To,Do), task (B,))``).
        tasks: task names; a task's position is the index the policy was trained with.
        exec_horizon: actions executed from each predicted chunk before re-planning.
        seed: seed of the sampling noise (flow matching / diffusion), reset by :meth:`reset`.

    Attributes:
        last_plan: The most recent :class:`Plan` of this episode (``None`` before the first),
            so a rollout can record which chunk each action came from.
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
        self._task: int | None = None
        self._step = 0
        self.last_plan: Plan | None = None
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(self.seed)

    def task_id(self, task: str | int) -> int:
        if isinstance(task, (int, np.integer)):
            if not 0 <= task < len(self.tasks):
                raise ValueError(f"Got task={task}, expected an index in 0..{len(self.tasks) - 1}")
            return int(task)
        if task not in self._task_index:
            raise ValueError(
                f"this policy was not trained on task {task!r}.{did_you_mean(task, self.tasks)} "
                f"Its tasks: {self.tasks}"
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
        """The next action for observation ``obs`` (Do,) or a batch (B, Do) → (Da,) or (B, Da).

        A call with another task than the queued actions were planned for starts over (history
        and queue cleared, a new chunk planned): actions of one task are never executed on
        another.
        """
        # A copy, always: the history keeps these rows, and callers reuse their buffers (the
        # rollout engine writes each step's observations into the same array). Keeping a
        # reference made the history [o_t, o_t] instead of [o_t-1, o_t].
        obs = np.array(obs, dtype=np.float32, copy=True)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ValueError(
                f"Got obs.shape={obs.shape}, expected ({self.obs_dim},) or (B, {self.obs_dim})"
            )
        if not np.isfinite(batch).all():
            raise ValueError("obs has non-finite values (NaN/Inf); refusing to act on it")
        task_id = self.task_id(task)
        if self._task is not None and task_id != self._task:
            log.debug("task changed from %s to %s: re-planning", self.tasks[self._task],
                      self.tasks[task_id])
            self._history.clear()
            self._queue.clear()
            self._batch = None
        self._task = task_id
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
            history = np.stack(self._history, axis=1)
            chunk = self.predict_chunk(history, task_id)
            self._queue.extend(chunk[:, i] for i in range(self.exec_horizon))
            self.last_plan = Plan(self._step, chunk, history)
        self._step += 1
        action = self._queue.popleft()
        return action[0] if single else action


def load_policy(path: str | os.PathLike, device: str = "auto", *,
                seed: int = 0) -> PolicyRunner | ResidualRunner:
    """Load a checkpoint written by the trainer (a run dir or a ``checkpoints/step_*`` dir), or a
    base + residual checkpoint written by ``robolearn finetune`` (a :class:`ResidualRunner`).

    Reads safetensors weights and a JSON config only (never unpickles). Before allocating
    anything it checks that the config's tensors have exactly the shapes stored in the weights
    file (so a config cannot make it allocate more than the file holds), and it refuses
    non-finite weights.

    Raises:
        FileNotFoundError: a missing path.
        CheckpointError: anything that is not a usable robolearn checkpoint.
        ConfigError: an unknown ``device``.
    """
    ckpt = resolve_checkpoint(path)
    if _format_of(ckpt) == RESIDUAL_FORMAT:
        return _load_residual(ckpt, device, seed)
    cfg = read_config(ckpt)
    dev = resolve_device(device)
    skeleton = _skeleton(ckpt, cfg["policy"])
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    _check_shapes(ckpt, want, weight_shapes(ckpt))
    policy = make_policy_from_dict(cfg["policy"])
    policy.load_state_dict(read_weights(ckpt), strict=False)
    policy.to(dev)
    info = {k: cfg.get(k) for k in ("dataset", "collect_seed", "suite", "step", "ema",
                                    "objective")}
    return PolicyRunner(policy, cfg["tasks"], seed=seed, train_info=info, path=ckpt)


def _skeleton(ckpt: Path, policy_cfg: Any) -> torch.nn.Module:
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated yet
            return make_policy_from_dict(policy_cfg)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{ckpt}: its policy config cannot be built: {e}") from None


def _check_shapes(ckpt: Path, want: dict[str, tuple[int, ...]],
                  have: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or unexpected or wrong:
        detail = [f"missing {missing[:4]}" if missing else "",
                  f"unexpected {unexpected[:4]}" if unexpected else "",
                  "shapes differ: " + ", ".join(f"{k} config {want[k]} vs file {have[k]}"
                                                for k in wrong[:3]) if wrong else ""]
        raise CheckpointError(
            f"{ckpt}: the weights do not match its config.json ("
            + "; ".join(d for d in detail if d) + "). The config was edited or belongs to "
            "another checkpoint; use the config.json written with these weights"
        )


# ----------------------------------------------------------------------------- base + residual
RESIDUAL_FORMAT = "robolearn.residual"
"""The ``format`` of a base + residual checkpoint's ``config.json`` (``robolearn finetune``)."""
RESIDUAL_VERSION = 1


class ResidualRunner:
    """A frozen base policy plus a learned bounded correction, behind PolicyRunner's interface.

    ``act`` runs the base exactly as alone (history, chunks, re-planning), then adds the
    residual's deterministic correction: ``clip(a_base + α·clip(f(obs, a_base, task), -1, 1),
    -1, 1)`` (:class:`policies.residual.ResidualPolicy`). ``evaluate``, ``deploy`` and the
    rollout engine run it unchanged.

    Attributes:
        base: The base :class:`PolicyRunner`.
        residual: The :class:`~policies.residual.ResidualPolicy`.
        tasks: The tasks it acts on (the residual's, a subset of the base's).
        last_plan: The base's latest chunk (the chunk before the correction).
    """

    def __init__(self, base: PolicyRunner, residual: torch.nn.Module, tasks: list[str], *,
                 train_info: dict[str, Any] | None = None, path: Path | None = None) -> None:
        from policies.residual import one_hot

        self.base = base
        self.residual = residual.eval()
        self.config = residual.config
        self.alpha = float(residual.config.alpha)
        self.tasks = list(tasks)
        unknown = [t for t in self.tasks if t not in set(base.tasks)]
        if unknown:
            raise ValueError(f"the residual's tasks {unknown} are not tasks of its base policy "
                             f"({base.tasks})")
        self.obs_dim, self.action_dim = base.obs_dim, base.action_dim
        self.device = next(residual.parameters()).device
        self.train_info = dict(train_info or {})
        self.path = path
        self._index = {t: i for i, t in enumerate(self.tasks)}
        self._one_hot = one_hot

    @property
    def last_plan(self) -> Plan | None:
        return self.base.last_plan

    def reset(self) -> None:
        """Start new episodes (the base's history and chunk queue are cleared)."""
        self.base.reset()

    def task_id(self, task: str | int) -> int:
        """The index of ``task`` in :attr:`tasks` (a name or an index)."""
        if isinstance(task, (int, np.integer)):
            if not 0 <= task < len(self.tasks):
                raise ValueError(f"Got task={task}, expected an index in 0..{len(self.tasks) - 1}")
            return int(task)
        if task not in self._index:
            raise ValueError(
                f"this policy was not fine-tuned on task {task!r}.{did_you_mean(task, self.tasks)}"
                f" Its tasks: {self.tasks}"
            )
        return self._index[task]

    @torch.inference_mode()
    def act(self, obs: np.ndarray, task: str | int) -> np.ndarray:
        """(Do,) or (B, Do) observations → (Da,) or (B, Da) actions (see the class docstring)."""
        k = self.task_id(task)
        a_base = np.asarray(self.base.act(obs, self.tasks[k]), np.float32)  # validates obs
        single = a_base.ndim == 1
        o = torch.as_tensor(np.asarray(obs, np.float32).reshape(-1, self.obs_dim),
                            device=self.device)
        a = torch.as_tensor(a_base.reshape(-1, self.action_dim), device=self.device)
        onehot = self._one_hot(torch.full((a.shape[0],), k, dtype=torch.long,
                                          device=self.device), len(self.tasks))
        out = self.residual.apply_residual(a, self.residual.delta(o, a, onehot))
        out = out.float().cpu().numpy()
        return out[0] if single else out


def _format_of(ckpt: Path) -> Any:
    try:
        data = json.loads((ckpt / CONFIG).read_text())
    except (OSError, ValueError):
        return None  # read_config reports it
    return data.get("format") if isinstance(data, dict) else None


def _load_residual(ckpt: Path, device: str, seed: int) -> ResidualRunner:
    from policies.residual import ResidualConfig, ResidualPolicy

    cfg = json.loads((ckpt / CONFIG).read_text())
    where = ckpt / CONFIG
    if cfg.get("version") != RESIDUAL_VERSION:
        raise CheckpointError(f"{ckpt} has residual checkpoint version {cfg.get('version')!r}; "
                              f"this robolearn reads version {RESIDUAL_VERSION}")
    for key, typ in (("base", dict), ("residual", dict), ("tasks", list)):
        if not isinstance(cfg.get(key), typ):
            raise CheckpointError(f"{where}: {key!r} must be a JSON {typ.__name__}, got "
                                  f"{type(cfg.get(key)).__name__}")
    base_cfg = _check_base_config(cfg["base"], where)
    try:
        rcfg = ResidualConfig.from_dict(cfg["residual"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: its residual config cannot be built: {e}") from None
    tasks = cfg["tasks"]
    policy = base_cfg["policy"]
    unknown = [t for t in tasks if t not in base_cfg["tasks"]]
    if not tasks or not all(isinstance(t, str) for t in tasks) or unknown:
        raise CheckpointError(f"{where}: 'tasks' must be a non-empty list of the base policy's "
                              f"tasks; got {str(tasks)[:80]}")
    if (rcfg.num_tasks, rcfg.obs_dim, rcfg.action_dim) != (
            len(tasks), policy.get("obs_dim"), policy.get("action_dim")):
        raise CheckpointError(
            f"{where} is inconsistent: residual (num_tasks, obs_dim, action_dim) = "
            f"{(rcfg.num_tasks, rcfg.obs_dim, rcfg.action_dim)}, but it lists {len(tasks)} tasks "
            f"and its base has obs_dim={policy.get('obs_dim')}, action_dim="
            f"{policy.get('action_dim')}; the checkpoint was edited or is corrupt"
        )
    dev = resolve_device(device)
    skeleton = _skeleton(ckpt, policy)
    want = {f"base.{k}": tuple(v.shape) for k, v in skeleton.state_dict().items()}
    with torch.device("meta"):
        want |= {f"residual.{k}": tuple(v.shape)
                 for k, v in ResidualPolicy(rcfg).state_dict().items()}
    _check_shapes(ckpt, want, weight_shapes(ckpt))
    weights = read_weights(ckpt)
    base_policy = make_policy_from_dict(policy)
    base_policy.load_state_dict({k[5:]: v for k, v in weights.items() if k.startswith("base.")},
                                strict=False)
    residual = ResidualPolicy(rcfg)
    residual.load_state_dict({k[9:]: v for k, v in weights.items()
                              if k.startswith("residual.")})
    info = {k: cfg.get(k) for k in ("dataset", "collect_seed", "suite", "step")}
    info["residual"] = {"alpha": rcfg.alpha, "base_checkpoint": cfg.get("base_checkpoint"),
                        "rl": cfg.get("rl", {})}
    base = PolicyRunner(base_policy.to(dev), base_cfg["tasks"], seed=seed,
                        train_info={k: base_cfg.get(k) for k in ("dataset", "collect_seed",
                                                                 "suite", "step", "ema",
                                                                 "objective")}, path=ckpt)
    return ResidualRunner(base, residual.to(dev), tasks, train_info=info, path=ckpt)


def _check_base_config(base: dict[str, Any], where: Path) -> dict[str, Any]:
    """The embedded base ``config.json``: the checks ``read_config`` makes on a file."""
    if base.get("format") != FORMAT or base.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{where}: its 'base' is not a robolearn policy config (format="
                              f"{base.get('format')!r}, version={base.get('version')!r}; expected "
                              f"{FORMAT!r}, {FORMAT_VERSION})")
    tasks, policy = base.get("tasks"), base.get("policy")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(x, str) for x in tasks):
        raise CheckpointError(f"{where}: base.tasks must be a non-empty list of task names")
    if not isinstance(policy, dict):
        raise CheckpointError(f"{where}: base.policy must be an object")
    if policy.get("num_tasks", len(tasks)) != len(tasks):
        raise CheckpointError(f"{where} is inconsistent: base.policy.num_tasks="
                              f"{policy.get('num_tasks')} but base.tasks lists {len(tasks)}")
    return base
