"""The main job (``robolearn pipeline``): collect → train → evaluate, one command.

Each stage is the same code as its own command (`collect`, `train`, `evaluate`), with the
stages' outputs chained: the store collected is the dataset trained on, the checkpoint trained
is the one evaluated, on the suite collected from.

Re-running it reuses what was made with the same settings, and only that: the demonstration
store and the training run live at paths derived from their settings
(``data/mt10_demos.zarr`` and ``runs/mt10_flow_matching`` for the defaults; other settings get
``data/<suite>_demos-<digest>.zarr`` and ``runs/<suite>_<policy>-<digest>``, the digest of what
differs from the defaults), so a second run with the same settings collects nothing, trains
nothing and re-evaluates, and a run with other settings makes its own. Paths given explicitly
are checked instead: a store or run made with other settings is refused with the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from robolearn.autocurriculum import CurriculumConfig
from robolearn.cluster import RayConfig, RayTrainConfig
from robolearn.collect import CollectConfig
from robolearn.errors import ConfigError
from robolearn.evaluate.config import EvaluateConfig
from robolearn.train.config import (
    RUN_DEFINING,
    TrainConfig,
    TrainOptions,
    policy_group_nodes,
    train_config_from,
)

log = logging.getLogger(__name__)

DEMOS_PATH = "${rl_demos_path:}"
RUN_PATH = "${rl_run_path:}"


def _pipeline_ray_train() -> RayTrainConfig:
    """The pipeline's training stage joins the cluster its top-level `ray` section names."""
    return RayTrainConfig(address="${ray.address}", object_store_mb="${ray.object_store_mb}",
                          dashboard="${ray.dashboard}",
                          connect_timeout_s="${ray.connect_timeout_s}")  # type: ignore[arg-type]


def pipeline_collect(**kw: Any) -> CollectConfig:
    return CollectConfig(**{"out": DEMOS_PATH, "fast": "${fast}", "progress": "${progress}",
                            **kw},  # type: ignore[arg-type]
                         ray="${ray}")


def pipeline_train(**kw: Any) -> TrainOptions:
    base = dict(dataset="${collect.out}", out=RUN_PATH, steps=6000, warmup_steps=300,
                val_every=500, checkpoint_every=2000, log_every=100, progress="${progress}")
    return TrainOptions(**{**base, **kw}, ray=_pipeline_ray_train())


def pipeline_evaluate(**kw: Any) -> EvaluateConfig:
    base = dict(checkpoint="${train.out}", suite="${collect.suite}", fast="${fast}",
                progress="${progress}")
    return EvaluateConfig(**{**base, **kw}, ray="${ray}")  # type: ignore[arg-type]


@dataclass
class PipelineConfig:
    """``robolearn pipeline`` (the main job): collect → train → evaluate, stages chained."""

    defaults: list[Any] = field(default_factory=lambda: [{"policy": "flow_matching"}, "_self_"])
    policy: Any = MISSING  # policy group, as in `robolearn train`
    ray: RayConfig = field(default_factory=RayConfig)  # Ray for every stage (collect/evaluate.ray)
    fast: bool = True  # sim's fast step in collect and evaluate; false: Meta-World's own step
    progress: bool = True  # progress bars of every stage (collect/train/evaluate.progress each)
    collect: CollectConfig = field(default_factory=pipeline_collect)  # as `robolearn collect`
    train: TrainOptions = field(default_factory=pipeline_train)  # as `robolearn train`
    evaluate: EvaluateConfig = field(default_factory=pipeline_evaluate)  # as `robolearn evaluate`
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)  # rounds (mode=lp)
    run_dir: str = ""  # where config/log/summary/report go (default outputs/pipeline/<time>)


# ----------------------------------------------------------------------------- derived paths
def suite_slug(suite: str) -> str:
    """``MT10`` → ``mt10``; ``MT:reach-v3+push-v3`` → ``mt-reach-v3+push-v3`` (path-safe)."""
    return "".join(c if c.isalnum() or c in "+-_." else "-" for c in suite.lower())


