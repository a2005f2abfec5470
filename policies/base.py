"""What every policy shares: the `Policy` protocol, the `Normalizer`, input checks, and the
observation/task encoder.

Shape letters (used in every docstring of this package):

    B   batch size
    To  observation horizon (number of past observations the policy sees)
    Ta  action horizon (length of the predicted action chunk)
    Da  action dimension
    Do  observation dimension

A policy sees tensors only, never an environment or a robot, so one checkpoint runs in
simulation and on hardware.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from policies.backbones import (
    BACKBONES,
    BackboneConfig,
    backbone_config_class,
    build_backbone,
    make_backbone_config,
    unknown_name_message,
)

logger = logging.getLogger(__name__)

NORMALIZATION_MODES = ("min_max", "mean_std")
REDUCTIONS = ("mean", "none")

_P = TypeVar("_P", bound="ChunkPolicyModule")


@runtime_checkable
class Policy(Protocol):
    """An action-chunk policy: a `torch.nn.Module` with two methods.

    The trainer calls `compute_loss`; the evaluator and deployment runner call
    `predict_action_chunk`. Everything else (optimiser, EMA, chunk queue, device) lives outside.
    Every policy in this package also has a `config` attribute (its config dataclass) and a
    `fit_normalizers(obs, action)` method.
    """

    def compute_loss(
        self, batch: dict[str, Tensor], reduction: str = "mean"
    ) -> tuple[Tensor, dict[str, float]]:
        """Training loss on a batch.

        Args:
            batch: `obs` (B, To, Do) float, `action` (B, Ta, Da) float in the unnormalised
                action space, `task` (B,) long task index.
            reduction: "mean" returns a scalar; "none" returns the per-sample loss (B,), so
                preference alignment and curriculum weighting can live outside the policy.

        Returns:
            (loss, info): the loss tensor (with grad) and named float metrics for logging.
        """
        ...

    def predict_action_chunk(self, obs: Tensor, task: Tensor) -> Tensor:
        """Predict an action chunk.

        Args:
            obs: (B, To, Do) float, unnormalised observation history (oldest first).
            task: (B,) long task index.

        Returns:
            (B, Ta, Da) actions in the unnormalised action space.
        """
        ...


class Normalizer(nn.Module):
    """Per-dimension affine normaliser `x ↦ (x − center) / scale`, stats stored as buffers.

    Modes:
        "min_max":  maps [min, max] of the fitted data to [-1, 1] (Diffusion Policy's "limits").
        "mean_std": maps to zero mean, unit standard deviation.

    A dimension whose range (or std) is below `eps` gets `scale = 1`, so a constant dimension
    maps to 0 instead of dividing by zero. The stats are buffers: they are saved in and restored
    from the module's state dict (and hence the safetensors checkpoint) with the weights.

    Example:
        >>> norm = Normalizer(3, mode="min_max").fit(np.random.rand(100, 3))
        >>> x = torch.rand(8, 3)
        >>> torch.allclose(norm.unnormalize(norm.normalize(x)), x, atol=1e-6)
        True
    """

    center: Tensor
    scale: Tensor
    fitted: Tensor

    def __init__(self, dim: int, mode: str = "min_max", eps: float = 1e-6) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"Normalizer: Got dim={dim}, expected >= 1")
        if mode not in NORMALIZATION_MODES:
            raise ValueError(
                f"Normalizer: Got mode={mode!r}, expected one of {NORMALIZATION_MODES}"
            )
        self.dim = dim
        self.mode = mode
        self.eps = eps
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        # Saved with the stats so a loaded checkpoint knows it was fitted.
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    @torch.no_grad()
    def fit(self, x: np.ndarray | Tensor) -> Normalizer:
        """Set the stats from data `x` of shape (..., dim); returns self."""
        data = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        if data.ndim == 0 or data.shape[-1] != self.dim:
            raise ValueError(
                f"Normalizer.fit: Got x.shape={tuple(data.shape)}, expected (..., {self.dim})"
            )
        data = data.detach().to("cpu", torch.float64).reshape(-1, self.dim)
        if data.shape[0] == 0:
            raise ValueError("Normalizer.fit: Got an empty array, expected at least one row")
        if not torch.isfinite(data).all():
            bad = int((~torch.isfinite(data)).sum())
            raise ValueError(f"Normalizer.fit: Got {bad} non-finite values, expected all finite")
        if self.mode == "min_max":
            lo, hi = data.min(dim=0).values, data.max(dim=0).values
            center, scale = (hi + lo) / 2, (hi - lo) / 2
        else:
            center, scale = data.mean(dim=0), data.std(dim=0, unbiased=False)
        scale = torch.where(scale < self.eps, torch.ones_like(scale), scale)
        self.center.copy_(center)
        self.scale.copy_(scale)
        self.fitted.fill_(True)
        return self

    def normalize(self, x: Tensor) -> Tensor:
        """(..., dim) raw → (..., dim) normalised."""
        return (x - self.center) / self.scale

    def unnormalize(self, x: Tensor) -> Tensor:
        """(..., dim) normalised → (..., dim) raw."""
        return x * self.scale + self.center

    def extra_repr(self) -> str:
        return f"dim={self.dim}, mode={self.mode!r}"


# ---------------------------------------------------------------------------------------------
# Shared config fields and validation


@dataclass
class PolicyConfig:
    """Fields every policy config has. Subclassed by each policy's config dataclass.

    Required fields come first; subclasses add only defaulted fields.
    """

    obs_dim: int
    """Do: observation dimension."""
    action_dim: int
    """Da: action dimension."""
    num_tasks: int = 1
    """Number of task indices (task ∈ 0..num_tasks−1)."""
    obs_horizon: int = 2
    """To: number of past observations the policy sees (>= 1)."""
    action_horizon: int = 16
    """Ta: length of the predicted action chunk."""
    action_exec_horizon: int = 8
    """How many actions of a chunk the runner executes before re-planning (1..Ta)."""
    backbone: str = "mlp"
    """Backbone name in `policies.backbones.BACKBONES` ("mlp" on CPU, "unet1d" on GPU)."""
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra fields of the backbone's config dataclass, e.g. {"hidden_dim": 256}."""
    task_embed_dim: int = 32
    """Size of the learned task embedding (0: no task conditioning)."""
    obs_normalization: str = "min_max"
    """"min_max" (to [-1, 1]) or "mean_std"."""
    action_normalization: str = "min_max"
    """"min_max" (to [-1, 1]) or "mean_std"."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ("obs_dim", "action_dim", "num_tasks", "obs_horizon", "action_horizon"):
            _check_int(name, key, getattr(self, key), lo=1)
        _check_int(name, "task_embed_dim", self.task_embed_dim, lo=0)
        _check_int(
            name,
            "action_exec_horizon",
            self.action_exec_horizon,
            lo=1,
            hi=self.action_horizon,
            hint=f"(at most action_horizon={self.action_horizon})",
        )
        for key in ("obs_normalization", "action_normalization"):
            value = getattr(self, key)
            if value not in NORMALIZATION_MODES:
                raise ValueError(
                    f"{name}: Got {key}={value!r}, expected one of {NORMALIZATION_MODES}"
                )
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"{name}: " + unknown_name_message("backbone", self.backbone, BACKBONES)
            )
        if not isinstance(self.backbone_kwargs, dict):
            raise TypeError(
                f"{name}: Got backbone_kwargs of type {type(self.backbone_kwargs).__name__}, "
                "expected a dict"
            )
        # JSON-friendly (tuples → lists) so config_from_dict(config_to_dict(c)) == c.
        self.backbone_kwargs = _jsonable(dict(self.backbone_kwargs))
        self.backbone_config(generative=True)  # validates backbone_kwargs against the dims

    @property
    def cond_dim(self) -> int:
        """Dc: size of the conditioning vector, To·Do + task_embed_dim."""
        return self.obs_horizon * self.obs_dim + self.task_embed_dim

    def backbone_config(self, generative: bool) -> BackboneConfig:
        """The backbone's config dataclass with the dims filled in from this config."""
        backbone_config_class(self.backbone).check_kwargs(self.backbone_kwargs)
        return make_backbone_config(
            self.backbone,
            action_dim=self.action_dim,
            action_horizon=self.action_horizon,
            cond_dim=self.cond_dim,
            generative=generative,
            **self.backbone_kwargs,
        )


def _check_int(
    owner: str, key: str, value: Any, lo: int, hi: int | None = None, hint: str = ""
) -> None:
    expected = f"{lo}..{hi}" if hi is not None else f">= {lo}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: Got {key}={value!r}, expected an int {expected}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{owner}: Got {key}={value}, expected {expected} {hint}".rstrip())


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"Got reduction={reduction!r}, expected one of {REDUCTIONS}")


