"""The one trainer, its objectives, run directories and Ray Train.

    from robolearn.train import Trainer, train
    result = train(cfg)                       # robolearn train: local or Ray Train, resumable
    Trainer(cfg, run_dir, objective=my_objective, episode_weights=w).run()

- :mod:`robolearn.train.trainer`: :class:`Trainer` (policy, data, optimiser, EMA, checkpoints,
  exact resume);
- :mod:`robolearn.train.objectives`: ``objective(policy, batch) -> (loss, metrics)``;
- :mod:`robolearn.train.rundir`: start, resume or refuse a run directory;
- :mod:`robolearn.train.ray`: the same Trainer on Ray Train (``trainer=ray``);
- :mod:`robolearn.train.config`: ``TrainConfig`` (validated at the CLI edge).
"""

from __future__ import annotations

from typing import Any

from robolearn.train.config import TrainConfig, TrainOptions, WeightsConfig, check_options
from robolearn.train.objectives import OBJECTIVES, BehaviourCloning, Objective, make_objective
from robolearn.train.rundir import (
    RunPlan,
    apply_run_plan,
    check_resumable,
    checkpoint_step,
    default_run_dir,
    finished,
    plan_run_dir,
    prepare_run_dir,
    record_launch,
    restore_or_explain,
)
from robolearn.train.trainer import Trainer, TrainResult, lr_lambda, policy_config_for

__all__ = [
    "OBJECTIVES",
    "BehaviourCloning",
    "Objective",
    "RunPlan",
    "TrainConfig",
    "TrainOptions",
    "TrainResult",
    "Trainer",
    "WeightsConfig",
    "apply_run_plan",
    "check_options",
    "check_resumable",
    "checkpoint_step",
    "default_run_dir",
    "finished",
    "lr_lambda",
    "make_objective",
    "plan_run_dir",
    "policy_config_for",
    "prepare_run_dir",
    "record_launch",
    "restore_or_explain",
    "train",
]


def train(cfg: Any, *, objective: Objective | None = None, episode_weights: Any = None,
          overrides: list[str] | None = None) -> TrainResult:
    """Train per ``cfg`` (a ``TrainConfig``); returns where the checkpoint is.

    ``trainer=local`` trains in this process; ``trainer=ray`` on Ray Train
    (:func:`robolearn.train.ray.train_on_ray`). Both start, resume or refuse ``out`` alike
    (:func:`~robolearn.train.rundir.plan_run_dir`), record each accepted launch
    (``config.yaml``, ``launches.jsonl``) and write the same checkpoints. ``objective`` and
    ``episode_weights`` are for callers in code (curricula, alignment); the CLI names the
    objective with ``objective=`` and weights with ``weights.*``.
    """
    check_options(cfg)
    if cfg.trainer == "ray":
        if objective is not None or episode_weights is not None:
            raise ValueError("trainer=ray builds its objective from the config (objective=, "
                             "weights.*); pass those instead of objects")
        from robolearn.train.ray import train_on_ray

        return train_on_ray(cfg, overrides=overrides)
    plan = plan_run_dir(cfg)
    if plan.finished:
        return finished(plan)
    apply_run_plan(plan)
    trainer = Trainer(cfg, plan.run_dir, objective=objective, episode_weights=episode_weights)
    if plan.resume_from is not None:
        restore_or_explain(trainer, plan.resume_from)
    record_launch(plan, cfg, overrides)
    return trainer.run()
