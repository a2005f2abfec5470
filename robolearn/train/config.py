"""``robolearn train``'s config: the trainer's options, validated once at the CLI edge."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from robolearn.cluster import RayTrainConfig
from robolearn.errors import ConfigError, unknown

TRAINERS = ("local", "ray")
DATA_FIELDS = ("obs_dim", "action_dim", "num_tasks")
"""Policy-config fields the trainer fills in from the dataset (not user options)."""
WEIGHTINGS = ("sample", "loss")
WANDB_MODES = ("offline", "online")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

# Options that decide what a run computes: a resumed run must have the same values (steps may
# grow; logging, checkpointing, devices and the Ray layout may change between launches).
RUN_DEFINING = ("batch_size", "lr", "weight_decay", "warmup_steps", "lr_min_ratio",
                "grad_clip", "ema_decay", "val_fraction", "seed", "amp", "objective", "weights")


@dataclass
class WeightsConfig:
    """Per-episode sampling weights (curricula, reward-weighted BC): none by default."""

    task: dict[str, float] = field(default_factory=dict)  # weight per task name (others: 1)
    episodes: str = ""  # a .npy file of one weight per store episode (multiplies `task`)
    mode: str = "sample"  # sample: draw windows ∝ weight | loss: uniform draw, loss × weight


@dataclass
class WandbConfig:
    """Weights & Biases, opt-in: every launch of a run logs to one W&B run (the same id)."""

    enable: bool = False  # also log metrics to W&B (pip install 'robolearn[wandb]')
    mode: str = "offline"  # offline: files under <out>/wandb (`wandb sync` them) | online
    project: str = "robolearn"  # the W&B project
    entity: str = ""  # the W&B team or user (default: your default entity)
    run_id: str = ""  # the W&B run id (default: made once, kept in <out>/wandb_run.json)


@dataclass
class TrainOptions:
    """The trainer's options (everything but the policy, which is a config group)."""

    dataset: str = "data/mt10_demos.zarr"  # the episode store to train on (task list from it)
    out: str = ""  # the run directory (default runs/<policy>-<time>)
    steps: int = 20000  # total optimiser steps
    batch_size: int = 256  # windows per optimiser step (per process)
    lr: float = 1e-3  # peak learning rate (AdamW), never rescaled behind your back
    weight_decay: float = 1e-6  # AdamW weight decay
    warmup_steps: int = 500  # linear warm-up, then cosine decay to lr_min_ratio * lr
    lr_min_ratio: float = 0.05  # the cosine schedule's floor, as a fraction of lr
    grad_clip: float = 1.0  # max gradient norm (0: off)
    ema_decay: float = 0.999  # EMA of the weights, used for validation and the checkpoint (0: off)
    val_fraction: float = 0.1  # held-out episodes per task for the validation loss
    val_every: int = 1000  # steps between validation losses
    val_batches: int = 8  # fixed validation batches
    checkpoint_every: int = 5000  # steps between checkpoints (and at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept
    log_every: int = 100  # steps between metric lines (metrics.jsonl, TensorBoard, log.txt)
    eval_every: int = 2000  # steps between success probes on held-out goals (0: off)
    eval_episodes: int = 2  # probe episodes per task
    eval_seed: int = 500  # probe goal seed (held out: not collect's 0, not evaluate's 1000)
    eval_suite: str = ""  # probe suite (default: the one the store was collected on)
    keep_best: bool = False  # keep <out>/best: the weights of the best probe success
    seed: int = 0  # data order, initialisation and flow noise
    objective: str = "bc"  # the training objective (robolearn.train.objectives): bc
    weights: WeightsConfig = field(default_factory=WeightsConfig)  # per-episode sampling weights
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 (autocast)
    num_threads: int = 0  # torch CPU threads (0: torch's default)
    resume: bool = False  # continue the run in `out` from its newest checkpoint
    overwrite: bool = False  # start `out` over even if it has checkpoints
    tensorboard: bool = True  # also write TensorBoard events to <out>/tb
    progress: bool = True  # progress bar on the terminal
    trainer: str = "local"  # local (this process) | ray (Ray Train TorchTrainer, DDP, restarts)
    ray: RayTrainConfig = field(default_factory=RayTrainConfig)  # trainer=ray: cluster, workers
    wandb: WandbConfig = field(default_factory=WandbConfig)  # Weights & Biases (opt-in)

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class TrainConfig(TrainOptions):
    """``robolearn train``: one trainer for every policy, on any episode store."""

    defaults: list[Any] = field(default_factory=lambda: [{"policy": "flow_matching"}, "_self_"])
    policy: Any = MISSING  # policy group: flow_matching | regression | diffusion (+ its fields)


