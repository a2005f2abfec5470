"""The key acceptance test: two ways around an obstacle.

The observation is a fixed point (plus small noise). The demonstrated action chunk is a path of
Ta waypoints (x, y) from x = 0 to x = 1 that passes an obstacle at the midpoint either on the
left (y = +sin(πx)) or on the right (y = −sin(πx)), each with probability 1/2. A generative
policy must sample both modes and (almost) never the average; an L2 regression policy
predicts the average, y ≈ 0 — straight into the obstacle.
"""

from __future__ import annotations

import pytest
import torch

from policies import make_policy

TA = 8
STEPS = 200
BATCH = 256
NUM_SAMPLES = 200
MODE_THRESHOLD = 0.3  # |mean y| above this: a mode (the modes have |mean y| ≈ 0.7)
MID_THRESHOLD = 0.2  # |mean y| below this: the midpoint (into the obstacle)


def _demos(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """obs (n, 1, 2) near the origin; action (n, Ta, 2) going left or right of the obstacle."""
    side = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0)
    x = torch.linspace(0.0, 1.0, TA)
    y = side[:, None] * torch.sin(torch.pi * x)[None, :]
    action = torch.stack([x.expand(n, TA), y], dim=-1) + 0.02 * torch.randn(n, TA, 2, generator=g)
    obs = 0.01 * torch.randn(n, 1, 2, generator=g)
    return obs, action


def _train_and_sample(name: str) -> torch.Tensor:
    """Train policy `name` for STEPS steps; return mean y over the interior waypoints of
    NUM_SAMPLES predicted chunks, (NUM_SAMPLES,)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    policy = make_policy(
        name,
        obs_dim=2,
        action_dim=2,
        obs_horizon=1,
        action_horizon=TA,
        action_exec_horizon=4,
        task_embed_dim=0,
        backbone="mlp",
        backbone_kwargs={"hidden_dim": 128, "num_blocks": 2, "time_embed_dim": 32},
    )
    obs, action = _demos(2048, g)
    policy.fit_normalizers(obs, action)
    optimiser = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    task = torch.zeros(BATCH, dtype=torch.long)
    for _ in range(STEPS):
        idx = torch.randint(0, obs.shape[0], (BATCH,), generator=g)
        loss, _ = policy.compute_loss({"obs": obs[idx], "action": action[idx], "task": task})
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    policy.eval()
    test_obs = 0.01 * torch.randn(NUM_SAMPLES, 1, 2, generator=g)
    chunk = policy.predict_action_chunk(test_obs, torch.zeros(NUM_SAMPLES, dtype=torch.long))
    return chunk[:, 1:-1, 1].mean(dim=1)


class TestBimodality:
    @pytest.mark.parametrize("name", ["flow_matching", "diffusion"])
    def test_generative_policy_covers_both_modes_and_avoids_the_midpoint(self, name):
        mean_y = _train_and_sample(name)
        left = (mean_y > MODE_THRESHOLD).float().mean().item()
        right = (mean_y < -MODE_THRESHOLD).float().mean().item()
        mid = (mean_y.abs() < MID_THRESHOLD).float().mean().item()
        assert left >= 0.25 and right >= 0.25, f"{name}: left={left:.2f}, right={right:.2f}"
        assert mid < 0.05, f"{name}: {mid:.1%} of samples go through the obstacle"

    def test_regression_collapses_to_the_midpoint(self):
        mean_y = _train_and_sample("regression")
        assert mean_y.abs().mean().item() < 0.15
        assert (mean_y.abs() < MID_THRESHOLD).float().mean().item() > 0.9
