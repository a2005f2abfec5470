"""policies.backbones: ResidualMLP, ConditionalUnet1D and the registry."""

from __future__ import annotations

import pytest
import torch

from policies import ConditionalUnet1DConfig, ResidualMLPConfig, build_backbone
from policies.base import count_parameters

DIMS = {"action_dim": 2, "action_horizon": 8, "cond_dim": 5}


@pytest.mark.parametrize("name", ["mlp", "unet1d"])
class TestBackbones:
    def test_generative_output_shape(self, name):
        net = build_backbone(name, **DIMS, time_embed_dim=8)
        out = net(torch.randn(3, 5), torch.randn(3, 8, 2), torch.rand(3))
        assert out.shape == (3, 8, 2)

    def test_regression_output_shape_without_x_and_t(self, name):
        net = build_backbone(name, **DIMS, generative=False)
        assert net(torch.randn(3, 5)).shape == (3, 8, 2)

    def test_output_depends_on_time(self, name):
        net = build_backbone(name, **DIMS)
        cond, x = torch.randn(3, 5), torch.randn(3, 8, 2)
        out0 = net(cond, x, torch.zeros(3))
        out1 = net(cond, x, torch.full((3,), 0.5))
        assert not torch.allclose(out0, out1)


class TestBackboneConfigs:
    def test_default_unet_has_about_five_million_parameters(self):
        net = build_backbone("unet1d", action_dim=4, action_horizon=16, cond_dim=110)
        assert 4e6 < count_parameters(net) < 5e6

    def test_default_mlp_is_three_blocks_of_512(self):
        cfg = ResidualMLPConfig(**DIMS)
        assert (cfg.num_blocks, cfg.hidden_dim) == (3, 512)

    def test_build_from_config_dataclass(self):
        net = build_backbone(ConditionalUnet1DConfig(**DIMS, down_dims=[16, 32]))
        assert net(torch.randn(2, 5), torch.randn(2, 8, 2), torch.rand(2)).shape == (2, 8, 2)

    def test_unknown_backbone_suggests_closest(self):
        with pytest.raises(ValueError, match=r"Unknown backbone 'unet'\. Did you mean 'unet1d'\?"):
            build_backbone("unet", **DIMS)

    def test_unknown_field_suggests_closest(self):
        with pytest.raises(
            ValueError, match=r"Unknown field 'hiden_dim'\. Did you mean 'hidden_dim'\?"
        ):
            build_backbone("mlp", **DIMS, hiden_dim=64)

    def test_unet_rejects_horizon_not_divisible_by_downsampling(self):
        with pytest.raises(ValueError, match=r"Got action_horizon=6, expected a multiple of 4"):
            ConditionalUnet1DConfig(action_dim=2, action_horizon=6, cond_dim=5)

    def test_unet_rejects_channels_not_divisible_by_groups(self):
        with pytest.raises(ValueError, match=r"Got down_dims=\[12, 24\], n_groups=8"):
            ConditionalUnet1DConfig(**DIMS, down_dims=[12, 24])

    def test_mlp_rejects_unknown_activation(self):
        with pytest.raises(ValueError, match="Got activation='relu6'"):
            ResidualMLPConfig(**DIMS, activation="relu6")
