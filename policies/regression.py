"""Regression (behaviour-cloning) action-chunk policy: the baseline.

The backbone predicts the normalised chunk â = f_θ(obs, task) directly, trained with an L2
(mean squared error) or L1 loss against the demonstrated chunk a. With L2 the optimum is the
conditional mean E[a | obs, task]: on multimodal demonstrations (half go left of an obstacle,
half right) it predicts the average — straight into the obstacle. That failure is what the
generative heads (flow matching, diffusion) fix, and the tests check it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from policies.base import ChunkPolicyModule, PolicyConfig, check_reduction, reduce_loss

LOSSES = ("l2", "l1")


@dataclass
class RegressionConfig(PolicyConfig):
    """Config of `RegressionPolicy` (shared fields are in `PolicyConfig`).

    Example:
        >>> cfg = RegressionConfig(obs_dim=39, action_dim=4, num_tasks=10, loss="l1")
    """

    loss: str = "l2"
    """"l2" (mean squared error: predicts the conditional mean) or "l1" (ACT's choice)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ValueError(
                f"{type(self).__name__}: Got loss={self.loss!r}, expected one of {LOSSES}"
            )


class RegressionPolicy(ChunkPolicyModule):
    """Predicts the action chunk directly: â = f_θ(c), c = [normalised obs history, task embedding].

    Example:
        >>> policy = RegressionPolicy(RegressionConfig(obs_dim=3, action_dim=2, action_horizon=8))
        >>> policy.predict_action_chunk(torch.zeros(4, 2, 3), torch.zeros(4, dtype=torch.long)).shape
        torch.Size([4, 8, 2])
    """

    config: RegressionConfig

    def __init__(self, config: RegressionConfig) -> None:
        super().__init__(config, generative=False)

    def compute_loss(
        self, batch: dict[str, Tensor], reduction: str = "mean"
    ) -> tuple[Tensor, dict[str, float]]:
        """L2 or L1 between the predicted and demonstrated normalised chunk, mean over (Ta, Da).

        Args:
            batch: `obs` (B, To, Do), `action` (B, Ta, Da) unnormalised, `task` (B,) long.
            reduction: "mean" → scalar; "none" → per-sample (B,).
        """
        check_reduction(reduction)
        obs, action, task = self._batch(batch)
        a = self.action_normalizer.normalize(action)  # (B, Ta, Da)
        a_hat = self.backbone(self.obs_encoder(obs, task)).to(a.dtype)  # (B, Ta, Da)
        err = a_hat - a
        per_sample = (err.abs() if self.config.loss == "l1" else err**2).mean(dim=(1, 2))
        return reduce_loss(per_sample, reduction), {"loss": float(per_sample.detach().mean())}

    @torch.no_grad()
    def predict_action_chunk(self, obs: Tensor, task: Tensor) -> Tensor:
        """obs (B, To, Do), task (B,) → (B, Ta, Da) unnormalised actions."""
        obs, task = self._inputs(obs, task)
        a_hat = self.backbone(self.obs_encoder(obs, task)).to(self.dtype)
        return self.action_normalizer.unnormalize(a_hat)
