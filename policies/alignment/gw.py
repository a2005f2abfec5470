"""Cross-task preference transfer by Gromov–Wasserstein alignment (PEARL: Liu et al., ICML 2024).

A source task has trajectories with (sparse) preference labels, a target task only
trajectories. Trajectories of different tasks live in different spaces, but each pool has an
intra-task distance matrix (C^S, C^T), and Gromov–Wasserstein (Mémoli 2011; Peyré et al. 2016)
finds a coupling T (n_S × n_T, marginals p, q) that matches the two *structures*:

    T* = argmin_T Σ_{i,k,j,l} (C^S_ik − C^T_jl)² T_ij T_kl.

Labels travel along the coupling, normalised per target pair (PEARL's CPA):

    z_T(j, l) = [Tᵀ (M ∘ Z) T]_jl / [Tᵀ M T]_jl,

Z (n_S × n_S) the source labels (Z_ik = P(i ≻ k)), M the mask of labelled source pairs. Without
the normaliser a target pair gets the *mass* of its labels, not their value (a 3-to-1 coupling
gives 1/9 where the truth is 1).

GW is invariant under isometries: a pool matched to its good↔bad reflection has the same cost
as the true match, so labels can come out inverted. Fused GW (Vayer et al. 2019) adds a small
feature term ⟨M_f, T⟩ over task-agnostic features (normalised progress, success, length) to
break the tie, and :func:`orientation_check` tests the result against the same task-agnostic
signal after validating that signal on held-out source labels (a check that uses the source
side alone cannot see a reflection of the target: composing T with Tᵀ cancels it).

Distances between trajectories (:func:`distance_matrix`) are on per-step features
[obs, action], normalised per dimension over the pool (z-score), time-aligned:

    "resample"  each trajectory linearly resampled to `length` points in normalised time
                u = t/(T−1); d_ik = mean_u ‖x_i(u) − x_k(u)‖  (default)
    "pad"       each padded with its last step to the longest length; same mean
    "dtw"       dynamic time warping on the resampled sequences (cost / (2·length))
    "mean"      ‖[mean_t x_i, std_t x_i] − [mean_t x_k, std_t x_k]‖ (no time alignment)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

DISTANCES = ("resample", "pad", "dtw", "mean")
SOLVERS = ("exact", "entropic")


# ---------------------------------------------------------------------------------------------
# Trajectory features and distances


def step_features(
    obs: Sequence[np.ndarray], action: Sequence[np.ndarray] | None = None
) -> list[np.ndarray]:
    """Per-step features [obs_t, a_t] of each trajectory: (T_i, Do + Da) float64 arrays."""
    if action is not None and len(action) != len(obs):
        raise ValueError(f"Got {len(obs)} obs and {len(action)} action arrays, expected equal")
    out = []
    for i, o in enumerate(obs):
        o = np.asarray(o, dtype=np.float64)
        if o.ndim != 2 or o.shape[0] < 1:
            raise ValueError(f"Got obs[{i}].shape={o.shape}, expected (T >= 1, Do)")
        if action is not None:
            a = np.asarray(action[i], dtype=np.float64)
            if a.ndim != 2 or a.shape[0] != o.shape[0]:
                raise ValueError(
                    f"Got action[{i}].shape={a.shape} for obs[{i}].shape={o.shape}, expected "
                    "(T, Da) with the same T"
                )
            o = np.concatenate([o, a], axis=1)
        out.append(o)
    return out


def normalize_pool(features: Sequence[np.ndarray], eps: float = 1e-8) -> list[np.ndarray]:
    """Z-score every feature dimension over all steps of all trajectories of one pool.

    Dimensions with std < eps get scale 1 (a constant dimension maps to 0).
    """
    feats = _check_features(features)
    stacked = np.concatenate(feats, axis=0)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std = np.where(std < eps, 1.0, std)
    return [(f - mean) / std for f in feats]


def resample(x: np.ndarray, length: int) -> np.ndarray:
    """(T, D) → (length, D) by linear interpolation in normalised time u = t/(T−1)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 1:
        return np.repeat(x, length, axis=0)
    src = np.linspace(0.0, 1.0, x.shape[0])
    dst = np.linspace(0.0, 1.0, length)
    idx = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, x.shape[0] - 2)
    w = ((dst - src[idx]) / (src[idx + 1] - src[idx]))[:, None]
    return (1.0 - w) * x[idx] + w * x[idx + 1]


