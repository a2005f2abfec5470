"""The policy registry (a plain dict) and JSON-safe config round trips for checkpoints.

A checkpoint stores `config.json` = `config_to_dict(policy.config)` and safetensors weights;
`make_policy_from_dict(json.load(...))` rebuilds the module to load them into. No pickle.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from policies.backbones import unknown_name_message
from policies.base import PolicyConfig
from policies.diffusion import DiffusionConfig, DiffusionPolicy
from policies.flow_matching import FlowMatchingConfig, FlowMatchingPolicy
from policies.regression import RegressionConfig, RegressionPolicy

POLICIES: dict[str, tuple[type[nn.Module], type[PolicyConfig]]] = {
    "flow_matching": (FlowMatchingPolicy, FlowMatchingConfig),
    "regression": (RegressionPolicy, RegressionConfig),
    "diffusion": (DiffusionPolicy, DiffusionConfig),
}

POLICY_KEY = "policy"
"""Key of the policy name in a config dict."""


def _lookup(name: str) -> tuple[type[nn.Module], type[PolicyConfig]]:
    if name not in POLICIES:
        raise ValueError(unknown_name_message("policy", name, POLICIES))
    return POLICIES[name]


def policy_name(config: PolicyConfig) -> str:
    """The registry name of a config's policy."""
    for name, (_, cfg_cls) in POLICIES.items():
        if type(config) is cfg_cls:
            return name
    raise TypeError(f"Got a {type(config).__name__}, which is not a registered policy config")


def make_config(name: str, **fields: Any) -> PolicyConfig:
    """The validated config dataclass of policy `name`; unknown fields get a did-you-mean."""
    cfg_cls = _lookup(name)[1]
    known = [f.name for f in dataclasses.fields(cfg_cls)]
    for key in fields:
        if key not in known:
            raise ValueError(f"{cfg_cls.__name__}: " + unknown_name_message("field", key, known))
    return cfg_cls(**fields)


def make_policy(name: str, **fields: Any) -> nn.Module:
    """Build policy `name` from its config fields.

    Example:
        >>> policy = make_policy("flow_matching", obs_dim=39, action_dim=4, num_tasks=10)
        >>> make_policy("flow_matcing", obs_dim=39, action_dim=4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown policy 'flow_matcing'. Did you mean 'flow_matching'? ...
    """
    return _lookup(name)[0](make_config(name, **fields))


def make_policy_from_config(config: PolicyConfig) -> nn.Module:
    return POLICIES[policy_name(config)][0](config)


def config_to_dict(config: PolicyConfig) -> dict[str, Any]:
    """JSON-safe dict of a policy config, with the policy name under "policy"."""
    return {POLICY_KEY: policy_name(config), **dataclasses.asdict(config)}


def config_from_dict(data: dict[str, Any]) -> PolicyConfig:
    """Inverse of `config_to_dict` (validates, and rejects unknown fields with a did-you-mean)."""
    if POLICY_KEY not in data:
        raise ValueError(
            f"Got a config dict without {POLICY_KEY!r} (keys {sorted(data)}); expected the "
            f"output of config_to_dict, e.g. {{'policy': 'flow_matching', 'obs_dim': 39, ...}}"
        )
    fields = {k: v for k, v in data.items() if k != POLICY_KEY}
    return make_config(data[POLICY_KEY], **fields)


def make_policy_from_dict(data: dict[str, Any]) -> nn.Module:
    """Rebuild a policy (fresh weights) from `config_to_dict` output; load weights after."""
    return make_policy_from_config(config_from_dict(data))
