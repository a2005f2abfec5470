"""Initial-condition ingest: first observations back to Meta-World rand_vecs; recording checks."""

import doctest

import numpy as np
import pytest

import curricula.ingest
import sim
from curricula import (
    Component,
    CurriculumError,
    CurriculumTypeError,
    Provenance,
    TaskDistribution,
    check_episodes,
    ingest_initial_conditions,
    rand_vec_map,
)
from curricula.ingest import GOAL

FEATURES = np.r_[4:7, 11:14, 36:39]


def first_observations(task, n, obs_noise_std, seed=0):
    """n seeded starts of a twin: (episodes with a 1-step obs/action, true rand_vecs)."""
    env = sim.make_env(task, params=sim.TaskParams(obs_noise_std=obs_noise_std), seed=seed)
    eps, vecs = [], []
    for i in range(n):
        obs, _ = env.reset(seed=100 + i)
        eps.append({"obs": obs[None].astype(np.float32), "action": np.zeros((1, 4), np.float32)})
        vecs.append(env.rand_vec)
    return eps, vecs


@pytest.mark.parametrize("task", ["reach-v3", "push-v3", "pick-place-v3"])
def test_noisy_first_observation_gives_the_start_back(task):
    sigma = 0.002
    eps, true_vecs = first_observations(task, 4, sigma)
    ic = ingest_initial_conditions(eps, task)
    assert not ic.skipped
    mapping = rand_vec_map(task)
    env = sim.make_env(task, seed=0)
    for ep, vec, truth in zip(eps, ic.rand_vecs, true_vecs):
        # the entries the observation shows are recovered up to the noise (4 sigma) ...
        assert np.abs(vec - truth)[mapping.relevant].max() < 4 * sigma
        # ... and a reset from the vector starts where the episode did, up to the noise
        obs, _ = env.reset(options={"rand_vec": vec})
        assert np.abs(obs[FEATURES] - ep["obs"][0, FEATURES]).max() < 5 * sigma


def test_noise_free_first_observation_is_exact():
    eps, true_vecs = first_observations("push-v3", 3, 0.0)
    ic = ingest_initial_conditions(eps, "push-v3")
    mapping = rand_vec_map("push-v3")
    for vec, truth in zip(ic.rand_vecs, true_vecs):
        assert np.abs(vec - truth)[mapping.relevant].max() < 1e-6  # float32 storage
    assert max(ic.errors) < 1e-6
    # push-v3's goal height does not show in the observation and does not change the start
    assert not mapping.relevant[5]


def test_non_affine_task_is_skipped_with_the_reason():
    eps, _ = first_observations("disassemble-v3", 2, 0.0)
    ic = ingest_initial_conditions(eps, "disassemble-v3")
    assert ic.rand_vecs == (None, None)
    assert "not an affine function" in ic.skipped[0]
    with pytest.raises(CurriculumError, match="no episode of disassemble-v3 gave an initial"):
        ic.factor()


def test_hidden_goal_is_skipped():
    eps, _ = first_observations("reach-v3", 2, 0.0)
    eps[1]["obs"] = eps[1]["obs"].copy()
    eps[1]["obs"][:, GOAL] = 0.0
    ic = ingest_initial_conditions(eps, "reach-v3")
    assert ic.rand_vecs[0] is not None and ic.rand_vecs[1] is None
    assert "hidden" in ic.skipped[1]
    assert ic.diagnostics()["recovered"] == 1


def test_points_become_an_empirical_init_the_env_starts_from():
    eps, _ = first_observations("push-v3", 3, 0.001)
    ic = ingest_initial_conditions(eps, "push-v3")
    comp = Component("real-0", [ic.factor()], tasks=("push-v3",),
                     provenance=Provenance("real", cycle=0, episodes=3))
    dist = TaskDistribution(["push-v3"], [comp])
    s = dist.sample(np.random.default_rng(0))
    assert s.rand_vec in ic.points
    env = sim.make_env("push-v3", seed=0)
    obs, _ = env.reset(options={"rand_vec": s.rand_vec})
    i = ic.points.index(s.rand_vec)
    assert np.abs(obs[FEATURES] - eps[i]["obs"][0, FEATURES]).max() < 0.005


@pytest.mark.parametrize(
    ("episodes", "match"),
    [
        ([], "is empty"),
        ([{"obs": np.zeros((3, 39))}], r"episodes\[0\] has no 'action'"),
        ([{"obs": np.zeros((3, 38)), "action": np.zeros((3, 4))}], r"shape \(3, 38\)"),
        ([{"obs": np.zeros((3, 39)), "action": np.zeros((2, 4))}], "3 observations and 2"),
        ([{"obs": np.full((3, 39), np.nan), "action": np.zeros((3, 4))}], "non-finite"),
        ([{"obs": np.zeros((3, 39)), "action": np.full((3, 4), 1.5)}], r"leaves \[-1, 1\]"),
    ],
)
def test_bad_recordings_are_refused_with_the_place(episodes, match):
    with pytest.raises(CurriculumError, match=match):
        check_episodes(episodes)


def test_a_mapping_is_not_a_recording():
    with pytest.raises(CurriculumTypeError, match="must be a list of episodes"):
        check_episodes({"obs": np.zeros((3, 39)), "action": np.zeros((3, 4))})


def test_docstring_examples():
    result = doctest.testmod(curricula.ingest)
    assert result.attempted > 0 and result.failed == 0
