"""Learning-progress samplers: spend the collection/training budget where the policy improves.

An :class:`LPSampler` holds a set of *arms* (task names, or regions of a parameter space from
:class:`curricula.RegionGrid`) and a sliding window of recent scores per arm (success rates of
probe episodes, in [0, 1]). Its allocation follows absolute learning progress (ALP):

**ALP of an arm** (RIAC's region progress, Baranes & Oudeyer 2009; the discrete-arm form of
ALP-GMM's absolute learning progress, Portelas et al. 2019): with the arm's last ``n <=
window`` scores ``s_1..s_n`` (oldest first) split into an older half ``s_1..s_h`` and a recent
half ``s_{h+1}..s_n``, ``h = floor(n / 2)``::

    ALP = | mean(s_{h+1..n}) - mean(s_{1..h}) |

The absolute value counts forgetting (a falling score) as progress to be worked on, as in
Teacher-Student Curriculum Learning (Matiisen et al. 2017). An arm with fewer than two scores
has no estimate yet and gets the largest possible ALP, 1 (optimistic start, so every arm is
probed early).

**Probabilities** over ``K`` arms, with ``a_i`` the ALPs::

    q_i = a_i / sum_j a_j            (1/K when every a_j is 0)
    m_i = epsilon / K + (1 - epsilon) q_i          epsilon-exploration (ALP-GMM samples at
                                                   random with probability epsilon = 0.2)
    p_i = floor + (1 - K floor) m_i                the floor: p_i >= floor, so no arm starves

``sum_i p_i = 1``; ``K * floor <= 1`` is required. Sampling proportionally to ALP (rather than
greedily) is what ALP-GMM does over its Gaussian components.

**Allocation** of an integer budget ``B`` (:meth:`LPSampler.allocate`) is deterministic: every
arm first gets ``g = floor(B * floor)`` units; the remaining ``B - K g`` go by the largest
remainder method (Hamilton) to the quotas ``B p_i - g``, ties to the earlier arm. So the counts
sum to ``B``, each is ``>= floor(B * floor)`` and within one of ``B p_i``.

References:
    - A. Baranes, P.-Y. Oudeyer. R-IAC: Robust intrinsically motivated exploration and active
      learning. IEEE Trans. Autonomous Mental Development 1(3), 2009.
    - T. Matiisen, A. Oliver, T. Cohen, J. Schulman. Teacher-Student Curriculum Learning.
      arXiv:1707.00183, 2017 (IEEE TNNLS 2019).
    - R. Portelas, C. Colas, K. Hofmann, P.-Y. Oudeyer. Teacher algorithms for curriculum
      learning of Deep RL in continuously parameterized environments (ALP-GMM). CoRL 2019,
      arXiv:1910.07224.

Example:
    >>> lp = LPSampler(["easy", "learning", "impossible"], window=4, epsilon=0.1, seed=0)
    >>> for step in range(4):
    ...     lp.update("easy", 1.0)
    ...     lp.update("learning", 0.1 * step)
    ...     lp.update("impossible", 0.0)
    >>> p = lp.probabilities()
    >>> max(p, key=p.get)
    'learning'
    >>> lp.allocate(100)
    {'easy': 11, 'learning': 78, 'impossible': 11}
    >>> restored = LPSampler.from_state_dict(lp.state_dict())
    >>> restored.sample(5) == lp.sample(5)
    True
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from curricula import _validate as v
from curricula._validate import CurriculumError

logger = logging.getLogger(__name__)

STATE_FORMAT = "robolearn.lp_sampler"
"""The ``format`` field of :meth:`LPSampler.state_dict`."""
STATE_VERSION = 1

UNSEEN_PROGRESS = 1.0
"""The ALP given to an arm with fewer than two scores (the largest possible)."""


def absolute_learning_progress(scores: Sequence[float]) -> float | None:
    """``|mean(recent half) - mean(older half)|`` of ``scores`` (oldest first).

    Args:
        scores: The window of scores; with an odd count the recent half has the extra one.

    Returns:
        The ALP, or ``None`` for fewer than two scores.

    Example:
        >>> round(absolute_learning_progress([0.1, 0.2, 0.5, 0.6]), 12)
        0.4
    """
    n = len(scores)
    if n < 2:
        return None
    h = n // 2
    older = math.fsum(scores[:h]) / h
    recent = math.fsum(scores[h:]) / (n - h)
    return abs(recent - older)


class LPSampler:
    """Absolute-learning-progress sampler over a fixed set of arms (see the module docstring).

    Deterministic given ``seed``: probabilities and allocations are functions of the scores
    seen; only :meth:`sample` uses the generator. :meth:`state_dict` captures everything (the
    windows, the counts and the generator state) as JSON, and :meth:`from_state_dict` restores
    a sampler that continues identically.

    Args:
        arms: Distinct arm names (task names, region arms, ...), at least one.
        window: How many recent scores per arm the ALP looks at (even, >= 2).
        epsilon: Exploration mass spread uniformly, in [0, 1].
        floor: Minimum probability of each arm, in [0, 1/K]; default ``0.25 / K`` (a quarter
            of the uniform share).
        seed: Seed of the generator used by :meth:`sample`.

    Example:
        >>> lp = LPSampler(["push-v3", "reach-v3"], window=2, floor=0.1, epsilon=0.0)
        >>> lp.update("push-v3", 0.2); lp.update("push-v3", 0.6)
        >>> lp.update("reach-v3", 0.9); lp.update("reach-v3", 0.9)
        >>> lp.probabilities()
        {'push-v3': 0.9, 'reach-v3': 0.1}
    """

    def __init__(
        self,
        arms: Sequence[str],
        *,
        window: int = 10,
        epsilon: float = 0.1,
        floor: float | None = None,
        seed: int = 0,
    ) -> None:
        with v.root("LPSampler"):
            with v.at("arms"):
                items = v.seq(arms, what="a list of arm names", min_len=1)
                names: list[str] = []
                for i, arm in enumerate(items):
                    with v.at(i):
                        v.string(arm, non_empty=True)
                        if arm in names:
                            raise CurriculumError(f"arm {arm!r} is listed twice; list each once")
                        names.append(arm)
            k = len(names)
            with v.at("window"):
                window = v.integer(window, low=2)
                if window % 2:
                    raise CurriculumError(
                        f"{window} is odd; expected an even window (two halves of window/2 "
                        f"scores), e.g. {window + 1}"
                    )
            with v.at("epsilon"):
                epsilon = v.number(epsilon, low=0.0, high=1.0, what="a probability")
            with v.at("floor"):
                if floor is None:
                    floor = 0.25 / k
                floor = v.number(floor, low=0.0, what="a probability")
                if floor * k > 1.0 + 1e-12:
                    raise CurriculumError(
                        f"{floor} is too high for {k} arms: the floors alone sum to {floor * k:g} "
                        f"> 1; expected floor <= 1/K = {1 / k:.6g}"
                    )
            with v.at("seed"):
                seed = v.integer(seed, low=0)
        self._arms = tuple(names)
        self._index = {a: i for i, a in enumerate(names)}
        self._window = window
        self._epsilon = epsilon
        self._floor = min(floor, 1.0 / k)
        self._seed = seed
        self._scores: list[deque[float]] = [deque(maxlen=window) for _ in names]
        self._updates = [0] * k
        self._rng = np.random.default_rng(seed)

    # ---- configuration

    @property
    def arms(self) -> tuple[str, ...]:
        """The arm names, in order."""
        return self._arms

    @property
    def window(self) -> int:
        """Scores per arm in the ALP window."""
        return self._window

    @property
    def epsilon(self) -> float:
        """Uniform exploration mass."""
        return self._epsilon

    @property
    def floor(self) -> float:
        """Minimum probability of each arm."""
        return self._floor

    # ---- updates

    def _arm_index(self, arm: Any) -> int:
        if arm not in self._index:
            raise ValueError(
                f"LPSampler: unknown arm {arm!r}{v.did_you_mean(arm, self._arms)} "
                f"Arms: {', '.join(self._arms)}"
            )
        return self._index[arm]

    def update(self, arm: str, score: float) -> None:
        """Records one score of ``arm`` (e.g. the success rate of a probe), in [0, 1]."""
        i = self._arm_index(arm)
        with v.root("LPSampler.update"), v.at("score"):
            score = v.number(score, low=0.0, high=1.0, what=f"a score of arm {arm!r} in [0, 1]")
        self._scores[i].append(score)
        self._updates[i] += 1

    def update_many(self, scores: Mapping[str, float]) -> None:
        """``update(arm, score)`` for every item, in the mapping's order."""
        for arm, score in scores.items():
            self.update(arm, score)

    # ---- the estimates

    def scores(self, arm: str) -> tuple[float, ...]:
        """The scores of ``arm`` in the current window, oldest first."""
        return tuple(self._scores[self._arm_index(arm)])

    def counts(self) -> dict[str, int]:
        """``{arm: how many scores it has received in total}``."""
        return dict(zip(self._arms, self._updates))

    def progress(self) -> dict[str, float | None]:
        """``{arm: ALP}`` (``None`` for an arm with fewer than two scores)."""
        return {a: absolute_learning_progress(list(s)) for a, s in zip(self._arms, self._scores)}

    def _probabilities(self) -> np.ndarray:
        k = len(self._arms)
        alp = np.array(
            [UNSEEN_PROGRESS if p is None else p for p in self.progress().values()],
            dtype=np.float64,
        )
        total = float(alp.sum())
        q = alp / total if total > 0 else np.full(k, 1.0 / k)
        m = self._epsilon / k + (1.0 - self._epsilon) * q
        return self._floor + (1.0 - k * self._floor) * m

    def probabilities(self) -> dict[str, float]:
        """``{arm: p}``: the allocation probabilities (see the module docstring)."""
        return {a: float(p) for a, p in zip(self._arms, self._probabilities())}

    # ---- decisions

    def allocate(self, budget: int) -> dict[str, int]:
        """Splits an integer ``budget`` (episodes, probes, gradient steps) over the arms.

        Deterministic (no random numbers): the floor share ``floor(budget * floor)`` first,
        then the largest-remainder method on the rest. The counts sum to ``budget``.
        """
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
            raise ValueError(f"LPSampler.allocate: budget={budget!r} must be an int >= 0")
        budget = int(budget)
        k = len(self._arms)
        p = self._probabilities()
        base = math.floor(budget * self._floor + 1e-9)
        rest = budget - k * base
        quota = np.maximum(budget * p - base, 0.0)
        if quota.sum() > 0:
            quota *= rest / quota.sum()
        else:
            quota = np.full(k, rest / k)
        counts = np.floor(quota + 1e-9).astype(np.int64)
        left = rest - int(counts.sum())
        # Largest remainder; a stable sort gives ties to the earlier arm.
        order = np.argsort(-(quota - counts), kind="stable")
        for i in order[: max(left, 0)]:
            counts[i] += 1
        assert int(counts.sum()) == rest, (counts, rest)
        return {a: base + int(c) for a, c in zip(self._arms, counts)}

    def sample(self, n: int) -> list[str]:
        """Draws ``n`` arms independently from :meth:`probabilities` (advances the generator)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"LPSampler.sample: n={n!r} must be an int >= 0")
        cdf = np.cumsum(self._probabilities())
        cdf /= cdf[-1]
        cdf[-1] = 1.0
        idx = np.minimum(np.searchsorted(cdf, self._rng.random(int(n)), side="right"), len(cdf) - 1)
        return [self._arms[i] for i in idx]

    # ---- crash-resume

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically, as JSON-serialisable types."""
        return {
            "format": STATE_FORMAT,
            "state_version": STATE_VERSION,
            "arms": list(self._arms),
            "window": self._window,
            "epsilon": self._epsilon,
            "floor": self._floor,
            "seed": self._seed,
            "scores": {a: list(s) for a, s in zip(self._arms, self._scores)},
            "updates": dict(zip(self._arms, self._updates)),
            "rng": _json_rng_state(self._rng.bit_generator.state),
        }

    @classmethod
    def from_state_dict(cls, state: Any) -> LPSampler:
        """Restores a sampler from :meth:`state_dict` (after a JSON round trip too).

        Raises:
            CurriculumError: The state is malformed (the message names the field).
        """
        with v.root("LPSampler state"):
            d = v.keys(
                state,
                ["format", "state_version", "arms", "window", "epsilon", "floor", "seed",
                 "scores", "updates", "rng"],
                what="LPSampler state",
            )
            with v.at("format"):
                if d["format"] != STATE_FORMAT:
                    raise CurriculumError(f"{d['format']!r} is not {STATE_FORMAT!r}")
            with v.at("state_version"):
                if v.integer(d["state_version"], low=1) > STATE_VERSION:
                    raise CurriculumError(
                        f"state version {d['state_version']} is newer than this robolearn reads "
                        f"({STATE_VERSION}); upgrade robolearn"
                    )
            with v.root("LPSampler state", replace=True):
                out = cls(d["arms"], window=d["window"], epsilon=d["epsilon"], floor=d["floor"],
                          seed=d["seed"])
            for key in ("scores", "updates"):
                with v.at(key):
                    per_arm = v.obj(d[key])
                    if set(per_arm) != set(out._arms):
                        raise CurriculumError(
                            f"keys {sorted(per_arm)} do not match the arms {list(out._arms)}"
                        )
            for i, arm in enumerate(out._arms):
                with v.at("scores", arm):
                    window = v.seq(d["scores"][arm], what="a list of scores")
                    if len(window) > out._window:
                        raise CurriculumError(
                            f"{len(window)} scores exceed the window of {out._window}"
                        )
                    for j, s in enumerate(window):
                        with v.at(j):
                            out._scores[i].append(v.number(s, low=0.0, high=1.0, what="a score"))
                with v.at("updates", arm):
                    out._updates[i] = v.integer(d["updates"][arm], low=len(window))
            with v.at("rng"):
                out._rng = _rng_from_state(d["rng"])
        return out


def _json_rng_state(state: Mapping[str, Any]) -> dict[str, Any]:
    # PCG64's state is plain ints (arbitrary precision, exact in JSON) and strings.
    return {k: (_json_rng_state(x) if isinstance(x, Mapping) else x) for k, x in state.items()}


def _rng_from_state(state: Any) -> np.random.Generator:
    state = v.obj(state, "a numpy bit-generator state object")
    if state.get("bit_generator") != "PCG64":
        raise CurriculumError(
            f"bit_generator {state.get('bit_generator')!r} is not 'PCG64' (what LPSampler uses)"
        )
    rng = np.random.Generator(np.random.PCG64())
    try:
        rng.bit_generator.state = dict(state)
    except (TypeError, ValueError, KeyError) as err:
        raise CurriculumError(f"not a valid PCG64 state: {err}") from None
    return rng
