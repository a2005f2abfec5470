"""policies.registry: make_policy, config dict round trips, did-you-mean."""

from __future__ import annotations

import json

import pytest

from policies import (
    POLICIES,
    FlowMatchingConfig,
    FlowMatchingPolicy,
    config_from_dict,
    config_to_dict,
    make_policy,
    policy_name,
)


class TestPolicyRegistry:
    def test_registry_holds_the_three_policies(self):
        assert set(POLICIES) == {"flow_matching", "regression", "diffusion"}

    def test_make_policy(self, tiny_fields):
        policy = make_policy("flow_matching", **tiny_fields())
        assert isinstance(policy, FlowMatchingPolicy)
        assert policy_name(policy.config) == "flow_matching"

    def test_unknown_policy_suggests_closest(self):
        with pytest.raises(
            ValueError, match=r"Unknown policy 'difusion'\. Did you mean 'diffusion'\?"
        ):
            make_policy("difusion", obs_dim=3, action_dim=2)

    def test_unknown_field_suggests_closest(self):
        with pytest.raises(
            ValueError,
            match=r"Unknown field 'num_inference_step'\. Did you mean 'num_inference_steps'\?",
        ):
            make_policy("flow_matching", obs_dim=3, action_dim=2, num_inference_step=5)

    def test_config_dict_is_json_and_round_trips(self, tiny_fields):
        cfg = FlowMatchingConfig(**tiny_fields("unet1d"), num_inference_steps=5)
        data = json.loads(json.dumps(config_to_dict(cfg)))
        assert data["policy"] == "flow_matching"
        assert config_from_dict(data) == cfg

    def test_config_dict_without_policy_name(self):
        with pytest.raises(ValueError, match="without 'policy'"):
            config_from_dict({"obs_dim": 3, "action_dim": 2})

    def test_config_from_dict_validates(self, tiny_fields):
        data = config_to_dict(FlowMatchingConfig(**tiny_fields()))
        data["num_inference_steps"] = 12
        with pytest.raises(ValueError, match=r"Got num_inference_steps=12, expected 1\.\.10"):
            config_from_dict(data)
