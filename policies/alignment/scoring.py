"""GRAPE-style trajectory scores from per-step arrays (no VLM): stage-wise costs, group scaling.

GRAPE (Zhang et al. 2024) scores each rollout of a group (same task and initial state) with

    R = λ1·R_self + λ2·R_ext + λ3·1[success],      (λ1, λ2, λ3) = (0.01, 1, 5) in its code,
    R_ext = Π_stages exp(−Σ_j β_j·max(0, C_j − τ_j)),

where R_self is the policy's own log-likelihood of the trajectory (GRAPE's code adds
0.01·log R_self; a flow-matching policy has none, so the caller passes a proxy such as
−Σ_c ℓ_θ(chunk c) or nothing), C_j are stage-wise costs and τ_j thresholds.

Here the costs come from what a Meta-World rollout records (robolearn's trajectory record:
time-major per-step arrays, row t = the step taken from observation o_t):

    obs (T, 39) with the hand position in obs[:, :3]; action (T, 4) commanded;
    success (T,) bool; chunk_index (T,) int (-1: no chunks); info_near_object,
    info_grasp_success, info_obj_to_target (T,) float; optional contact_count (T,) int,
    contact_force (T,) float, interventions (T, K) or (T,) int.

Stages: `approach` = rows up to and including the first row whose `info_near_object` or
`info_grasp_success` exceeds 0.5; `manipulate` = the rows after it, up to and including the
first success (rows after the first success are ignored). If the approach signal never
fires the whole trajectory is approach and manipulate is empty; if success comes first, the
approach stage ends there. (Caveat: several Meta-World v3 tasks report these keys
degenerately — `grasp_success` is the constant 1.0 in some, `tcp_open > 0` in the button
tasks, `near_object` a distance in one — so their approach stage is one row; that is the
same for every trajectory of a group, so scores stay comparable within it.)

Costs per stage (name: meaning):

    duration            number of steps in the stage
    path_excess         hand path length / straight-line distance − 1 (straight-line distance
                        floored at `min_straight` metres, so a stage that returns to its start
                        costs path / min_straight)
    jerk                mean ‖a_{t+1} − 2·a_t + a_{t−1}‖² of the commanded actions
    chunk_jump          mean ‖a_first of a chunk − a_last of the previous chunk‖ (0 without
                        chunk boundaries)
    saturation          fraction of |a| >= 0.999 over the `saturation_dims` action dims
    contacts            steps with contact_count > 0            (when recorded)
    peak_force          max contact_force                        (when recorded)
    interventions       total safety-layer interventions         (when recorded)
    remaining_distance  final info_obj_to_target on failures, 0 on successes (manipulate only)

Group scaling (REFERENCES.md; GRAPE's README warns its constants need retuning because raw
costs have different units): per cost, τ = median over the group and scale = 1/MAD, so
max(0, C − τ)·scale is "MADs worse than the typical rollout of this group". A cost whose MAD
is 0 falls back to the mean absolute deviation from the median; if that is 0 too, every
rollout has the same value and the cost is dropped (scale 0).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from policies.backbones import unknown_name_message

logger = logging.getLogger(__name__)

STAGES = ("approach", "manipulate")
COST_NAMES = (
    "duration",
    "path_excess",
    "jerk",
    "chunk_jump",
    "saturation",
    "contacts",
    "peak_force",
    "interventions",
    "remaining_distance",
)
OPTIONAL_COSTS = ("contacts", "peak_force", "interventions")
"""Costs that exist only when the rollout recorded them (contacts=True, a safety layer)."""

PRESETS: dict[str, dict[str, float]] = {
    # Fast and direct: few steps, no detours, and close to the goal when it fails.
    "efficiency": {"duration": 1.0, "path_excess": 1.0, "remaining_distance": 1.0},
    # Smooth commands: low jerk, consistent chunks, away from the action limits.
    "smooth": {"jerk": 1.0, "chunk_jump": 1.0, "saturation": 1.0},
    # Gentle with the world and within the safety layer.
    "safe": {"contacts": 1.0, "peak_force": 1.0, "interventions": 1.0},
    # Completes with margin: ends near the target, keeps control authority (unsaturated),
    # consistent plans, and needs no safety interventions.
    "robust": {
        "remaining_distance": 1.0,
        "saturation": 0.5,
        "chunk_jump": 0.5,
        "interventions": 0.5,
    },
    "all": dict.fromkeys(COST_NAMES, 1.0),
}
"""Named cost weights β_j (a weight applies to the cost in every stage)."""

GRAPE_LAMBDAS = (0.01, 1.0, 5.0)
"""(λ1, λ2, λ3) of R = λ1·R_self + λ2·R_ext + λ3·1[success], GRAPE's code constants."""


