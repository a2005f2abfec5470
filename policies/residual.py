"""A residual correction on top of a frozen base policy: (obs, a_base, task) → δ.

Residual policy learning (Silver et al. 2018, "Residual Policy Learning"; Johannink et al.
2019, "Residual Reinforcement Learning for Robot Control"; Ankile et al. 2024, "From Imitation
to Refinement — Residual RL for Precise Assembly") keeps a trained policy π_base frozen and
learns a small, bounded correction on top of it::

    a_base = π_base(o_{t-To+1..t}, task)             (chunked execution, as in evaluation)
    δ      = clip(f_θ(norm(o_t), a_base, onehot(task)), -1, 1)
    a      = clip(a_base + α · δ, -1, 1)

:class:`ResidualPolicy` is f_θ: a plain MLP whose last layer starts at zero, so δ = 0 and the
fine-tuned agent begins exactly at the base policy's behaviour (and success). The observation
is normalised with the base policy's statistics (copied in with :meth:`ResidualPolicy.
set_obs_normalization`) and clamped, so a reality gap that pushes observations outside the
demonstrations' range cannot blow the input up.

Like every module of ``policies`` it sees tensors only; the RL loop (``robolearn.rl``) trains
it with PPO, and ``robolearn.load_policy`` runs it behind the same ``act`` as any checkpoint.

Example:
    >>> cfg = ResidualConfig(obs_dim=39, action_dim=4, num_tasks=2)
    >>> f = ResidualPolicy(cfg)
    >>> delta = f(torch.zeros(3, 39), torch.zeros(3, 4), torch.zeros(3, 2))
    >>> delta.shape, float(delta.abs().max())                      # zero at initialisation
    (torch.Size([3, 4]), 0.0)
    >>> f.apply_residual(torch.full((3, 4), 0.95), torch.ones(3, 4)).max().item()  # clipped
    1.0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

OBS_CLAMP = 5.0
"""Normalised observations are clamped to [-OBS_CLAMP, OBS_CLAMP] (min-max stats map the
demonstrations to [-1, 1]; a reality gap may leave that range)."""


@dataclass
class ResidualConfig:
    """Config of :class:`ResidualPolicy`.

    Example:
        >>> ResidualConfig(obs_dim=39, action_dim=4, num_tasks=10, hidden_dim=128).alpha
        0.2
    """

    obs_dim: int
    """Do: observation dimension (the env's, one time step)."""
    action_dim: int
    """Da: action dimension (of a_base and δ)."""
    num_tasks: int = 1
    """K: size of the task one-hot the residual sees (its own task list, not the base's)."""
    hidden_dim: int = 256
    """Width of the hidden layers."""
    num_layers: int = 2
    """Number of hidden layers (>= 1)."""
    alpha: float = 0.2
    """α: the bound of the correction; the applied action is clip(a_base + α·δ), |δ| <= 1."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ("obs_dim", "action_dim", "num_tasks", "hidden_dim", "num_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: Got {key}={value!r}, expected an int >= 1")
        if not isinstance(self.alpha, (int, float)) or not 0.0 < float(self.alpha) <= 2.0:
            raise ValueError(
                f"{name}: Got alpha={self.alpha!r}, expected 0 < alpha <= 2 (the largest "
                "correction per action dimension; actions live in [-1, 1])"
            )
        self.alpha = float(self.alpha)

    @property
    def input_dim(self) -> int:
        """Do + Da + K: the size of the concatenated input [obs, a_base, task one-hot]."""
        return self.obs_dim + self.action_dim + self.num_tasks

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``ResidualConfig(**d)`` rebuilds it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResidualConfig:
        """The config of :meth:`to_dict`; unknown fields are refused with the known ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {known}")
        return cls(**d)


def mlp(in_dim: int, hidden_dim: int, num_layers: int, out_dim: int) -> nn.Sequential:
    """``num_layers`` hidden Linear+Tanh layers, then a linear output (PPO's usual MLP)."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(dim, hidden_dim), nn.Tanh()]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class ResidualPolicy(nn.Module):
    """f_θ(obs, a_base, task) → δ ∈ [-1, 1]^Da, zero at initialisation.

    Shapes: obs (B, Do) raw, base_action (B, Da), task_onehot (B, K) → δ (B, Da).
    """

    obs_center: Tensor
    obs_scale: Tensor

    def __init__(self, config: ResidualConfig) -> None:
        super().__init__()
        self.config = config
        self.net = mlp(config.input_dim, config.hidden_dim, config.num_layers, config.action_dim)
        # The last layer at exactly zero: δ = 0, so fine-tuning starts at the base policy.
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        # Identity normalisation until the base policy's statistics are copied in.
        self.register_buffer("obs_center", torch.zeros(config.obs_dim))
        self.register_buffer("obs_scale", torch.ones(config.obs_dim))

    @torch.no_grad()
    def set_obs_normalization(self, center: Tensor, scale: Tensor) -> None:
        """Uses ``(obs - center) / scale`` (e.g. the base policy's obs normaliser), (Do,) each."""
        for name, t in (("center", center), ("scale", scale)):
            if tuple(t.shape) != (self.config.obs_dim,):
                raise ValueError(f"ResidualPolicy.set_obs_normalization: Got {name} of shape "
                                 f"{tuple(t.shape)}, expected ({self.config.obs_dim},)")
        if not bool((scale > 0).all()) or not bool(torch.isfinite(center).all()):
            raise ValueError("ResidualPolicy.set_obs_normalization: scale must be > 0 and "
                             "center finite")
        self.obs_center.copy_(center)
        self.obs_scale.copy_(scale)

    def features(self, obs: Tensor, base_action: Tensor, task_onehot: Tensor) -> Tensor:
        """[clamp(norm(obs)), a_base, one-hot] (B, Do + Da + K); checks the shapes."""
        cfg = self.config
        b = obs.shape[0] if obs.ndim == 2 else None
        for name, t, dim in (("obs", obs, cfg.obs_dim), ("base_action", base_action,
                                                         cfg.action_dim),
                             ("task_onehot", task_onehot, cfg.num_tasks)):
            if t.ndim != 2 or t.shape[1] != dim or t.shape[0] != b:
                raise ValueError(f"ResidualPolicy: Got {name}.shape={tuple(t.shape)}, expected "
                                 f"(B, {dim}) with the B of obs ({b})")
        x = ((obs - self.obs_center) / self.obs_scale).clamp(-OBS_CLAMP, OBS_CLAMP)
        return torch.cat([x, base_action, task_onehot], dim=-1)

    def forward(self, obs: Tensor, base_action: Tensor, task_onehot: Tensor) -> Tensor:
        """The unclipped correction mean (B, Da) (PPO's Gaussian mean; :meth:`delta` clips)."""
        return self.net(self.features(obs, base_action, task_onehot))

    def delta(self, obs: Tensor, base_action: Tensor, task_onehot: Tensor) -> Tensor:
        """δ = clip(f_θ(...), -1, 1) (B, Da): the deterministic correction at deployment."""
        return self.forward(obs, base_action, task_onehot).clamp(-1.0, 1.0)

    def apply_residual(self, base_action: Tensor, delta: Tensor) -> Tensor:
        """clip(a_base + α·clip(δ, -1, 1), -1, 1): the action sent to the robot."""
        return (base_action + self.config.alpha * delta.clamp(-1.0, 1.0)).clamp(-1.0, 1.0)


def one_hot(task: Tensor, num_tasks: int) -> Tensor:
    """task indices (B,) long → (B, K) float one-hot (refuses indices outside 0..K-1)."""
    if task.ndim != 1:
        raise ValueError(f"one_hot: Got task.shape={tuple(task.shape)}, expected (B,)")
    if task.numel() and (int(task.min()) < 0 or int(task.max()) >= num_tasks):
        raise ValueError(f"one_hot: Got task indices {task.tolist()[:8]}, expected 0..{num_tasks - 1}")
    return nn.functional.one_hot(task.long(), num_tasks).float()
