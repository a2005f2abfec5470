"""``robolearn curriculum``'s config, validated once at the CLI edge."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from robolearn.deploy.config import ROBOTS, RemoteOptions, SafetyOptions, TwinOptions
from robolearn.errors import ConfigError, did_you_mean, unknown

# Goal seeds of the loop's own episodes, apart from collect's 0, evaluate's 1000, the trainer's
# probe 500, deploy's 2000 and the autocurriculum's probes 3000: robot episodes of cycle k use
# ROBOT_SEED + seed + 1000 k (+ the episodes already recorded), demos DEMO_SEED + seed + k.
ROBOT_SEED = 6000
DEMO_SEED = 7000
EVAL_SEED = 8000


def _default_prior() -> dict[str, list[float]]:
    from curricula import DEFAULT_PRIOR

    return {k: [lo, hi] for k, (lo, hi) in DEFAULT_PRIOR.items()}


@dataclass
class SysIdOptions:
    """``sysid.*``: the system identification of each cycle (:func:`curricula.fit_sysid`)."""

    prior: dict[str, list[Any]] = field(default_factory=_default_prior)  # field: [low, high]
    replay: bool = True  # fit friction, mass, damping by the replay likelihood (CMA-ES)
    replay_budget: int = 60  # likelihood evaluations of the replay fit
    replay_episodes: int = 8  # at most this many episodes go into the replay fit
    min_episodes: int = 2  # the fewest robot episodes per task a fit accepts
    min_log_std: float = 0.02  # entropy floor of the directly estimated scales (log space)
    replay_min_log_std: float = 0.05  # entropy floor of friction, mass, damping (log space)


@dataclass
class Sim2RealConfig:
    """``robolearn curriculum``: deploy → ingest (sysid) → update the distribution → retrain."""

    checkpoint: str = MISSING  # π_0: a checkpoint or run directory written by `robolearn train`
    suite: str = "MT1:reach-v3"  # the suite π_0 was trained on (its demos are re-collected on it)
    tasks: list[str] = field(default_factory=list)  # tasks run on the robot ([]: all of the suite's)
    cycles: int = 3  # retraining cycles; π_cycles is deployed once more to measure it
    episodes_per_task: int = 20  # robot episodes per task per cycle
    max_steps: int = 500  # steps per robot episode
    fit_weight: float = 0.7  # the fit's share of each deployed task in p_{k+1} (p_k keeps the rest)
    distribution: str = ""  # p_0: the distribution π_0 was trained under ("": nominal physics)
    out: str = "runs/curriculum"  # the loop's directory: cycle state, stores, checkpoints, report
    seed: int = 0  # offsets the robot, demo and evaluation goal seeds
    # robot
    robot: str = "twin"  # twin | remote (`robolearn serve-robot`); the loop never reads its params
    rate_hz: float = 0.0  # control rate (0: the robot's own)
    twin: TwinOptions = field(default_factory=TwinOptions)  # robot=twin: its hidden gap
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    safety: SafetyOptions = field(default_factory=SafetyOptions)
    # identification
    sysid: SysIdOptions = field(default_factory=SysIdOptions)
    # retraining
    demos_per_task: int = 50  # expert demos per task collected under p_{k+1}
    # (`observation`: noise included; under a fitted observation noise the experts then mostly
    # fail and the demos thin out)
    expert_sees: str = "state"  # the demo expert acts on: state (noise-free; demos keep the noisy obs) | observation
    train_steps: int = 2000  # fine-tuning steps per cycle (warm start from π_k)
    batch_size: int = 256  # windows per fine-tuning step
    lr: float = 3e-4  # constant (fine-tuning: no warm-up, no decay)
    eval_episodes: int = 20  # sim evaluation episodes per task under p_{k+1}
    eval_horizon: int = 500  # steps per sim evaluation episode
    num_envs: int = 10  # sim evaluation envs in lock-step
    device: str = "auto"  # policy inference and training device
    run_dir: str = ""  # where config/log/summary go (default outputs/curriculum/<time>)

    def __post_init__(self) -> None:
        import sim

        if self.checkpoint in (MISSING, ""):
            raise ConfigError("missing required option checkpoint: pass checkpoint=<checkpoint or "
                              "run dir> of π_0 (see `robolearn curriculum --help`)")
        if self.robot not in ROBOTS:
            raise ConfigError(unknown("robot", self.robot, ROBOTS))
        try:
            suite = sim.get_suite(self.suite)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"suite: {e}") from None
        train = list(suite.train_tasks)
        for t in self.tasks:
            if t not in train:
                raise ConfigError(unknown(f"tasks entry (a task of {self.suite})", t, train))
        for name, value, low in (("cycles", self.cycles, 1),
                                 ("episodes_per_task", self.episodes_per_task, 1),
                                 ("max_steps", self.max_steps, 2), ("seed", self.seed, 0),
                                 ("demos_per_task", self.demos_per_task, 1),
                                 ("train_steps", self.train_steps, 1),
                                 ("batch_size", self.batch_size, 1),
                                 ("eval_episodes", self.eval_episodes, 1),
                                 ("eval_horizon", self.eval_horizon, 1),
                                 ("num_envs", self.num_envs, 1),
                                 ("sysid.replay_budget", self.sysid.replay_budget, 8),
                                 ("sysid.replay_episodes", self.sysid.replay_episodes, 1),
                                 ("sysid.min_episodes", self.sysid.min_episodes, 1),
                                 ("remote.port", self.remote.port, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"Got {name}={value!r}, expected an integer >= {low}")
        from robolearn.collect import EXPERT_SEES  # the demos are collect's

        if self.expert_sees not in EXPERT_SEES:
            raise ConfigError(f"Got expert_sees={self.expert_sees!r}, expected one of "
                              f"{list(EXPERT_SEES)}" + did_you_mean(self.expert_sees, EXPERT_SEES))
        if self.episodes_per_task < self.sysid.min_episodes:
            raise ConfigError(
                f"Got episodes_per_task={self.episodes_per_task} with sysid.min_episodes="
                f"{self.sysid.min_episodes}: each cycle's fit would have too few robot episodes; "
                f"run at least {self.sysid.min_episodes} episodes per task")
        if not (math.isfinite(self.fit_weight) and 0 < self.fit_weight <= 1):
            raise ConfigError(f"Got fit_weight={self.fit_weight}, expected a number in (0, 1]")
        for name, value in (("lr", self.lr), ("sysid.min_log_std", self.sysid.min_log_std),
                            ("sysid.replay_min_log_std", self.sysid.replay_min_log_std)):
            if not (math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
                raise ConfigError(f"Got {name}={value}, expected a "
                                  f"{'positive' if name == 'lr' else 'non-negative'} number")
        rate = self.rate_hz
        if not math.isfinite(rate) or (rate != 0 and not 1.0 <= rate <= 1000.0):
            raise ConfigError(f"Got rate_hz={rate}, expected 0 (the robot's own rate) or 1..1000 Hz")
        self.prior_box()  # validated here, used by every cycle's fit

    def deployed_tasks(self) -> list[str]:
        """The tasks run on the robot."""
        import sim

        return list(self.tasks) or list(sim.get_suite(self.suite).train_tasks)

    def prior_box(self) -> dict[str, tuple[float, float]]:
        """``sysid.prior`` as ``{field: (low, high)}``, checked against ``sim.params.LIMITS``."""
        import sim
        from curricula import Box, CurriculumError

        box = {}
        for name, value in dict(self.sysid.prior).items():
            vals = list(value)
            if len(vals) != 2:
                raise ConfigError(f"Got sysid.prior.{name}={vals}, expected [low, high]")
            kind = int if isinstance(getattr(sim.TaskParams(), str(name), 0.0), int) else float
            try:
                box[str(name)] = (kind(vals[0]), kind(vals[1]))
            except (TypeError, ValueError):
                raise ConfigError(f"Got sysid.prior.{name}={vals}, expected [low, high] "
                                  f"({kind.__name__}s)") from None
        try:
            Box(box)
        except CurriculumError as e:
            raise ConfigError(f"sysid.prior: {e}") from None
        return box

    def settings(self) -> dict[str, Any]:
        """What decides the loop's results: a re-run must match it to continue the run in out."""
        keep = ("checkpoint", "suite", "cycles", "episodes_per_task", "max_steps", "fit_weight",
                "distribution", "seed", "robot", "demos_per_task", "train_steps", "batch_size",
                "lr", "eval_episodes", "eval_horizon")
        d = {k: getattr(self, k) for k in keep}
        if self.expert_sees != "observation":  # runs before the key: the experts saw the obs
            d["expert_sees"] = self.expert_sees
        d["tasks"] = self.deployed_tasks()
        d["sysid"] = dataclasses.asdict(self.sysid) | {"prior": {
            k: list(v) for k, v in self.prior_box().items()}}
        return d
