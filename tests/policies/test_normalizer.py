"""policies.base.Normalizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies import Normalizer


class TestNormalizer:
    def test_min_max_maps_data_range_to_minus_one_one(self):
        x = torch.tensor([[0.0, -5.0], [2.0, 5.0], [1.0, 0.0]])
        y = Normalizer(2, mode="min_max").fit(x).normalize(x)
        torch.testing.assert_close(y.min(0).values, torch.tensor([-1.0, -1.0]))
        torch.testing.assert_close(y.max(0).values, torch.tensor([1.0, 1.0]))

    def test_mean_std_standardises(self):
        x = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 3))
        y = Normalizer(3, mode="mean_std").fit(x).normalize(torch.as_tensor(x, dtype=torch.float32))
        torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
        torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)

    @pytest.mark.parametrize("mode", ["min_max", "mean_std"])
    def test_constant_dimension_maps_to_zero_not_inf(self, mode):
        x = torch.tensor([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]])
        y = Normalizer(2, mode=mode).fit(x).normalize(x)
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y[:, 1], torch.zeros(3))

    @pytest.mark.parametrize("mode", ["min_max", "mean_std"])
    def test_unnormalize_inverts_normalize(self, mode):
        x = torch.randn(50, 4) * torch.tensor([1.0, 10.0, 0.1, 0.0]) + 3
        norm = Normalizer(4, mode=mode).fit(x)
        torch.testing.assert_close(norm.unnormalize(norm.normalize(x)), x)

    def test_fit_accepts_any_leading_shape(self):
        norm = Normalizer(3).fit(np.random.rand(4, 5, 3))
        assert norm.is_fitted

    def test_stats_round_trip_through_state_dict(self):
        norm = Normalizer(3).fit(np.random.rand(10, 3))
        fresh = Normalizer(3)
        assert not fresh.is_fitted
        fresh.load_state_dict(norm.state_dict())
        assert fresh.is_fitted
        torch.testing.assert_close(fresh.center, norm.center)
        torch.testing.assert_close(fresh.scale, norm.scale)

    def test_fit_rejects_wrong_last_dim(self):
        with pytest.raises(ValueError, match=r"Got x.shape=\(10, 2\), expected \(\.\.\., 3\)"):
            Normalizer(3).fit(np.zeros((10, 2)))

    def test_fit_rejects_non_finite(self):
        x = np.zeros((10, 3))
        x[2, 1] = np.nan
        with pytest.raises(ValueError, match="1 non-finite"):
            Normalizer(3).fit(x)

    def test_unknown_mode(self):
        with pytest.raises(ValueError, match="Got mode='zscore'"):
            Normalizer(3, mode="zscore")