def reduce_loss(per_sample: Tensor, reduction: str) -> Tensor:
    """(B,) per-sample loss → scalar ("mean") or (B,) ("none")."""
    return per_sample.mean() if reduction == "mean" else per_sample


# ---------------------------------------------------------------------------------------------
# Input checks: LeRobot-style messages naming the tensor, what came and what was expected.


def check_obs_task(
    cfg: PolicyConfig, obs: Any, task: Any, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Validate `obs` (B, To, Do) and `task` (B,); returns obs unchanged and task as long."""
    to, do = cfg.obs_horizon, cfg.obs_dim
    if not isinstance(obs, Tensor):
        raise TypeError(
            f"Got obs of type {type(obs).__name__}, expected a torch.Tensor (B, To, Do)"
        )
    if obs.ndim != 3 or tuple(obs.shape[1:]) != (to, do):
        raise ValueError(
            f"Got obs.shape={tuple(obs.shape)}, expected (B, To, Do)=(B, {to}, {do})"
            + (" (add the history axis: obs[:, None])" if obs.ndim == 2 and to == 1 else "")
        )
    if not obs.is_floating_point():
        raise ValueError(f"Got obs.dtype={obs.dtype}, expected a floating dtype")
    _check_device("obs", obs, device)
    if not isinstance(task, Tensor):
        raise TypeError(f"Got task of type {type(task).__name__}, expected a torch.Tensor (B,)")
    if task.ndim != 1 or task.shape[0] != obs.shape[0]:
        raise ValueError(
            f"Got task.shape={tuple(task.shape)}, expected (B,)=({obs.shape[0]},) "
            "(one task index per obs)"
        )
    if task.is_floating_point() or task.is_complex() or task.dtype == torch.bool:
        raise ValueError(f"Got task.dtype={task.dtype}, expected an integer dtype (torch.long)")
    _check_device("task", task, device)
    if task.numel() > 0:
        lo, hi = int(task.min()), int(task.max())
        if lo < 0 or hi >= cfg.num_tasks:
            raise ValueError(
                f"Got task indices in [{lo}, {hi}], expected 0..{cfg.num_tasks - 1} "
                f"(num_tasks={cfg.num_tasks})"
            )
    check_finite("obs", obs)
    return obs, task.long()


def check_action(cfg: PolicyConfig, action: Any, batch_size: int, device: torch.device) -> Tensor:
    """Validate `action` (B, Ta, Da)."""
    ta, da = cfg.action_horizon, cfg.action_dim
    if not isinstance(action, Tensor):
        raise TypeError(
            f"Got action of type {type(action).__name__}, expected a torch.Tensor (B, Ta, Da)"
        )
    if action.ndim != 3 or tuple(action.shape) != (batch_size, ta, da):
        raise ValueError(
            f"Got action.shape={tuple(action.shape)}, expected (B, Ta, Da)=({batch_size}, {ta}, {da})"
        )
    if not action.is_floating_point():
        raise ValueError(f"Got action.dtype={action.dtype}, expected a floating dtype")
    _check_device("action", action, device)
    check_finite("action", action)
    return action


def check_batch(
    cfg: PolicyConfig, batch: Any, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate a training batch; returns (obs, action, task)."""
    if not isinstance(batch, dict):
        raise TypeError(f"Got batch of type {type(batch).__name__}, expected a dict of tensors")
    missing = [k for k in ("obs", "action", "task") if k not in batch]
    if missing:
        raise ValueError(
            f"Got batch keys {sorted(batch)}, missing {missing}; expected 'obs' (B, To, Do), "
            "'action' (B, Ta, Da), 'task' (B,)"
        )
    obs, task = check_obs_task(cfg, batch["obs"], batch["task"], device)
    action = check_action(cfg, batch["action"], obs.shape[0], device)
    return obs, action, task


def check_finite(name: str, x: Tensor) -> None:
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"Got {name} with {bad} non-finite values (NaN/inf) of {x.numel()}, "
            f"{name}.shape={tuple(x.shape)}; expected all finite"
        )