def pad_last(x: np.ndarray, length: int) -> np.ndarray:
    """(T, D) → (length, D), length >= T, repeating the last step (an episode that ended stays)."""
    x = np.asarray(x, dtype=np.float64)
    if length < x.shape[0]:
        raise ValueError(f"Got length={length} < T={x.shape[0]}, expected length >= T")
    return np.concatenate([x, np.repeat(x[-1:], length - x.shape[0], axis=0)], axis=0)


def distance_matrix(
    features: Sequence[np.ndarray],
    method: str = "resample",
    *,
    length: int = 64,
    normalize: bool = True,
    pair_batch: int = 4096,
) -> np.ndarray:
    """(n, n) intra-pool trajectory distances (see the module docstring for the methods).

    Args:
        features: n arrays (T_i, D) of per-step features (:func:`step_features`).
        method: "resample" (default), "pad", "dtw" or "mean".
        length: points per trajectory for "resample" and "dtw".
        normalize: z-score the features over the pool first (:func:`normalize_pool`).
        pair_batch: pairs per vectorised DTW batch (memory ∝ pair_batch·length²).

    Returns:
        Symmetric (n, n) float64 matrix with a zero diagonal.
    """
    if method not in DISTANCES:
        from policies.backbones import unknown_name_message

        raise ValueError(unknown_name_message("distance", method, DISTANCES))
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"Got length={length!r}, expected an int >= 2")
    feats = normalize_pool(features) if normalize else _check_features(features)
    if method == "mean":
        pooled = np.stack([np.concatenate([f.mean(axis=0), f.std(axis=0)]) for f in feats])
        return _pairwise_euclidean(pooled)
    if method == "pad":
        t_max = max(f.shape[0] for f in feats)
        x = np.stack([pad_last(f, t_max) for f in feats])
    else:
        x = np.stack([resample(f, length) for f in feats])  # (n, L, D)
    if method == "dtw":
        return _dtw_matrix(x, pair_batch)
    n, steps, _ = x.shape
    dist = np.zeros((n, n))
    for t in range(steps):  # Σ_t ‖x_i(t) − x_k(t)‖ without an (n, n, L) array
        dist += _pairwise_euclidean(x[:, t])
    dist /= steps
    np.fill_diagonal(dist, 0.0)
    return dist


def _pairwise_euclidean(x: np.ndarray) -> np.ndarray:
    sq = (x**2).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    return np.sqrt(np.maximum(d2, 0.0))


def _dtw_matrix(x: np.ndarray, pair_batch: int) -> np.ndarray:
    n, steps, _ = x.shape
    ii, kk = np.triu_indices(n, k=1)
    out = np.zeros((n, n))
    for start in range(0, ii.size, pair_batch):
        a, b = x[ii[start : start + pair_batch]], x[kk[start : start + pair_batch]]
        # Local costs (L, L, B) with the pair axis last (contiguous), then the DTW recursion
        # row by row, vectorised over pairs.
        local = np.sqrt(np.maximum(
            (a**2).sum(-1).T[:, None, :] + (b**2).sum(-1).T[None, :, :]
            - 2.0 * np.einsum("bid,bjd->ijb", a, b), 0.0))
        acc = np.full((steps + 1, steps + 1, a.shape[0]), np.inf)
        acc[0, 0] = 0.0
        for i in range(1, steps + 1):
            prev, row = acc[i - 1], acc[i]
            diag_up = np.minimum(prev[:-1], prev[1:])  # (L, B): min(D[i-1,j-1], D[i-1,j])
            for j in range(1, steps + 1):
                row[j] = local[i - 1, j - 1] + np.minimum(diag_up[j - 1], row[j - 1])
        out[ii[start : start + pair_batch], kk[start : start + pair_batch]] = acc[-1, -1]
    out = (out + out.T) / (2.0 * steps)
    return out


