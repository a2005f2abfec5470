"""Preference pairs from scored rollouts: best vs worst within a group (GRAPE, Zhang et al. 2024).

A group is the set of rollouts that started from the same task, initial state and TaskParams,
so the only difference between its trajectories is what the policy did. Pairs never cross
groups.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PreferencePair:
    """One preference: trajectory `chosen` ≻ trajectory `rejected` (indices into the input).

    Attributes:
        chosen: index of the preferred trajectory.
        rejected: index of the other one.
        margin: score[chosen] − score[rejected] (>= the pairing's min_margin).
        group: the group key both share.
    """

    chosen: int
    rejected: int
    margin: float
    group: Hashable


def make_pairs(
    scores: Sequence[float] | np.ndarray,
    groups: Sequence[Hashable],
    *,
    min_margin: float = 0.0,
    pairs_per_group: int = 1,
) -> list[PreferencePair]:
    """Best-vs-worst pairs within each group, kept only when the score margin is large enough.

    In each group the trajectories are ranked by score (ties by index, so the result is
    deterministic); pair k is (k-th best, k-th worst), k = 0..pairs_per_group−1, as long as the
    two are different trajectories and their margin is >= `min_margin` (margins shrink with k,
    so pairing stops at the first that falls short). A margin of 0 is never a preference: with
    `min_margin=0` pairs of equal score are skipped too.

    Args:
        scores: (N,) finite scores (e.g. `Scores.score` of :func:`score_trajectories`).
        groups: N hashable group keys.
        min_margin: smallest score difference that makes a pair (>= 0).
        pairs_per_group: how many disjoint pairs a group may give (>= 1).

    Returns:
        The pairs, groups in order of first appearance, best pair first within a group.

    Example:
        >>> make_pairs([1.0, 6.0, 3.0, 5.0, 5.0], ["a", "a", "a", "b", "b"], min_margin=0.5)
        [PreferencePair(chosen=1, rejected=0, margin=5.0, group='a')]
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(groups) != s.shape[0]:
        raise ValueError(
            f"Got {s.shape[0]} scores and {len(groups)} group keys, expected one per trajectory"
        )
    if not np.isfinite(s).all():
        raise ValueError(f"Got {int((~np.isfinite(s)).sum())} non-finite scores, expected all finite")
    if not min_margin >= 0:
        raise ValueError(f"Got min_margin={min_margin}, expected >= 0")
    if isinstance(pairs_per_group, bool) or not isinstance(pairs_per_group, int) or pairs_per_group < 1:
        raise ValueError(f"Got pairs_per_group={pairs_per_group!r}, expected an int >= 1")
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    pairs: list[PreferencePair] = []
    for g, idx in members.items():
        # lexsort: last key is primary; best first, ties by index.
        order = [idx[j] for j in np.lexsort((np.asarray(idx), -s[idx]))]
        for k in range(pairs_per_group):
            best, worst = order[k], order[len(order) - 1 - k]
            if k >= len(order) - 1 - k:
                break
            margin = float(s[best] - s[worst])
            if margin <= 0 or margin < min_margin:
                break
            pairs.append(PreferencePair(int(best), int(worst), margin, g))
    return pairs
