"""The main job (``robolearn pipeline``): collect → train → evaluate, one command.

Each stage is the same code as its own command (`collect`, `train`, `evaluate`), with the
stages' outputs chained: the store collected is the dataset trained on, the checkpoint trained
is the one evaluated, on the suite collected from. Re-running it reuses what exists: the store
is resumed (nothing to collect when complete) and a training run with a checkpoint is resumed
(nothing to train when finished), so a second run only re-evaluates.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def train_config(cfg: DictConfig) -> DictConfig:
    """The pipeline's `train` section + its `policy` group, as a `robolearn train` config."""
    from robolearn.checkpoint import LATEST

    tc = OmegaConf.create(OmegaConf.to_container(cfg.train, resolve=True))
    tc.policy = OmegaConf.create(OmegaConf.to_container(cfg.policy, resolve=True))
    if (Path(tc.out) / LATEST).exists() and not tc.overwrite:
        tc.resume = True
    OmegaConf.set_struct(tc, True)
    return tc


def run_pipeline(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Runs the three stages; one Ray instance serves every stage that uses Ray."""
    from robolearn.raycluster import ray_session, uses_ray

    stages_use_ray = (uses_ray(cfg.collect.get("ray")) or uses_ray(cfg.evaluate.get("ray"))
                      or cfg.train.get("trainer", "local") == "ray")
    if not stages_use_ray:
        return _run_stages(cfg, run_dir)
    with ray_session(cfg.ray):
        return _run_stages(cfg, run_dir)


def _run_stages(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from rich.console import Console

    from robolearn.collect import collect
    from robolearn.evaluate import run_evaluate
    from robolearn.train import train

    console = Console()
    times: dict[str, float] = {}

    console.rule(f"1/3 collect {cfg.collect.suite} → {cfg.collect.out}")
    t0 = time.perf_counter()
    collected = collect(cfg.collect, progress=cfg.train.progress)
    times["collect"] = time.perf_counter() - t0
    console.print(f"{collected.episodes} episodes in {collected.store} "
                  f"({collected.resumed_episodes} reused), {times['collect']:.0f} s")

    tc = train_config(cfg)
    console.rule(f"2/3 train {tc.policy.name} → {tc.out}" + (" (resuming)" if tc.resume else ""))
    t0 = time.perf_counter()
    trained = train(tc)
    times["train"] = time.perf_counter() - t0
    console.print(f"{trained.steps} steps, {trained.steps_per_s:.1f} steps/s, final train loss "
                  f"{trained.final_train_loss:.4f}, {times['train']:.0f} s")

    console.rule(f"3/3 evaluate on {cfg.evaluate.suite} ({cfg.evaluate.episodes_per_task} "
                 "episodes per task, held-out goals)")
    t0 = time.perf_counter()
    ec = OmegaConf.create(OmegaConf.to_container(cfg.evaluate, resolve=True))
    ec.checkpoint = str(trained.checkpoint)
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
