"""GW preference transfer: distances, coupling, normalised transfer, orientation check."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from policies.alignment import (
    distance_matrix,
    feature_cost,
    gw_coupling,
    label_accuracy,
    orientation_check,
    pair_matrices,
    plan_concentration,
    step_features,
    task_agnostic_features,
    transfer_labels,
)
from policies.alignment.gw import pad_last, resample


def all_pair_labels(quality):
    n = len(quality)
    i, k = np.triu_indices(n, k=1)
    return pair_matrices(n, i, k, np.where(quality[i] > quality[k], 1.0, 0.0))


def curves(n, seed, dim=5):
    """n smooth trajectories of 30..80 steps, each different."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = np.linspace(0, 1, int(rng.integers(30, 80)))[:, None]
        base, vel, freq = rng.normal(size=(3, 1, dim))
        out.append(base + vel * t + 0.3 * np.sin(3 * t * freq))
    return out


# --- distances -------------------------------------------------------------------------------


def test_resample_and_pad():
    x = np.array([[0.0], [1.0], [4.0]])
    np.testing.assert_allclose(resample(x, 5)[:, 0], [0.0, 0.5, 1.0, 2.5, 4.0])
    np.testing.assert_allclose(pad_last(x, 5)[:, 0], [0, 1, 4, 4, 4])


def test_distance_matrices_are_symmetric_with_zero_diagonal():
    feats = curves(8, seed=0)
    for method in ("resample", "pad", "dtw", "mean"):
        d = distance_matrix(feats, method, length=16)
        assert d.shape == (8, 8)
        np.testing.assert_allclose(d, d.T, atol=1e-12)
        np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-7)
        assert (d[~np.eye(8, dtype=bool)] > 0).all()


def test_time_aligned_distance_ignores_speed_but_pad_does_not():
    """The same path at two speeds is distance 0 after resampling, not after padding."""
    path = lambda T: np.stack([np.linspace(0, 1, T), np.linspace(0, 1, T) ** 2], axis=1)  # noqa: E731
    feats = [path(20), path(60), path(20) + [0.0, 0.3]]
    d = distance_matrix(feats, "resample", normalize=False, length=128)
    assert d[0, 1] < 1e-2 < d[0, 2]
    assert distance_matrix(feats, "pad", normalize=False)[0, 1] > 0.1
    dtw = distance_matrix(feats, "dtw", normalize=False, length=32)
    assert dtw[0, 1] < 1e-2 < dtw[0, 2]


def test_step_features_concatenate_obs_and_action():
    f = step_features([np.zeros((4, 3))], [np.ones((4, 2))])
    assert f[0].shape == (4, 5) and f[0][:, 3:].sum() == 8
    with pytest.raises(ValueError, match="same T"):
        step_features([np.zeros((4, 3))], [np.ones((3, 2))])
    with pytest.raises(ValueError, match="Unknown distance 'dwt'. Did you mean 'dtw'"):
        distance_matrix(curves(3, 0), "dwt")


# --- transfer --------------------------------------------------------------------------------


def test_identity_coupling_returns_the_source_labels():
    n = 6
    rng = np.random.default_rng(0)
    i, k = np.array([0, 0, 1, 2, 3, 4]), np.array([1, 2, 3, 5, 4, 5])
    y = rng.uniform(0, 1, size=i.size)
    z, m = pair_matrices(n, i, k, y)
    plan = np.eye(n) / n
    tr = transfer_labels(plan, z, m)
    np.testing.assert_allclose(tr.labels[i, k], y, rtol=1e-12)
    np.testing.assert_allclose(tr.labels[k, i], 1 - y, rtol=1e-12)
    assert np.isnan(tr.labels[0, 5]) and tr.confidence[0, 5] == 0  # never labelled
    unnormalised = plan.T @ (m * z) @ plan
    assert np.abs(unnormalised[i, k] - y).min() > 0.5 * y.min()  # mass 1/n² instead of labels


def test_normaliser_on_a_many_to_one_coupling():
    """3 source trajectories per target one (PEARL's 1/9 example)."""
    z, m = pair_matrices(6, [0, 1, 2, 0], [3, 4, 5, 4], [1.0, 1.0, 1.0, 1.0])
    plan = np.zeros((6, 2))
    plan[:3, 0] = plan[3:, 1] = 1 / 6
    tr = transfer_labels(plan, z, m)
    assert tr.labels[0, 1] == pytest.approx(1.0) and tr.labels[1, 0] == pytest.approx(0.0)
    assert (plan.T @ (m * z) @ plan)[0, 1] == pytest.approx(4 / 36)


def test_isometric_pools_transfer_with_near_perfect_accuracy():
    n = 40
    src = curves(n, seed=1)
    rng = np.random.default_rng(2)
    perm = rng.permutation(n)
    scale, shift = rng.uniform(0.5, 3.0, size=5), rng.normal(size=5)
    tgt = [src[perm[j]] * scale + shift for j in range(n)]  # per-dim affine: same after z-score
    quality = rng.normal(size=n)
    z_s, m_s = all_pair_labels(quality)
    labelled = np.triu(rng.random((n, n)) < 0.3, 1)
    m_fit = (labelled | labelled.T) * m_s
    coupling = gw_coupling(distance_matrix(src), distance_matrix(tgt))
    assert coupling.concentration > 0.95
    tr = transfer_labels(coupling.plan, z_s, m_fit)
    z_t, m_t = all_pair_labels(quality[perm])
    acc = label_accuracy(tr.labels, z_t, m_t)
    assert acc["accuracy"] > 0.95
    assert acc["n"] == int(np.triu(m_fit, 1).sum())  # a permutation plan: one target pair each


