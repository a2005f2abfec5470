"""``robolearn evaluate``'s config (validated once, at the CLI edge, with the user's values)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from robolearn.cluster import RayConfig
from robolearn.errors import ConfigError
from robolearn.evaluate.evaluator import DEFAULT_EVAL_SEED, HORIZON, SPLITS
from robolearn.rollout.physics import ParamsConfig, RandomizationConfig


@dataclass
class EvaluateConfig:
    """``robolearn evaluate``: success rates of a policy (or the scripted experts) on a suite."""

    checkpoint: str = MISSING  # checkpoint dir, run dir, `expert`, or `robomimic:<model.pth>`
    checkpoints: list[str] = field(default_factory=list)  # several runs/seeds: IQM + bootstrap CI
    suite: str = "MT10"  # MT1:<task> | MT10 | MT50 | ML10 | ML45
    split: str = "train"  # train | test (ML held-out tasks) | all
    episodes_per_task: int = 50  # episode i of a task uses goal seed episode_seed(seed, task, i)
    seed: int = DEFAULT_EVAL_SEED  # evaluation goal seed; must differ from the collect seed
    num_envs: int = 10  # envs per task stepped in lock-step (the policy's batch size)
    horizon: int = HORIZON  # steps per episode (Meta-World: 500; lower only for smoke tests)
    params: ParamsConfig = field(default_factory=ParamsConfig)  # a fixed TaskParams point (reality gap)
    randomize: RandomizationConfig = field(default_factory=RandomizationConfig)  # or a box, per episode
    distribution: str = ""  # or a task distribution file (curricula JSON), per episode
    video: bool = False  # write MP4s of the first episodes of each task into <out>/videos
    videos_per_task: int = 1  # episodes recorded per task when video=true
    video_size: int = 224  # video width and height in pixels (software EGL: ~10 frames/s at 128)
    save_rollouts: str = ""  # an episode store to keep every rollout in (source=policy)
    fast: bool = True  # sim's fast step (identical results); false: Meta-World's own step
    device: str = "auto"  # auto | cpu | cuda | cuda:N (policy inference; Ray actors: cpu)
    ray: RayConfig = field(default_factory=RayConfig)  # rollouts on Ray actors (num_workers=0: here)
    progress: bool = True  # progress bar on the terminal (the table is printed either way)
    out: str = ""  # report directory (default: the run directory)
    run_dir: str = ""  # where config/log/summary go (default outputs/evaluate/<time>)

    def __post_init__(self) -> None:
        check_config(self)


def check_config(cfg: EvaluateConfig) -> None:
    """Validates an :class:`EvaluateConfig`.

    Raises:
        ConfigError: A field out of range, naming the field, the value and what is expected.
    """
    if cfg.split not in SPLITS:
        raise ConfigError(f"Got split={cfg.split!r}, expected one of {SPLITS}")
    for name, low in (("episodes_per_task", 1), ("num_envs", 1), ("videos_per_task", 0),
                      ("video_size", 16), ("seed", 0), ("horizon", 1)):
        if getattr(cfg, name) < low:
            raise ConfigError(f"Got {name}={getattr(cfg, name)}, expected >= {low}")
    if cfg.horizon > HORIZON:
        raise ConfigError(f"Got horizon={cfg.horizon}, expected <= {HORIZON} (the env truncates)")
    from robolearn.rollout.physics import physics_from_config

    try:
        physics = physics_from_config(cfg.params, cfg.randomize, cfg.distribution)
        if cfg.distribution:
            import sim
            from robolearn.evaluate.evaluator import split_tasks

            physics.check_tasks(split_tasks(sim.get_suite(cfg.suite), cfg.split))
    except (TypeError, ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from None


def checkpoint_list(cfg: EvaluateConfig) -> list[str]:
    """The runs to evaluate: ``checkpoint`` or ``checkpoints`` (exactly one of them set)."""
    single = None if cfg.checkpoint in (MISSING, None, "") else str(cfg.checkpoint)
    several = [str(c) for c in (cfg.checkpoints or [])]
    if single and several:
        raise ConfigError(
            f"Got checkpoint={single!r} and checkpoints={several}; give one of them "
            "(checkpoints=[a,b,...] for several runs)"
        )
    if not single and not several:
        raise ConfigError(
            "no checkpoint to evaluate; pass checkpoint=<checkpoint or run dir>, "
            "checkpoint=expert, or checkpoints=[dir1,dir2] for several runs"
        )
    return [single] if single else several
