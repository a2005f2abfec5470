"""Reward models: learn a known ordering, σ regulariser, determinism, save/load, teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policies.alignment import (
    RewardModel,
    RewardModelConfig,
    fit,
    load_reward_model,
    predict_return,
    predict_reward,
    preference_loss,
    sample_pairs,
    save_reward_model,
    teacher_labels,
)
from policies.alignment.reward import _softplus_inv

W = np.array([1.0, -0.5, 0.3, 0.0])


def segments(n, length=8, seed=0, ragged=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, length, W.size)).astype(np.float32)
    lens = rng.integers(length // 2, length + 1, n) if ragged else np.full(n, length)
    mask = np.arange(length)[None, :] < lens[:, None]
    returns = ((x @ W) * mask).sum(axis=1)
    return x, mask, returns


def pairwise_accuracy(pred, true):
    i, k = np.triu_indices(len(true), k=1)
    return float(np.mean((pred[i] > pred[k]) == (true[i] > true[k])))


@pytest.mark.parametrize("kind", ["point", "gaussian"])
def test_learns_a_known_reward_ordering(kind):
    x, mask, ret = segments(160, seed=0)
    a, b = sample_pairs(120, 400, seed=1)  # train on the first 120 segments only
    y = teacher_labels(ret[a], ret[b])
    model = RewardModel(RewardModelConfig(input_dim=4, kind=kind), seed=0)
    untrained = pairwise_accuracy(predict_return(model, x[120:], mask[120:]), ret[120:])
    result = fit(model, x[:120], mask[:120], a, b, y, epochs=20, seed=0)
    held_out = pairwise_accuracy(predict_return(model, x[120:], mask[120:]), ret[120:])
    assert held_out > 0.9 > untrained + 0.2
    assert result.history["loss"][-1] < 0.5 * result.history["loss"][0]


def test_soft_labels_and_weights():
    x, mask, ret = segments(60, seed=2)
    a, b = sample_pairs(60, 200, seed=3)
    y = teacher_labels(ret[a], ret[b], mode="soft", temperature=2.0)
    assert ((y > 0) & (y < 1)).all()
    model = RewardModel(RewardModelConfig(input_dim=4, kind="gaussian"), seed=0)
    fit(model, x, mask, a, b, y, weights=np.full(200, 0.5), epochs=15, seed=0)
    assert pairwise_accuracy(predict_return(model, x, mask), ret) > 0.85
    # A pair of weight 0 contributes nothing (point model: no sampling noise to compare).
    t = lambda v: torch.as_tensor(v)  # noqa: E731
    lab = torch.tensor([1.0, 0.0])
    point = RewardModel(RewardModelConfig(input_dim=4, kind="point"), seed=0)
    base, _ = preference_loss(point, t(x[:1]), t(mask[:1]), t(x[1:2]), t(mask[1:2]), lab[:1])
    both, _ = preference_loss(point, t(x[[0, 2]]), t(mask[[0, 2]]), t(x[[1, 3]]),
                              t(mask[[1, 3]]), lab, weights=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(both, base)


def test_std_regulariser_pulls_sigma_to_its_preset():
    x, _, ret = segments(100, seed=4, ragged=False)
    a, b = sample_pairs(100, 300, seed=5)
    y = teacher_labels(ret[a], ret[b])
    sigmas = {}
    for kl_weight in (0.0, 1.0):
        cfg = RewardModelConfig(input_dim=4, kind="gaussian", sigma_prior=0.5, kl_weight=kl_weight)
        model = RewardModel(cfg, seed=0)
        with torch.no_grad():  # start far from σ̄ = 0.5
            model.std_head.bias.fill_(_softplus_inv(2.0 - cfg.sigma_min))
        assert predict_reward(model, x)[1].mean() == pytest.approx(2.0, rel=1e-3)
        fit(model, x, None, a, b, y, epochs=20, lr=3e-3, seed=0)
        sigmas[kl_weight] = float(predict_reward(model, x)[1].mean())
    assert sigmas[1.0] == pytest.approx(0.5, rel=0.1)
    assert sigmas[0.0] < 0.25  # without it the BT term shrinks σ far below σ̄


def test_training_is_deterministic_given_the_seed():
    x, mask, ret = segments(40, seed=6)
    a, b = sample_pairs(40, 100, seed=7)
    y = teacher_labels(ret[a], ret[b])

    def train(seed):
        torch.manual_seed(123 + seed)  # the global RNG must not matter
        model = RewardModel(RewardModelConfig(input_dim=4), seed=seed)
        fit(model, x, mask, a, b, y, epochs=3, seed=seed)
        return model.state_dict()

    first, again, other = train(0), train(0), train(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_save_and_load_round_trip(tmp_path):
    x, mask, ret = segments(30, seed=8)
    a, b = sample_pairs(30, 60, seed=9)
    model = RewardModel(RewardModelConfig(input_dim=4, kind="gaussian", hidden_dim=16), seed=0)
    fit(model, x, mask, a, b, teacher_labels(ret[a], ret[b]), epochs=2, seed=0)
    path = save_reward_model(model, tmp_path / "rm")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_reward_model(path)
    assert loaded.config == model.config and loaded.normalizer.is_fitted
    np.testing.assert_array_equal(predict_return(loaded, x, mask), predict_return(model, x, mask))
    meta = json.loads((path / "config.json").read_text())
    meta["hiden_dim"] = 3
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown config fields \\['hiden_dim'\\]"):
        load_reward_model(path)
    with pytest.raises(FileNotFoundError, match="save_reward_model"):
        load_reward_model(tmp_path / "nothing")


def test_bad_input_is_named():
    model = RewardModel(RewardModelConfig(input_dim=4), seed=0)
    x, mask, _ = segments(5)
    with pytest.raises(ValueError, match=r"expected \(N, L, D=4\)"):
        fit(model, x[..., :3], mask, [0], [1], [1.0])
    with pytest.raises(ValueError, match="outside 0..4"):
        fit(model, x, mask, [0], [5], [1.0])
    with pytest.raises(ValueError, match="labels outside"):
        fit(model, x, mask, [0], [1], [2.0])
    with pytest.raises(ValueError, match="Did you mean 'point'"):
        RewardModelConfig(input_dim=4, kind="pont")


# --- the scripted teacher --------------------------------------------------------------------


def test_teacher_modes_and_flips():
    ra, rb = np.array([2.0, 0.0, 1.0, 1.05]), np.array([0.0, 2.0, 1.0, 1.0])
    np.testing.assert_array_equal(teacher_labels(ra, rb), [1, 0, 0.5, 1])
    np.testing.assert_array_equal(teacher_labels(ra, rb, equal_margin=0.1), [1, 0, 0.5, 0.5])
    soft = teacher_labels(ra, rb, mode="soft", temperature=2.0)
    np.testing.assert_allclose(soft, 1 / (1 + np.exp(-(ra - rb) / 2.0)))
    np.testing.assert_array_equal(teacher_labels(ra, rb, flip_rate=1.0), [0, 1, 0.5, 0])


def test_teacher_noise_rates_and_seed():
    rng = np.random.default_rng(0)
    ra, rb = rng.normal(size=5000), rng.normal(size=5000)
    truth = teacher_labels(ra, rb)
    flipped = teacher_labels(ra, rb, flip_rate=0.2, seed=1)
    assert np.mean(flipped != truth) == pytest.approx(0.2, abs=0.02)
    np.testing.assert_array_equal(flipped, teacher_labels(ra, rb, flip_rate=0.2, seed=1))
    assert not np.array_equal(flipped, teacher_labels(ra, rb, flip_rate=0.2, seed=2))
    sampled = teacher_labels(ra, rb, mode="sample", temperature=0.5, seed=3)
    expected = 1 / (1 + np.exp(-(ra - rb) / 0.5))
    assert set(np.unique(sampled)) <= {0.0, 1.0}
    assert np.mean(sampled) == pytest.approx(np.mean(expected), abs=0.02)
    with pytest.raises(ValueError, match="Did you mean 'soft'"):
        teacher_labels(ra, rb, mode="sofft")


def test_sample_pairs_are_distinct_and_seeded():
    a, b = sample_pairs(5, 1000, seed=0)
    assert (a != b).all() and a.min() >= 0 and max(a.max(), b.max()) <= 4
    np.testing.assert_array_equal(a, sample_pairs(5, 1000, seed=0)[0])
