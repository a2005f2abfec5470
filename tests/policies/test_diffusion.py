"""policies.diffusion: schedule and config."""

from __future__ import annotations

import pytest
import torch

from policies import DiffusionConfig, DiffusionPolicy
from policies.diffusion import make_betas


class TestDiffusionSchedule:
    def test_squared_cosine_schedule_runs_from_data_to_noise(self):
        betas = make_betas("squaredcos_cap_v2", 100)
        alpha_bar = torch.cumprod(1 - betas, 0)
        assert betas.shape == (100,)
        assert (betas > 0).all() and (betas <= 0.999).all()
        assert (alpha_bar[1:] < alpha_bar[:-1]).all()
        assert alpha_bar[0] > 0.999 and alpha_bar[-1] < 1e-4

    def test_schedule_is_not_saved_in_state_dict(self, tiny_fields):
        policy = DiffusionPolicy(DiffusionConfig(**tiny_fields()))
        assert not any(k in policy.state_dict() for k in ("betas", "alphas_cumprod"))
        assert policy.alphas_cumprod.shape == (100,)

    def test_defaults_follow_diffusion_policy(self):
        cfg = DiffusionConfig(obs_dim=3, action_dim=2)
        assert (cfg.num_diffusion_steps, cfg.beta_schedule, cfg.clip_sample) == (
            100,
            "squaredcos_cap_v2",
            True,
        )

    def test_unknown_schedule(self):
        with pytest.raises(ValueError, match=r"Got beta_schedule='cosine'"):
            DiffusionConfig(obs_dim=3, action_dim=2, beta_schedule="cosine")

    def test_clipped_samples_stay_in_the_action_range(self, tiny_fields, make_batch):
        policy = DiffusionPolicy(DiffusionConfig(**tiny_fields(), num_diffusion_steps=10))
        batch = make_batch(policy.config, batch_size=32)
        policy.fit_normalizers(batch["obs"], batch["action"])
        chunk = policy.predict_action_chunk(batch["obs"], batch["task"])
        normalised = policy.action_normalizer.normalize(chunk)
        # The last DDPM step returns the posterior mean of a clipped â_0 (no noise added).
        assert normalised.abs().max() <= 1.0 + 1e-5
