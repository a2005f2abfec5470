"""Real-robot recordings as plain arrays, and their initial conditions as ``rand_vec`` points.

A recording is a list of episodes, each a mapping of numpy arrays as ``robolearn deploy`` stores
them (``source="real"``): ``obs`` ``(T, 39)`` — the observation the policy acted on at each
step — and ``action`` ``(T, 4)`` — the action actually sent (after the safety layer). Other
keys (``action_policy``, ``ee_pos``, timing, a twin's ground truth) are ignored.
:func:`check_episodes` validates them once, with errors that name the episode and the key.

Meta-World's observation: ``obs[0:3]`` hand xyz, ``obs[3]`` gripper opening, ``obs[4:7]`` the
main object's xyz (``obs[7:11]`` its quaternion), ``obs[11:14]`` a second object's xyz (zeros
when there is none), ``obs[18:36]`` the same 18 entries one step earlier, ``obs[36:39]`` the goal
xyz (zeros in ML suites, where it is hidden).

**Initial conditions.** Meta-World draws a task's layout at reset from a random vector
(``env.rand_vec``; e.g. object xyz then goal xyz for ``push-v3``) and ``sim`` can start an
episode from a given one (``env.reset(options={"rand_vec": v})``). :func:`rand_vec_map` finds,
per task, how the reset observation's object and goal positions depend on that vector — by
probing the simulator with vectors from seeded resets — and :func:`ingest_initial_conditions`
inverts it on each episode's first observation, giving the ``rand_vec`` points of an
:class:`~curricula.EmpiricalInit`. On 49 of the 50 tasks the positions are an affine function of
the vector (most are the vector itself, some with a fixed offset); entries that do not show in
the observation at all (``push-v3``'s goal height, ``bin-picking-v3``'s bin) do not change the
start either and are set to the middle of their range. ``disassemble-v3`` is not affine (its
observed point turns with the layout) and is refused with a message. A recovered vector is
clipped to the task's bounds and checked by a reset: the start it gives must show the object
and goal where the episode's first observation did (within ``tolerance``); an episode that
fails (a hidden goal, a task whose seeded starts differ from the vector's — see
``sim.MetaWorldEnv.reset`` — or a layout the task's reset rejects) is skipped with the reason.

Example:
    >>> import numpy as np, sim
    >>> env = sim.make_env("push-v3", seed=0)
    >>> obs, _ = env.reset(seed=3)
    >>> ic = ingest_initial_conditions([{"obs": obs[None], "action": np.zeros((1, 4))}], "push-v3")
    >>> bool(np.allclose(ic.rand_vecs[0][:5], env.rand_vec[:5], atol=1e-6))
    True
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curricula._validate import CurriculumError, CurriculumTypeError
from curricula.factors import EmpiricalInit, _task_name
from sim import ACTION_DIM, OBS_DIM, make_env

logger = logging.getLogger(__name__)

HAND = slice(0, 3)
"""Hand xyz in the observation."""
GRIPPER = 3
"""Gripper opening in the observation (0 closed, 1 open)."""
OBJECT = slice(4, 7)
"""The main object's xyz in the observation."""
OBJECT2 = slice(11, 14)
"""A second object's xyz (zeros when the task has none)."""
GOAL = slice(36, 39)
"""The goal xyz (static within an episode; zeros when the suite hides it)."""
_FEATURES = np.r_[OBJECT, OBJECT2, GOAL]

_PROBES = 14  # seeded layouts the affine map is fitted to (rand_vec has at most 6 entries)
_CHECKS = 4  # further layouts it must reproduce
_AFFINE_TOL = 5e-3  # metres: affine up to well below a start the reset check tolerates
_RELEVANT = 1e-3  # |d feature / d entry| below this: the entry does not show in the obs


@dataclass(frozen=True)
class Episode:
    """One validated episode: float64 copies of the arrays the estimators read.

    Attributes:
        obs: ``(T, 39)`` observations the policy acted on.
        action: ``(T, 4)`` actions actually sent, in [-1, 1].
    """

    obs: np.ndarray
    action: np.ndarray

    @property
    def length(self) -> int:
        """``T``, the number of steps."""
        return int(self.obs.shape[0])


