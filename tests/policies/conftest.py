"""Tiny policy configs and synthetic batches shared by the policy tests (CPU, milliseconds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

# Backbone sizes small enough that a forward/backward takes about a millisecond.
TINY_BACKBONE_KWARGS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dim": 32, "num_blocks": 2, "time_embed_dim": 8},
    "unet1d": {"down_dims": [16, 32], "kernel_size": 3, "time_embed_dim": 8},
}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run each policy test on one intra-op thread, then restore the setting.

    The tensors here are tiny, so threads bring nothing; on a busy 2-core machine oneDNN's
    convolutions were measured ~60x slower with 2 threads than with 1 (threads spin-waiting
    for a core), which turned a 1 s test into 18 s.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_fields() -> Callable[..., dict[str, Any]]:
    """Factory: config fields of a tiny policy (Do=3, Da=2, To=2, Ta=4, 4 tasks)."""

    def make(backbone: str = "mlp", **overrides: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "obs_dim": 3,
            "action_dim": 2,
            "num_tasks": 4,
            "obs_horizon": 2,
            "action_horizon": 4,
            "action_exec_horizon": 2,
            "task_embed_dim": 4,
            "backbone": backbone,
            "backbone_kwargs": dict(TINY_BACKBONE_KWARGS[backbone]),
        }
        fields.update(overrides)
        return fields

    return make


@pytest.fixture
def make_batch() -> Callable[..., dict[str, torch.Tensor]]:
    """Factory: a random batch {obs (B, To, Do), action (B, Ta, Da), task (B,)} for a config."""

    def make(cfg: Any, batch_size: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return {
            "obs": 2.0 + 3.0 * torch.randn(batch_size, cfg.obs_horizon, cfg.obs_dim, generator=g),
            "action": 0.5
            * torch.randn(batch_size, cfg.action_horizon, cfg.action_dim, generator=g),
            "task": torch.randint(0, cfg.num_tasks, (batch_size,), generator=g),
        }

    return make
