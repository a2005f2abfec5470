"""``robolearn align``'s config, validated once at the CLI edge."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from robolearn.cluster import RayConfig
from robolearn.errors import ConfigError, unknown
from robolearn.rollout.physics import ParamsConfig, RandomizationConfig, physics_from_config

METHODS = ("tpo", "sft", "dpo", "bc")
PRESETS = ("efficiency", "smooth", "safe", "robust", "all", "success")


@dataclass
class AlignConfig:
    """``robolearn align``: GRAPE-style preference alignment of a trained flow-matching policy."""

    checkpoint: str = MISSING  # the base policy (run or checkpoint directory)
    suite: str = "MT10"  # the tasks to align on (train tasks of the suite)
    out: str = ""  # the alignment run directory (default runs/align-<method>-<preset>-<time>)
    method: str = "sft"  # sft (chosen-only; default: won, results/align_mt10.md) | tpo | dpo | bc
    preset: str = "all"  # efficiency | smooth | safe | robust | all | success (preferences by success only)
    weights: dict[str, float] = field(default_factory=dict)  # explicit cost weights (override preset)
    iterations: int = 3  # roll out → score → pair → train → evaluate, each from the last
    groups_per_task: int = 4  # groups (goal, TaskParams) per task per iteration
    rollouts_per_group: int = 8  # N rollouts of the current policy from the same initial state
    horizon: int = 500  # steps per rollout and per evaluation episode (Meta-World: 500; lower only to debug)
    min_margin: float = 0.1  # smallest score difference that makes a preference pair
    pairs_per_group: int = 1  # disjoint best-vs-worst pairs a group may give
    steps_per_iteration: int = 300  # optimiser steps per iteration
    batch_size: int = 16  # preference pairs per step (sft: chosen trajectories; bc: windows x 4)
    demo_batch_size: int = 64  # demonstration windows per step for the BC term
    lr: float = 1e-4  # constant learning rate of the fine-tuning (AdamW)
    beta: float = 2000.0  # TPO's β (Diffusion-DPO uses 2000-5000 with per-element-mean losses)
    lambda_sft: float = 0.5  # weight of flow matching on the chosen trajectories
    lambda_bc: float = 0.5  # weight of BC on the demonstrations
    dataset: str = ""  # demonstrations for the BC term (default: the checkpoint's training store)
    seed: int = 0  # rollout goals: episode_seed(4000 + seed, task, group)
    params: ParamsConfig = field(default_factory=ParamsConfig)  # rollouts under a TaskParams point
    randomize: RandomizationConfig = field(default_factory=RandomizationConfig)  # or a box
    distribution: str = ""  # or a task distribution file (robust preset: a reality gap)
    contacts: bool = True  # record contacts (the safe preset's costs)
    videos: int = 0  # per iteration, MP4s of this many pairs: chosen | rejected (replayed; MUJOCO_GL=egl)
    video_size: int = 224  # each side's width and height in pixels (software EGL: ~10 frames/s at 128)
    eval_episodes: int = 20  # held-out goals per task for the evaluation after each iteration
    eval_seed: int = 1000  # their goal seed (never a rollout goal)
    robust_eval: bool = False  # also evaluate under an action latency and an actuator gain gap
    eval_latency: int = 3  # robust_eval: the latency gap, steps
    eval_gain: float = 0.6  # robust_eval: the actuator gain gap
    fast: bool = True  # sim's fast step (identical results)
    device: str = "auto"  # training device
    progress: bool = True  # progress bars on the terminal (the summary is printed either way)
    ray: RayConfig = field(default_factory=RayConfig)  # rollouts on Ray actors (num_workers=0: here)
    run_dir: str = ""  # where config/log/summary go (default outputs/align/<time>)

    def __post_init__(self) -> None:
        if self.checkpoint in (MISSING, ""):
            raise ConfigError("missing required option checkpoint: pass checkpoint=<run dir> of "
                              "the policy to align (see `robolearn align --help`)")
        if self.method not in METHODS:
            raise ConfigError(unknown("align method", self.method, METHODS))
        if self.preset not in PRESETS and not self.weights:
            raise ConfigError(unknown("align preset", self.preset, PRESETS))
        for name, low in (("iterations", 1), ("groups_per_task", 1), ("rollouts_per_group", 2),
                          ("pairs_per_group", 1), ("steps_per_iteration", 1), ("batch_size", 1),
                          ("demo_batch_size", 1), ("eval_episodes", 1), ("seed", 0),
                          ("eval_seed", 0), ("videos", 0), ("video_size", 16),
                          ("horizon", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"Got {name}={getattr(self, name)}, expected >= {low}")
        for name in ("min_margin", "lambda_sft", "lambda_bc"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"Got {name}={getattr(self, name)}, expected >= 0")
        if self.horizon > 500:
            raise ConfigError(f"Got horizon={self.horizon}, expected <= 500 (Meta-World's episodes "
                              "end there)")
        if not self.lr > 0 or not self.beta >= 0:
            raise ConfigError(f"Got lr={self.lr}, beta={self.beta}; expected lr > 0, beta >= 0")
        if self.eval_seed == 4000 + self.seed:
            raise ConfigError(f"Got eval_seed={self.eval_seed}, the rollout goals' seed: pick "
                              "another so evaluation goals are held out")
        try:
            physics_from_config(self.params, self.randomize, self.distribution)
        except (TypeError, ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from None