@dataclass(frozen=True)
class CostConfig:
    """How :func:`trajectory_costs` reads a record.

    Attributes:
        stage_keys: Per-step keys whose first value > `stage_threshold` ends the approach.
        stage_threshold: Threshold on them (the Meta-World keys are 0/1 floats).
        min_straight: Floor of the straight-line distance in path_excess, metres.
        saturation_dims: Action dims counted by `saturation` (None: all). The default leaves
            out Meta-World's gripper (dim 3), which is commanded at ±1 by design.
        saturation_level: |a| at or above this counts as saturated.
    """

    stage_keys: tuple[str, ...] = ("info_near_object", "info_grasp_success")
    stage_threshold: float = 0.5
    min_straight: float = 0.01
    saturation_dims: tuple[int, ...] | None = (0, 1, 2)
    saturation_level: float = 0.999

    def __post_init__(self) -> None:
        if not self.min_straight > 0:
            raise ValueError(f"CostConfig: Got min_straight={self.min_straight}, expected > 0")
        if not self.stage_keys:
            raise ValueError("CostConfig: Got no stage_keys, expected at least one key")


def stage_bounds(
    steps: Mapping[str, np.ndarray], config: CostConfig | None = None
) -> dict[str, tuple[int, int]]:
    """The row range [lo, hi) of each stage of a record (see the module docstring)."""
    cfg = config or CostConfig()
    n = _length(steps)
    success = np.asarray(steps["success"], dtype=bool).reshape(-1)
    end = int(np.argmax(success)) + 1 if success.any() else n
    fired = np.zeros(n, dtype=bool)
    present = [k for k in cfg.stage_keys if k in steps]
    if not present:
        raise ValueError(
            f"record lacks every stage key {list(cfg.stage_keys)} (has {sorted(steps)}); "
            "roll out with record='steps' (info_* keys) or set CostConfig(stage_keys=...)"
        )
    for key in present:
        fired |= np.asarray(steps[key], dtype=np.float64).reshape(-1) > cfg.stage_threshold
    approach_end = int(np.argmax(fired)) + 1 if fired.any() else n
    approach_end = min(approach_end, end)
    return {"approach": (0, approach_end), "manipulate": (approach_end, end)}


