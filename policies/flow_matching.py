"""Flow-matching action-chunk policy (Lipman et al. 2023; pi0, Black et al. 2024).

Time convention (the pi0 *paper*'s; openpi's code flips it): t = 0 is noise, t = 1 is data.

    ε ~ N(0, I)                           noise,        (B, Ta, Da)
    a                                     action chunk, normalised to the action normaliser's range
    x_t = (1 − t)·ε + t·a                 straight (optimal-transport) path from noise to data
    u_t = a − ε                           its velocity, the regression target
    v_θ(x_t, t | obs, task)               the learned velocity field (the backbone)
    L(θ) = E_{t, ε, (obs, a)} ‖v_θ(x_t, t | obs, task) − u_t‖²

Time distribution (pi0): s ~ Beta(α = 1.5, β = 1), t = t_max·(1 − s) with t_max = 0.999.
Beta(1.5, 1) has density ∝ s^0.5, so s piles up near 1 and t near 0: training emphasises the
noisy end of the path, where the velocity field has to decide between modes. t never reaches 1,
where x_t would be the data itself.

Inference: x_0 = ε ~ N(0, I) — the same distribution as in training — then K Euler steps of
size δ = 1/K from t = 0 to t = 1: x_{t+δ} = x_t + δ·v_θ(x_t, t | obs, task). pi0 uses K = 10.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from policies.base import (
    ChunkPolicyModule,
    PolicyConfig,
    check_finite,
    check_reduction,
    reduce_loss,
)

MAX_INFERENCE_STEPS = 10


@dataclass
class FlowMatchingConfig(PolicyConfig):
    """Config of `FlowMatchingPolicy` (fields shared by all policies are in `PolicyConfig`).

    Example:
        >>> cfg = FlowMatchingConfig(obs_dim=39, action_dim=4, num_tasks=50)
        >>> FlowMatchingConfig(obs_dim=39, action_dim=4, num_inference_steps=12)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: FlowMatchingConfig: Got num_inference_steps=12, expected 1..10 ...
    """

    num_inference_steps: int = 5
    """K: Euler steps from noise to action chunk at inference (1..10; pi0 uses 10). Default 5:
    on MT10 a checkpoint scored 0.972 at K=5, 0.974 at K=10 and 0.910 at K=1 (50 held-out goals
    per task), and K=5 halves the chunk latency (benchmarks/results/act_latency.md). Training
    does not depend on K, so it can be changed on a trained policy."""
    time_beta_alpha: float = 1.5
    """α of the Beta distribution of s, t = t_max·(1 − s) (pi0: 1.5)."""
    time_beta_beta: float = 1.0
    """β of the Beta distribution of s (pi0: 1.0)."""
    time_max: float = 0.999
    """t_max: training times lie in [0, t_max] (pi0: 0.999)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        k = self.num_inference_steps
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_INFERENCE_STEPS:
            raise ValueError(
                f"{name}: Got num_inference_steps={k}, expected 1..{MAX_INFERENCE_STEPS} "
                "(Euler steps; pi0 uses 10, one step often suffices for simple tasks)"
            )
        for key in ("time_beta_alpha", "time_beta_beta"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{name}: Got {key}={getattr(self, key)}, expected > 0")
        if not 0.0 < self.time_max <= 1.0:
            raise ValueError(f"{name}: Got time_max={self.time_max}, expected 0 < time_max <= 1")


class FlowMatchingPolicy(ChunkPolicyModule):
    """Conditional flow matching over action chunks (see the module docstring for the maths).

    Submodules: `obs_encoder` (obs normaliser + task embedding → c), `action_normalizer`,
    `backbone` (v_θ). Normaliser stats are buffers, saved in the state dict.

    Example:
        >>> cfg = FlowMatchingConfig(obs_dim=3, action_dim=2, num_tasks=4, action_horizon=8,
        ...                          backbone_kwargs={"hidden_dim": 64})
        >>> policy = FlowMatchingPolicy(cfg).fit_normalizers(torch.randn(100, 3),
        ...                                                  torch.randn(100, 2))
        >>> batch = {"obs": torch.randn(5, 2, 3), "action": torch.randn(5, 8, 2),
        ...          "task": torch.tensor([0, 1, 2, 3, 0])}
        >>> loss, info = policy.compute_loss(batch)
        >>> policy.predict_action_chunk(batch["obs"], batch["task"]).shape
        torch.Size([5, 8, 2])
    """

    config: FlowMatchingConfig

    def __init__(self, config: FlowMatchingConfig) -> None:
        super().__init__(config, generative=True)

    def sample_time(self, batch_size: int, device: torch.device) -> Tensor:
        """t = t_max·(1 − s), s ~ Beta(α, β): (B,) times in [0, t_max], dense near t = 0."""
        cfg = self.config
        beta = torch.distributions.Beta(
            torch.tensor(cfg.time_beta_alpha, device=device),
            torch.tensor(cfg.time_beta_beta, device=device),
        )
        s = beta.sample((batch_size,))
        return cfg.time_max * (1.0 - s)

    def compute_loss(
        self, batch: dict[str, Tensor], reduction: str = "mean"
    ) -> tuple[Tensor, dict[str, float]]:
        """Flow-matching loss ‖v_θ(x_t, t | obs, task) − u_t‖², averaged over (Ta, Da).

        Args:
            batch: `obs` (B, To, Do), `action` (B, Ta, Da) unnormalised, `task` (B,) long.
            reduction: "mean" → scalar; "none" → per-sample (B,).

        Returns:
            (loss, {"loss": float}).
        """
        check_reduction(reduction)
        obs, action, task = self._batch(batch)
        c = self.obs_encoder(obs, task)  # (B, Dc) conditioning
        a = self.action_normalizer.normalize(action)  # (B, Ta, Da) data end of the path
        eps = torch.randn_like(a)  # (B, Ta, Da) noise end of the path
        t = self.sample_time(a.shape[0], a.device)  # (B,)
        per_sample = self._path_loss(c, a, t, eps)  # (B,)
        return reduce_loss(per_sample, reduction), {"loss": float(per_sample.detach().mean())}

    def flow_loss(
        self, batch: dict[str, Tensor], t: Tensor, eps: Tensor, reduction: str = "none"
    ) -> tuple[Tensor, dict[str, float]]:
        """The flow-matching loss of `compute_loss` at given times and noise (no randomness).

        Preference objectives (Diffusion-DPO, Wallace et al. 2023; trajectory-wise in
        `policies.alignment.tpo`) compare the loss of the policy and of a frozen reference on
        the same chunk, which is only a low-variance estimate of a log-ratio when both see the
        *same* (t, ε). With `t` and `eps` drawn as `compute_loss` draws them, this is the same
        estimator; `compute_loss` itself is unchanged.

        Args:
            batch: `obs` (B, To, Do), `action` (B, Ta, Da) unnormalised, `task` (B,) long.
            t: (B,) times in [0, 1] (t = 0 noise, t = 1 data; see `sample_time`).
            eps: (B, Ta, Da) noise ε, in the normalised action space (as `torch.randn`).
            reduction: "none" → per-sample (B,) (the default here); "mean" → scalar.

        Returns:
            (loss, {"loss": float}).
        """
        check_reduction(reduction)
        obs, action, task = self._batch(batch)
        b, ta, da = action.shape
        if not isinstance(t, Tensor) or t.shape != (b,):
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"flow_loss: Got t of shape {got}, expected (B,)=({b},) times")
        if not isinstance(eps, Tensor) or eps.shape != (b, ta, da):
            got = tuple(eps.shape) if isinstance(eps, Tensor) else type(eps).__name__
            raise ValueError(
                f"flow_loss: Got eps of shape {got}, expected (B, Ta, Da)=({b}, {ta}, {da})"
            )
        for name, x in (("t", t), ("eps", eps)):
            check_finite(name, x)
            if x.device.type != action.device.type:
                raise ValueError(
                    f"flow_loss: Got {name}.device={x.device}, expected {action.device} (the "
                    f"policy's device); move it with {name}.to(device)"
                )
        c = self.obs_encoder(obs, task)
        a = self.action_normalizer.normalize(action)
        per_sample = self._path_loss(c, a, t.to(a.dtype), eps.to(a.dtype))
        return reduce_loss(per_sample, reduction), {"loss": float(per_sample.detach().mean())}

    def _path_loss(self, c: Tensor, a: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """(B,) ‖v_θ(x_t, t | c) − u_t‖² averaged over (Ta, Da), on the path from eps to a."""
        t_ = t[:, None, None]
        x_t = (1.0 - t_) * eps + t_ * a
        u_t = a - eps
        v_t = self.backbone(c, x_t, t).to(u_t.dtype)
        return ((v_t - u_t) ** 2).mean(dim=(1, 2))  # (B,)

    @torch.no_grad()
    def predict_action_chunk(
        self,
        obs: Tensor,
        task: Tensor,
        *,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Integrate v_θ from x_0 = ε ~ N(0, I) to t = 1 with K Euler steps.

        Args:
            obs: (B, To, Do) unnormalised observation history.
            task: (B,) long task index.
            num_steps: K, overriding `config.num_inference_steps` (any K >= 1, for ablations).
            generator: optional torch.Generator (on the policy's device) for the noise.

        Returns:
            (B, Ta, Da) unnormalised actions.
        """
        obs, task = self._inputs(obs, task)
        k_steps = self.config.num_inference_steps if num_steps is None else num_steps
        if isinstance(k_steps, bool) or not isinstance(k_steps, int) or k_steps < 1:
            raise ValueError(f"Got num_steps={k_steps!r}, expected an int >= 1")
        cfg = self.config
        b = obs.shape[0]
        c = self.obs_encoder(obs, task)
        x = torch.randn(
            (b, cfg.action_horizon, cfg.action_dim),
            generator=generator,
            device=obs.device,
            dtype=self.dtype,
        )  # x_0 = ε
        delta = 1.0 / k_steps
        for k in range(k_steps):
            t = torch.full((b,), k * delta, device=obs.device, dtype=self.dtype)
            x = x + delta * self.backbone(c, x, t).to(x.dtype)
        return self.action_normalizer.unnormalize(x)