def train_config_from(options: TrainOptions, policy: Any, **changes: Any) -> TrainConfig:
    """A ``robolearn train`` config from a pipeline's ``train`` section and ``policy`` group."""
    import dataclasses

    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(TrainOptions)}
    return TrainConfig(**{**values, **changes}, policy=dict(policy))


def policy_group_nodes() -> dict[str, dict[str, Any]]:
    """One ``policy`` config-group node per policy: its config fields minus the data-derived
    ones (:data:`DATA_FIELDS`), with their defaults."""
    import dataclasses

    from policies import POLICIES

    nodes = {}
    for name, (_, cfg_cls) in POLICIES.items():
        node: dict[str, Any] = {"name": name}
        for f in dataclasses.fields(cfg_cls):
            if f.name in DATA_FIELDS:
                continue
            if f.default is not dataclasses.MISSING:
                node[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                node[f.name] = f.default_factory()
        nodes[name] = node
    return nodes


def check_options(cfg: Any) -> None:
    """The trainer's own option checks (cheap: run before any data is loaded or Ray started)."""
    from robolearn.train.objectives import OBJECTIVES

    if cfg.trainer not in TRAINERS:
        raise ConfigError(unknown_trainer_message(cfg.trainer))
    if cfg.amp not in ("none", "bf16"):
        raise ConfigError(f"Got amp={cfg.amp!r}, expected 'none' or 'bf16'")
    if not _DEVICE.match(str(cfg.device)):
        hint = " (for a GPU: device=cuda)" if str(cfg.device).lower().startswith("gpu") else ""
        raise ConfigError(f"Got device={cfg.device!r}, expected auto | cpu | cuda | cuda:N{hint}")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ConfigError(f"Got steps={cfg.steps}, batch_size={cfg.batch_size}; both must be >= 1")
    for key in ("checkpoint_every", "log_every", "val_every", "keep_checkpoints"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"Got {key}={getattr(cfg, key)}, expected >= 1")
    for key, low in (("warmup_steps", 0), ("val_batches", 0), ("num_threads", 0), ("seed", 0),
                     ("eval_every", 0), ("eval_episodes", 1), ("eval_seed", 0)):
        if getattr(cfg, key) < low:
            raise ConfigError(f"Got {key}={getattr(cfg, key)}, expected >= {low}")
    if not cfg.lr > 0 or not 0 <= cfg.lr_min_ratio <= 1 or cfg.grad_clip < 0:
        raise ConfigError(f"Got lr={cfg.lr}, lr_min_ratio={cfg.lr_min_ratio}, grad_clip="
                          f"{cfg.grad_clip}; expected lr > 0, 0 <= lr_min_ratio <= 1, "
                          "grad_clip >= 0")
    if not 0 <= cfg.ema_decay < 1:
        raise ConfigError(f"Got ema_decay={cfg.ema_decay}, expected 0 <= ema_decay < 1 (0: off)")
    if not 0 <= cfg.val_fraction < 1:
        raise ConfigError(f"Got val_fraction={cfg.val_fraction}, expected 0 <= val_fraction < 1")
    if cfg.objective not in OBJECTIVES:
        raise ConfigError(unknown("objective", cfg.objective, OBJECTIVES))
    w = cfg.weights
    if w.mode not in WEIGHTINGS:
        raise ConfigError(unknown("weights.mode", w.mode, WEIGHTINGS))
    bad = {k: v for k, v in dict(w.task).items() if not float(v) >= 0}
    if bad:
        raise ConfigError(f"Got weights.task={bad}: task weights must be >= 0")
    wb = getattr(cfg, "wandb", None)
    if wb is not None:
        if wb.mode not in WANDB_MODES:
            raise ConfigError(unknown("wandb.mode", wb.mode, WANDB_MODES)
                              + " (offline: files under <out>/wandb; online: needs `wandb login`)")
        if wb.enable and not str(wb.project).strip():
            raise ConfigError("Got wandb.project='', expected a W&B project name")
        if wb.run_id and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(wb.run_id)):
            raise ConfigError(f"Got wandb.run_id={wb.run_id!r}, expected 1-64 letters, digits, "
                              "'-' or '_' (W&B run ids)")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("Got resume=true and overwrite=true: pass one of them (resume=true "
                          "continues the run in out=, overwrite=true starts it over)")


def unknown_trainer_message(name: str) -> str:
    return (unknown("trainer", name, TRAINERS) + " (local: this process; ray: Ray Train "
            "TorchTrainer, DDP workers, restarts from checkpoints)")
