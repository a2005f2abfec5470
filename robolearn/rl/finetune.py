"""``robolearn finetune``: residual PPO (RLlib) on top of a frozen policy, driven by a curriculum.

Imitation cannot improve a policy where the demonstrations fall short (the precise tasks, a
reality gap); trial and error can. The base policy (any robolearn checkpoint) stays frozen and
proposes ``a_base`` with chunked execution, exactly as in evaluation; a small PPO policy sees
``(obs, a_base)`` and adds a bounded correction: the applied action is
``clip(a_base + α·δ, -1, 1)``, δ ∈ [-1, 1] (residual RL: Silver et al. 2018; Ankile et al.
2024 fine-tune chunked BC policies for precise assembly this way). The residual starts at
exactly δ = 0, so fine-tuning begins at the base policy's success.

The job, per training iteration (RLlib's new API stack, Ray 2.60):

1. env runners on Ray actors sample ``ppo.train_batch_size`` steps of
   :class:`~robolearn.rl.residual.ResidualEnv` episodes drawn from the curriculum's task
   distribution (task, TaskParams, initial condition; held-out evaluation goals excluded);
2. the learner (on a GPU when the cluster has one) runs PPO on
   :class:`~robolearn.rl.module.ResidualPPOModule`;
3. :class:`~robolearn.rl.callbacks.CurriculumCallback` scores each (task, region) arm with its
   success rate, updates the learning-progress sampler and pushes the next distribution to
   every env runner (and to restarted ones);
4. progress goes to the terminal, ``metrics.jsonl`` and TensorBoard (``tb/``); every
   ``checkpoint_every`` iterations a checkpoint is written.

Output (``out``)::

    checkpoint -> checkpoints/iter_000040    robolearn.load_policy(out): base + residual
    checkpoints/iter_000040/
      config.json, model.safetensors         the deployable policy (format robolearn.residual)
      curriculum.json                        LP sampler, pending counts, current distribution
      state.json                             iteration, env steps, wall time
      rllib/                                 RLlib's own checkpoint, for resuming only
    finetune.json                            the run-defining settings (checked on resume)
    metrics.jsonl, tb/, launches.jsonl, eval_base.json, eval_final.json

Re-running the same command continues from the newest checkpoint (weights, optimiser, the
curriculum); a run asked with other run-defining settings is refused with the difference. A
killed env runner is restarted by RLlib (``ray.restart_delay_s``) and gets the curriculum's
distribution again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from robolearn.cluster import RayConfig
from robolearn.errors import ConfigError, ReuseError
from robolearn.rollout.physics import ParamsConfig, RandomizationConfig, physics_from_config

log = logging.getLogger(__name__)

RECORD = "finetune.json"
STATE = "state.json"
CURRICULUM = "curriculum.json"
RLLIB_DIR = "rllib"


@dataclass
class ResidualSettings:
    """``residual.*``: the correction network and its bound."""

    alpha: float = 0.2  # α: applied action = clip(a_base + α·δ, -1, 1), |δ| <= 1
    hidden_dim: int = 256  # actor (the deployed residual) MLP width
    num_layers: int = 2  # actor hidden layers
    log_std_init: float = -1.0  # initial log std of δ's Gaussian (exploration noise α·e^-1)
    vf_hidden_dim: int = 256  # critic MLP width
    vf_num_layers: int = 2  # critic hidden layers


@dataclass
class PPOSettings:
    """``ppo.*``: RLlib PPO's training settings."""

    train_batch_size: int = 4000  # env steps per iteration (per learner)
    minibatch_size: int = 500  # SGD minibatch
    num_epochs: int = 5  # passes over each batch
    lr: float = 3e-4  # Adam learning rate (constant)
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # GAE λ
    clip_param: float = 0.2  # PPO ratio clip
    vf_clip_param: float = 10.0  # value clip (returns are O(success_bonus))
    vf_loss_coeff: float = 0.5  # value loss weight
    entropy_coeff: float = 0.0  # entropy bonus
    use_kl_loss: bool = True  # KL penalty to the sampling policy (RLlib's adaptive coefficient)
    kl_coeff: float = 0.2  # its initial coefficient
    grad_clip: float = 0.5  # global gradient norm clip
    vf_warmup_iterations: int = 0  # first iterations train the critic only (the actor frozen)


@dataclass
class CurriculumSettings:
    """``curriculum.*``: how episodes are spread over (task, region) arms."""

    mode: str = "lp"  # lp (learning progress, curricula.LPSampler) | uniform
    bins: dict[str, int] = field(default_factory=dict)  # regions: {field: bins} of randomize.*
    window: int = 10  # scores per arm in the learning-progress window (even)
    epsilon: float = 0.1  # uniform exploration mass
    floor: float | None = None  # minimum arm probability (null: a quarter of uniform)
    min_episodes: int = 4  # episodes an arm needs for one score
    score: str = "success"  # success (0/1 per episode) | return (mean reward per step / 10)