def _check_device(name: str, x: Tensor, device: torch.device) -> None:
    if x.device.type != device.type or (
        device.index is not None and x.device.index not in (None, device.index)
    ):
        raise ValueError(
            f"Got {name}.device={x.device}, expected {device} (the policy's device); "
            f"move it with {name}.to(device)"
        )


# ---------------------------------------------------------------------------------------------
# Conditioning


class ObservationEncoder(nn.Module):
    """(obs (B, To, Do), task (B,)) → conditioning vector c (B, To·Do + task_embed_dim).

    Normalises the observation history with its own `Normalizer`, flattens it, and concatenates
    a learned task embedding. The interface leaves room for a language embedding later (a
    projection concatenated the same way).
    """

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.obs_normalizer = Normalizer(cfg.obs_dim, mode=cfg.obs_normalization)
        self.task_embedding = (
            nn.Embedding(cfg.num_tasks, cfg.task_embed_dim) if cfg.task_embed_dim > 0 else None
        )
        self.out_dim = cfg.obs_horizon * cfg.obs_dim + cfg.task_embed_dim

    def forward(self, obs: Tensor, task: Tensor) -> Tensor:
        parts = [self.obs_normalizer.normalize(obs).flatten(1)]
        if self.task_embedding is not None:
            parts.append(self.task_embedding(task))
        return torch.cat(parts, dim=-1)


