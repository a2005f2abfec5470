"""Aggregate metrics: IQM, stratified bootstrap CIs, summaries."""

from __future__ import annotations

import numpy as np
import pytest

from robolearn.evaluate.stats import bootstrap_ci, iqm, mean, summarize


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # keeps 3, 4, 5, 6
    assert iqm([0.0, 10.0, 1.0, 2.0, 3.0]) == pytest.approx(2.0)  # cuts int(1.25) = 1 per end


def test_iqm_flattens_a_run_by_task_matrix():
    m = np.array([[0.0, 0.2, 0.4, 1.0], [0.6, 0.8, 0.9, 0.1]])
    assert iqm(m) == pytest.approx(np.mean([0.2, 0.4, 0.6, 0.8]))


def test_iqm_matches_scipy_trim_mean():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).uniform(size=(7, 11))
    assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25, axis=None))


def test_bootstrap_ci_of_two_runs_by_hand():
    # one task, runs scoring 0 and 1: a replicate's mean is 0, 0.5 or 1 (prob 1/4, 1/2, 1/4),
    # so the 2.5% and 97.5% percentiles are 0 and 1
    assert bootstrap_ci(np.array([[0.0], [1.0]]), mean) == (0.0, 1.0)


def test_bootstrap_resamples_runs_within_each_task():
    # Each run's mean is 0.5, so resampling whole runs would give a zero-width interval; per-task
    # resampling mixes entries of different runs.
    low, high = bootstrap_ci(np.array([[0.0, 1.0], [1.0, 0.0]]), mean, reps=500)
    assert low == 0.0 and high == 1.0


def test_bootstrap_ci_contains_the_estimate_and_shrinks_with_more_runs():
    rng = np.random.default_rng(1)
    widths = []
    for runs in (3, 30):
        m = rng.uniform(0.3, 0.9, size=(runs, 10))
        low, high = bootstrap_ci(m, iqm, reps=500)
        assert low <= iqm(m) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


def test_bootstrap_is_seeded():
    m = np.random.default_rng(2).uniform(size=(4, 5))
    assert bootstrap_ci(m, iqm, reps=200, seed=3) == bootstrap_ci(m, iqm, reps=200, seed=3)


def test_summarize_gives_cis_only_for_several_runs():
    one = summarize(np.array([[1.0, 0.5, 0.0]]))
    assert one["mean"] == pytest.approx(0.5) and one["iqm"] == pytest.approx(0.5)
    assert one["mean_ci"] is None and one["iqm_ci"] is None
    two = summarize(np.array([[1.0, 0.5, 0.0], [1.0, 0.7, 0.2]]), reps=200)
    assert two["per_task_mean"] == pytest.approx([1.0, 0.6, 0.1])
    assert two["per_run_mean"] == pytest.approx([0.5, 0.633333], abs=1e-5)
    assert two["mean_ci"][0] <= two["mean"] <= two["mean_ci"][1]
    assert two["iqm_ci"][0] <= two["iqm"] <= two["iqm_ci"][1]


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((0, 3)), np.array([[np.nan]])])
def test_a_malformed_score_matrix_is_refused(bad):
    with pytest.raises(ValueError, match="score matrix"):
        summarize(bad)


def test_bad_alpha_is_refused():
    with pytest.raises(ValueError, match="alpha=1.5"):
        bootstrap_ci(np.ones((2, 2)), alpha=1.5)
