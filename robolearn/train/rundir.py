"""Training run directories: start, resume or refuse, decided before anything is written.

A run directory written by either trainer::

    runs/<name>/
      checkpoint -> checkpoints/step_0006000     the newest checkpoint (robolearn.checkpoint)
      checkpoints/step_*/                        weights, config.json, training_state/
      config.yaml                                the resolved config of the launch that started it
      launches.jsonl                             one line per accepted launch: time, step resumed
                                                 from, the overrides and what changed
      metrics.jsonl, tb/                         metrics (JSONL always, TensorBoard by default)

The same command again after a crash resumes from the newest checkpoint. A resume must ask for
the run the directory holds: the same dataset (and number of episodes), policy config,
objective and run-defining options (:data:`~robolearn.train.config.RUN_DEFINING`); anything else
is refused with the difference and the fix, and nothing in the directory is touched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from policies import config_to_dict
from robolearn.checkpoint import LATEST, read_config, resolve_checkpoint
from robolearn.data import EpisodeStore
from robolearn.errors import CheckpointError, ReuseError
from robolearn.train.config import RUN_DEFINING
from robolearn.train.trainer import TrainResult, policy_config_for, policy_fields, train_options

log = logging.getLogger(__name__)

RUN_FILES = ("checkpoints", LATEST, "metrics.jsonl", "tb", "ray", "workers.jsonl",
             "config.yaml", "launches.jsonl")
LAUNCHES = "launches.jsonl"


@dataclasses.dataclass
class RunPlan:
    """What a train command will do with its run directory (:func:`plan_run_dir`)."""

    run_dir: Path
    resume_from: Path | None  # the checkpoint to continue from; None: a fresh start
    resume_step: int | None
    clear: bool  # overwrite=true on a directory with a run in it: remove that run first
    finished: bool = False  # resume=true on a finished run: nothing to train

    def finished_result(self) -> TrainResult:
        """The finished run's :class:`TrainResult` (its last logged losses), training nothing."""
        assert self.resume_from is not None and self.resume_step is not None
        last: dict[str, float] = {}
        path = self.run_dir / "metrics.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    last.update(json.loads(line))
        val = last.get("val/loss")
        return TrainResult(
            run_dir=self.run_dir, checkpoint=self.resume_from, steps=self.resume_step,
            seconds=0.0, steps_per_s=0.0, final_train_loss=float(last.get("train/loss", math.nan)),
            final_val_loss=float(val) if val is not None else None,
            resumed_from=self.resume_step,
        )


def default_run_dir(cfg: Any) -> Path:
    return Path("runs") / f"{policy_fields(cfg)['name']}-{time.strftime('%Y%m%d-%H%M%S')}"


def checkpoint_step(ckpt: Path) -> int:
    return int(read_config(ckpt)["step"])


def plan_run_dir(cfg: Any) -> RunPlan:
    """Decide, without touching anything, whether ``out`` starts, resumes or is refused.

    - no checkpoint in ``out``: a fresh run (``resume=true`` is refused: nothing to resume);
    - a checkpoint before ``steps``: resume from it, so the same command after a crash (or a
      killed driver) continues where it stopped; ``resume=true`` says the same explicitly;
    - a checkpoint at ``steps`` (a finished run): refused, unless ``overwrite=true`` (start over)
      or a larger ``steps=`` (continue; the LR schedule then spans the new total); with
      ``resume=true`` it is accepted as it is (nothing to train: the pipeline's second run);
    - ``overwrite=true``: start over, removing the run's checkpoints and metrics.

    Every resume (including accepting a finished run) first checks that the run was made with
    the settings asked for (:func:`check_resumable`).
    """
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    if cfg.resume and cfg.overwrite:
        raise ReuseError("Got resume=true and overwrite=true: pass one of them (resume=true "
                         f"continues the run in {run_dir}, overwrite=true starts it over)")
    has_ckpt = (run_dir / LATEST).exists()
    if cfg.overwrite:
        return RunPlan(run_dir, None, None, clear=any(
            (run_dir / f).exists() or (run_dir / f).is_symlink() for f in RUN_FILES))
    if not has_ckpt:
        if cfg.resume:
            raise FileNotFoundError(
                f"resume=true but {run_dir} has no checkpoint to resume from; drop resume=true "
                "to start a new run there"
            )
        return RunPlan(run_dir, None, None, clear=False)
    ckpt = resolve_checkpoint(run_dir)
    step = checkpoint_step(ckpt)
    check_resumable(cfg, ckpt)
    if step >= cfg.steps:
        if cfg.resume:
            return RunPlan(run_dir, ckpt, step, clear=False, finished=True)
        raise FileExistsError(
            f"{run_dir} holds a finished run (checkpoint at step {step}, steps={cfg.steps}); "
            "pass overwrite=true to train it again from scratch, a larger steps= to continue "
            "it, resume=true to accept it as it is, or another out= for a new run"
        )
    return RunPlan(run_dir, ckpt, step, clear=False)