def param_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU when it has none)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# Shared plumbing of the policies in this package (not a contract: the contract is `Policy`).


class ChunkPolicyModule(nn.Module):
    """Holds what every chunk policy here has: `config`, an `ObservationEncoder` (obs
    normaliser + task embedding), an action `Normalizer` and a backbone. Subclasses write
    `compute_loss` and `predict_action_chunk` in the open.
    """

    def __init__(self, config: PolicyConfig, generative: bool) -> None:
        super().__init__()
        self.config = config
        self.obs_encoder = ObservationEncoder(config)
        self.action_normalizer = Normalizer(config.action_dim, mode=config.action_normalization)
        self.backbone = build_backbone(config.backbone_config(generative=generative))
        self._warned_unfitted = False

    @property
    def device(self) -> torch.device:
        return param_device(self)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the policy computes its sampler state in (that of its normaliser stats)."""
        return self.action_normalizer.center.dtype

    @property
    def normalizers_fitted(self) -> bool:
        return self.obs_encoder.obs_normalizer.is_fitted and self.action_normalizer.is_fitted

    def fit_normalizers(self: _P, obs: np.ndarray | Tensor, action: np.ndarray | Tensor) -> _P:
        """Fit the obs and action normalisers on training data; returns self.

        Args:
            obs: (..., Do) observations, e.g. the dataset's (T, Do) obs array.
            action: (..., Da) actions, e.g. the dataset's (T, Da) action array.
        """
        self.obs_encoder.obs_normalizer.fit(obs)
        self.action_normalizer.fit(action)
        return self

    def _inputs(self, obs: Any, task: Any) -> tuple[Tensor, Tensor]:
        obs, task = check_obs_task(self.config, obs, task, self.device)
        return obs.to(self.dtype), task

    def _batch(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        obs, action, task = check_batch(self.config, batch, self.device)
        if not self._warned_unfitted and not self.normalizers_fitted:
            logger.warning(
                "%s: training with unfitted normalisers (identity); call "
                "policy.fit_normalizers(obs, action) on the training data first",
                type(self).__name__,
            )
            self._warned_unfitted = True
        return obs.to(self.dtype), action.to(self.dtype), task
