"""The `Policy` contract, checked for every registered policy on every backbone."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from policies import (
    POLICIES,
    Policy,
    config_from_dict,
    config_to_dict,
    make_policy,
    make_policy_from_dict,
)

CASES = [(name, backbone) for name in POLICIES for backbone in ("mlp", "unet1d")]
IDS = [f"{name}-{backbone}" for name, backbone in CASES]


@pytest.fixture(params=CASES, ids=IDS)
def policy_and_batch(request, tiny_fields, make_batch):
    name, backbone = request.param
    torch.manual_seed(0)
    policy = make_policy(name, **tiny_fields(backbone))
    batch = make_batch(policy.config, batch_size=6)
    policy.fit_normalizers(batch["obs"], batch["action"])
    return policy, batch


class TestPolicyContract:
    def test_satisfies_protocol(self, policy_and_batch):
        policy, _ = policy_and_batch
        assert isinstance(policy, Policy)

    def test_predict_action_chunk_shape(self, policy_and_batch):
        policy, batch = policy_and_batch
        chunk = policy.predict_action_chunk(batch["obs"], batch["task"])
        cfg = policy.config
        assert chunk.shape == (6, cfg.action_horizon, cfg.action_dim)
        assert chunk.dtype == torch.float32
        assert torch.isfinite(chunk).all()

    def test_loss_is_finite_scalar_with_info(self, policy_and_batch):
        policy, batch = policy_and_batch
        loss, info = policy.compute_loss(batch)
        assert loss.shape == ()
        assert torch.isfinite(loss)
        assert isinstance(info["loss"], float)

    def test_reduction_none_is_per_sample(self, policy_and_batch):
        policy, batch = policy_and_batch
        torch.manual_seed(1)
        mean_loss, _ = policy.compute_loss(batch, reduction="mean")
        torch.manual_seed(1)
        per_sample, _ = policy.compute_loss(batch, reduction="none")
        assert per_sample.shape == (6,)
        torch.testing.assert_close(per_sample.mean(), mean_loss)

    def test_backward_gives_finite_nonzero_grads_on_all_parameters(self, policy_and_batch):
        policy, batch = policy_and_batch
        loss, _ = policy.compute_loss(batch)
        loss.backward()
        for name, p in policy.named_parameters():
            assert p.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"

    def test_state_dict_round_trip_gives_identical_outputs(self, policy_and_batch, tmp_path):
        policy, batch = policy_and_batch
        (tmp_path / "config.json").write_text(json.dumps(config_to_dict(policy.config)))
        save_file(policy.state_dict(), str(tmp_path / "model.safetensors"))

        restored = make_policy_from_dict(json.loads((tmp_path / "config.json").read_text()))
        restored.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
        assert restored.normalizers_fitted
        torch.manual_seed(3)
        expected = policy.predict_action_chunk(batch["obs"], batch["task"])
        torch.manual_seed(3)
        actual = restored.predict_action_chunk(batch["obs"], batch["task"])
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)

    def test_normaliser_stats_are_in_the_state_dict(self, policy_and_batch):
        policy, _ = policy_and_batch
        keys = set(policy.state_dict())
        for prefix in ("obs_encoder.obs_normalizer", "action_normalizer"):
            assert {f"{prefix}.center", f"{prefix}.scale", f"{prefix}.fitted"} <= keys

    def test_config_json_round_trip(self, policy_and_batch):
        policy, _ = policy_and_batch
        data = json.loads(json.dumps(config_to_dict(policy.config)))
        assert config_from_dict(data) == policy.config


@pytest.mark.parametrize("name", list(POLICIES))
class TestBf16Autocast:
    """The MLP path runs under torch.autocast(bfloat16) and returns float32 actions."""

    def test_loss_and_backward_under_autocast(self, name, tiny_fields, make_batch):
        torch.manual_seed(0)
        policy = make_policy(name, **tiny_fields("mlp"))
        batch = make_batch(policy.config)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = policy.compute_loss(batch)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in policy.parameters())

    def test_predict_under_autocast_is_float32(self, name, tiny_fields, make_batch):
        policy = make_policy(name, **tiny_fields("mlp"))
        batch = make_batch(policy.config)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            chunk = policy.predict_action_chunk(batch["obs"], batch["task"])
        assert chunk.dtype == torch.float32 and torch.isfinite(chunk).all()


class TestInputChecks:
    """Wrong inputs raise ValueError/TypeError naming the tensor, what came and what was expected."""

    @pytest.fixture
    def policy(self, tiny_fields):
        return make_policy("flow_matching", **tiny_fields())

    def test_obs_wrong_rank(self, policy, make_batch):
        batch = make_batch(policy.config)
        with pytest.raises(
            ValueError, match=r"Got obs.shape=\(5, 3\), expected \(B, To, Do\)=\(B, 2, 3\)"
        ):
            policy.predict_action_chunk(batch["obs"][:, 0], batch["task"])

    def test_obs_wrong_history_length(self, policy, make_batch):
        batch = make_batch(policy.config)
        with pytest.raises(ValueError, match=r"Got obs.shape=\(5, 1, 3\)"):
            policy.predict_action_chunk(batch["obs"][:, :1], batch["task"])

    def test_task_out_of_range(self, policy, make_batch):
        batch = make_batch(policy.config)
        batch["task"][0] = 4
        with pytest.raises(ValueError, match=r"expected 0\.\.3 \(num_tasks=4\)"):
            policy.predict_action_chunk(batch["obs"], batch["task"])

    def test_negative_task(self, policy, make_batch):
        batch = make_batch(policy.config)
        batch["task"][0] = -1
        with pytest.raises(ValueError, match=r"Got task indices in \[-1,"):
            policy.compute_loss(batch)

    def test_task_wrong_length(self, policy, make_batch):
        batch = make_batch(policy.config)
        with pytest.raises(ValueError, match=r"Got task.shape=\(4,\), expected \(B,\)=\(5,\)"):
            policy.predict_action_chunk(batch["obs"], batch["task"][:4])

    def test_float_task(self, policy, make_batch):
        batch = make_batch(policy.config)
        with pytest.raises(ValueError, match=r"Got task.dtype=torch.float32"):
            policy.predict_action_chunk(batch["obs"], batch["task"].float())

    def test_non_finite_obs(self, policy, make_batch):
        batch = make_batch(policy.config)
        batch["obs"][1, 0, 2] = float("nan")
        with pytest.raises(ValueError, match=r"Got obs with 1 non-finite values"):
            policy.predict_action_chunk(batch["obs"], batch["task"])

    def test_non_finite_action(self, policy, make_batch):
        batch = make_batch(policy.config)
        batch["action"][0, 0, 0] = float("inf")
        with pytest.raises(ValueError, match=r"Got action with 1 non-finite"):
            policy.compute_loss(batch)

    def test_action_wrong_shape(self, policy, make_batch):
        batch = make_batch(policy.config)
        with pytest.raises(
            ValueError, match=r"Got action.shape=\(5, 3, 2\), expected \(B, Ta, Da\)=\(5, 4, 2\)"
        ):
            policy.compute_loss({**batch, "action": batch["action"][:, :3]})

    def test_missing_batch_key(self, policy, make_batch):
        batch = make_batch(policy.config)
        del batch["task"]
        with pytest.raises(ValueError, match=r"missing \['task'\]"):
            policy.compute_loss(batch)

    def test_obs_not_a_tensor(self, policy, make_batch):
        batch = make_batch(policy.config)
        with pytest.raises(TypeError, match=r"Got obs of type ndarray"):
            policy.predict_action_chunk(batch["obs"].numpy(), batch["task"])

    def test_unknown_reduction(self, policy, make_batch):
        with pytest.raises(ValueError, match=r"Got reduction='sum', expected one of"):
            policy.compute_loss(make_batch(policy.config), reduction="sum")

    def test_float64_obs_is_accepted(self, policy, make_batch):
        batch = make_batch(policy.config)
        chunk = policy.predict_action_chunk(batch["obs"].double(), batch["task"])
        assert chunk.dtype == torch.float32