@dataclass
class FinetuneRayConfig(RayConfig):
    """``ray.*`` of finetune: the cluster, the env runners and the learner."""

    num_workers: int | None = None  # env runners (Ray actors); null: cluster CPUs - 1, >= 1
    cpus_per_worker: float = 1.0  # CPUs each env runner reserves
    num_envs_per_worker: int = 4  # sub-envs per env runner (one batched policy forward)
    use_gpu: bool | None = None  # the learner on a GPU; null: when the cluster has one
    num_learners: int = 0  # 0: the learner in the driver; >= 1: learner actors
    restart_delay_s: float = 5.0  # delay before a failed env runner is restarted
    max_restarts: int = 100  # env runner restarts allowed in a run
    sample_timeout_s: float = 600.0  # an iteration's sampling may take this long (busy machines)


@dataclass
class FinetuneConfig:
    """``robolearn finetune``: residual PPO on top of a frozen policy, with a curriculum."""

    checkpoint: str = MISSING  # the base policy (run or checkpoint dir; it stays frozen)
    suite: str = ""  # the tasks: MT1:<task> | MT:<a>+<b> | MT10 ...; "": the base policy's
    out: str = ""  # the fine-tuning run (default runs/finetune-<time>); re-run to resume
    env_steps: int = 200_000  # env-step budget of the whole run
    seed: int = 0  # episode streams and PPO's initialisation
    params: ParamsConfig = field(default_factory=ParamsConfig)  # training under a TaskParams point
    randomize: RandomizationConfig = field(default_factory=RandomizationConfig)  # or a box
    distribution: str = ""  # or a task distribution file (its components become arms)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    residual: ResidualSettings = field(default_factory=ResidualSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    horizon: int = 500  # steps per training episode at most
    reward_scale: float = 0.01  # × Meta-World's reward (<= 10 per step)
    success_bonus: float = 10.0  # added at the first success step
    terminate_on_success: bool = True  # end training episodes at success (as evaluation does)
    eval_episodes: int = 20  # held-out goals per task evaluated at the end (0: none)
    eval_seed: int = 1000  # their goal seed (never drawn for training)
    eval_num_envs: int = 10  # lock-step envs per evaluation batch
    eval_base: bool = True  # evaluate the base policy on the same goals first (once per run)
    eval_every: int = 0  # also evaluate every N iterations (0: only at the end)
    checkpoint_every: int = 10  # iterations between checkpoints (and at the end)
    keep_checkpoints: int = 2  # checkpoints kept
    fast: bool = True  # sim's fast step (identical results)
    device: str = "auto"  # evaluation device of the fine-tuned policy
    num_threads: int = 0  # torch threads of the driver (learner); 0: leave as is
    tensorboard: bool = True  # TensorBoard events in <out>/tb
    progress: bool = True  # progress bar on the terminal
    overwrite: bool = False  # start `out` over instead of resuming it
    ray: FinetuneRayConfig = field(default_factory=FinetuneRayConfig)
    run_dir: str = ""  # where config/log/summary go (default outputs/finetune/<time>)

    def __post_init__(self) -> None:
        if self.checkpoint in (MISSING, None, ""):
            raise ConfigError("missing required option checkpoint: pass checkpoint=<run dir> of "
                              "the base policy (see `robolearn finetune --help`)")
        for name, low in (("env_steps", 1), ("horizon", 1), ("eval_episodes", 0),
                          ("eval_seed", 0), ("eval_num_envs", 1), ("eval_every", 0),
                          ("checkpoint_every", 1), ("keep_checkpoints", 1), ("seed", 0),
                          ("num_threads", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"Got {name}={getattr(self, name)}, expected >= {low}")
        if self.horizon > 500:
            raise ConfigError(f"Got horizon={self.horizon}, expected <= 500 (Meta-World's)")
        if not self.reward_scale > 0 or not self.success_bonus >= 0:
            raise ConfigError(f"Got reward_scale={self.reward_scale}, success_bonus="
                              f"{self.success_bonus}; expected reward_scale > 0, bonus >= 0")
        r, p, c, ray = self.residual, self.ppo, self.curriculum, self.ray
        if not 0 < r.alpha <= 2:
            raise ConfigError(f"Got residual.alpha={r.alpha}, expected 0 < alpha <= 2")
        for name, value, low in (("residual.hidden_dim", r.hidden_dim, 1),
                                 ("residual.num_layers", r.num_layers, 1),
                                 ("residual.vf_hidden_dim", r.vf_hidden_dim, 1),
                                 ("residual.vf_num_layers", r.vf_num_layers, 1),
                                 ("ppo.train_batch_size", p.train_batch_size, 2),
                                 ("ppo.minibatch_size", p.minibatch_size, 1),
                                 ("ppo.num_epochs", p.num_epochs, 1),
                                 ("ppo.vf_warmup_iterations", p.vf_warmup_iterations, 0),
                                 ("curriculum.window", c.window, 2),
                                 ("curriculum.min_episodes", c.min_episodes, 1),
                                 ("ray.num_envs_per_worker", ray.num_envs_per_worker, 1),
                                 ("ray.num_learners", ray.num_learners, 0),
                                 ("ray.max_restarts", ray.max_restarts, 0)):
            if value < low:
                raise ConfigError(f"Got {name}={value}, expected >= {low}")
        if p.minibatch_size > p.train_batch_size:
            raise ConfigError(f"Got ppo.minibatch_size={p.minibatch_size} > ppo.train_batch_size"
                              f"={p.train_batch_size}; expected minibatch <= batch")
        if not (p.lr > 0 and 0 < p.gamma <= 1 and 0 <= p.gae_lambda <= 1 and p.clip_param > 0):
            raise ConfigError(f"Got ppo.lr={p.lr}, gamma={p.gamma}, gae_lambda={p.gae_lambda}, "
                              f"clip_param={p.clip_param}; expected lr > 0, 0 < gamma <= 1, "
                              "0 <= gae_lambda <= 1, clip_param > 0")
        _check_curriculum(c)
        if ray.num_workers is not None and ray.num_workers < 0:
            raise ConfigError(f"Got ray.num_workers={ray.num_workers}, expected >= 0 (0: sample "
                              "in the driver) or null")
        if ray.restart_delay_s < 0 or not ray.sample_timeout_s > 0:
            raise ConfigError(f"Got ray.restart_delay_s={ray.restart_delay_s}, sample_timeout_s="
                              f"{ray.sample_timeout_s}; expected >= 0 and > 0")
        try:
            physics_from_config(self.params, self.randomize, self.distribution)
        except (TypeError, ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from None
        if c.bins and self.distribution:
            raise ConfigError("Got curriculum.bins with distribution=; the regions of a "
                              "distribution file are its components (give bins with randomize.*)")


def _check_curriculum(c: CurriculumSettings) -> None:
    import sim

    modes = ("lp", "uniform")  # robolearn.rl.callbacks.MODES (that module imports Ray)
    if c.mode not in modes:
        from robolearn.errors import unknown

        raise ConfigError(unknown("curriculum.mode", c.mode, modes))
    if c.score not in ("success", "return"):
        from robolearn.errors import unknown

        raise ConfigError(unknown("curriculum.score", c.score, ("success", "return")))
    if c.window % 2:
        raise ConfigError(f"Got curriculum.window={c.window}, expected an even number (two "
                          f"halves), e.g. {c.window + 1}")
    if not 0.0 <= c.epsilon <= 1.0 or (c.floor is not None and not 0.0 <= c.floor <= 1.0):
        raise ConfigError(f"Got curriculum.epsilon={c.epsilon}, floor={c.floor}; expected "
                          "probabilities in [0, 1]")
    fields = sim.TaskParams.field_names()
    for name, n in c.bins.items():
        if name not in fields:
            from robolearn.errors import did_you_mean

            raise ConfigError(f"Got curriculum.bins.{name}: not a TaskParams field."
                              f"{did_you_mean(name, fields)} Fields: {', '.join(fields)}")
        if int(n) < 1:
            raise ConfigError(f"Got curriculum.bins.{name}={n}, expected >= 1")


# ----------------------------------------------------------------------------- the plan
def resolve_tasks(cfg: FinetuneConfig, base_tasks: list[str]) -> tuple[list[str], Any]:
    """The tasks to fine-tune on (the suite's train tasks, or the base's) and the suite."""
    import sim

    if cfg.suite:
        suite = sim.get_suite(cfg.suite)
        tasks = list(suite.train_tasks)
    else:
        suite = sim.Suite("MT:" + "+".join(base_tasks), tuple(base_tasks), tuple(base_tasks),
                          True)
        tasks = list(base_tasks)
    unknown = [t for t in tasks if t not in base_tasks]
    if unknown:
        raise ConfigError(f"the base policy {cfg.checkpoint} was not trained on {unknown}; it "
                          f"knows {base_tasks}. Fine-tune on its tasks (suite=MT1:<task>, "
                          "MT:<a>+<b>) or leave suite= empty for all of them")
    return tasks, suite


def base_distribution(cfg: FinetuneConfig, tasks: list[str]) -> Any:
    """The curriculum's base distribution: its components are the regions of the arms."""
    import sim
    from curricula import Box, Component, EmpiricalParams, RegionGrid, TaskDistribution
    from robolearn.rollout.physics import FixedPhysics, RangePhysics

    physics = physics_from_config(cfg.params, cfg.randomize, cfg.distribution)
    if cfg.distribution:
        dist = physics.distribution
        missing = [t for t in tasks if t not in dist.task_names]
        if missing:
            raise ConfigError(f"distribution={cfg.distribution} does not cover task(s) {missing}"
                              f"; it covers {list(dist.task_names)}")
        comps = []
        for c in dist.components:
            applies = [t for t in tasks if c.applies_to(t)]
            if applies:
                comps.append(Component(c.name, c.factors, c.weight, tasks=tuple(applies),
                                       provenance=c.provenance))
        return TaskDistribution(tasks, comps, description=f"from {cfg.distribution}")
    if isinstance(physics, RangePhysics):
        box = Box.from_param_ranges(physics.ranges)
        varying = {k: v for k, v in box.ranges.items() if v[0] != v[1]}
        box = Box(varying)
        if cfg.curriculum.bins:
            return RegionGrid(box, dict(cfg.curriculum.bins)).distribution(
                tasks, description="randomize.* split by curriculum.bins")
        return TaskDistribution(tasks, [Component("box", (box,))], description="randomize.*")
    assert isinstance(physics, FixedPhysics)
    point = physics.params if physics.params is not None else sim.TaskParams()
    changed = {k: v for k, v in point.to_dict().items() if v != getattr(sim.TaskParams(), k)}
    factors = (EmpiricalParams(list(changed), [tuple(changed.values())]),) if changed else ()
    return TaskDistribution(tasks, [Component("point" if changed else "stock", factors)],
                            description="params.*" if changed else "stock physics")


def run_record(cfg: FinetuneConfig, base_ckpt: Path, tasks: list[str], base_dist: Any
               ) -> dict[str, Any]:
    """The settings that define a run (a resume must ask for the same)."""
    base_cfg = json.loads((base_ckpt / "config.json").read_text())
    return {
        "base_checkpoint": str(base_ckpt),
        "base_step": base_cfg.get("step"),
        "tasks": tasks,
        "distribution": base_dist.fingerprint(),
        "seed": cfg.seed,
        "residual": dataclasses.asdict(cfg.residual),
        "ppo": dataclasses.asdict(cfg.ppo),
        "curriculum": dataclasses.asdict(cfg.curriculum),
        "horizon": cfg.horizon,
        "reward_scale": cfg.reward_scale,
        "success_bonus": cfg.success_bonus,
        "terminate_on_success": cfg.terminate_on_success,
        "eval_seed": cfg.eval_seed,
    }


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: run {a!r}, asked {b!r}")
    return out


# ----------------------------------------------------------------------------- RLlib
def env_runners(cfg: FinetuneConfig) -> int:
    """``ray.num_workers``, or the cluster's CPUs less one for the driver (at least 1)."""
    from robolearn.cluster import cluster_resources

    if cfg.ray.num_workers is not None:
        return int(cfg.ray.num_workers)
    cpus = cluster_resources().get("CPU", 1.0)
    return max(1, int((cpus - 1) // max(cfg.ray.cpus_per_worker, 1e-9)))


def gpu_learner(cfg: FinetuneConfig) -> tuple[bool, int]:
    """(learner on a GPU?, number of learner actors): GPUs when asked or when the cluster has
    them; a GPU learner runs in an actor when this driver itself has no CUDA device."""
    import torch

    from robolearn.cluster import cluster_resources

    gpus = cluster_resources().get("GPU", 0.0)
    use = bool(gpus > 0) if cfg.ray.use_gpu is None else bool(cfg.ray.use_gpu)
    learners = int(cfg.ray.num_learners)
    if use and learners == 0 and not torch.cuda.is_available():
        learners = 1  # the cluster's GPU is elsewhere: a learner actor goes there
    return use, learners


def build_config(cfg: FinetuneConfig, env_config: dict[str, Any], spaces: tuple[Any, Any],
                 module_config: dict[str, Any]) -> Any:
    """The RLlib ``PPOConfig`` of the run (new API stack)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from robolearn.cluster import check_resources
    from robolearn.rl.callbacks import CurriculumCallback
    from robolearn.rl.module import ResidualPPOModule
    from robolearn.rl.residual import RLlibResidualEnv

    n = env_runners(cfg)
    if n:
        check_resources("robolearn finetune (env runners)", n, cfg.ray.cpus_per_worker)
    use_gpu, learners = gpu_learner(cfg)
    if use_gpu:
        check_resources("robolearn finetune (learner)", max(learners, 1), 0.0, 1.0)
    p = cfg.ppo
    obs_space, act_space = spaces
    return (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(env=RLlibResidualEnv, env_config=env_config,
                     observation_space=obs_space, action_space=act_space)
        .env_runners(num_env_runners=n, num_envs_per_env_runner=cfg.ray.num_envs_per_worker,
                     num_cpus_per_env_runner=cfg.ray.cpus_per_worker,
                     rollout_fragment_length="auto", batch_mode="truncate_episodes",
                     sample_timeout_s=cfg.ray.sample_timeout_s)
        .learners(num_learners=learners, num_gpus_per_learner=1 if use_gpu else 0)
        .training(lr=p.lr, gamma=p.gamma, lambda_=p.gae_lambda, clip_param=p.clip_param,
                  vf_clip_param=p.vf_clip_param, vf_loss_coeff=p.vf_loss_coeff,
                  entropy_coeff=p.entropy_coeff, use_kl_loss=p.use_kl_loss,
                  kl_coeff=p.kl_coeff, grad_clip=p.grad_clip,
                  train_batch_size_per_learner=p.train_batch_size,
                  minibatch_size=p.minibatch_size, num_epochs=p.num_epochs)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=ResidualPPOModule,
                                               model_config=module_config))
        .callbacks(CurriculumCallback)
        .fault_tolerance(restart_failed_env_runners=True,
                         max_num_env_runner_restarts=cfg.ray.max_restarts,
                         delay_between_env_runner_restarts_s=cfg.ray.restart_delay_s)
        .debugging(seed=cfg.seed, log_level="WARN")
    )


def set_actor_trainable(algo: Any, trainable: bool) -> None:
    """Freezes (or thaws) the actor and its log std on every learner: the critic warm-up,
    so the first policy updates do not follow an untrained value function's advantages."""
    def apply(learner: Any, _flag: bool = trainable) -> None:
        module = learner.module["default_policy"]
        module.actor.requires_grad_(_flag)
        module.log_std.requires_grad_(_flag)

    algo.learner_group.foreach_learner(apply)


def residual_from_algorithm(algo: Any, module_config: dict[str, Any]) -> Any:
    """The learner's current actor as a :class:`policies.residual.ResidualPolicy` (CPU)."""
    import numpy as np
    import torch

    from policies.residual import ResidualConfig, ResidualPolicy

    weights = algo.learner_group.get_weights()
    state = weights.get("default_policy", weights)
    rcfg = ResidualConfig(obs_dim=module_config["obs_dim"], action_dim=module_config["action_dim"],
                          num_tasks=module_config["num_tasks"],
                          hidden_dim=module_config["hidden_dim"],
                          num_layers=module_config["num_layers"], alpha=module_config["alpha"])
    residual = ResidualPolicy(rcfg)
    actor = {k[len("actor."):]: torch.as_tensor(np.asarray(v)).float()
             for k, v in state.items() if k.startswith("actor.")}
    residual.load_state_dict(actor)
    return residual


# ----------------------------------------------------------------------------- the run
class _Metrics:
    """metrics.jsonl (always) and TensorBoard (optional), one record per iteration."""

    def __init__(self, out: Path, tensorboard: bool, iteration: int) -> None:
        self.path = out / "metrics.jsonl"
        if self.path.is_file():  # a resume: drop what came after the checkpoint resumed from
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("iteration", 0) <= iteration]
            tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, self.path)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tb"), purge_step=iteration or None)

    def log(self, step: int, values: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(values) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iteration":
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _evaluate(agent: Any, cfg: FinetuneConfig, suite: Any, tasks: list[str]) -> dict[str, Any]:
    import sim
    from robolearn.evaluate import evaluate_agent

    physics = physics_from_config(cfg.params, cfg.randomize, cfg.distribution)
    sub = sim.Suite(suite.name, tuple(tasks), tuple(tasks), suite.goal_observable)
    result = evaluate_agent(agent, sub, episodes_per_task=cfg.eval_episodes, seed=cfg.eval_seed,
                            num_envs=cfg.eval_num_envs, physics=physics, fast=cfg.fast,
                            progress=cfg.progress, horizon=cfg.horizon)
    return {"success_by_task": result.success_by_task, "mean_success": result.mean_success,
            "episodes_per_task": cfg.eval_episodes, "eval_seed": cfg.eval_seed,
            "physics": result.physics, "seconds": round(result.seconds, 2),
            "env_steps": result.env_steps}


def _learner_stats(result: dict[str, Any]) -> dict[str, float]:
    learner = (result.get("learners") or {}).get("default_policy") or {}
    out = {}
    for key in ("policy_loss", "vf_loss", "mean_kl_loss", "entropy", "curr_kl_coeff",
                "vf_explained_var"):
        v = learner.get(key)
        if isinstance(v, (int, float)):
            out[f"learner/{key}"] = float(v)
    return out


def _episode_stats(episodes: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"rl/episodes": len(episodes)}
    if episodes:
        out["rl/success"] = sum(e["success"] for e in episodes) / len(episodes)
        out["rl/episode_return"] = sum(e["return"] for e in episodes) / len(episodes)
        out["rl/episode_length"] = sum(e["length"] for e in episodes) / len(episodes)
    for t in tasks:
        eps = [e for e in episodes if e["task"] == t]
        if eps:
            out[f"rl/success/{t}"] = sum(e["success"] for e in eps) / len(eps)
    return out


def run_finetune(cfg: FinetuneConfig, run_dir: Path) -> dict[str, Any]:
    """``robolearn finetune``: fine-tune (or resume), evaluate, print the before/after table.

    Args:
        cfg: The :class:`FinetuneConfig`.
        run_dir: The command's run directory (config, log, summary).

    Returns:
        The summary (also ``<out>/summary.json``).
    """
    from robolearn.checkpoint import resolve_checkpoint
    from robolearn.cluster import ray_session
    from robolearn.runtime import load_policy

    base_ckpt = resolve_checkpoint(cfg.checkpoint)
    base = load_policy(base_ckpt, device="cpu")
    if getattr(base, "base", None) is not None:
        raise ConfigError(f"checkpoint={cfg.checkpoint} is already a base + residual checkpoint; "
                          "fine-tune from a trained policy (its base_checkpoint)")
    tasks, suite = resolve_tasks(cfg, list(base.tasks))
    base_dist = base_distribution(cfg, tasks)
    out = Path(cfg.out) if cfg.out else Path("runs") / f"finetune-{time.strftime('%Y%m%d-%H%M%S')}"
    record = run_record(cfg, base_ckpt, tasks, base_dist)
    resume = _prepare_out(out, record, cfg.overwrite)
    if cfg.num_threads:
        import torch

        torch.set_num_threads(cfg.num_threads)

    from robolearn.rl.callbacks import Curriculum

    if resume is not None:
        curriculum = Curriculum.from_state_dict(json.loads((resume / CURRICULUM).read_text()))
        state = json.loads((resume / STATE).read_text())
    else:
        c = cfg.curriculum
        curriculum = Curriculum(base_dist, mode=c.mode, window=c.window, epsilon=c.epsilon,
                                floor=c.floor, min_episodes=c.min_episodes, seed=cfg.seed,
                                score=c.score)
        state = {"iteration": 0, "env_steps": 0, "wall_s": 0.0, "restarts": 0}
    with (out / "launches.jsonl").open("a") as f:
        f.write(json.dumps({"time": time.time(), "iteration": state["iteration"],
                            "env_steps": state["env_steps"], "pid": os.getpid()}) + "\n")

    report: dict[str, Any] = {"out": str(out), "base_checkpoint": str(base_ckpt), "tasks": tasks}
    if cfg.eval_episodes and cfg.eval_base:
        path = out / "eval_base.json"
        if path.is_file():
            report["base"] = json.loads(path.read_text())
        else:
            log.info("evaluating the base policy on %d held-out goals per task", cfg.eval_episodes)
            report["base"] = _evaluate(base, cfg, suite, tasks)
            _write_json(path, report["base"])

    with ray_session(cfg.ray):
        trained = _train(cfg, out, base, base_ckpt, tasks, suite, curriculum, state, resume)
    report |= trained
    if cfg.eval_episodes:
        agent = load_policy(out, device=cfg.device)
        report["finetuned"] = _evaluate(agent, cfg, suite, tasks)
        _write_json(out / "eval_final.json", report["finetuned"])
    _write_json(out / "summary.json", report)
    _print_table(report, tasks)
    return report


def _prepare_out(out: Path, record: dict[str, Any], overwrite: bool) -> Path | None:
    """Creates ``out`` or checks it is this run; returns the checkpoint to resume from."""
    from robolearn.checkpoint import LATEST

    if overwrite and out.exists():
        if not (out / RECORD).is_file():
            raise ReuseError(f"out={out} exists and is not a finetune run; overwrite=true only "
                             "replaces a finetune run. Give another out=")
        shutil.rmtree(out)
    if out.exists() and any(out.iterdir()):
        if not (out / RECORD).is_file():
            raise ReuseError(f"out={out} exists and is not a finetune run (no {RECORD}); give "
                             "another out=")
        old = json.loads((out / RECORD).read_text())
        diff = _differences(old, record)
        if diff:
            raise ReuseError(
                f"out={out} holds a finetune run with other settings (" + "; ".join(diff[:6])
                + "). Re-run with its settings to continue it, overwrite=true to start it over, "
                "or give another out="
            )
        link = out / LATEST
        if link.exists():
            ckpt = link.resolve()
            log.info("resuming %s from %s", out, ckpt.name)
            return ckpt
        return None
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / RECORD, record)
    return None


def _train(cfg: FinetuneConfig, out: Path, base: Any, base_ckpt: Path, tasks: list[str],
           suite: Any, curriculum: Any, state: dict[str, Any], resume: Path | None
           ) -> dict[str, Any]:
    import gymnasium as gym
    import numpy as np
    from tqdm.auto import tqdm

    from robolearn.rl.callbacks import find_callback, push_distribution
    from robolearn.rl.module import model_config

    if state["env_steps"] >= cfg.env_steps:
        log.info("%s has its %d env steps already (%d iterations); not training more", out,
                 state["env_steps"], state["iteration"])
        return {"iterations": state["iteration"], "env_steps": state["env_steps"],
                "wall_s": state["wall_s"], "restarts": state["restarts"], "trained_now": 0}
    env_config = {
        "base": str(base_ckpt), "tasks": tasks, "distribution": curriculum.distribution.to_dict(),
        "alpha": cfg.residual.alpha, "horizon": cfg.horizon, "reward_scale": cfg.reward_scale,
        "success_bonus": cfg.success_bonus, "terminate_on_success": cfg.terminate_on_success,
        "goal_observable": suite.goal_observable, "fast": cfg.fast, "seed": cfg.seed,
        "heldout_seed": cfg.eval_seed, "heldout_episodes": max(cfg.eval_episodes, 200),
    }
    if cfg.ray.address:  # other machines may not see this path: ship the files
        from robolearn.rollout import checkpoint_files

        env_config["base_files"] = checkpoint_files(str(base_ckpt))
    do, da, k = base.obs_dim, base.action_dim, len(tasks)
    spaces = (gym.spaces.Box(-np.inf, np.inf, (do + k + da,), np.float32),
              gym.spaces.Box(-1.0, 1.0, (da,), np.float32))
    norm = base.policy.obs_encoder.obs_normalizer if hasattr(base.policy, "obs_encoder") else None
    r = cfg.residual
    mcfg = model_config(obs_dim=do, action_dim=da, num_tasks=k, hidden_dim=r.hidden_dim,
                        num_layers=r.num_layers, alpha=r.alpha, log_std_init=r.log_std_init,
                        vf_hidden_dim=r.vf_hidden_dim, vf_num_layers=r.vf_num_layers,
                        obs_center=None if norm is None else norm.center.tolist(),
                        obs_scale=None if norm is None else norm.scale.tolist())
    algo = build_config(cfg, env_config, spaces, mcfg).build_algo()
    callback = find_callback(algo)
    callback.curriculum = curriculum
    metrics = _Metrics(out, cfg.tensorboard, state["iteration"])
    start_iteration, start_steps, wall0 = state["iteration"], state["env_steps"], state["wall_s"]
    try:
        if resume is not None:
            algo.restore_from_path(str(resume / RLLIB_DIR))
            push_distribution(algo.env_runner_group, curriculum.distribution.to_dict())
        runners = algo.env_runner_group.num_remote_env_runners()
        log.info("finetune: %d env runner(s) × %d envs, learner on %s; %d of %d env steps done",
                 runners, cfg.ray.num_envs_per_worker,
                 "GPU" if gpu_learner(cfg)[0] else "CPU", state["env_steps"], cfg.env_steps)
        warmup = cfg.ppo.vf_warmup_iterations
        if state["iteration"] < warmup:
            set_actor_trainable(algo, False)
            log.info("critic warm-up: the actor is frozen for the first %d iterations", warmup)
        bar = tqdm(total=cfg.env_steps, initial=state["env_steps"], unit="step",
                   desc="finetune", disable=not cfg.progress)
        t_start = time.perf_counter()
        last_save = state["iteration"]
        while state["env_steps"] < cfg.env_steps:
            if warmup and state["iteration"] == warmup:
                set_actor_trainable(algo, True)
                log.info("critic warm-up done: training the actor from iteration %d", warmup + 1)
            t0 = time.perf_counter()
            result = algo.train()
            dt = time.perf_counter() - t0
            sampled = (result.get("env_runners") or {}).get("num_env_steps_sampled", 0)
            steps = int(sampled) if isinstance(sampled, (int, float)) and sampled == sampled else 0
            if steps == 0:  # every env runner is down: RLlib restarts them (ray.restart_delay_s)
                log.warning("iteration %d sampled nothing (env runners down); waiting for their "
                            "restart", state["iteration"] + 1)
            state["iteration"] += 1
            state["env_steps"] += steps
            state["wall_s"] = wall0 + time.perf_counter() - t_start
            state["restarts"] = int(state.get("restarts_before", 0)) + callback.recreated
            values = {"iteration": state["iteration"], "env_steps": state["env_steps"],
                      "time_s": round(state["wall_s"], 2),
                      "rl/env_steps_per_s": round(steps / dt, 1) if dt > 0 else 0.0,
                      "rl/iteration_s": round(dt, 2), "rl/restarts": state["restarts"],
                      **_episode_stats(callback.last_episodes, tasks), **_learner_stats(result),
                      "curriculum/version": int(curriculum.distribution.version)}
            for arm, p in curriculum.probabilities().items():
                values[f"curriculum/p/{arm}"] = round(p, 4)
            metrics.log(state["env_steps"], values)
            bar.update(steps)
            bar.set_postfix(steps_s=values["rl/env_steps_per_s"],
                            success=round(values.get("rl/success", float("nan")), 3),
                            ret=round(values.get("rl/episode_return", float("nan")), 1),
                            refresh=False)
            per_task = " ".join(f"{t}={values[f'rl/success/{t}']:.2f}" for t in tasks
                                if f"rl/success/{t}" in values)
            log.info("iter %d: %d env steps (%.0f/s), %d episodes, success %s%s",
                     state["iteration"], state["env_steps"], values["rl/env_steps_per_s"],
                     values["rl/episodes"], f"{values.get('rl/success', float('nan')):.3f}",
                     f" ({per_task})" if len(tasks) > 1 else "")
            done = state["env_steps"] >= cfg.env_steps
            if done or state["iteration"] - last_save >= cfg.checkpoint_every:
                _save(algo, out, base_ckpt, tasks, curriculum, state, mcfg, cfg.keep_checkpoints)
                last_save = state["iteration"]
            if cfg.eval_every and cfg.eval_episodes and not done and (
                    state["iteration"] % cfg.eval_every == 0) and (out / "checkpoint").exists():
                from robolearn.runtime import load_policy

                ev = _evaluate(load_policy(out, device=cfg.device), cfg, suite, tasks)
                metrics.log(state["env_steps"], {"iteration": state["iteration"],
                                                 "eval/success": ev["mean_success"],
                                                 **{f"eval/success/{t}": s for t, s in
                                                    ev["success_by_task"].items()}})
        bar.close()
    finally:
        metrics.close()
        algo.stop()
    trained = state["env_steps"] - start_steps
    return {"iterations": state["iteration"], "env_steps": state["env_steps"],
            "wall_s": round(state["wall_s"], 1), "restarts": state["restarts"],
            "trained_now": trained, "iterations_now": state["iteration"] - start_iteration,
            "env_steps_per_s": round(trained / max(state["wall_s"] - wall0, 1e-9), 1),
            "curriculum": curriculum.summary()}


def _save(algo: Any, out: Path, base_ckpt: Path, tasks: list[str], curriculum: Any,
          state: dict[str, Any], mcfg: dict[str, Any], keep: int) -> Path:
    """One checkpoint: the deployable policy, the curriculum, the state, RLlib's own."""
    from robolearn.checkpoint import install_checkpoint
    from robolearn.rl.residual import save_residual_checkpoint

    ckpts = out / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    final = ckpts / f"iter_{state['iteration']:06d}"
    tmp = ckpts / f".tmp_iter_{state['iteration']:06d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    residual = residual_from_algorithm(algo, mcfg)
    save_residual_checkpoint(tmp, base_ckpt, residual, tasks, info={
        "algorithm": "ppo", "iteration": state["iteration"], "env_steps": state["env_steps"],
        "curriculum_version": int(curriculum.distribution.version)})
    _write_json(tmp / CURRICULUM, curriculum.state_dict())
    saved = dict(state)
    saved["restarts_before"] = state["restarts"]
    _write_json(tmp / STATE, saved)
    algo.save_to_path(str((tmp / RLLIB_DIR).resolve()))
    install_checkpoint(out, tmp, final)
    for old in sorted(p for p in ckpts.iterdir() if p.name.startswith("iter_"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _print_table(report: dict[str, Any], tasks: list[str]) -> None:
    base = (report.get("base") or {}).get("success_by_task", {})
    fine = (report.get("finetuned") or {}).get("success_by_task", {})
    width = max(len(t) for t in tasks)
    lines = [f"{'task'.ljust(width)}  base   finetuned"]
    for t in tasks:
        b = f"{base[t]:.3f}" if t in base else "  -  "
        f = f"{fine[t]:.3f}" if t in fine else "  -  "
        lines.append(f"{t.ljust(width)}  {b}  {f}")
    if base or fine:
        mb = (report.get("base") or {}).get("mean_success")
        mf = (report.get("finetuned") or {}).get("mean_success")
        lines.append(f"{'mean'.ljust(width)}  {'' if mb is None else f'{mb:.3f}'}  "
                     f"{'' if mf is None else f'{mf:.3f}'}")
    print("\n".join(lines))
    print(f"{report.get('env_steps', 0)} env steps in {report.get('iterations', 0)} iterations "
          f"({report.get('wall_s', 0)} s); checkpoint: {report['out']}/checkpoint "
          f"(robolearn.load_policy, robolearn evaluate checkpoint={report['out']})")
