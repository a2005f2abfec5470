"""``robolearn pearl``'s config: cross-task preference transfer and a robust reward model.

Validated once at the CLI edge (``__post_init__``): names the key, the value and what is
expected. The loop is :mod:`robolearn.align.pearl`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from robolearn.cluster import RayConfig
from robolearn.errors import ConfigError, unknown

IMPROVE_METHODS = ("filter", "weight", "tpo", "none")
TEACHER_MODES = ("hard", "soft", "sample")
DISTANCES = ("resample", "pad", "dtw", "mean")
SOLVERS = ("exact", "entropic")
REWARD_KINDS = ("gaussian", "point")
ORIENTATION = ("auto", "check", "off")
NOISE_KINDS = ("replace", "gaussian")
FEATURES = ("obs", "obs_action")


def _check_range(section: str, name: str, value: float, low: float, high: float | None = None,
                 *, low_open: bool = False) -> None:
    ok = value > low if low_open else value >= low
    if high is not None:
        ok = ok and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + ("" if high is None else f" and <= {high}")
        raise ConfigError(f"Got {section}{name}={value!r}, expected {bound}")


@dataclass
class PoolConfig:
    """``pool.*``: the trajectories of one task, of mixed quality, collected into a store."""

    size: int = 150  # trajectories per task (the pool GW couples; its cost grows ~n^2..n^3)
    horizon: int = 200  # steps per trajectory, all run to the end (no early stop: returns compare)
    noise: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.65, 0.8, 0.9])  # expert noise levels
    noise_kind: str = "replace"  # replace: each action random with prob. noise | gaussian: std noise
    random_fraction: float = 0.15  # share of uniform-random-action trajectories
    checkpoints: list[str] = field(default_factory=list)  # policies (e.g. early/late) that know the task
    checkpoint_fraction: float = 0.0  # share of the pool from `checkpoints`, split equally
    seed: int = 6000  # goal seeds episode_seed(seed, task, i): keep apart from collect/evaluate

    def __post_init__(self) -> None:
        p = "pool."
        if self.size < 4:
            raise ConfigError(f"Got {p}size={self.size}, expected >= 4 trajectories per task")
        _check_range(p, "horizon", self.horizon, 2, 500)
        if not self.noise and self.random_fraction + self.checkpoint_fraction < 1.0:
            raise ConfigError(f"Got {p}noise=[] with random + checkpoint fractions < 1; give "
                              "expert noise levels or fractions that sum to 1")
        if self.noise_kind not in NOISE_KINDS:
            raise ConfigError(unknown("pool noise_kind", self.noise_kind, NOISE_KINDS))
        for v in self.noise:
            _check_range(p, "noise[]", v, 0.0, 1.0)
        _check_range(p, "random_fraction", self.random_fraction, 0.0, 1.0)
        _check_range(p, "checkpoint_fraction", self.checkpoint_fraction, 0.0, 1.0)
        if self.random_fraction + self.checkpoint_fraction > 1.0 + 1e-9:
            raise ConfigError(f"Got {p}random_fraction={self.random_fraction} + "
                              f"{p}checkpoint_fraction={self.checkpoint_fraction} > 1")
        if self.checkpoint_fraction > 0 and not self.checkpoints:
            raise ConfigError(f"Got {p}checkpoint_fraction={self.checkpoint_fraction} but no "
                              f"{p}checkpoints; pass {p}checkpoints=[run_a,run_b] or set it to 0")
        _check_range(p, "seed", self.seed, 0)


@dataclass
class TeacherConfig:
    """``teacher.*``: the scripted teacher (Bradley–Terry on the pinned Meta-World reward)."""

    pairs: int = 300  # labelled source pairs (random pairs of the source pool)
    mode: str = "hard"  # hard: 1[R_a > R_b] | soft: sigma(dR / T) | sample: Bernoulli(soft)
    temperature: float = 1.0  # BT temperature of soft / sample, in return units
    flip_rate: float = 0.0  # probability of inverting a label (a mistake rate)
    equal_margin: float = 0.0  # hard: |R_a - R_b| <= this gives 0.5
    segment: int = 0  # 0: whole trajectories; L > 0: the same random window of L steps of both
    seed: int = 0  # pairs, windows, sampling and flips

    def __post_init__(self) -> None:
        p = "teacher."
        _check_range(p, "pairs", self.pairs, 1)
        if self.mode not in TEACHER_MODES:
            raise ConfigError(unknown("teacher mode", self.mode, TEACHER_MODES))
        _check_range(p, "temperature", self.temperature, 0.0, low_open=True)
        _check_range(p, "flip_rate", self.flip_rate, 0.0, 1.0)
        _check_range(p, "equal_margin", self.equal_margin, 0.0)
        _check_range(p, "segment", self.segment, 0)
        _check_range(p, "seed", self.seed, 0)


@dataclass
class TransferConfig:
    """``gw.*``: cross-task preference alignment (CPA) by Gromov–Wasserstein."""

    features: str = "obs"  # per-step features of the distances: obs | obs_action ([obs, action])
    distance: str = "resample"  # resample | pad | dtw | mean (policies.alignment.distance_matrix)
    length: int = 64  # points per trajectory for resample / dtw
    solver: str = "exact"  # exact (default) | entropic (refused when its plan is near-uniform)
    epsilon: float = 0.01  # entropic regularisation (on matrices scaled to mean 1)
    fused: bool = True  # fused GW: + a small task-agnostic term (success, length, progress); results/pearl_transfer_heldout.md
    feature_weight: float = 0.1  # fused: the feature term's weight 1 - alpha
    min_concentration: float = 0.3  # plans closer to uniform than this transfer nothing
    orientation: str = "auto"  # auto: check and undo a reflection | check: report only | off
    heldout_fraction: float = 0.2  # source labels kept out of the transfer, for the orientation check

    def __post_init__(self) -> None:
        p = "gw."
        if self.features not in FEATURES:
            raise ConfigError(unknown("gw features", self.features, FEATURES))
        if self.distance not in DISTANCES:
            raise ConfigError(unknown("gw distance", self.distance, DISTANCES))
        if self.solver not in SOLVERS:
            raise ConfigError(unknown("gw solver", self.solver, SOLVERS))
        if self.orientation not in ORIENTATION:
            raise ConfigError(unknown("gw orientation", self.orientation, ORIENTATION))
        _check_range(p, "length", self.length, 2)
        _check_range(p, "epsilon", self.epsilon, 0.0, low_open=True)
        if not 0.0 < self.feature_weight < 1.0:
            raise ConfigError(f"Got {p}feature_weight={self.feature_weight}, expected 0 < w < 1")
        _check_range(p, "min_concentration", self.min_concentration, 0.0, 1.0)
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ConfigError(f"Got {p}heldout_fraction={self.heldout_fraction}, expected "
                              "0 <= f < 1")


@dataclass
class RewardConfig:
    """``reward.*``: the reward model learned from the transferred target labels."""

    kind: str = "gaussian"  # gaussian (PEARL's robust reward learning) | point (plain Bradley–Terry)
    pairs: int = 0  # target pairs it trains on, most confident first (0: as many as source labels)
    min_confidence: float = 0.0  # transferred labels below this confidence are not used
    hidden_dim: int = 64  # width of the reward MLP
    num_layers: int = 2  # hidden layers of the reward MLP
    sigma_prior: float = 1.0  # gaussian: the per-step std the KL term pulls sigma toward
    kl_weight: float = 1.0  # gaussian: lambda_KL
    stride: int = 4  # fit and score on every stride-th step (4x cheaper; returns sum those steps)
    epochs: int = 40  # passes over the training pairs
    batch_size: int = 64  # pairs per step
    lr: float = 1e-3  # Adam learning rate
    seed: int = 0  # initialisation, pair order and sampled returns

    def __post_init__(self) -> None:
        p = "reward."
        if self.kind not in REWARD_KINDS:
            raise ConfigError(unknown("reward kind", self.kind, REWARD_KINDS))
        for name in ("hidden_dim", "num_layers", "stride", "epochs", "batch_size"):
            _check_range(p, name, getattr(self, name), 1)
        _check_range(p, "pairs", self.pairs, 0)
        _check_range(p, "min_confidence", self.min_confidence, 0.0, 1.0)
        _check_range(p, "sigma_prior", self.sigma_prior, 0.0, low_open=True)
        _check_range(p, "kl_weight", self.kl_weight, 0.0)
        _check_range(p, "lr", self.lr, 0.0, low_open=True)
        _check_range(p, "seed", self.seed, 0)


@dataclass
class ImproveConfig:
    """``improve.*``: how the learned reward improves a policy on the target task."""

    method: str = "filter"  # filter: BC on the top keep_fraction | weight: exp(z/tau) | tpo | none
    keep_fraction: float = 0.3  # filter: share of the pool (by learned return) trained on
    temperature: float = 0.5  # weight: tau of exp(z / tau), z the standardised learned return
    policy: str = "flow_matching"  # the policy trained on the weighted pool
    steps: int = 2000  # optimiser steps (filter / weight: from scratch on the pool)
    batch_size: int = 128  # windows per optimiser step
    lr: float = 1e-3  # peak learning rate
    init_checkpoint: str = ""  # filter / weight: start from this checkpoint instead of from scratch
    baselines: bool = False  # also train no-label BC (the whole pool) and the oracle (target teacher)
    # tpo: the GRAPE loop on the target from the no-label BC policy, pairs scored by the reward
    tpo_iterations: int = 1  # tpo: iterations of the loop
    tpo_groups: int = 4  # groups (goal) per iteration
    tpo_rollouts: int = 8  # rollouts per group
    tpo_steps: int = 200  # optimiser steps per iteration
    tpo_min_margin: float = 0.1  # smallest standardised learned-return gap that makes a pair

    def __post_init__(self) -> None:
        p = "improve."
        if self.method not in IMPROVE_METHODS:
            raise ConfigError(unknown("improve method", self.method, IMPROVE_METHODS))
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ConfigError(f"Got {p}keep_fraction={self.keep_fraction}, expected 0 < f <= 1")
        _check_range(p, "temperature", self.temperature, 0.0, low_open=True)
        for name in ("steps", "batch_size", "tpo_iterations", "tpo_groups", "tpo_steps"):
            _check_range(p, name, getattr(self, name), 1)
        _check_range(p, "tpo_rollouts", self.tpo_rollouts, 2)
        _check_range(p, "tpo_min_margin", self.tpo_min_margin, 0.0)
        _check_range(p, "lr", self.lr, 0.0, low_open=True)


@dataclass
class PearlConfig:
    """``robolearn pearl``: zero-shot cross-task preference transfer (PEARL) and policy
    improvement on the target task with the learned reward."""

    source: str = MISSING  # the labelled task (Meta-World name, e.g. window-open-v3)
    target: str = MISSING  # the unlabelled task (e.g. window-close-v3)
    labels: str = "teacher"  # teacher (scripted, teacher.*) | a CSV/JSON label file of source pairs
    source_store: str = ""  # the source pool (default: collected into <out>/pools/source.zarr)
    target_store: str = ""  # the target pool (default: collected into <out>/pools/target.zarr)
    out: str = ""  # the run directory (default runs/pearl-<source>-<target>-<time>)
    pool: PoolConfig = field(default_factory=PoolConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    gw: TransferConfig = field(default_factory=TransferConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    improve: ImproveConfig = field(default_factory=ImproveConfig)
    eval_episodes: int = 50  # held-out goals of the target task per evaluated policy
    eval_seed: int = 1000  # their goal seed (never a pool goal)
    seed: int = 0  # training seed of the improved policies (and the TPO rollouts)
    fast: bool = True  # sim's fast step (identical results)
    device: str = "auto"  # training device
    progress: bool = True  # progress bars on the terminal (the summary is printed either way)
    ray: RayConfig = field(default_factory=RayConfig)  # evaluation on Ray actors (num_workers=0: here)
    run_dir: str = ""  # where config/log/summary go (default outputs/pearl/<time>)

    def __post_init__(self) -> None:
        import sim

        for key in ("source", "target"):
            value = getattr(self, key)
            if value in (MISSING, ""):
                raise ConfigError(f"missing required option {key}: pass {key}=<Meta-World task> "
                                  "(see `robolearn pearl --help`)")
            if value not in sim.ALL_TASKS:
                raise ConfigError(f"Got {key}={value!r}: " + unknown("task", value,
                                                                      sim.ALL_TASKS))
        if self.source == self.target:
            raise ConfigError(f"Got source=target={self.source!r}; PEARL transfers labels "
                              "between two different tasks")
        if not self.labels:
            raise ConfigError("Got labels='', expected `teacher` or a label file (.csv/.json)")
        if self.labels != "teacher" and not self.labels.endswith((".csv", ".json")):
            raise ConfigError(f"Got labels={self.labels!r}, expected `teacher` or a label file "
                              "ending in .csv or .json")
        _check_range("", "eval_episodes", self.eval_episodes, 1)
        _check_range("", "eval_seed", self.eval_seed, 0)
        _check_range("", "seed", self.seed, 0)
        if self.eval_seed == self.pool.seed:
            raise ConfigError(f"Got eval_seed={self.eval_seed} = pool.seed: evaluation goals "
                              "must be held out from the pools; pick another")