def _digest(diff: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(diff, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _value(node: Any, key: str) -> Any:
    """``node[key]`` as plain data (resolved; nested configs as dicts)."""
    from omegaconf import OmegaConf

    value = node[key] if not isinstance(node, dict) else node.get(key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _differs(node: Any, defaults: dict[str, Any], keys: Any) -> dict[str, Any]:
    """The values of ``keys`` in ``node`` that differ from ``defaults`` (only those keys are
    read: a resolver must not resolve the path it is computing)."""
    out = {}
    for k in keys:
        value = _value(node, k)
        if value != defaults.get(k):
            out[k] = value
    return out


_COLLECT_KEYS = ("episodes_per_task", "seed", "expert_noise_std", "stop_on_success", "randomize",
                 "distribution")


def _collect_diff(collect: Any) -> dict[str, Any]:
    diff = _differs(collect, dataclasses.asdict(CollectConfig()), _COLLECT_KEYS)
    if diff.get("distribution"):  # the file's content, not only its name
        from robolearn.rollout.physics import load_distribution

        diff["distribution"] = load_distribution(diff["distribution"]).describe()
    return diff


def demos_path(*, _root_: Any) -> str:
    """The default ``collect.out``: ``data/<suite>_demos.zarr`` (+ a digest of non-default
    collection settings)."""
    diff = _collect_diff(_root_.collect)
    suffix = f"-{_digest(diff)}" if diff else ""
    return f"data/{suite_slug(str(_root_.collect.suite))}_demos{suffix}.zarr"


def run_path(*, _root_: Any) -> str:
    """The default ``train.out``: ``runs/<suite>_<policy>`` (+ a digest of the dataset when it
    is not the default one, of non-default run-defining options and of policy fields)."""
    from omegaconf import OmegaConf

    policy = OmegaConf.to_container(_root_.policy, resolve=True)
    name = str(policy.get("name"))
    diff: dict[str, Any] = _differs(_root_.train, dataclasses.asdict(pipeline_train()),
                                    RUN_DEFINING)
    policy_defaults = policy_group_nodes().get(name, {})
    policy_diff = {k: v for k, v in policy.items() if policy_defaults.get(k) != v}
    if policy_diff:
        diff["policy"] = policy_diff
    curriculum = _value(_root_, "curriculum") or {}
    if curriculum.get("mode", "none") != "none":  # a curriculum run: its own store and run
        diff["curriculum"] = curriculum
        diff.update(_collect_diff(_root_.collect))
    slug = suite_slug(str(_root_.collect.suite))
    dataset = str(_root_.train.dataset)
    if dataset != f"data/{slug}_demos.zarr":
        diff["dataset"] = dataset
    suffix = f"-{_digest(diff)}" if diff else ""
    return f"runs/{slug}_{name}{suffix}"


RESOLVERS = {"rl_demos_path": demos_path, "rl_run_path": run_path}


# ----------------------------------------------------------------------------- the job
def train_config(cfg: PipelineConfig) -> TrainConfig:
    """The pipeline's `train` section + its `policy` group, as a `robolearn train` config; a run
    that has a checkpoint is resumed (accepted as it is when finished) after its settings are
    checked against these."""
    from robolearn.checkpoint import LATEST

    resume = (Path(cfg.train.out) / LATEST).exists() and not cfg.train.overwrite
    return train_config_from(cfg.train, cfg.policy, **({"resume": True} if resume else {}))


def run_pipeline(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    """Runs the three stages; one Ray instance serves every stage that uses Ray."""
    from robolearn.cluster import ray_session, uses_ray

    stages = _run_stages
    if cfg.curriculum.mode != "none":
        from robolearn.autocurriculum import run_curriculum

        if cfg.train.trainer == "ray":
            raise ConfigError("curriculum.mode needs train.trainer=local (each round continues "
                              "the one run in this process; its rollouts still use Ray actors)")
        stages = run_curriculum
    stages_use_ray = (uses_ray(cfg.collect.ray) or uses_ray(cfg.evaluate.ray)
                      or cfg.train.trainer == "ray")
    if not stages_use_ray:
        return stages(cfg, run_dir)
    with ray_session(cfg.ray):
        return stages(cfg, run_dir)


def _run_stages(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    from rich.console import Console

    from robolearn.collect import collect
    from robolearn.evaluate import run_evaluate
    from robolearn.train import train

    console = Console()
    times: dict[str, float] = {}

    console.rule(f"1/3 collect {cfg.collect.suite} → {cfg.collect.out}")
    t0 = time.perf_counter()
    collected = collect(cfg.collect, progress=cfg.collect.progress)
    times["collect"] = time.perf_counter() - t0
    console.print(f"{collected.episodes} episodes in {collected.store} "
                  f"({collected.resumed_episodes} reused), {times['collect']:.0f} s")

    tc = train_config(cfg)
    console.rule(f"2/3 train {tc.policy['name']} → {tc.out}" + (" (resuming)" if tc.resume else ""))
    t0 = time.perf_counter()
    trained = train(tc)
    times["train"] = time.perf_counter() - t0
    console.print(f"{trained.steps} steps, {trained.steps_per_s:.1f} steps/s, final train loss "
                  f"{trained.final_train_loss:.4f}, {times['train']:.0f} s")

    console.rule(f"3/3 evaluate on {cfg.evaluate.suite} ({cfg.evaluate.episodes_per_task} "
                 "episodes per task, held-out goals)")
    t0 = time.perf_counter()
    ec = dataclasses.replace(cfg.evaluate, checkpoint=str(trained.checkpoint), checkpoints=[])
    report = run_evaluate(ec, run_dir / "evaluate")
    times["evaluate"] = time.perf_counter() - t0

    total = sum(times.values())
    console.rule("done")
    console.print(
        f"mean success {report['mean_success']:.3f} on {cfg.evaluate.suite} in "
        f"{total / 60:.1f} min (collect {times['collect']:.0f} s, train {times['train']:.0f} s, "
        f"evaluate {times['evaluate']:.0f} s)\n"
        f"checkpoint: {trained.checkpoint}\n"
        f"report:     {run_dir / 'evaluate' / 'report.json'}\n"
        f"plot:       {run_dir / 'evaluate' / 'success_by_task.png'}\n"
        f"use it:     robolearn.load_policy({str(trained.run_dir)!r})"
    )
    return {
        "collect": collected.to_dict(),
        "train": trained.to_dict(),
        "evaluate": {k: report[k] for k in ("mean_success",) if k in report},
        "report": str(run_dir / "evaluate" / "report.json"),
        "seconds": {**{k: round(v, 1) for k, v in times.items()}, "total": round(total, 1)},
    }
