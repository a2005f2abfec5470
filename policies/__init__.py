"""policies: action-chunk policies (flow matching, regression, diffusion) on tensors only.

    from policies import make_policy
    policy = make_policy("flow_matching", obs_dim=39, action_dim=4, num_tasks=10)
    policy.fit_normalizers(obs_array, action_array)
    loss, info = policy.compute_loss({"obs": ..., "action": ..., "task": ...})
    chunk = policy.predict_action_chunk(obs, task)      # (B, To, Do), (B,) → (B, Ta, Da)

This package imports none of robolearn, sim, curricula or hardware.
"""

from policies.backbones import (
    BACKBONES,
    ConditionalUnet1D,
    ConditionalUnet1DConfig,
    ResidualMLP,
    ResidualMLPConfig,
    build_backbone,
)
from policies.base import Normalizer, Policy, PolicyConfig
from policies.diffusion import DiffusionConfig, DiffusionPolicy
from policies.ema import EMA
from policies.flow_matching import FlowMatchingConfig, FlowMatchingPolicy
from policies.registry import (
    POLICIES,
    config_from_dict,
    config_to_dict,
    make_config,
    make_policy,
    make_policy_from_config,
    make_policy_from_dict,
    policy_name,
)
from policies.regression import RegressionConfig, RegressionPolicy
from policies.residual import ResidualConfig, ResidualPolicy

__all__ = [
    "BACKBONES",
    "EMA",
    "POLICIES",
    "ConditionalUnet1D",
    "ConditionalUnet1DConfig",
    "DiffusionConfig",
    "DiffusionPolicy",
    "FlowMatchingConfig",
    "FlowMatchingPolicy",
    "Normalizer",
    "Policy",
    "PolicyConfig",
    "RegressionConfig",
    "RegressionPolicy",
    "ResidualConfig",
    "ResidualMLP",
    "ResidualMLPConfig",
    "ResidualPolicy",
    "build_backbone",
    "config_from_dict",
    "config_to_dict",
    "make_config",
    "make_policy",
    "make_policy_from_config",
    "make_policy_from_dict",
    "policy_name",
]
