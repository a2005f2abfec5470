"""TPO for flow matching: the explicit-(t, ε) loss, shared noise, log 2 at θ = φ, the sign."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policies import FlowMatchingConfig, FlowMatchingPolicy
from policies.alignment import (
    chunk_flow_losses,
    combined_loss,
    frozen_copy,
    median_chunk_count,
    pad_chunks,
    sample_shared_noise,
    tpo_loss,
    tpo_terms,
)


@pytest.fixture
def policy(tiny_fields):
    torch.manual_seed(0)
    cfg = FlowMatchingConfig(**tiny_fields("mlp"))
    return FlowMatchingPolicy(cfg).fit_normalizers(torch.randn(64, 3), torch.randn(64, 2))


def _trajectories(cfg, counts, seed, task=1, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in counts:
        out.append({
            "obs": torch.randn(c, cfg.obs_horizon, cfg.obs_dim, generator=g),
            "action": offset + 0.5 * torch.randn(c, cfg.action_horizon, cfg.action_dim, generator=g),
            "task": task,
        })
    return out


def _pairs(cfg, seed=0):
    chosen = pad_chunks(_trajectories(cfg, [3, 1, 4], seed))
    rejected = pad_chunks(_trajectories(cfg, [2, 5, 4], seed + 100))
    return chosen, rejected


# --- FlowMatchingPolicy.flow_loss ------------------------------------------------------------


def test_flow_loss_equals_compute_loss_with_the_same_draws(policy, make_batch):
    batch = make_batch(policy.config, batch_size=6)
    torch.manual_seed(3)
    expected, _ = policy.compute_loss(batch, reduction="none")
    torch.manual_seed(3)  # compute_loss draws ε first (randn_like), then t
    eps = torch.randn(6, policy.config.action_horizon, policy.config.action_dim)
    t = policy.sample_time(6, torch.device("cpu"))
    got, info = policy.flow_loss(batch, t, eps)
    assert torch.equal(got, expected)
    assert got.shape == (6,) and info["loss"] == pytest.approx(float(expected.detach().mean()))


def test_flow_loss_is_deterministic_and_differentiable(policy, make_batch):
    batch = make_batch(policy.config, batch_size=4)
    t, eps = torch.rand(4), torch.randn(4, 4, 2)
    a, _ = policy.flow_loss(batch, t, eps, reduction="mean")
    b, _ = policy.flow_loss(batch, t, eps, reduction="mean")
    assert a.ndim == 0 and torch.equal(a, b)
    a.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


def test_flow_loss_rejects_misshaped_noise(policy, make_batch):
    batch = make_batch(policy.config, batch_size=4)
    with pytest.raises(ValueError, match=r"eps of shape \(4, 2, 2\), expected \(B, Ta, Da\)"):
        policy.flow_loss(batch, torch.rand(4), torch.randn(4, 2, 2))
    with pytest.raises(ValueError, match=r"t of shape \(3,\)"):
        policy.flow_loss(batch, torch.rand(3), torch.randn(4, 4, 2))


# --- padding ---------------------------------------------------------------------------------


def test_pad_chunks_masks_the_padding(policy):
    padded = pad_chunks(_trajectories(policy.config, [2, 4], seed=0))
    assert padded["obs"].shape == (2, 4, 2, 3) and padded["action"].shape == (2, 4, 4, 2)
    assert padded["mask"].tolist() == [[True, True, False, False], [True] * 4]
    assert padded["task"].tolist() == [1, 1]
    assert median_chunk_count(padded["mask"]) == 3.0
    with pytest.raises(ValueError, match="lacks \\['task'\\]"):
        pad_chunks([{"obs": np.zeros((1, 2, 3)), "action": np.zeros((1, 4, 2))}])


def test_chunk_losses_ignore_padding_content(policy):
    trajs = _trajectories(policy.config, [2, 3], seed=1)
    padded = pad_chunks(trajs, num_chunks=5)
    t, eps = sample_shared_noise(policy, 2, 5)
    losses = chunk_flow_losses(policy, padded, t, eps)
    assert losses.shape == (2, 5)
    assert (losses[~padded["mask"]] == 0).all() and (losses[padded["mask"]] > 0).all()
    garbage = {**padded, "action": padded["action"].clone()}
    garbage["action"][0, 3:] = 1e3  # padding rows: must not change anything
    assert torch.equal(chunk_flow_losses(policy, garbage, t, eps), losses)


# --- the loss --------------------------------------------------------------------------------


def test_theta_equal_phi_gives_log_2_exactly(policy):
    chosen, rejected = _pairs(policy.config)
    loss, metrics = tpo_loss(policy, frozen_copy(policy), chosen, rejected, beta=2000.0,
                             chunk_norm=3.0)
    assert float(loss.detach()) == pytest.approx(math.log(2.0), abs=0.0, rel=1e-7)
    assert metrics["h_abs"] == 0.0 and metrics["implicit_accuracy"] == 0.0
    assert metrics["delta_chosen"] == 0.0 and metrics["delta_rejected"] == 0.0


def test_shared_noise_makes_d_exactly_zero_and_independent_noise_does_not(policy):
    reference = frozen_copy(policy)
    chosen, _ = _pairs(policy.config)
    t, eps = sample_shared_noise(policy, 3, 4)
    shared = chunk_flow_losses(policy, chosen, t, eps) - chunk_flow_losses(reference, chosen, t, eps)
    assert torch.equal(shared, torch.zeros_like(shared))
    t2, eps2 = sample_shared_noise(policy, 3, 4)  # what separate compute_loss calls would do
    independent = (chunk_flow_losses(policy, chosen, t, eps)
                   - chunk_flow_losses(reference, chosen, t2, eps2))
    assert independent[chosen["mask"]].abs().min() > 0


def test_winner_and_loser_share_the_noise(policy):
    """Identical winner and loser ⇒ Δ_w = Δ_l for any θ ≠ φ, but only if they share (t, ε)."""
    reference = frozen_copy(policy)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    chosen, _ = _pairs(policy.config)
    terms = tpo_terms(policy, reference, chosen, chosen, beta=2000.0, chunk_norm=3.0)
    assert terms.delta_chosen.abs().min() > 1e-4  # θ really differs from φ
    torch.testing.assert_close(terms.delta_chosen, terms.delta_rejected, rtol=1e-5, atol=1e-7)
    assert float(terms.h.detach().abs().max()) < 1e-2


def test_gradient_step_prefers_the_winner(policy):
    """One step on L_TPO lowers the winner's loss relative to the loser's (h turns positive)."""
    cfg = policy.config
    reference = frozen_copy(policy)
    chosen = pad_chunks(_trajectories(cfg, [3, 2, 3, 4], seed=5, offset=0.8))
    rejected = pad_chunks(_trajectories(cfg, [2, 3, 4, 3], seed=6, offset=-0.8))
    torch.manual_seed(11)
    t, eps = sample_shared_noise(policy, 4, 4)
    opt = torch.optim.SGD(policy.parameters(), lr=1e-3)
    loss, before = tpo_loss(policy, reference, chosen, rejected, beta=200.0, chunk_norm=3.0,
                            t=t, eps=eps)
    loss.backward()
    assert all(p.grad is None for p in reference.parameters())
    opt.step()
    terms = tpo_terms(policy, reference, chosen, rejected, beta=200.0, chunk_norm=3.0, t=t, eps=eps)
    assert before["implicit_accuracy"] == 0.0
    assert (terms.h > 0).all()
    assert (terms.delta_chosen < terms.delta_rejected).all()
    assert float(terms.loss.detach()) < math.log(2.0)
    # And on fresh noise (not the noise it was trained on), on average.
    torch.manual_seed(12)
    fresh = tpo_terms(policy, reference, chosen, rejected, beta=200.0, chunk_norm=3.0)
    assert float(fresh.h.detach().mean()) > 0


def test_combined_loss_adds_sft_and_bc(policy, make_batch):
    reference = frozen_copy(policy)
    chosen, rejected = _pairs(policy.config)
    demos = make_batch(policy.config, batch_size=5)
    t, eps = sample_shared_noise(policy, 3, 5)
    tpo, _ = tpo_loss(policy, reference, chosen, rejected, beta=2000.0, chunk_norm=3.0, t=t,
                      eps=eps)
    only, m0 = combined_loss(policy, reference, chosen, rejected, beta=2000.0, chunk_norm=3.0,
                             t=t, eps=eps)
    assert torch.equal(only, tpo) and m0["loss_bc"] == 0.0
    total, m = combined_loss(policy, reference, chosen, rejected, beta=2000.0, chunk_norm=3.0,
                             lambda_sft=0.5, t=t, eps=eps)
    losses = chunk_flow_losses(policy, chosen, t, eps)
    sft = losses[chosen["mask"]].mean()
    torch.testing.assert_close(total, tpo + 0.5 * sft)
    assert m["loss_sft"] == pytest.approx(float(sft.detach()))
    torch.manual_seed(0)
    with_bc, m2 = combined_loss(policy, reference, chosen, rejected, beta=2000.0, chunk_norm=3.0,
                                lambda_bc=2.0, demos=demos, t=t, eps=eps)
    torch.manual_seed(0)
    bc, _ = policy.compute_loss(demos)
    torch.testing.assert_close(with_bc, tpo + 2.0 * bc)
    assert m2["loss"] == pytest.approx(float(with_bc.detach()))
    # beta = 0: chosen-only fine-tuning, no TPO term in the loss (what `align method=sft` runs)
    sft_only, m3 = combined_loss(policy, reference, chosen, rejected, beta=0.0, chunk_norm=3.0,
                                 lambda_sft=1.0, t=t, eps=eps)
    torch.testing.assert_close(sft_only, sft)
    assert sft_only.requires_grad and m3["loss"] == pytest.approx(float(sft.detach()))
    with pytest.raises(ValueError, match="Got beta=-1"):
        combined_loss(policy, reference, chosen, rejected, beta=-1.0, chunk_norm=1.0)
    with pytest.raises(ValueError, match="lambda_bc=1.0 but no demos"):
        combined_loss(policy, reference, chosen, rejected, beta=1.0, chunk_norm=1.0, lambda_bc=1.0)


def test_bad_arguments_are_named(policy):
    chosen, rejected = _pairs(policy.config)
    ref = frozen_copy(policy)
    with pytest.raises(ValueError, match="Got beta=0"):
        tpo_loss(policy, ref, chosen, rejected, beta=0, chunk_norm=1.0)
    with pytest.raises(ValueError, match="Got chunk_norm=0"):
        tpo_loss(policy, ref, chosen, rejected, beta=1.0, chunk_norm=0)
    short = {k: v[:2] for k, v in rejected.items()}
    with pytest.raises(ValueError, match="3 chosen and 2 rejected"):
        tpo_loss(policy, ref, chosen, short, beta=1.0, chunk_norm=1.0)
    with pytest.raises(ValueError, match="missing \\['mask'\\]"):
        tpo_loss(policy, ref, {k: v for k, v in chosen.items() if k != "mask"}, rejected,
                 beta=1.0, chunk_norm=1.0)
