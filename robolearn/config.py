"""Every command's structured config, registered with hydra's ConfigStore in one place.

Each command's config is a dataclass next to the code it configures (``CollectConfig`` in
:mod:`robolearn.collect`, ``TrainConfig`` in :mod:`robolearn.train.config`, ...). Here they are
registered under the command's name, with the ``policy`` group (one node per policy of
:data:`policies.POLICIES`) and the presets (``--preset debug``: further nodes of the same
dataclass). The CLI composes one with hydra's override grammar and turns it into the typed
dataclass, validated once (``__post_init__``) with the user's values.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from robolearn.align.config import AlignConfig
from robolearn.align.pearl_config import (
    ImproveConfig,
    PearlConfig,
    PoolConfig,
    RewardConfig,
    TeacherConfig,
)
from robolearn.collect import CollectConfig
from robolearn.datasets import ExportConfig, ImportConfig, StoreConfig
from robolearn.deploy.config import DeployConfig
from robolearn.evaluate.config import EvaluateConfig
from robolearn.pipeline import (
    RESOLVERS,
    PipelineConfig,
    pipeline_collect,
    pipeline_evaluate,
    pipeline_train,
)
from robolearn.rl.finetune import FinetuneConfig, FinetuneRayConfig, PPOSettings
from robolearn.sim2real.config import Sim2RealConfig, SysIdOptions
from robolearn.train.config import TrainConfig, policy_group_nodes

CONFIGS: dict[str, type] = {
    "pipeline": PipelineConfig,
    "collect": CollectConfig,
    "export": ExportConfig,
    "import": ImportConfig,
    "store": StoreConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "align": AlignConfig,
    "pearl": PearlConfig,
    "finetune": FinetuneConfig,
    "deploy": DeployConfig,
    "curriculum": Sim2RealConfig,
}
"""Command name → its config dataclass."""

# Presets: small, fast variants used by tests and first runs (`--preset debug`).
PRESETS: dict[str, dict[str, object]] = {
    # One cycle in a couple of minutes on 2 CPU cores: 3 robot episodes of reach-v3 (the
    # checkpoint of `pipeline --preset debug`), closed-form fit only, 3 demos, 20 steps.
    "curriculum/debug": dict(
        checkpoint="runs/debug_flow_matching", suite="MT1:reach-v3", cycles=1,
        episodes_per_task=3, max_steps=60, out="runs/debug_curriculum", demos_per_task=3,
        train_steps=20, batch_size=32, eval_episodes=2, eval_horizon=60, num_envs=2,
        sysid=SysIdOptions(replay=False),
    ),
    "collect/debug": dict(
        suite="MT1:reach-v3", episodes_per_task=2, out="data/debug_demos.zarr"
    ),
    "evaluate/debug": dict(
        checkpoint="expert", suite="MT1:reach-v3", episodes_per_task=2, num_envs=2
    ),
    "pipeline/debug": dict(
        collect=pipeline_collect(suite="MT1:reach-v3", episodes_per_task=4,
                                 out="data/debug_demos.zarr"),
        train=pipeline_train(out="runs/debug_${policy.name}", steps=20, batch_size=32,
                             val_every=10, checkpoint_every=10, log_every=5, warmup_steps=5,
                             tensorboard=False),
        evaluate=pipeline_evaluate(episodes_per_task=2, num_envs=2, horizon=50),
    ),
    # MT50: 50 demos per task, 20k steps, 20 held-out goals per task. Measured on 2 CPU cores:
    # 21 min end to end, mean success 0.854 (README); a GPU shortens the training part.
    "pipeline/mt50": dict(
        collect=pipeline_collect(suite="MT50", episodes_per_task=50,
                                 out="data/mt50_demos.zarr"),
        train=pipeline_train(out="runs/mt50_${policy.name}", steps=20000, warmup_steps=1000,
                             val_every=2000, checkpoint_every=5000),
        evaluate=pipeline_evaluate(episodes_per_task=20),
    ),
    "align/debug": dict(
        checkpoint="runs/debug_flow_matching", suite="MT1:reach-v3", iterations=1,
        groups_per_task=2, rollouts_per_group=4, steps_per_iteration=5, batch_size=4,
        demo_batch_size=16, eval_episodes=2, min_margin=0.0, horizon=60,
    ),
    "finetune/debug": dict(
        checkpoint="runs/debug_flow_matching", suite="MT1:reach-v3", env_steps=200, horizon=50,
        ppo=PPOSettings(train_batch_size=100, minibatch_size=50, num_epochs=1),
        eval_episodes=2, eval_num_envs=2, checkpoint_every=1, tensorboard=False,
        ray=FinetuneRayConfig(num_workers=1, num_envs_per_worker=2, restart_delay_s=1.0),
    ),
    # PEARL in about a minute: pools of 12, a few labels, 20 training steps, 2 held-out goals.
    "pearl/debug": dict(
        source="window-open-v3", target="window-close-v3", pool=PoolConfig(size=12, horizon=40),
        teacher=TeacherConfig(pairs=20), reward=RewardConfig(epochs=3), eval_episodes=2,
        improve=ImproveConfig(steps=20, batch_size=16),
    ),
    "deploy/debug": dict(checkpoint="runs/debug_flow_matching", task="reach-v3", episodes=2,
                         max_steps=50, out="data/debug_real.zarr"),
    "train/debug": dict(
        dataset="data/debug_demos.zarr", steps=20, batch_size=32, val_every=10,
        checkpoint_every=10, log_every=5, warmup_steps=5, tensorboard=False,
    ),
}
"""``<command>/<preset>`` → the fields it sets."""


def register_resolvers() -> None:
    """The OmegaConf resolvers configs use (derived default paths of the pipeline)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def register_configs() -> ConfigStore:
    """Stores every command's config, the policy group and the presets in hydra's store."""
    register_resolvers()
    cs = ConfigStore.instance()
    for name, node in CONFIGS.items():
        cs.store(name=name, node=node)
    for name, node in policy_group_nodes().items():
        cs.store(group="policy", name=name, node=node)
    for key, values in PRESETS.items():
        command, preset = key.split("/")
        cs.store(name=f"{command}_{preset}", node=CONFIGS[command](**values))
    return cs


def presets_of(command: str) -> list[str]:
    """The preset names of ``command``."""
    return [k.split("/")[1] for k in PRESETS if k.startswith(command + "/")]


def has_policy_group(command: str) -> bool:
    return any(isinstance(d, dict) and "policy" in d
               for d in getattr(CONFIGS[command](), "defaults", []) or []) if _has_defaults(
        command) else False


def _has_defaults(command: str) -> bool:
    import dataclasses

    return any(f.name == "defaults" for f in dataclasses.fields(CONFIGS[command]))


def typed(command: str, cfg: Any) -> Any:
    """The composed DictConfig of ``command`` as its dataclass, validated with these values."""
    return OmegaConf.to_object(cfg)