def check_episodes(
    episodes: Any,
    *,
    min_steps: int = 1,
    where: str = "episodes",
    task: str | None = None,
    min_episodes: int = 1,
) -> list[Episode]:
    """Validates a recording and returns float64 copies of its ``obs`` and ``action``.

    Args:
        episodes: A sequence of mappings with ``"obs"`` ``(T, 39)`` and ``"action"`` ``(T, 4)``
            (numpy arrays or nested lists). Optional metadata an episode store attaches is
            checked when present: ``"task"`` must be ``task``; ``"obs_dim"`` /
            ``"action_dim"`` must be 39 / 4 (Meta-World's robot spec). Other keys are ignored.
        min_steps: The fewest steps an episode may have.
        where: How the recording is named in messages.
        task: The task the recording is meant to be of (checked against each episode's
            ``"task"`` entry, if it has one).
        min_episodes: The fewest episodes the recording may have.

    Returns:
        One :class:`Episode` per input episode, in order.

    Raises:
        CurriculumTypeError: Not a sequence of mappings, or a key that is not numeric.
        CurriculumError: No episodes, a missing key, a wrong shape, too few steps, non-finite
            values or actions outside [-1, 1]; the message names the episode and key.
    """
    if isinstance(episodes, (str, bytes, Mapping)) or not isinstance(episodes, Sequence):
        raise CurriculumTypeError(
            f"{where} must be a list of episodes (mappings with 'obs' (T, {OBS_DIM}) and "
            f"'action' (T, {ACTION_DIM})), got {type(episodes).__name__}"
        )
    if not episodes:
        raise CurriculumError(f"{where} is empty; expected at least one episode")
    if len(episodes) < min_episodes:
        raise CurriculumError(
            f"{where} has {len(episodes)} episode(s); expected at least {min_episodes}: record "
            "more episodes on the robot before fitting"
        )
    want = _task_name(task) if task is not None else None
    out = []
    for i, ep in enumerate(episodes):
        name = f"{where}[{i}]"
        if not isinstance(ep, Mapping):
            raise CurriculumTypeError(
                f"{name} must be a mapping with 'obs' and 'action', got {type(ep).__name__}"
            )
        got = ep.get("task")
        if want is not None and got is not None and str(got) != want:
            raise CurriculumError(
                f"{name} was recorded on task {str(got)!r}, not {want!r}; fit each task's "
                "recording on its own (select the episodes of one task first)"
            )
        for key, dim in (("obs_dim", OBS_DIM), ("action_dim", ACTION_DIM)):
            if key in ep and int(ep[key]) != dim:
                raise CurriculumError(
                    f"{name} was recorded with {key}={int(ep[key])}; expected {dim} (a "
                    "Meta-World arm's spec): a recording of another robot cannot be fitted "
                    "against this simulator"
                )
        arrays = {}
        for key, dim in (("obs", OBS_DIM), ("action", ACTION_DIM)):
            if key not in ep:
                raise CurriculumError(
                    f"{name} has no {key!r} (keys: {', '.join(map(str, ep)) or 'none'}); "
                    f"expected {key!r} of shape (T, {dim})"
                )
            try:
                arr = np.array(ep[key], dtype=np.float64)
            except (TypeError, ValueError):
                raise CurriculumTypeError(
                    f"{name}[{key!r}] is not numeric; expected an array of shape (T, {dim})"
                ) from None
            if arr.ndim != 2 or arr.shape[1] != dim:
                raise CurriculumError(
                    f"{name}[{key!r}] has shape {arr.shape}; expected (T, {dim}), the "
                    "Meta-World arm's spec (a recording of another robot cannot be fitted)"
                )
            bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
            if bad.size:
                raise CurriculumError(
                    f"{name}[{key!r}] has non-finite values at steps {bad[:5].tolist()}; "
                    "drop or repair those steps first"
                )
            arrays[key] = arr
        obs, action = arrays["obs"], arrays["action"]
        if obs.shape[0] != action.shape[0]:
            raise CurriculumError(
                f"{name} has {obs.shape[0]} observations and {action.shape[0]} actions; "
                "expected one action per observation (the action sent after it)"
            )
        if obs.shape[0] < min_steps:
            raise CurriculumError(
                f"{name} has {obs.shape[0]} steps; expected at least {min_steps}"
            )
        # float32 storage can put a clipped action a rounding step past the limit.
        outside = np.flatnonzero((np.abs(action) > 1.0 + 1e-6).any(axis=1))
        if outside.size:
            raise CurriculumError(
                f"{name}['action'] leaves [-1, 1] at steps {outside[:5].tolist()} (e.g. "
                f"{action[outside[0]].tolist()}); expected the actions actually sent, which "
                "Meta-World clips to [-1, 1]"
            )
        out.append(Episode(obs=obs, action=np.clip(action, -1.0, 1.0)))
    return out


# --------------------------------------------------------------------------------------------
# rand_vec <-> first observation


