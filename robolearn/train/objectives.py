"""Training objectives: ``objective(policy, batch) -> (loss, metrics)``.

The one :class:`~robolearn.train.Trainer` minimises an objective; behaviour cloning (the
policy's own ``compute_loss``) is the default. An objective may

- use per-sample weights: the sampler puts ``batch["weight"]`` (B,) in the batch when the run
  has episode weights with ``weights.mode=loss`` (curricula, reward-weighted BC);
- carry extra state: :meth:`Objective.modules` returns frozen modules (e.g. a reference policy
  for preference optimisation) that the trainer moves to its device and never optimises;
- describe itself: :meth:`Objective.describe` is recorded in every checkpoint's
  ``config.json`` under ``"objective"``, and a resumed run must use the same objective.

Objectives are plain classes in :data:`OBJECTIVES` (a dict: ``name -> factory``), built by
:func:`make_objective` from the trainer config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class Objective(Protocol):
    """What the trainer minimises."""

    name: str

    def __call__(self, policy: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss (with grad) and named float metrics for one batch."""

    def modules(self) -> dict[str, nn.Module]:
        """Frozen extra modules (moved to the device, never optimised; may be empty)."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (``{"name": ..., ...}``) stored with every checkpoint."""


class BehaviourCloning:
    """L = E[ℓ_θ(obs, a)], the policy's own loss on the data; with ``batch["weight"]``,
    E[w · ℓ_θ] (an unbiased estimate of the weighted loss: the weights average 1 over the data).
    """

    name = "bc"

    def __call__(self, policy: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        weight = batch.get("weight")
        if weight is None:
            return policy.compute_loss(batch)
        per_sample, info = policy.compute_loss(batch, reduction="none")  # (B,)
        loss = (per_sample * weight.to(per_sample.dtype)).mean()
        return loss, {**info, "loss": float(loss.detach()),
                      "unweighted_loss": float(per_sample.detach().mean())}

    def modules(self) -> dict[str, nn.Module]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


OBJECTIVES: dict[str, Callable[..., Objective]] = {"bc": BehaviourCloning}
"""The objectives a train config can name (``objective=``)."""


def make_objective(name: str, **kwargs: Any) -> Objective:
    """The objective ``name`` of :data:`OBJECTIVES`."""
    from robolearn.errors import ConfigError, unknown

    if name not in OBJECTIVES:
        raise ConfigError(unknown("objective", name, OBJECTIVES))
    return OBJECTIVES[name](**kwargs)


def frozen(module: nn.Module) -> nn.Module:
    """``module`` in eval mode with every parameter's ``requires_grad`` off (a reference)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class ObjectiveModule(nn.Module):
    """``forward(batch) = objective(policy, batch)``: what DDP wraps, so its hooks all-reduce the
    gradients of every policy parameter during ``backward``. The objective's own frozen modules
    are not submodules here, so DDP neither registers nor synchronises them."""

    def __init__(self, policy: nn.Module, objective: Objective):
        super().__init__()
        self.policy = policy
        self._objective = objective

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self._objective(self.policy, batch)
