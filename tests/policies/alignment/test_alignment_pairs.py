"""Best-vs-worst pairs: within a group only, margin respected, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from policies.alignment import make_pairs


def test_best_vs_worst_within_each_group():
    scores = [1.0, 9.0, 5.0, 7.0, 2.0, 8.0]
    groups = ["a", "b", "a", "b", "a", "b"]
    pairs = make_pairs(scores, groups)
    assert [(p.chosen, p.rejected, p.group) for p in pairs] == [(2, 0, "a"), (1, 3, "b")]
    assert [p.margin for p in pairs] == [4.0, 2.0]
    for p in pairs:
        assert groups[p.chosen] == groups[p.rejected] == p.group


def test_never_crosses_groups_even_when_it_would_give_a_bigger_margin():
    pairs = make_pairs([0.0, 10.0, 0.5, 9.0], [("t", 0), ("t", 1), ("t", 0), ("t", 1)])
    assert {(p.chosen, p.rejected) for p in pairs} == {(2, 0), (1, 3)}


def test_min_margin_is_respected():
    scores = [1.0, 1.4, 3.0, 5.0, 0.0, 0.2]
    groups = [0, 0, 1, 1, 2, 2]
    pairs = make_pairs(scores, groups, min_margin=0.5)
    assert [(p.chosen, p.rejected) for p in pairs] == [(3, 2)]
    assert all(p.margin >= 0.5 for p in pairs)
    assert make_pairs([2.0, 2.0], [0, 0]) == []  # equal scores are no preference


def test_more_pairs_per_group_are_disjoint_and_stop_at_the_margin():
    scores = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 3.1])
    pairs = make_pairs(scores, [0] * 6, pairs_per_group=3, min_margin=0.5)
    assert [(p.chosen, p.rejected) for p in pairs] == [(0, 1), (2, 3)]  # 3.1 vs 3.0 too close
    used = [i for p in pairs for i in (p.chosen, p.rejected)]
    assert len(used) == len(set(used))
    assert len(make_pairs(scores, [0] * 6, pairs_per_group=10)) == 3  # at most n // 2


def test_deterministic_with_ties():
    scores = [3.0, 3.0, 1.0, 1.0, 3.0]
    first = make_pairs(scores, [0] * 5, pairs_per_group=2)
    assert [(p.chosen, p.rejected) for p in first] == [(0, 3), (1, 2)]  # ties by index
    for _ in range(3):
        assert make_pairs(scores, [0] * 5, pairs_per_group=2) == first


def test_bad_input():
    with pytest.raises(ValueError, match="2 scores and 3 group keys"):
        make_pairs([1.0, 2.0], [0, 0, 0])
    with pytest.raises(ValueError, match="non-finite"):
        make_pairs([1.0, float("nan")], [0, 0])
    with pytest.raises(ValueError, match="pairs_per_group=0"):
        make_pairs([1.0, 2.0], [0, 0], pairs_per_group=0)