def run_differences(cfg: Any, ckpt: Path) -> dict[str, tuple[Any, Any]]:
    """``{setting: (the run's, asked)}`` for every run-defining setting that differs."""
    have_cfg = read_config(ckpt)
    with EpisodeStore.open(cfg.dataset, mode="r") as store:
        want_policy = json.loads(json.dumps(config_to_dict(policy_config_for(cfg, store))))
        episodes = len(store)
    diff: dict[str, tuple[Any, Any]] = {}
    have_policy = have_cfg["policy"]
    name_key = "policy"  # the policy's name in a config_to_dict record
    if have_policy.get(name_key) != want_policy.get(name_key):
        diff["policy"] = (have_policy.get(name_key), want_policy.get(name_key))
    else:
        for k in sorted(set(want_policy) | set(have_policy)):
            if want_policy.get(k) != have_policy.get(k):
                diff[f"policy.{k}"] = (have_policy.get(k), want_policy.get(k))
    dataset = str(Path(cfg.dataset).resolve())
    if have_cfg.get("dataset") not in (None, dataset):
        diff["dataset"] = (have_cfg["dataset"], dataset)
    if have_cfg.get("dataset_episodes") not in (None, episodes):
        diff["dataset episodes"] = (have_cfg["dataset_episodes"], episodes)
    have_train = have_cfg.get("train") or {}
    want_train = train_options(cfg)
    for k in RUN_DEFINING:
        default = {"objective": "bc", "weights": want_train.get("weights")}.get(k)
        if k in want_train and have_train.get(k, default) != want_train[k]:
            diff[k] = (have_train.get(k, default), want_train[k])
    return diff


def check_resumable(cfg: Any, ckpt: Path) -> None:
    """Refuses, with the fix, to resume (or accept) a run made with other settings."""
    diff = run_differences(cfg, ckpt)
    if diff:
        what = "; ".join(f"{k}: run {a!r}, asked {b!r}" for k, (a, b) in list(diff.items())[:6])
        raise ReuseError(
            f"{ckpt.parent.parent} holds a run made with other settings ({what}). Pass the "
            "run's settings to continue it, overwrite=true to start it over, or another out= "
            "for a new run"
        )


def apply_run_plan(plan: RunPlan) -> None:
    """Carry out :func:`plan_run_dir`'s decision: clear an overwritten run, create the dir."""
    if plan.clear:
        for sub in RUN_FILES:
            p = plan.run_dir / sub
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    if plan.resume_from is not None:
        log.info("resuming %s from its checkpoint at step %d", plan.run_dir, plan.resume_step)


def record_launch(plan: RunPlan, cfg: Any, overrides: list[str] | None = None) -> None:
    """After a launch is accepted: ``config.yaml`` for a fresh run, a ``launches.jsonl`` line
    for every launch (each segment's settings), both written atomically / appended."""
    options = train_options(cfg)
    run_dir = plan.run_dir
    if plan.resume_from is None or not (run_dir / "config.yaml").exists():
        tmp = run_dir / f".config.yaml.tmp{os.getpid()}"
        tmp.write_text(yaml.safe_dump(options, sort_keys=False))
        os.replace(tmp, run_dir / "config.yaml")
    line = {"time": time.time(), "resumed_from_step": plan.resume_step,
            "finished": plan.finished, "steps": options.get("steps"),
            "overrides": list(overrides or []), "config": options}
    with (run_dir / LAUNCHES).open("a") as fh:
        fh.write(json.dumps(line) + "\n")


def prepare_run_dir(cfg: Any) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint to resume from (None: a fresh start); see
    :func:`plan_run_dir` for when a run starts, resumes or is refused."""
    plan = plan_run_dir(cfg)
    apply_run_plan(plan)
    return plan.run_dir, plan.resume_from


def finished(plan: RunPlan) -> TrainResult:
    log.info("%s already finished (step %d); nothing to train (resume=true)", plan.run_dir,
             plan.resume_step)
    return plan.finished_result()


def restore_or_explain(trainer: Any, ckpt: Path) -> None:
    try:
        trainer.restore(ckpt)
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"cannot resume from {ckpt}: {e}. Was it written with a different policy config or "
            "dataset? Pass overwrite=true to start the run over, or another out= for a new run"
        ) from None
