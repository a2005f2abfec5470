"""policies.regression."""

from __future__ import annotations

import pytest
import torch

from policies import RegressionConfig, RegressionPolicy


class TestRegressionPolicy:
    @pytest.mark.parametrize("loss", ["l1", "l2"])
    def test_loss_kinds(self, loss, tiny_fields, make_batch):
        policy = RegressionPolicy(RegressionConfig(**tiny_fields(), loss=loss))
        batch = make_batch(policy.config)
        value, _ = policy.compute_loss(batch)
        a = policy.action_normalizer.normalize(batch["action"])
        with torch.no_grad():
            pred = policy.backbone(policy.obs_encoder(batch["obs"], batch["task"]))
        err = pred - a
        expected = err.abs().mean() if loss == "l1" else (err**2).mean()
        torch.testing.assert_close(value.detach(), expected)

    def test_prediction_is_deterministic(self, tiny_fields, make_batch):
        policy = RegressionPolicy(RegressionConfig(**tiny_fields()))
        batch = make_batch(policy.config)
        x1 = policy.predict_action_chunk(batch["obs"], batch["task"])
        x2 = policy.predict_action_chunk(batch["obs"], batch["task"])
        torch.testing.assert_close(x1, x2, rtol=0, atol=0)

    def test_unknown_loss(self):
        with pytest.raises(ValueError, match=r"Got loss='huber', expected one of \('l2', 'l1'\)"):
            RegressionConfig(obs_dim=3, action_dim=2, loss="huber")
