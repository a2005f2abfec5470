"""Aggregate metrics over runs (checkpoints or training seeds), the way rliable computes them.

A *score matrix* has one row per run and one column per task: ``scores[r, t]`` is run ``r``'s
success rate on task ``t``. Point estimates (mean, interquartile mean) pool the whole matrix;
confidence intervals come from a stratified bootstrap that resamples runs with replacement
independently within each task (Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021; ``rliable.library.get_interval_estimates``).

Example:
    >>> scores = np.array([[1.0, 0.8, 0.6], [0.9, 0.7, 0.7]])   # 2 runs x 3 tasks
    >>> summary = summarize(scores)
    >>> round(summary["mean"], 3), summary["mean_ci"] is not None
    (0.783, True)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

Statistic = Callable[[np.ndarray], float]
"""Maps an (R, T) score matrix to one number (e.g. :func:`iqm`, :func:`mean`)."""


def mean(scores: np.ndarray) -> float:
    """Mean over every entry (for a complete run x task matrix: the mean of per-run means)."""
    return float(np.mean(np.asarray(scores, dtype=np.float64)))


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all entries.

    Same as ``scipy.stats.trim_mean(scores, 0.25, axis=None)``: the flattened scores are
    sorted and ``floor(0.25 * n)`` entries are cut from each end.

    Args:
        scores: Scores of any shape, typically an (R runs, T tasks) matrix; it is flattened.

    Returns:
        The interquartile mean.

    Raises:
        ValueError: ``scores`` is empty.
    """
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("iqm got an empty score array; pass at least one score")
    cut = int(0.25 * x.size)
    return float(np.mean(x[cut : x.size - cut]))


def _check_matrix(score_matrix: Any) -> np.ndarray:
    m = np.asarray(score_matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(
            f"Got a score matrix of shape {m.shape}, expected (R runs, T tasks) with R, T >= 1; "
            "for a single run pass scores[None, :]"
        )
    if not np.isfinite(m).all():
        raise ValueError(f"score matrix has non-finite entries: {m.tolist()}")
    return m


def bootstrap_ci(
    score_matrix: np.ndarray,
    statistic: Statistic = iqm,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile confidence interval of ``statistic`` from a stratified bootstrap over runs.

    Each bootstrap replicate draws, for every task independently, R runs with replacement
    from that task's column (rliable's ``StratifiedBootstrap`` with tasks as strata), then
    evaluates ``statistic`` on the resampled (R, T) matrix. The interval is the
    ``alpha / 2`` and ``1 - alpha / 2`` percentiles of the replicates.

    Args:
        score_matrix: (R runs, T tasks) scores; R >= 2 for a meaningful interval.
        statistic: Function of an (R, T) matrix returning a float (default :func:`iqm`).
        reps: Number of bootstrap replicates.
        alpha: 1 - confidence level (0.05 gives a 95% interval).
        seed: Seed of the resampling generator (same seed, same interval).

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: The matrix is not 2-D, empty or non-finite; ``reps`` < 1; ``alpha`` not
            in (0, 1).
    """
    m = _check_matrix(score_matrix)
    if reps < 1:
        raise ValueError(f"Got reps={reps}, expected >= 1 (rliable uses 2000)")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"Got alpha={alpha}, expected 0 < alpha < 1 (0.05 for a 95% interval)")
    runs, tasks = m.shape
    rng = np.random.default_rng(seed)
    # (reps, R, T) run indices, drawn independently per task column.
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    resampled = m[idx, np.arange(tasks)]
    values = np.array([statistic(r) for r in resampled], dtype=np.float64)
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def summarize(
    score_matrix: np.ndarray, *, reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """Mean and IQM of a run x task score matrix, with bootstrap CIs when there are >= 2 runs.

    Args:
        score_matrix: (R runs, T tasks) scores.
        reps: Bootstrap replicates per interval.
        alpha: 1 - confidence level.
        seed: Bootstrap seed.

    Returns:
        ``{"runs": R, "tasks": T, "mean": float, "mean_ci": [low, high] | None,
        "iqm": float, "iqm_ci": [low, high] | None, "confidence": 1 - alpha,
        "per_task_mean": [T floats], "per_run_mean": [R floats]}``. The CIs are ``None`` for a
        single run (resampling one run gives no spread over runs).
    """
    m = _check_matrix(score_matrix)
    several = m.shape[0] >= 2

    def ci(stat: Statistic) -> list[float] | None:
        if not several:
            return None
        return list(bootstrap_ci(m, stat, reps=reps, alpha=alpha, seed=seed))

    return {
        "runs": int(m.shape[0]),
        "tasks": int(m.shape[1]),
        "mean": mean(m),
        "mean_ci": ci(mean),
        "iqm": iqm(m),
        "iqm_ci": ci(iqm),
        "confidence": 1.0 - alpha,
        "per_task_mean": [float(v) for v in m.mean(axis=0)],
        "per_run_mean": [float(v) for v in m.mean(axis=1)],
    }
