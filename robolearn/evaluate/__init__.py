"""The evaluator: success under the Meta-World protocol over (task, TaskParams), reports, plots.

    from robolearn.evaluate import evaluate_agent
    result = evaluate_agent(robolearn.load_policy("runs/mt10"), "MT10", episodes_per_task=50)
    result.mean_success, result.success_by_task

:func:`evaluate_agent` is the library call (:mod:`robolearn.evaluate.evaluator`);
:func:`run_evaluate` is ``robolearn evaluate`` (:mod:`robolearn.evaluate.report`); statistics
(IQM, bootstrap CIs) are in :mod:`robolearn.evaluate.stats`.
"""

from robolearn.evaluate.config import EvaluateConfig, check_config, checkpoint_list
from robolearn.evaluate.evaluator import (
    DEFAULT_EVAL_SEED,
    SPLITS,
    EpisodeRecord,
    EvalResult,
    episode_specs,
    evaluate_agent,
    split_tasks,
)
from robolearn.evaluate.report import check_heldout_seeds, plot_success, run_evaluate
from robolearn.rollout import EXPERT, ExpertAgent, eval_seeds, load_agent

__all__ = [
    "DEFAULT_EVAL_SEED",
    "EXPERT",
    "SPLITS",
    "EpisodeRecord",
    "EvalResult",
    "EvaluateConfig",
    "ExpertAgent",
    "check_config",
    "check_heldout_seeds",
    "checkpoint_list",
    "episode_specs",
    "eval_seeds",
    "evaluate_agent",
    "load_agent",
    "plot_success",
    "run_evaluate",
    "split_tasks",
]
