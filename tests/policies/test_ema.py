"""policies.ema.EMA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from policies import EMA


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    return model


class TestEMA:
    def test_update_moves_shadow_towards_parameters(self):
        model = _model()
        ema = EMA(model, decay=0.5, warmup=False)
        with torch.no_grad():
            model[0].weight.add_(1.0)
        before = ema.shadow["0.weight"].clone()
        ema.update()
        torch.testing.assert_close(ema.shadow["0.weight"], before + 0.5)

    def test_warmup_decay(self):
        ema = EMA(_model(), decay=0.999)
        assert ema.current_decay() == pytest.approx(0.1)
        for _ in range(10_000):
            ema.num_updates += 1
        assert ema.current_decay() == pytest.approx(0.999)

    def test_average_parameters_swaps_in_and_restores(self):
        model = _model()
        ema = EMA(model, decay=0.9)
        live = model[0].weight.detach().clone()
        ema.shadow["0.weight"].fill_(7.0)
        with ema.average_parameters():
            assert torch.all(model[0].weight == 7.0)
        torch.testing.assert_close(model[0].weight.detach(), live)

    def test_buffers_are_not_averaged(self):
        model = _model()
        ema = EMA(model)
        model[1].running_mean.fill_(3.0)
        with ema.average_parameters():
            assert torch.all(model[1].running_mean == 3.0)

    def test_state_dict_round_trip(self):
        model = _model()
        ema = EMA(model, decay=0.9)
        with torch.no_grad():
            model[0].weight.add_(1.0)
        ema.update()
        other = EMA(_model(), decay=0.9)
        other.load_state_dict(ema.state_dict())
        assert other.num_updates == 1
        for name in ema.shadow:
            torch.testing.assert_close(other.shadow[name], ema.shadow[name])

    def test_state_dict_is_tensors_only(self):
        state = EMA(_model()).state_dict()
        assert all(isinstance(v, torch.Tensor) for v in state.values())

    def test_copy_to_another_model(self):
        ema = EMA(_model())
        ema.shadow["0.bias"].fill_(2.0)
        target = _model()
        ema.copy_to(target)
        assert torch.all(target[0].bias == 2.0)

    def test_invalid_decay(self):
        with pytest.raises(ValueError, match="Got decay=1.0"):
            EMA(_model(), decay=1.0)
