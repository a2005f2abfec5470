"""DDPM action-chunk policy (Ho et al. 2020), with Diffusion Policy's settings (Chi et al. 2023):
100 denoising steps, squared-cosine β schedule (Nichol & Dhariwal 2021), ε-prediction, the
predicted clean chunk clipped to [-1, 1] at every step.

Step convention (DDPM's, the reverse of flow matching's t): k = 0 is (almost) data,
k = T − 1 is (almost) noise.

    ᾱ_k = Π_{i ≤ k} (1 − β_i)
    x_k = √ᾱ_k · a + √(1 − ᾱ_k) · ε,      ε ~ N(0, I),  k ~ U{0, …, T − 1}
    L(θ) = E ‖ε_θ(x_k, k | obs, task) − ε‖²

Sampling, k = T − 1 … 0, from x_T ~ N(0, I):

    â_0 = clip((x_k − √(1 − ᾱ_k)·ε_θ) / √ᾱ_k, −1, 1)
    μ   = √ᾱ_{k−1}·β_k / (1 − ᾱ_k) · â_0  +  √(1 − β_k)·(1 − ᾱ_{k−1}) / (1 − ᾱ_k) · x_k
    x_{k−1} = μ + σ_k·z,  σ_k² = β_k·(1 − ᾱ_{k−1}) / (1 − ᾱ_k)  (z = 0 at the last step)

The backbone gets the step as a float k / T in [0, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from policies.base import ChunkPolicyModule, PolicyConfig, check_reduction, reduce_loss

BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")


def make_betas(
    schedule: str, num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """(T,) float64 β schedule.

    "squaredcos_cap_v2": ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T),
    0.999) (Nichol & Dhariwal 2021; the name is diffusers'). "linear": β from beta_start to
    beta_end (Ho et al. 2020).
    """
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    if schedule == "squaredcos_cap_v2":

        def alpha_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [
            min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), 0.999)
            for i in range(num_steps)
        ]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f"Got beta_schedule={schedule!r}, expected one of {BETA_SCHEDULES}")


@dataclass
class DiffusionConfig(PolicyConfig):
    """Config of `DiffusionPolicy` (shared fields are in `PolicyConfig`).

    Example:
        >>> cfg = DiffusionConfig(obs_dim=39, action_dim=4, num_tasks=10)
    """

    num_diffusion_steps: int = 100
    """T: denoising steps, used for training and (DDPM) inference (Diffusion Policy: 100)."""
    beta_schedule: str = "squaredcos_cap_v2"
    """"squaredcos_cap_v2" (Diffusion Policy) or "linear"."""
    clip_sample: bool = True
    """Clip the predicted clean chunk to [-clip_sample_range, clip_sample_range] at each step
    (fits "min_max" action normalisation)."""
    clip_sample_range: float = 1.0
    """Clip bound, in normalised units."""

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        t = self.num_diffusion_steps
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"{name}: Got num_diffusion_steps={t!r}, expected an int >= 1")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"{name}: Got beta_schedule={self.beta_schedule!r}, expected one of {BETA_SCHEDULES}"
            )
        if not self.clip_sample_range > 0:
            raise ValueError(
                f"{name}: Got clip_sample_range={self.clip_sample_range}, expected > 0"
            )


class DiffusionPolicy(ChunkPolicyModule):
    """DDPM over action chunks with ε-prediction (see the module docstring for the maths).

    The schedule tensors are non-persistent buffers (rebuilt from the config, not saved).

    Example:
        >>> cfg = DiffusionConfig(obs_dim=3, action_dim=2, action_horizon=8,
        ...                       backbone_kwargs={"hidden_dim": 64})
        >>> policy = DiffusionPolicy(cfg)
        >>> policy.predict_action_chunk(torch.zeros(4, 2, 3), torch.zeros(4, dtype=torch.long)).shape
        torch.Size([4, 8, 2])
    """

    config: DiffusionConfig
    betas: Tensor
    alphas_cumprod: Tensor

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__(config, generative=True)
        betas = make_betas(config.beta_schedule, config.num_diffusion_steps)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer(
            "alphas_cumprod", torch.cumprod(1 - betas, 0).float(), persistent=False
        )

    def compute_loss(
        self, batch: dict[str, Tensor], reduction: str = "mean"
    ) -> tuple[Tensor, dict[str, float]]:
        """ε-prediction loss ‖ε_θ(x_k, k | obs, task) − ε‖², mean over (Ta, Da).

        Args:
            batch: `obs` (B, To, Do), `action` (B, Ta, Da) unnormalised, `task` (B,) long.
            reduction: "mean" → scalar; "none" → per-sample (B,).
        """
        check_reduction(reduction)
        obs, action, task = self._batch(batch)
        c = self.obs_encoder(obs, task)
        a = self.action_normalizer.normalize(action)  # (B, Ta, Da)
        b, n_steps = a.shape[0], self.config.num_diffusion_steps
        k = torch.randint(0, n_steps, (b,), device=a.device)
        alpha_bar = self.alphas_cumprod[k].to(a.dtype)[:, None, None]
        eps = torch.randn_like(a)
        x_k = alpha_bar.sqrt() * a + (1 - alpha_bar).sqrt() * eps
        eps_hat = self.backbone(c, x_k, k.to(a.dtype) / n_steps).to(a.dtype)
        per_sample = ((eps_hat - eps) ** 2).mean(dim=(1, 2))
        return reduce_loss(per_sample, reduction), {"loss": float(per_sample.detach().mean())}

    @torch.no_grad()
    def predict_action_chunk(
        self, obs: Tensor, task: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Ancestral DDPM sampling over all T steps: obs (B, To, Do), task (B,) → (B, Ta, Da)."""
        obs, task = self._inputs(obs, task)
        cfg = self.config
        b, n_steps = obs.shape[0], cfg.num_diffusion_steps
        c = self.obs_encoder(obs, task)
        shape = (b, cfg.action_horizon, cfg.action_dim)
        x = torch.randn(shape, generator=generator, device=obs.device, dtype=self.dtype)
        for k in reversed(range(n_steps)):
            alpha_bar = self.alphas_cumprod[k]
            alpha_bar_prev = self.alphas_cumprod[k - 1] if k > 0 else alpha_bar.new_tensor(1.0)
            beta = 1 - alpha_bar / alpha_bar_prev
            t = torch.full((b,), k / n_steps, device=obs.device, dtype=self.dtype)
            eps_hat = self.backbone(c, x, t).to(x.dtype)
            a0_hat = (x - (1 - alpha_bar).sqrt() * eps_hat) / alpha_bar.sqrt()
            if cfg.clip_sample:
                a0_hat = a0_hat.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
            mean = (
                alpha_bar_prev.sqrt() * beta / (1 - alpha_bar) * a0_hat
                + (1 - beta).sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar) * x
            )
            if k > 0:
                var = beta * (1 - alpha_bar_prev) / (1 - alpha_bar)
                z = torch.randn(shape, generator=generator, device=obs.device, dtype=x.dtype)
                x = mean + var.clamp_min(1e-20).sqrt() * z
            else:
                x = mean
        return self.action_normalizer.unnormalize(x)