@dataclass(frozen=True)
class RandVecMap:
    """How a task's reset observation shows its ``rand_vec``: ``features = A.T @ vec + b``.

    ``features`` are ``obs[4:7]``, ``obs[11:14]`` and ``obs[36:39]`` of the reset
    observation (object, second object, goal).

    Attributes:
        task: The task.
        low, high: The ``rand_vec`` bounds.
        A: ``(d, 9)`` sensitivities of the features to each entry.
        b: ``(9,)`` offsets.
        relevant: ``(d,)`` whether each entry shows in the observation (and so must be
            recovered); the others are fixed by their bounds or do not change the start.
        max_error: The largest misfit of the affine model on the probe layouts, metres.
        reason: Why the map cannot be inverted, or ``""`` when it can.
    """

    task: str
    low: np.ndarray
    high: np.ndarray
    A: np.ndarray
    b: np.ndarray
    relevant: np.ndarray
    max_error: float
    reason: str = ""

    @property
    def goal_shows(self) -> bool:
        """Whether the task's goal is away from the origin (so zeros mean a hidden goal)."""
        mid = 0.5 * (self.low + self.high)
        return bool(np.linalg.norm((self.A.T @ mid + self.b)[6:]) > 0.1)

    @property
    def recoverable(self) -> bool:
        """Whether a first observation determines the ``rand_vec``."""
        return not self.reason

    def invert(self, first_obs: np.ndarray) -> tuple[np.ndarray, float]:
        """The ``rand_vec`` a first observation shows, and the misfit of its features.

        Args:
            first_obs: ``(39,)`` an episode's first observation.

        Returns:
            ``(vec, misfit)``: the vector (clipped to the bounds; entries that do not show take
            their range's middle) and the largest difference between the first observation's
            features and those the vector predicts, metres.

        Raises:
            CurriculumError: The task's map cannot be inverted (:attr:`reason`).
        """
        if self.reason:
            raise CurriculumError(self.reason)
        f = np.asarray(first_obs, dtype=np.float64)[_FEATURES]
        vec = 0.5 * (self.low + self.high)
        rel = self.relevant
        target = f - self.b - self.A[~rel].T @ vec[~rel]
        sol, *_ = np.linalg.lstsq(self.A[rel].T, target, rcond=None)
        vec[rel] = sol
        vec = np.clip(vec, self.low, self.high)
        misfit = float(np.max(np.abs(self.A.T @ vec + self.b - f)))
        return vec, misfit


@functools.cache
def rand_vec_map(task: str) -> RandVecMap:
    """Probes the simulator for the affine map from ``rand_vec`` to the reset observation.

    Resets a nominal env of ``task`` from the vectors of ``_PROBES + _CHECKS`` seeded resets
    (with ``options={"rand_vec": v}``, so the start is a function of the vector alone), fits
    the features as an affine function of the vector on the first ``_PROBES`` and checks the
    fit on all of them. Cached per process (about 0.5 s per task).

    Args:
        task: Meta-World task name.

    Returns:
        The map; :attr:`RandVecMap.reason` says why it cannot be inverted, if it cannot.
    """
    task = _task_name(task)
    env = make_env(task, seed=0)
    low, high = env.rand_vec_bounds
    vecs, feats = [], []
    for s in range(_PROBES + _CHECKS):
        env.reset(seed=10_000 + s)
        vec = env.rand_vec
        obs, _ = env.reset(options={"rand_vec": vec})
        vecs.append(vec)
        feats.append(obs[_FEATURES])
    env.close()
    R = np.array(vecs)
    F = np.array(feats)
    design = np.c_[R, np.ones(len(R))]
    coef, *_ = np.linalg.lstsq(design[:_PROBES], F[:_PROBES], rcond=None)
    A, b = coef[:-1], coef[-1]
    max_error = float(np.max(np.abs(design @ coef - F)))
    free = high > low
    relevant = free & (np.linalg.norm(A, axis=1) > _RELEVANT)
    reason = ""
    if max_error > _AFFINE_TOL:
        reason = (
            f"{task}: the object and goal positions of its reset observation are not an affine "
            f"function of its rand_vec (misfit {max_error:.3g} m on probe layouts), so a first "
            "observation does not give its initial condition; its episodes are skipped"
        )
    elif relevant.any():
        sv = np.linalg.svd(A[relevant], compute_uv=False)
        if sv.min() < _RELEVANT:
            reason = (
                f"{task}: entries {np.flatnonzero(relevant).tolist()} of its rand_vec are not "
                "separately visible in the reset observation; its episodes are skipped"
            )
    return RandVecMap(task, low, high, A, b, relevant, max_error, reason)


