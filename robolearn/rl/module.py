"""The PPO network of residual fine-tuning: an RLlib ``TorchRLModule`` with a value function.

:class:`ResidualPPOModule` (RLlib's new API stack: ``TorchRLModule`` + ``ValueFunctionAPI``)
reads the residual env's flat observation ``[obs (Do), task one-hot (K), a_base (Da)]``:

- the actor is :class:`policies.residual.ResidualPolicy` (the network that is deployed), whose
  output is the mean of a diagonal Gaussian over δ with a learned, state-independent
  ``log_std`` (``ACTION_DIST_INPUTS = [mean, log_std]``, RLlib's ``TorchDiagGaussian``); its
  last layer starts at zero, so δ's mean is 0 and fine-tuning starts at the base policy;
- the critic is a separate MLP on the same normalised features (no shared layers: the
  correction stays exactly zero until the policy gradient moves it).

RLlib builds it from ``RLModuleSpec(module_class=ResidualPPOModule, model_config={...})``; the
model config keys are :data:`MODEL_CONFIG_KEYS` (:func:`model_config` makes one).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from policies.residual import ResidualConfig, ResidualPolicy, mlp

MODEL_CONFIG_KEYS = ("obs_dim", "action_dim", "num_tasks", "hidden_dim", "num_layers", "alpha",
                     "log_std_init", "vf_hidden_dim", "vf_num_layers", "obs_center", "obs_scale")


def model_config(*, obs_dim: int, action_dim: int, num_tasks: int, hidden_dim: int = 256,
                 num_layers: int = 2, alpha: float = 0.2, log_std_init: float = -1.0,
                 vf_hidden_dim: int = 256, vf_num_layers: int = 2,
                 obs_center: list[float] | None = None,
                 obs_scale: list[float] | None = None) -> dict[str, Any]:
    """The ``model_config`` of :class:`ResidualPPOModule` (plain JSON types).

    Args:
        obs_dim, action_dim, num_tasks: Do, Da and K of the residual env.
        hidden_dim, num_layers: The actor's MLP (the deployed residual).
        alpha: α, recorded with the actor (the env applies it).
        log_std_init: Initial log standard deviation of δ's Gaussian (exploration).
        vf_hidden_dim, vf_num_layers: The critic's MLP.
        obs_center, obs_scale: Observation normalisation (the base policy's), (Do,) each.
    """
    return {"obs_dim": int(obs_dim), "action_dim": int(action_dim), "num_tasks": int(num_tasks),
            "hidden_dim": int(hidden_dim), "num_layers": int(num_layers), "alpha": float(alpha),
            "log_std_init": float(log_std_init), "vf_hidden_dim": int(vf_hidden_dim),
            "vf_num_layers": int(vf_num_layers),
            "obs_center": None if obs_center is None else [float(x) for x in obs_center],
            "obs_scale": None if obs_scale is None else [float(x) for x in obs_scale]}


class ResidualPPOModule(TorchRLModule, ValueFunctionAPI):
    """Actor (the deployable residual) + Gaussian head + critic; see the module docstring."""

    def setup(self) -> None:
        # RLlib adds keys of its own default model config (vf_share_layers, ...): ignored.
        mc = dict(self.model_config or {})
        missing = [k for k in ("obs_dim", "action_dim", "num_tasks") if k not in mc]
        if missing:
            raise ValueError(f"ResidualPPOModule: model_config lacks {missing}; build it with "
                             "robolearn.rl.module.model_config(...)")
        cfg = ResidualConfig(obs_dim=mc["obs_dim"], action_dim=mc["action_dim"],
                             num_tasks=mc["num_tasks"], hidden_dim=mc.get("hidden_dim", 256),
                             num_layers=mc.get("num_layers", 2), alpha=mc.get("alpha", 0.2))
        expected = cfg.input_dim
        got = tuple(self.observation_space.shape)
        if got != (expected,):
            raise ValueError(
                f"ResidualPPOModule: the observation space has shape {got}, but the model config "
                f"(obs_dim={cfg.obs_dim}, num_tasks={cfg.num_tasks}, action_dim={cfg.action_dim})"
                f" needs ({expected},): [obs, task one-hot, a_base] of the residual env"
            )
        self.residual_config = cfg
        self.actor = ResidualPolicy(cfg)
        if mc.get("obs_center") is not None:
            self.actor.set_obs_normalization(torch.tensor(mc["obs_center"], dtype=torch.float32),
                                             torch.tensor(mc["obs_scale"], dtype=torch.float32))
        self.log_std = nn.Parameter(torch.full((cfg.action_dim,), float(mc.get("log_std_init",
                                                                             -1.0))))
        self.critic = mlp(cfg.input_dim, int(mc.get("vf_hidden_dim", 256)),
                          int(mc.get("vf_num_layers", 2)), 1)

    def _split(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[obs | one-hot | a_base] (B, Do + K + Da) → the three parts."""
        cfg = self.residual_config
        obs = flat[..., : cfg.obs_dim]
        onehot = flat[..., cfg.obs_dim: cfg.obs_dim + cfg.num_tasks]
        a_base = flat[..., cfg.obs_dim + cfg.num_tasks:]
        return obs, onehot, a_base

    def _features(self, batch: dict[str, Any]) -> torch.Tensor:
        obs, onehot, a_base = self._split(batch[Columns.OBS].float())
        return self.actor.features(obs, a_base, onehot)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mean = self.actor.net(self._features(batch))
        log_std = self.log_std.expand_as(mean)
        return {Columns.ACTION_DIST_INPUTS: torch.cat([mean, log_std], dim=-1)}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """V(s) (B,) from the critic (``embeddings`` unused: nothing is shared)."""
        return self.critic(self._features(batch)).squeeze(-1)