def trajectory_costs(
    steps: Mapping[str, np.ndarray],
    success: bool | None = None,
    config: CostConfig | None = None,
) -> dict[str, float]:
    """The stage-wise costs of one trajectory record.

    Args:
        steps: per-step arrays (module docstring): needs `obs`, `action`, `success` and the
            stage keys; uses `chunk_index`, `info_obj_to_target`, `contact_count`,
            `contact_force`, `interventions` when present.
        success: the episode's success; default `steps["success"].any()`.
        config: :class:`CostConfig`.

    Returns:
        {"<stage>/<cost>": value} for every stage and cost (optional costs only when recorded;
        remaining_distance only for manipulate and only when info_obj_to_target is recorded).

    Example:
        >>> T = 6
        >>> steps = {"obs": np.zeros((T, 39)), "action": np.zeros((T, 4)),
        ...          "success": np.arange(T) == 4, "info_near_object": np.arange(T) >= 2}
        >>> c = trajectory_costs(steps)
        >>> c["approach/duration"], c["manipulate/duration"]
        (3.0, 2.0)
    """
    cfg = config or CostConfig()
    n = _length(steps)
    for key in ("obs", "action", "success"):
        if key not in steps:
            raise ValueError(f"record lacks per-step {key!r} (has {sorted(steps)})")
    obs = _rows(steps, "obs", n, ndim=2)
    action = _rows(steps, "action", n, ndim=2)
    if obs.shape[1] < 3:
        raise ValueError(f"Got obs.shape={obs.shape}, expected (T, Do >= 3): hand xyz in obs[:, :3]")
    hand = obs[:, :3]
    dims = cfg.saturation_dims
    if dims is not None and (len(dims) == 0 or max(dims) >= action.shape[1] or min(dims) < 0):
        raise ValueError(
            f"Got saturation_dims={dims}, expected indices in 0..{action.shape[1] - 1} "
            "(or None for all dims)"
        )
    chunk = (
        _rows(steps, "chunk_index", n).astype(np.int64)
        if "chunk_index" in steps
        else np.full(n, -1, dtype=np.int64)
    )
    succeeded = bool(np.asarray(steps["success"]).any()) if success is None else bool(success)
    out: dict[str, float] = {}
    for stage, (lo, hi) in stage_bounds(steps, cfg).items():
        a = action[lo:hi]
        out[f"{stage}/duration"] = float(hi - lo)
        out[f"{stage}/path_excess"] = _path_excess(hand[lo : min(hi + 1, n)], cfg.min_straight)
        out[f"{stage}/jerk"] = _jerk(a)
        out[f"{stage}/chunk_jump"] = _chunk_jump(action, chunk, lo, hi)
        sat = a if dims is None else a[:, list(dims)]
        out[f"{stage}/saturation"] = (
            float(np.mean(np.abs(sat) >= cfg.saturation_level)) if sat.size else 0.0
        )
        if "contact_count" in steps:
            contacts = _rows(steps, "contact_count", n)[lo:hi]
            out[f"{stage}/contacts"] = float(np.count_nonzero(contacts > 0))
        if "contact_force" in steps:
            force = _rows(steps, "contact_force", n)[lo:hi]
            out[f"{stage}/peak_force"] = float(force.max()) if force.size else 0.0
        if "interventions" in steps:
            iv = np.asarray(steps["interventions"])
            if iv.shape[0] != n:
                raise ValueError(f"Got interventions.shape={iv.shape}, expected ({n}, K) or ({n},)")
            out[f"{stage}/interventions"] = float(iv[lo:hi].sum())
    if "info_obj_to_target" in steps:
        final = float(_rows(steps, "info_obj_to_target", n)[-1]) if n else 0.0
        out["manipulate/remaining_distance"] = 0.0 if succeeded else final
    bad = [k for k, v in out.items() if not np.isfinite(v)]
    if bad:
        raise ValueError(f"trajectory costs {bad} are not finite: check the record's arrays")
    return out


def resolve_weights(
    weights: str | Mapping[str, float], available: Sequence[str] | None = None
) -> dict[str, float]:
    """Cost weights β as {"<stage>/<cost>": β} from a preset name or explicit weights.

    Args:
        weights: a preset name (:data:`PRESETS`) or a mapping whose keys are cost names
            (apply to every stage) or "<stage>/<cost>" (one stage), values >= 0.
        available: the cost keys the trajectories have (:func:`trajectory_costs`). A preset
            silently skips optional costs that were not recorded (logged); explicit weights on
            a cost that was not recorded raise.

    Raises:
        ValueError: unknown preset or cost name (with the closest match), negative weight, a
            weighted cost that was not recorded, or no weighted cost recorded at all.
    """
    if isinstance(weights, str):
        if weights not in PRESETS:
            raise ValueError(unknown_name_message("cost preset", weights, PRESETS))
        raw: Mapping[str, float] = PRESETS[weights]
        preset = True
    elif isinstance(weights, Mapping):
        raw, preset = weights, False
    else:
        raise TypeError(
            f"Got weights of type {type(weights).__name__}, expected a preset name "
            f"{sorted(PRESETS)} or a mapping cost -> weight"
        )
    expanded: dict[str, float] = {}
    sources: dict[str, list[str]] = {}  # the given key -> the "<stage>/<cost>" keys it sets
    valid_keys = [f"{s}/{c}" for s in STAGES for c in COST_NAMES]
    for key, value in raw.items():
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
            raise ValueError(f"Got weight {key}={value!r}, expected a finite number >= 0")
        if key in COST_NAMES:
            sources[key] = [f"{stage}/{key}" for stage in STAGES]
        elif key in valid_keys:
            sources[key] = [key]
        else:
            raise ValueError(unknown_name_message("cost", key, [*COST_NAMES, *valid_keys]))
        for k in sources[key]:
            expanded[k] = float(value)
    if available is not None:
        have = set(available)
        # A cost name needs to exist in one stage at least (remaining_distance exists for
        # manipulate only); a "<stage>/<cost>" key needs exactly that column.
        missing = sorted(
            key for key, cols in sources.items() if raw[key] > 0 and not have.intersection(cols)
        )
        if missing and not preset:
            raise ValueError(
                f"Got weights on costs {missing} that the trajectories do not have (they have "
                f"{sorted(have)}); record them (contacts=True, the safety layer's "
                "interventions) or drop the weights"
            )
        if missing:
            logger.info("cost preset %r: skipping unrecorded costs %s", weights, missing)
        expanded = {k: v for k, v in expanded.items() if k in have}
        if not any(v > 0 for v in expanded.values()):
            raise ValueError(
                f"Got weights {dict(raw)} but none of their costs was recorded (costs: "
                f"{sorted(have)}); pick another preset or record the costs"
            )
    return expanded