@dataclass(frozen=True)
class InitialConditions:
    """The initial conditions of a recording: one ``rand_vec`` per episode, or a reason.

    Attributes:
        task: The task.
        rand_vecs: One entry per episode: the recovered vector, or ``None`` if skipped.
        errors: Per episode, the largest difference (metres) between the episode's first
            observation and the reset from its vector (object, second object and goal
            positions), ``None`` if skipped.
        skipped: ``{episode index: reason}``.
    """

    task: str
    rand_vecs: tuple[np.ndarray | None, ...]
    errors: tuple[float | None, ...]
    skipped: dict[int, str] = field(default_factory=dict)

    @property
    def points(self) -> list[tuple[float, ...]]:
        """The recovered vectors (skipped episodes left out)."""
        return [tuple(float(x) for x in v) for v in self.rand_vecs if v is not None]

    def factor(self) -> EmpiricalInit:
        """The :class:`~curricula.EmpiricalInit` of the recovered vectors (equal weights).

        Raises:
            CurriculumError: No episode gave an initial condition (the reasons are listed).
        """
        pts = self.points
        if not pts:
            reasons = "; ".join(f"episode {i}: {r}" for i, r in sorted(self.skipped.items()))
            raise CurriculumError(
                f"no episode of {self.task} gave an initial condition ({reasons}); there is "
                "nothing to add to the distribution"
            )
        return EmpiricalInit({self.task: pts})

    def diagnostics(self) -> dict[str, Any]:
        """JSON-ready summary: counts, the largest reset error, the skip reasons."""
        errs = [e for e in self.errors if e is not None]
        return {
            "episodes": len(self.rand_vecs),
            "recovered": len(errs),
            "max_reset_error_m": max(errs) if errs else None,
            "skipped": {str(i): r for i, r in sorted(self.skipped.items())},
        }


def ingest_initial_conditions(
    episodes: Any, task: str, *, tolerance: float | None = None, verify: bool = True
) -> InitialConditions:
    """Recovers each episode's ``rand_vec`` from its first observation.

    Args:
        episodes: The recording (see :func:`check_episodes`); only ``obs[0]`` is read.
        task: The Meta-World task the episodes ran.
        tolerance: The largest allowed difference (metres) between the first observation's
            object/goal positions and the start the recovered vector gives (or, without
            ``verify``, the affine prediction). Default: 1 cm or 6 times the observation noise
            seen in the goal channels, whichever is larger (the largest of 9 noisy coordinates
            is about 2.5 standard deviations off).
        verify: Reset a nominal env from every recovered vector and compare its observation
            with the first one (about 25 ms per episode). Without it only the affine misfit
            is checked.

    Returns:
        The :class:`InitialConditions` (skipped episodes carry their reason).

    Raises:
        CurriculumError: Bad episodes, an unknown task or a non-positive tolerance.
    """
    task = _task_name(task)
    eps = check_episodes(episodes, task=task)
    if tolerance is None:
        goal = [ep.obs[:, GOAL] for ep in eps if ep.length >= 2]
        noise = [float(np.sqrt(np.mean((g - g.mean(axis=0)) ** 2))) for g in goal]
        tolerance = max(0.01, 6.0 * max(noise)) if noise else 0.01
    if isinstance(tolerance, bool) or not (
        isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance > 0
    ):
        raise CurriculumError(
            f"tolerance={tolerance!r} must be a positive number of metres (or None)"
        )
    mapping = rand_vec_map(task)
    vecs: list[np.ndarray | None] = []
    errors: list[float | None] = []
    skipped: dict[int, str] = {}
    env = make_env(task, seed=0) if verify and mapping.recoverable else None
    for i, ep in enumerate(eps):
        first = ep.obs[0]
        if not mapping.recoverable:
            vecs.append(None)
            errors.append(None)
            skipped[i] = mapping.reason
            continue
        if np.all(np.abs(first[GOAL]) < tolerance) and mapping.goal_shows:
            vecs.append(None)
            errors.append(None)
            skipped[i] = (
                "the goal is hidden (obs[36:39] is zero, an ML suite); record with the goal "
                "observable to ingest initial conditions"
            )
            continue
        vec, misfit = mapping.invert(first)
        err = misfit
        if env is not None:
            try:
                obs, _ = env.reset(options={"rand_vec": vec})
            except ValueError as e:
                vecs.append(None)
                errors.append(None)
                skipped[i] = f"the task's reset refuses the recovered layout: {e}"
                continue
            err = float(np.max(np.abs(obs[_FEATURES] - first[_FEATURES])))
        if err > tolerance:
            vecs.append(None)
            errors.append(None)
            skipped[i] = (
                f"the start from the recovered rand_vec differs from the first observation by "
                f"{err:.3g} m (> tolerance {tolerance:g} m): the observation noise is larger than "
                "the tolerance, the layout is outside the task's range, or the task's seeded "
                "starts differ from the vector's (see sim.MetaWorldEnv.reset)"
            )
            continue
        vecs.append(vec)
        errors.append(err)
    if env is not None:
        env.close()
    for i, reason in skipped.items():
        logger.info("%s episode %d: no initial condition: %s", task, i, reason)
    return InitialConditions(task, tuple(vecs), tuple(errors), skipped)