def test_entropic_solver_refuses_a_near_uniform_plan():
    c = distance_matrix(curves(20, seed=3))
    with pytest.raises(ValueError, match="near-uniform.*Lower epsilon"):
        gw_coupling(c, c, solver="entropic", epsilon=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # POT: Sinkhorn hit its iteration cap
        sharp = gw_coupling(c, c, solver="entropic", epsilon=0.005)
    assert sharp.concentration > 0.9
    assert plan_concentration(np.full((5, 7), 1 / 35)) == pytest.approx(0.0, abs=1e-12)
    assert plan_concentration(np.eye(5) / 5) == pytest.approx(1.0)


def test_exact_solver_warns_on_a_diffuse_plan():
    c = distance_matrix(curves(10, seed=4))
    with pytest.warns(RuntimeWarning, match="near-uniform"):
        gw_coupling(c, c, min_concentration=1.01)  # an exact plan never exceeds 1


# --- orientation -----------------------------------------------------------------------------


def chain_pools(n=30, exponent=1.5):
    """Trajectory pools on a chain: C_ik = |x_i − x_k| with x_i = i^exponent."""
    x = np.arange(n, dtype=float) ** exponent
    return np.abs(x[:, None] - x[None, :])


def anchor_features(quality, n):
    return task_agnostic_features(quality >= 2 * n / 3, np.full(n, 100), quality / (n - 1), 500)


def test_orientation_check_catches_a_reflected_pool():
    """Target = the source's geometry with good and bad swapped: plain GW follows the geometry,
    transfers inverted labels, and the check (anchored on success/progress) says so."""
    n = 30
    c = chain_pools(n)  # asymmetric spacing: GW has one optimum, the identity
    q_src = np.arange(n, dtype=float)
    q_tgt = q_src[::-1].copy()  # the reflection
    z_s, m_s = all_pair_labels(q_src)
    rng = np.random.default_rng(0)
    held = np.triu(rng.random((n, n)) < 0.3, 1)
    held = (held | held.T) * m_s
    f_s, f_t = anchor_features(q_src, n), anchor_features(q_tgt, n)
    anchor_s, anchor_t = f_s[:, 0] + f_s[:, 2], f_t[:, 0] + f_t[:, 2]
    z_t, m_t = all_pair_labels(q_tgt)

    plain = transfer_labels(gw_coupling(c, c).plan, z_s, m_s * (1 - held))
    assert label_accuracy(plain.labels, z_t, m_t)["accuracy"] < 0.05  # inverted
    check = orientation_check(plain, anchor_t, z_s, held, anchor_s)
    assert check.reliable and check.flipped
    assert check.source_agreement > 0.95 and check.flipped_accuracy > 0.95

    fused = gw_coupling(c, c, features_cost=feature_cost(f_s, f_t), feature_weight=0.1)
    fixed = transfer_labels(fused.plan, z_s, m_s * (1 - held))
    assert label_accuracy(fixed.labels, z_t, m_t)["accuracy"] > 0.95
    ok = orientation_check(fixed, anchor_t, z_s, held, anchor_s)
    assert ok.reliable and not ok.flipped and ok.target_agreement > 0.95


def test_orientation_check_abstains_when_the_anchor_fails_on_the_source():
    n = 12
    z_s, m_s = all_pair_labels(np.arange(n, dtype=float))
    tr = transfer_labels(np.eye(n) / n, z_s, m_s)
    useless = np.random.default_rng(0).normal(size=n)  # anchor unrelated to the preferences
    anti = -np.arange(n, dtype=float)  # anchor inverted on the source
    for anchor in (useless, anti):
        check = orientation_check(tr, anchor, z_s, m_s, anchor, min_source_agreement=0.8)
        assert not check.reliable and not check.flipped


def test_symmetric_pool_reflection_is_broken_by_fused_gw():
    """Equally spaced chain: identity and reflection are both GW optima; the feature term
    picks the right one."""
    n = 30
    c = chain_pools(n, exponent=1.0)
    q = np.arange(n, dtype=float)
    z, m = all_pair_labels(q)
    f = anchor_features(q, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = gw_coupling(c, c, features_cost=feature_cost(f, f), feature_weight=0.05)
    acc = label_accuracy(transfer_labels(fused.plan, z, m).labels, z, m)
    assert acc["accuracy"] > 0.99


def test_pair_matrices_validate():
    with pytest.raises(ValueError, match="outside 0..2"):
        pair_matrices(3, [0], [3], [1.0])
    with pytest.raises(ValueError, match="with itself"):
        pair_matrices(3, [1], [1], [1.0])
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        pair_matrices(3, [0], [1], [1.5])
    z, m = pair_matrices(3, [0, 1], [1, 0], [1.0, 0.5])  # the same pair twice: mean
    assert z[0, 1] == pytest.approx(0.75) and z[1, 0] == pytest.approx(0.25) and m.sum() == 2