def _check_features(features: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(features) < 2:
        raise ValueError(f"Got {len(features)} trajectories, expected at least 2 per pool")
    feats = [np.asarray(f, dtype=np.float64) for f in features]
    dim = feats[0].shape[-1] if feats[0].ndim == 2 else None
    for i, f in enumerate(feats):
        if f.ndim != 2 or f.shape[0] < 1 or f.shape[1] != dim:
            raise ValueError(
                f"Got features[{i}].shape={f.shape}, expected (T >= 1, {dim}) like features[0]"
            )
        if not np.isfinite(f).all():
            raise ValueError(f"Got non-finite values in features[{i}], expected all finite")
    return feats


# ---------------------------------------------------------------------------------------------
# Task-agnostic features for fused GW


def task_agnostic_features(
    success: Sequence[bool] | np.ndarray,
    length: Sequence[float] | np.ndarray,
    progress: Sequence[float] | np.ndarray,
    horizon: float,
) -> np.ndarray:
    """(n, 3) features every task has, all in [0, 1]: [success, length / horizon, progress].

    Args:
        success: (n,) episode successes.
        length: (n,) steps taken.
        progress: (n,) normalised task progress in [0, 1], e.g. :func:`distance_progress`.
        horizon: the episode horizon (Meta-World: 500).
    """
    s = np.asarray(success, dtype=np.float64).reshape(-1)
    ln = np.asarray(length, dtype=np.float64).reshape(-1)
    pr = np.asarray(progress, dtype=np.float64).reshape(-1)
    if not (s.shape == ln.shape == pr.shape):
        raise ValueError(
            f"Got success {s.shape}, length {ln.shape}, progress {pr.shape}; expected (n,) each"
        )
    if not horizon > 0:
        raise ValueError(f"Got horizon={horizon}, expected > 0")
    return np.stack([s, np.clip(ln / horizon, 0.0, 1.0), np.clip(pr, 0.0, 1.0)], axis=1)


def distance_progress(initial: np.ndarray, final: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Progress 1 − final/initial distance to the target (e.g. info_obj_to_target), in [0, 1]."""
    d0 = np.asarray(initial, dtype=np.float64)
    d1 = np.asarray(final, dtype=np.float64)
    return np.clip(1.0 - d1 / np.maximum(d0, eps), 0.0, 1.0)


def feature_cost(features_s: np.ndarray, features_t: np.ndarray) -> np.ndarray:
    """(n_S, n_T) squared Euclidean cost between task-agnostic features, scaled to max 1."""
    fs = np.asarray(features_s, dtype=np.float64)
    ft = np.asarray(features_t, dtype=np.float64)
    if fs.ndim != 2 or ft.ndim != 2 or fs.shape[1] != ft.shape[1]:
        raise ValueError(
            f"Got feature arrays {fs.shape} and {ft.shape}, expected (n_S, F) and (n_T, F)"
        )
    m = ((fs[:, None, :] - ft[None, :, :]) ** 2).sum(-1)
    top = m.max()
    return m / top if top > 0 else m


# ---------------------------------------------------------------------------------------------
# The coupling


@dataclass
class Coupling:
    """A GW (or fused GW) coupling between a source pool and a target pool.

    Attributes:
        plan: (n_S, n_T) T, rows sum to p, columns to q.
        cost: the solver's objective at T (GW or FGW distance, on the scaled matrices).
        concentration: :func:`plan_concentration` of T (1: deterministic, 0: the product p qᵀ).
        solver: "exact" or "entropic".
        fused: whether a feature term was used (fused GW).
    """

    plan: np.ndarray
    cost: float
    concentration: float
    solver: str
    fused: bool


def plan_concentration(plan: np.ndarray) -> float:
    """How far a plan is from the uniform product plan, in [0, 1].

    The normalised mutual information I(T) / min(H(p), H(q)) of T seen as a joint
    distribution: 1 for a deterministic matching (every source mass goes to one target, as
    exact GW plans of equal-size pools are), 0 for T = p qᵀ, which carries no information
    from source to target (what the entropic solver returns when ε is too large).
    """
    t = np.asarray(plan, dtype=np.float64)
    t = t / t.sum()
    p, q = t.sum(axis=1), t.sum(axis=0)

    def entropy(x: np.ndarray) -> float:
        x = x[x > 0]
        return float(-(x * np.log(x)).sum())

    h_min = min(entropy(p), entropy(q))
    if h_min <= 0:
        return 1.0
    mi = entropy(p) + entropy(q) - entropy(t.ravel())
    return float(np.clip(mi / h_min, 0.0, 1.0))


def gw_coupling(
    c_s: np.ndarray,
    c_t: np.ndarray,
    p: np.ndarray | None = None,
    q: np.ndarray | None = None,
    *,
    solver: str = "exact",
    features_cost: np.ndarray | None = None,
    feature_weight: float = 0.1,
    epsilon: float = 0.01,
    scale: bool = True,
    min_concentration: float = 0.3,
    max_iter: int | None = None,
) -> Coupling:
    """Gromov–Wasserstein coupling of two pools with POT (`ot.gromov`), square loss.

    Args:
        c_s: (n_S, n_S) source distances (symmetric).
        c_t: (n_T, n_T) target distances.
        p, q: marginals (default uniform).
        solver: "exact" (`ot.gromov.gromov_wasserstein`, conditional gradient with exact OT
            sub-problems; the default) or "entropic" (`entropic_gromov_wasserstein`; checked,
            see `min_concentration`).
        features_cost: (n_S, n_T) cost between task-agnostic features (:func:`feature_cost`):
            switches to fused GW (`fused_gromov_wasserstein` /
            `entropic_fused_gromov_wasserstein`), objective
            (1 − α)·⟨features_cost, T⟩ + α·GW with α = 1 − feature_weight.
        feature_weight: 1 − α, the weight of the feature term (small: it only breaks the
            isometry ties of GW).
        epsilon: entropic regularisation ("entropic" only; on matrices scaled to mean 1).
        scale: divide each distance matrix by the mean of its off-diagonal entries first, so
            the two tasks' units do not matter (the exact plan is unchanged when both are
            scaled by the same factor; ε and feature_weight become unit-free).
        min_concentration: below this :func:`plan_concentration` the plan is close to uniform
            and transfers nothing: "entropic" raises (lower ε or use "exact"); "exact" warns.
        max_iter: solver iterations at most (None: POT's default, 10⁴ exact, 10³ entropic).

    Returns:
        :class:`Coupling`.
    """
    import ot

    if solver not in SOLVERS:
        from policies.backbones import unknown_name_message

        raise ValueError(unknown_name_message("GW solver", solver, SOLVERS))
    cs = _check_square("c_s", c_s)
    ct = _check_square("c_t", c_t)
    n_s, n_t = cs.shape[0], ct.shape[0]
    p = np.full(n_s, 1.0 / n_s) if p is None else _check_marginal("p", p, n_s)
    q = np.full(n_t, 1.0 / n_t) if q is None else _check_marginal("q", q, n_t)
    if scale:
        cs, ct = cs / _offdiag_mean(cs), ct / _offdiag_mean(ct)
    fused = features_cost is not None
    iters = {} if max_iter is None else {"max_iter": max_iter}
    if fused:
        m = np.asarray(features_cost, dtype=np.float64)
        if m.shape != (n_s, n_t) or not np.isfinite(m).all():
            raise ValueError(
                f"Got features_cost of shape {m.shape}, expected finite ({n_s}, {n_t})"
            )
        if not 0.0 < feature_weight < 1.0:
            raise ValueError(f"Got feature_weight={feature_weight}, expected 0 < w < 1")
        alpha = 1.0 - feature_weight
    if solver == "exact":
        if fused:
            plan, log = ot.gromov.fused_gromov_wasserstein(
                m, cs, ct, p, q, loss_fun="square_loss", alpha=alpha, log=True, **iters
            )
            cost = float(log["fgw_dist"])
        else:
            plan, log = ot.gromov.gromov_wasserstein(
                cs, ct, p, q, loss_fun="square_loss", log=True, **iters
            )
            cost = float(log["gw_dist"])
    else:
        if not epsilon > 0:
            raise ValueError(f"Got epsilon={epsilon}, expected > 0")
        if fused:
            plan, log = ot.gromov.entropic_fused_gromov_wasserstein(
                m, cs, ct, p, q, loss_fun="square_loss", epsilon=epsilon, alpha=alpha,
                log=True, **iters,
            )
            cost = float(log["fgw_dist"])
        else:
            plan, log = ot.gromov.entropic_gromov_wasserstein(
                cs, ct, p, q, loss_fun="square_loss", epsilon=epsilon, log=True, **iters
            )
            cost = float(log["gw_dist"])
    plan = np.asarray(plan, dtype=np.float64)
    if not np.isfinite(plan).all() or plan.sum() <= 0:
        raise RuntimeError(
            f"GW solver {solver!r} returned an invalid plan (non-finite or zero); with "
            f"'entropic' raise epsilon (got {epsilon}) or use solver='exact'"
        )
    kappa = plan_concentration(plan)
    if kappa < min_concentration:
        msg = (
            f"GW plan ({solver}) is near-uniform: concentration {kappa:.3f} < "
            f"min_concentration={min_concentration}; it would transfer (almost) the mean "
            "label to every target pair"
        )
        if solver == "entropic":
            raise ValueError(msg + f". Lower epsilon (got {epsilon}) or use solver='exact'")
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return Coupling(plan=plan, cost=cost, concentration=kappa, solver=solver, fused=fused)


def _check_square(name: str, c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 2:
        raise ValueError(f"Got {name}.shape={c.shape}, expected a square (n, n) matrix, n >= 2")
    if not np.isfinite(c).all():
        raise ValueError(f"Got non-finite values in {name}, expected finite distances")
    if not np.allclose(c, c.T, rtol=1e-6, atol=1e-9):
        raise ValueError(f"Got a non-symmetric {name}, expected a symmetric distance matrix")
    return c


def _check_marginal(name: str, x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (n,) or (x < 0).any() or not np.isclose(x.sum(), 1.0):
        raise ValueError(f"Got {name} of shape {x.shape}, expected ({n},) >= 0 summing to 1")
    return x


def _offdiag_mean(c: np.ndarray) -> float:
    n = c.shape[0]
    mean = (c.sum() - np.trace(c)) / (n * (n - 1))
    if not mean > 0:
        raise ValueError("Got a distance matrix with all off-diagonal entries 0 (identical "
                         "trajectories); GW needs distinct trajectories")
    return float(mean)


# ---------------------------------------------------------------------------------------------
# Labels


def pair_matrices(
    n: int,
    index_a: Sequence[int] | np.ndarray,
    index_b: Sequence[int] | np.ndarray,
    labels: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(Z, M) of n trajectories from P labelled pairs: Z[a, b] = y = P(a ≻ b), Z[b, a] = 1 − y.

    Returns:
        Z (n, n) float64 labels (0 where unlabelled) and M (n, n) float64 mask (1 where
        labelled, both orientations; the diagonal is never labelled). A pair given twice keeps
        the mean of its labels.
    """
    a = np.asarray(index_a, dtype=np.int64).reshape(-1)
    b = np.asarray(index_b, dtype=np.int64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if not (a.shape == b.shape == y.shape):
        raise ValueError(f"Got index_a {a.shape}, index_b {b.shape}, labels {y.shape}; expected (P,)")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
        raise ValueError(f"Got pair indices outside 0..{n - 1}")
    if (a == b).any():
        raise ValueError(f"Got {int((a == b).sum())} pairs of a trajectory with itself")
    if ((y < 0) | (y > 1) | ~np.isfinite(y)).any():
        raise ValueError("Got labels outside [0, 1], expected P(a ≻ b) in [0, 1]")
    z = np.zeros((n, n))
    count = np.zeros((n, n))
    np.add.at(z, (a, b), y)
    np.add.at(z, (b, a), 1.0 - y)
    np.add.at(count, (a, b), 1.0)
    np.add.at(count, (b, a), 1.0)
    mask = (count > 0).astype(np.float64)
    z = np.where(count > 0, z / np.maximum(count, 1.0), 0.0)
    return z, mask


@dataclass
class Transfer:
    """Labels transferred to the target pool; every array is (n_T, n_T).

    Attributes:
        labels: z_T(j, l) = P(j ≻ l), NaN where no labelled mass arrives (and on the diagonal).
        mass: [Tᵀ M T]_jl, the labelled source mass behind each target pair.
        relative_mass: mass / (q_j q_l · pᵀMp): 1 = as much as an average pair gets.
        margin: |2·z − 1|, how decided the label is (0 where NaN).
        confidence: margin · min(1, relative_mass), a per-label weight in [0, 1].
    """

    labels: np.ndarray
    mass: np.ndarray
    relative_mass: np.ndarray
    margin: np.ndarray
    confidence: np.ndarray

    def pairs(self, min_confidence: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                            np.ndarray]:
        """(index_a, index_b, label, confidence) of target pairs j < l with a label and
        confidence >= min_confidence: the input of a reward model's `fit`."""
        n = self.labels.shape[0]
        j, l_ = np.triu_indices(n, k=1)
        keep = np.isfinite(self.labels[j, l_]) & (self.confidence[j, l_] >= min_confidence)
        j, l_ = j[keep], l_[keep]
        return j, l_, self.labels[j, l_], self.confidence[j, l_]


def transfer_labels(
    plan: np.ndarray, labels: np.ndarray, mask: np.ndarray, min_mass: float = 1e-12
) -> Transfer:
    """z_T = Tᵀ(M∘Z)T / TᵀMT: source preference labels carried to the target (PEARL's CPA).

    Args:
        plan: (n_S, n_T) coupling T (:attr:`Coupling.plan`).
        labels: (n_S, n_S) Z, Z_ik = P(i ≻ k) (:func:`pair_matrices`).
        mask: (n_S, n_S) M, 1 where Z is a label.
        min_mass: target pairs with less relative labelled mass than this get NaN.

    Returns:
        :class:`Transfer`.

    Example:
        >>> z, m = pair_matrices(3, [0, 1], [1, 2], [1.0, 1.0])  # 0 ≻ 1 ≻ 2
        >>> t = transfer_labels(np.eye(3) / 3, z, m)
        >>> float(t.labels[0, 1]), float(t.labels[1, 2]), bool(np.isnan(t.labels[0, 2]))
        (1.0, 1.0, True)
    """
    t = np.asarray(plan, dtype=np.float64)
    z = np.asarray(labels, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    n_s = t.shape[0] if t.ndim == 2 else -1
    if t.ndim != 2 or z.shape != (n_s, n_s) or m.shape != (n_s, n_s):
        raise ValueError(
            f"Got plan {t.shape}, labels {z.shape}, mask {m.shape}; expected (n_S, n_T), "
            "(n_S, n_S), (n_S, n_S)"
        )
    m = m.copy()
    np.fill_diagonal(m, 0.0)
    num = t.T @ (m * z) @ t
    den = t.T @ m @ t
    p, q = t.sum(axis=1), t.sum(axis=0)
    labelled = float(p @ m @ p)
    expected = np.outer(q, q) * labelled
    rel = np.divide(den, expected, out=np.zeros_like(den), where=expected > 0)
    ok = rel > min_mass
    np.fill_diagonal(ok, False)
    z_t = np.full_like(den, np.nan)
    z_t[ok] = num[ok] / den[ok]
    z_t = np.clip(z_t, 0.0, 1.0)  # rounding only: a convex combination of labels in [0, 1]
    margin = np.where(ok, np.abs(2.0 * np.nan_to_num(z_t) - 1.0), 0.0)
    confidence = margin * np.minimum(1.0, rel)
    return Transfer(labels=z_t, mass=den, relative_mass=rel, margin=margin, confidence=confidence)


def label_accuracy(
    predicted: np.ndarray,
    truth: np.ndarray,
    mask: np.ndarray,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Agreement of predicted and true pair labels on the masked pairs (j < l, both decided).

    A pair counts when the truth is decided (≠ 0.5) and the prediction is finite; it is right
    when both are on the same side of 0.5 (a prediction of exactly 0.5 counts as half).

    Returns:
        {"accuracy", "flipped_accuracy" (accuracy of 1 − predicted: > accuracy means the
        labels came out inverted), "n" (pairs counted)}; accuracies are NaN when n = 0.
    """
    pred = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(truth, dtype=np.float64)
    mk = np.asarray(mask).astype(bool)
    if not (pred.shape == true.shape == mk.shape) or pred.ndim != 2:
        raise ValueError(
            f"Got predicted {pred.shape}, truth {true.shape}, mask {mk.shape}; expected the "
            "same (n, n)"
        )
    j, l_ = np.triu_indices(pred.shape[0], k=1)
    keep = mk[j, l_] & np.isfinite(pred[j, l_]) & (true[j, l_] != 0.5)
    j, l_ = j[keep], l_[keep]
    w = np.ones(j.size) if weights is None else np.asarray(weights, np.float64)[j, l_]
    if j.size == 0 or w.sum() <= 0:
        return {"accuracy": float("nan"), "flipped_accuracy": float("nan"), "n": 0}
    side_true = true[j, l_] > 0.5
    pj = pred[j, l_]
    right = np.where(pj == 0.5, 0.5, ((pj > 0.5) == side_true).astype(np.float64))
    acc = float((w * right).sum() / w.sum())
    return {"accuracy": acc, "flipped_accuracy": 1.0 - acc, "n": int(j.size)}


@dataclass
class Orientation:
    """Result of :func:`orientation_check`.

    Attributes:
        source_agreement: how often the task-agnostic anchor agrees with the held-out source
            labels (validates the anchor; NaN without held-out pairs the anchor separates).
        target_agreement: how often the transferred labels agree with the anchor on the
            target ("accuracy" against it); flipped_accuracy = 1 − target_agreement.
        flipped_accuracy: 1 − target_agreement.
        flipped: the transferred labels look inverted (target_agreement < 0.5 while the anchor
            is validated on the source).
        reliable: the anchor agreed with the held-out source labels by more than
            `min_source_agreement` and both sides had pairs to compare.
        n_source, n_target: pairs compared on each side.
    """

    source_agreement: float
    target_agreement: float
    flipped_accuracy: float
    flipped: bool
    reliable: bool
    n_source: int
    n_target: int


def orientation_check(
    transfer: Transfer,
    target_anchor: np.ndarray,
    source_labels: np.ndarray,
    source_heldout: np.ndarray,
    source_anchor: np.ndarray,
    *,
    min_gap: float = 0.0,
    min_source_agreement: float = 0.6,
) -> Orientation:
    """Catch a good↔bad reflection in transferred labels.

    GW cannot tell the true match from a reflection, and no check on the source alone can (a
    source → target → source round trip composes T with Tᵀ and cancels a reflection). The
    check therefore uses a weak, task-agnostic "anchor" score that exists on both sides (e.g.
    success + progress, the features of fused GW):

    1. on the source, the held-out labels (pairs not used for the transfer) say how often the
       anchor's order agrees with the true preferences (`source_agreement`);
    2. on the target, how often the transferred labels agree with the anchor's order
       (`target_agreement`, weighted by the transfer's confidence).

    If the anchor is validated on the source (agreement > `min_source_agreement`) but the
    transferred labels disagree with it on the target (< 0.5), the transfer is flipped: use
    1 − labels, or re-run fused GW with a larger feature weight.

    Args:
        transfer: :func:`transfer_labels` output on the target.
        target_anchor: (n_T,) anchor score per target trajectory (higher: better).
        source_labels: (n_S, n_S) Z of the source (all labels, including the held-out ones).
        source_heldout: (n_S, n_S) mask of the held-out source pairs.
        source_anchor: (n_S,) anchor score per source trajectory.
        min_gap: only pairs whose anchor scores differ by more than this are compared.
        min_source_agreement: the anchor must agree with the held-out source labels this often
            to be trusted.

    Returns:
        :class:`Orientation`.
    """
    src = _anchor_labels(np.asarray(source_anchor, np.float64), min_gap)
    tgt = _anchor_labels(np.asarray(target_anchor, np.float64), min_gap)
    if tgt.shape != transfer.labels.shape:
        raise ValueError(
            f"Got target_anchor of {tgt.shape[0]} trajectories, the transfer has "
            f"{transfer.labels.shape[0]}"
        )
    if src.shape != np.shape(source_labels):
        raise ValueError(
            f"Got source_anchor of {src.shape[0]} trajectories, source_labels of shape "
            f"{np.shape(source_labels)}"
        )
    held = np.asarray(source_heldout).astype(bool) & (src != 0.5)
    s = label_accuracy(src, np.asarray(source_labels, np.float64), held)
    t = label_accuracy(transfer.labels, tgt, tgt != 0.5, weights=transfer.confidence + 1e-12)
    reliable = s["n"] > 0 and t["n"] > 0 and s["accuracy"] > min_source_agreement
    flipped = bool(reliable and t["accuracy"] < 0.5)
    if flipped:
        logger.warning(
            "transferred labels look inverted: they agree with the task-agnostic anchor on %.0f%% "
            "of target pairs while the anchor agrees with %.0f%% of held-out source labels",
            100 * t["accuracy"], 100 * s["accuracy"],
        )
    return Orientation(
        source_agreement=s["accuracy"],
        target_agreement=t["accuracy"],
        flipped_accuracy=t["flipped_accuracy"],
        flipped=flipped,
        reliable=bool(reliable),
        n_source=s["n"],
        n_target=t["n"],
    )


def _anchor_labels(score: np.ndarray, gap: float) -> np.ndarray:
    """(n, n) 1 where score_j − score_l > gap, 0 where < −gap, 0.5 otherwise."""
    d = score[:, None] - score[None, :]
    return np.where(d > gap, 1.0, np.where(d < -gap, 0.0, 0.5))
