"""Episode weights in the sampler: proportional draws ("sample") or per-sample loss weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from robolearn.data import SequenceSampler
from tests.support import make_episode

LENGTHS = [10, 20, 30, 40]


@pytest.fixture
def four(store):
    for i, T in enumerate(LENGTHS):
        store.add_episode(make_episode(i, length=T), task=f"t{i % 2}")
    return store


def _episode_of(sampler, batch):
    """Which selected episode each window came from (obs row 0 identifies it)."""
    rows = {float(make_episode(i, length=T)["obs"][t, 0]): i
            for i, T in enumerate(LENGTHS) for t in range(T)}
    return np.array([rows[float(x)] for x in batch["obs"][:, -1, 0]])


def test_sample_weighting_draws_in_proportion(four):
    w = np.array([1.0, 0.0, 2.0, 0.5])
    s = SequenceSampler(four, 1, 1, episode_weights=w, weighting="sample")
    n = 40_000
    eps = _episode_of(s, s.sample(n, np.random.default_rng(0)))
    counts = np.bincount(eps, minlength=4)
    assert counts[1] == 0  # weight 0: never drawn
    mass = w * np.array(LENGTHS)  # per-window weight times windows per episode
    expected = n * mass / mass.sum()
    keep = expected > 0
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    # 2 degrees of freedom; p = 1e-6 would need chi2 > 27.6. The draw is seeded, so this is a
    # fixed check that the frequencies are those of the weights, with a bound no fluke reaches.
    assert chi2 < stats.chi2.ppf(1 - 1e-6, df=keep.sum() - 1), (counts, expected)


def test_sample_weighting_is_uniform_within_an_episode(four):
    s = SequenceSampler(four, 1, 1, episode_weights=[0, 0, 0, 1], weighting="sample")
    batch = s.sample(20_000, np.random.default_rng(1))
    obs = make_episode(3, length=40)["obs"][:, 0]
    t = np.array([int(np.flatnonzero(obs == x)[0]) for x in batch["obs"][:, 0, 0]])
    counts = np.bincount(t, minlength=40)
    chi2 = ((counts - 500) ** 2 / 500).sum()
    assert chi2 < stats.chi2.ppf(1 - 1e-6, df=39)


def test_sample_weighting_is_deterministic(four):
    s = SequenceSampler(four, 2, 3, episode_weights=[1, 2, 3, 4])
    a, b = s.sample(64, np.random.default_rng(7)), s.sample(64, np.random.default_rng(7))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert "weight" not in a


def test_loss_weighting_is_uniform_and_carries_normalised_weights(four):
    w = np.array([1.0, 0.0, 2.0, 0.5])
    s = SequenceSampler(four, 1, 1, episode_weights=w, weighting="loss")
    every = s.window(np.arange(len(s)))
    assert every["weight"].dtype == np.float32 and every["weight"].shape == (len(s),)
    assert every["weight"].mean() == pytest.approx(1.0, rel=1e-6)
    eps = _episode_of(s, every)
    scale = len(s) / (w * np.array(LENGTHS)).sum()
    np.testing.assert_allclose(every["weight"], (w * scale)[eps], rtol=1e-6)
    # draws stay uniform: the same indices as an unweighted sampler
    plain = SequenceSampler(four, 1, 1)
    np.testing.assert_array_equal(s.sample(32, np.random.default_rng(3))["obs"],
                                  plain.sample(32, np.random.default_rng(3))["obs"])
    epoch = list(s.iter_epoch(16))
    assert all("weight" in b for b in epoch)


def test_weights_follow_an_explicit_selection(four):
    s = SequenceSampler(four, 1, 1, episodes=[3, 0], episode_weights=[0.0, 1.0])
    eps = _episode_of(s, s.sample(500, np.random.default_rng(0)))
    assert set(eps) == {0}


@pytest.mark.parametrize("weights, match", [
    ([1, 2, 3], r"shape \(3,\), expected \(4,\): one per episode of the store"),
    ([1, -1, 1, 1], r"episode_weights\[1\]=-1.0"),
    ([1, np.nan, 1, 1], "finite"),
    ([1, 1, np.inf, 1], "finite"),
    ([0, 0, 0, 0], "zero for every selected episode"),
])
def test_bad_weights_are_refused(four, weights, match):
    with pytest.raises(ValueError, match=match):
        SequenceSampler(four, 1, 1, episode_weights=weights)


def test_bad_weighting_and_epoch_with_sample_weights(four):
    with pytest.raises(ValueError, match="weighting='mean'"):
        SequenceSampler(four, 1, 1, weighting="mean")
    s = SequenceSampler(four, 1, 1, episode_weights=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="iter_epoch"):
        next(s.iter_epoch(4))