def group_scale(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column threshold τ = median and scale = 1/MAD of a (N, K) cost matrix of one group.

    MAD = median |C − τ|; where it is 0 the mean absolute deviation from τ is used instead,
    and where that is 0 too (all equal) the scale is 0 (the cost cannot rank this group).
    """
    c = np.asarray(costs, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError(f"Got costs.shape={c.shape}, expected (N >= 1, K)")
    tau = np.median(c, axis=0)
    dev = np.abs(c - tau)
    mad = np.median(dev, axis=0)
    mean_dev = dev.mean(axis=0)
    tiny = 1e-12 * np.maximum(1.0, np.abs(tau))
    spread = np.where(mad > tiny, mad, mean_dev)
    scale = np.where(spread > tiny, 1.0 / np.where(spread > tiny, spread, 1.0), 0.0)
    return tau, scale


def external_reward(
    costs: np.ndarray, weights: np.ndarray, tau: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """R_ext = Π_stages exp(−Σ_j β_j·max(0, (C_j − τ_j)·scale_j)) for (N, K) costs → (N,).

    The product over stages of exponentials is one exponential of the sum over all (stage,
    cost) columns, which is what is computed.
    """
    excess = np.maximum(0.0, (np.asarray(costs, np.float64) - tau) * scale)
    return np.exp(-(excess * np.asarray(weights, np.float64)).sum(axis=1))


@dataclass
class Scores:
    """Scores of N trajectories (all arrays (N,), in the order given).

    Attributes:
        score: R = λ1·log_self + λ2·R_ext + λ3·1[success].
        r_ext: R_ext in (0, 1].
        success: bool.
        keys: the K cost columns used ("<stage>/<cost>", weight > 0).
        costs: (N, K) raw costs.
        scaled: (N, K) max(0, (C − τ)·scale), per group.
        tau, scale: (N, K) each trajectory's group threshold and scale.
    """

    score: np.ndarray
    r_ext: np.ndarray
    success: np.ndarray
    keys: list[str]
    costs: np.ndarray
    scaled: np.ndarray
    tau: np.ndarray
    scale: np.ndarray
    weights: dict[str, float] = field(default_factory=dict)


def score_trajectories(
    costs: Sequence[Mapping[str, float]],
    success: Sequence[bool] | np.ndarray,
    groups: Sequence[Hashable],
    weights: str | Mapping[str, float] = "all",
    log_self: Sequence[float] | np.ndarray | None = None,
    lambdas: tuple[float, float, float] = GRAPE_LAMBDAS,
) -> Scores:
    """GRAPE's score R for each trajectory, with costs scaled within its group.

    Args:
        costs: N cost dicts from :func:`trajectory_costs` (same keys for all).
        success: (N,) episode successes.
        groups: N hashable group keys (same task, initial state and TaskParams ⇒ same key).
        weights: preset name or explicit weights (:func:`resolve_weights`).
        log_self: (N,) the policy's log-likelihood of each trajectory or a proxy (λ1 term);
            None: 0.
        lambdas: (λ1, λ2, λ3); default GRAPE's (0.01, 1, 5).

    Returns:
        :class:`Scores`.

    Example:
        >>> costs = [{"approach/duration": d} for d in (10.0, 20.0, 30.0)]
        >>> s = score_trajectories(costs, [True, True, False], ["g"] * 3,
        ...                        weights={"approach/duration": 1.0})
        >>> s.score.round(3).tolist()      # 1·R_ext + 5·success; 30 is 1 MAD over the median
        [6.0, 6.0, 0.368]
    """
    n = len(costs)
    if n == 0:
        raise ValueError("score_trajectories: Got no trajectories, expected at least one")
    if len(success) != n or len(groups) != n:
        raise ValueError(
            f"Got {n} cost dicts, {len(success)} successes and {len(groups)} group keys; "
            "expected one of each per trajectory"
        )
    keys = sorted(costs[0])
    for i, c in enumerate(costs):
        if sorted(c) != keys:
            raise ValueError(
                f"trajectory {i} has costs {sorted(c)}, trajectory 0 has {keys}; every "
                "trajectory must be recorded the same way (contacts, interventions)"
            )
    w = resolve_weights(weights, available=keys)
    used = [k for k in keys if w.get(k, 0.0) > 0]
    mat = np.array([[c[k] for k in used] for c in costs], dtype=np.float64).reshape(n, len(used))
    beta = np.array([w[k] for k in used], dtype=np.float64)
    tau = np.zeros_like(mat)
    scale = np.zeros_like(mat)
    for idx in _group_indices(groups).values():
        t, s = group_scale(mat[idx])
        tau[idx], scale[idx] = t, s
    scaled = np.maximum(0.0, (mat - tau) * scale)
    r_ext = external_reward(mat, beta, tau, scale)
    succ = np.asarray(success, dtype=bool).reshape(n)
    ls = np.zeros(n) if log_self is None else np.asarray(log_self, dtype=np.float64).reshape(n)
    if not np.isfinite(ls).all():
        raise ValueError("Got non-finite log_self values, expected finite log-likelihoods")
    l1, l2, l3 = lambdas
    score = l1 * ls + l2 * r_ext + l3 * succ
    return Scores(score, r_ext, succ, used, mat, scaled, tau, scale, {k: w[k] for k in used})


def _group_indices(groups: Sequence[Hashable]) -> dict[Hashable, np.ndarray]:
    """{group key: indices}, in order of first appearance."""
    out: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        out.setdefault(g, []).append(i)
    return {g: np.asarray(v) for g, v in out.items()}


def _length(steps: Mapping[str, np.ndarray]) -> int:
    if "success" not in steps:
        raise ValueError(f"record lacks per-step 'success' (has {sorted(steps)})")
    return int(np.asarray(steps["success"]).reshape(-1).shape[0])


def _rows(steps: Mapping[str, np.ndarray], key: str, n: int, ndim: int = 1) -> np.ndarray:
    x = np.asarray(steps[key], dtype=np.float64)
    if x.ndim != ndim or x.shape[0] != n:
        want = f"({n},)" if ndim == 1 else f"({n}, D)"
        raise ValueError(f"Got {key}.shape={x.shape}, expected {want} (one row per step)")
    return x


def _path_excess(pos: np.ndarray, min_straight: float) -> float:
    if pos.shape[0] < 2:
        return 0.0
    path = float(np.linalg.norm(np.diff(pos, axis=0), axis=1).sum())
    straight = float(np.linalg.norm(pos[-1] - pos[0]))
    return (path - straight) / max(straight, min_straight)


def _jerk(a: np.ndarray) -> float:
    if a.shape[0] < 3:
        return 0.0
    d2 = a[2:] - 2.0 * a[1:-1] + a[:-2]
    return float((d2**2).sum(axis=1).mean())


def _chunk_jump(action: np.ndarray, chunk: np.ndarray, lo: int, hi: int) -> float:
    t = np.arange(max(lo, 1), hi)
    if t.size == 0:
        return 0.0
    boundary = (chunk[t] != chunk[t - 1]) & (chunk[t] >= 0) & (chunk[t - 1] >= 0)
    t = t[boundary]
    if t.size == 0:
        return 0.0
    return float(np.linalg.norm(action[t] - action[t - 1], axis=1).mean())
