"""LPSampler on synthetic bandits whose right allocation is known; floor; crash-resume."""

import json
import math

import numpy as np
import pytest

from curricula import CurriculumError, LPSampler, absolute_learning_progress

ARMS = ["solved", "learnable", "impossible"]


class Student:
    """A synthetic learner: each arm's success rate is a known function of its training.

    ``solved`` is mastered (0.95), ``impossible`` never improves (0.0), ``learnable`` gains
    0.004 per episode trained on it up to 0.95. The right allocation is everything on
    ``learnable`` while it improves, and uniform once nothing improves.
    """

    def __init__(self):
        self.trained = dict.fromkeys(ARMS, 0)

    def rate(self, arm):
        return {"solved": 0.95, "impossible": 0.0,
                "learnable": min(0.95, 0.05 + 0.004 * self.trained["learnable"])}[arm]

    def train(self, allocation):
        for arm, n in allocation.items():
            self.trained[arm] += n


def run(lp, student, rounds, budget=60, noise=None, probes=20):
    """Allocate -> train -> probe each arm (noiseless, or a binomial success rate)."""
    log = []
    for _ in range(rounds):
        alloc = lp.allocate(budget)
        student.train(alloc)
        for arm in lp.arms:
            p = student.rate(arm)
            lp.update(arm, p if noise is None else noise.binomial(probes, p) / probes)
        log.append((alloc, lp.probabilities(), student.rate("learnable")))
    return log


# ---- the ALP estimate


def test_alp_is_the_absolute_difference_of_half_window_means():
    assert absolute_learning_progress([0.1, 0.2, 0.5, 0.6]) == pytest.approx(0.4)
    assert absolute_learning_progress([0.0, 0.0, 1.0]) == pytest.approx(0.5)  # recent half: 2
    assert absolute_learning_progress([0.9, 0.9, 0.3, 0.1]) == pytest.approx(0.7)  # forgetting
    assert absolute_learning_progress([0.5]) is None
    assert absolute_learning_progress([0.5, 0.5, 0.5, 0.5]) == 0.0


def test_window_slides():
    lp = LPSampler(["a"], window=4)
    for s in (0.0, 0.0, 0.0, 0.0, 0.5, 0.5):
        lp.update("a", s)
    assert lp.scores("a") == (0.0, 0.0, 0.5, 0.5)
    assert lp.progress() == {"a": 0.5}
    assert lp.counts() == {"a": 6}


def test_probabilities_follow_the_formula_on_a_noiseless_bandit():
    lp = LPSampler(ARMS, window=4, epsilon=0.2, floor=0.05)
    for step in range(4):
        lp.update("solved", 0.95)
        lp.update("learnable", 0.1 + 0.1 * step)  # ALP = 0.2
        lp.update("impossible", 0.0)
    k, eps, f = 3, 0.2, 0.05
    rest = f + (1 - k * f) * eps / k
    expected = {"solved": rest, "learnable": f + (1 - k * f) * (eps / k + 1 - eps),
                "impossible": rest}
    assert lp.probabilities() == pytest.approx(expected)
    assert sum(lp.probabilities().values()) == pytest.approx(1.0)


def test_unseen_arms_are_probed_first():
    lp = LPSampler(ARMS, window=4, epsilon=0.0, floor=0.0)
    for s in (0.1, 0.5):
        lp.update("learnable", s)  # ALP 0.4; the others have no estimate yet: ALP 1
    p = lp.probabilities()
    assert p["solved"] == p["impossible"] > p["learnable"]


def test_no_progress_anywhere_means_uniform():
    lp = LPSampler(ARMS, window=2, epsilon=0.0, floor=0.0)
    for arm in ARMS:
        lp.update(arm, 0.3)
        lp.update(arm, 0.3)
    assert lp.probabilities() == pytest.approx(dict.fromkeys(ARMS, 1 / 3))


def test_epsilon_one_is_uniform_exploration():
    lp = LPSampler(ARMS, window=2, epsilon=1.0, floor=0.0)
    lp.update_many({"solved": 0.0, "learnable": 0.0, "impossible": 0.0})
    lp.update_many({"solved": 0.0, "learnable": 1.0, "impossible": 0.0})
    assert lp.probabilities() == pytest.approx(dict.fromkeys(ARMS, 1 / 3))


# ---- the synthetic bandit: allocation moves to the arm that is learning


def test_budget_goes_to_the_learning_arm_and_back_to_uniform():
    lp, student = LPSampler(ARMS, window=6, epsilon=0.1, seed=0), Student()
    log = run(lp, student, rounds=25)
    learning = [alloc for alloc, _, rate in log[2:] if rate < 0.95]
    assert learning, "the learnable arm should still be learning after two rounds"
    for alloc in learning:
        assert alloc["learnable"] > 0.75 * 60
        assert alloc["learnable"] > alloc["solved"] + alloc["impossible"]
    # Once it plateaus and the window holds only the plateau, nothing is progressing.
    assert log[-1][1] == pytest.approx(dict.fromkeys(ARMS, 1 / 3))
    assert log[-1][0] == dict.fromkeys(ARMS, 20)


def test_lp_masters_the_learnable_arm_faster_than_uniform():
    def rounds_to_master(lp):
        student, rounds = Student(), 0
        while student.rate("learnable") < 0.95:
            alloc = lp.allocate(60) if lp else dict.fromkeys(ARMS, 20)
            student.train(alloc)
            if lp:
                for arm in ARMS:
                    lp.update(arm, student.rate(arm))
            rounds += 1
        return rounds

    with_lp = rounds_to_master(LPSampler(ARMS, window=6))
    uniform = rounds_to_master(None)
    assert (with_lp, uniform) == (6, 12)


def test_allocation_follows_a_prerequisite_chain():
    # "second" only improves once "first" is mastered (>= 0.8): the curriculum must move on.
    arms = ["first", "second", "distractor"]
    trained = {"first": 0, "second": 0}

    def rate(arm):
        if arm == "first":
            return min(0.95, 0.05 + 0.004 * trained["first"])
        if arm == "second":
            return min(0.95, 0.004 * trained["second"])
        return 0.5

    lp = LPSampler(arms, window=4, epsilon=0.1)
    leader, allocs = [], []
    for _ in range(30):
        alloc = lp.allocate(60)
        trained["first"] += alloc["first"]
        if rate("first") >= 0.8:
            trained["second"] += alloc["second"]
        for arm in arms:
            lp.update(arm, rate(arm))
        p = lp.probabilities()
        leader.append(next((a for a in arms if p[a] > 0.5), None))  # None: no arm dominates
        allocs.append(alloc)
    # first while it improves, then second (learnable only now), then nothing dominates.
    switch = leader.index("second")
    assert leader[1:6] == ["first"] * 5
    assert set(leader[6:switch]) <= {"first", None}  # the hand-over
    last = len(leader) - 1 - leader[::-1].index("second")
    assert set(leader[switch:last + 1]) == {"second"}
    assert set(leader[last + 1:]) == {None} and "distractor" not in leader
    assert rate("first") == rate("second") == 0.95  # the chain was learned...
    assert max(a["distractor"] for a in allocs[2:last + 1]) <= 7  # ...not feeding the distractor
    assert allocs[-1] == dict.fromkeys(arms, 20)


@pytest.mark.parametrize("seed", range(5))
def test_noisy_probes_still_favour_the_learning_arm(seed):
    lp, student = LPSampler(ARMS, window=6, epsilon=0.1, seed=seed), Student()
    log = run(lp, student, rounds=10, noise=np.random.default_rng(seed), probes=20)
    given = {arm: sum(alloc[arm] for alloc, _, _ in log[2:]) for arm in ARMS}
    assert given["learnable"] > 2 * given["solved"]
    assert given["learnable"] > 2 * given["impossible"]
    assert given["learnable"] > 0.5 * sum(given.values())  # uniform would give a third


# ---- the floor


def test_floor_bounds_probabilities_allocations_and_samples():
    floor = 0.1
    lp, student = LPSampler(ARMS, window=6, epsilon=0.0, floor=floor, seed=3), Student()
    log = run(lp, student, rounds=6)
    for _, probs, _ in log:
        assert min(probs.values()) >= floor - 1e-12
    assert lp.probabilities()["impossible"] == pytest.approx(floor)  # ALP 0, no epsilon
    for budget in range(0, 201):
        alloc = lp.allocate(budget)
        assert sum(alloc.values()) == budget
        assert min(alloc.values()) >= math.floor(budget * floor)
    draws = lp.sample(20_000)
    share = draws.count("impossible") / len(draws)
    assert abs(share - floor) < 4 * math.sqrt(floor * (1 - floor) / len(draws))


def test_without_floor_or_epsilon_an_arm_starves():
    # What the floor protects against: the same run with floor 0 gives "impossible" nothing.
    lp, student = LPSampler(ARMS, window=6, epsilon=0.0, floor=0.0), Student()
    run(lp, student, rounds=4)
    assert lp.probabilities()["impossible"] == 0.0
    assert lp.allocate(100)["impossible"] == 0
    assert "impossible" not in lp.sample(1000)


def test_allocate_is_deterministic_and_close_to_the_quotas():
    lp = LPSampler(["a", "b", "c", "d"], window=2, epsilon=0.05, floor=0.02)
    for arm, (s0, s1) in zip("abcd", [(0.0, 0.3), (0.2, 0.25), (0.9, 0.9), (0.5, 0.1)]):
        lp.update(arm, s0)
        lp.update(arm, s1)
    p = lp.probabilities()
    for budget in (1, 7, 10, 99, 1000):
        alloc = lp.allocate(budget)
        assert alloc == lp.allocate(budget)
        assert sum(alloc.values()) == budget
        assert all(abs(alloc[a] - budget * p[a]) < 1 for a in alloc)


# ---- crash-resume


def test_state_dict_round_trip_continues_identically():
    lp = LPSampler(ARMS, window=6, epsilon=0.15, floor=0.05, seed=11)
    noise = np.random.default_rng(0)
    run(lp, Student(), rounds=5, noise=noise)
    lp.sample(17)  # advance the generator too
    state = json.loads(json.dumps(lp.state_dict()))  # what a checkpoint file holds
    restored = LPSampler.from_state_dict(state)
    assert restored.state_dict() == lp.state_dict()
    for step in range(8):
        scores = {arm: float(noise.random()) for arm in ARMS}
        for s in (lp, restored):
            s.update_many(scores)
        assert restored.probabilities() == lp.probabilities()
        assert restored.allocate(50 + step) == lp.allocate(50 + step)
        assert restored.sample(25) == lp.sample(25)


def test_same_seed_same_samples():
    a, b = LPSampler(ARMS, seed=4), LPSampler(ARMS, seed=4)
    assert a.sample(100) == b.sample(100)
    assert a.sample(100) != LPSampler(ARMS, seed=5).sample(200)[100:]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda s: s.update(windw=6),
         "unknown LPSampler state field 'windw'; did you mean 'window'"),
        (lambda s: s.update(window=2), "scores.solved: 6 scores exceed the window of 2"),
        (lambda s: s["scores"]["solved"].__setitem__(0, 1.5), "scores.solved[0]: 1.5 is out"),
        (lambda s: s["scores"].pop("solved"), "scores: keys"),
        (lambda s: s.update(format="other"), "format: 'other' is not 'robolearn.lp_sampler'"),
        (lambda s: s["rng"].update(bit_generator="MT19937"), "rng: bit_generator 'MT19937'"),
        (lambda s: s.update(floor=0.5), "floor: 0.5 is too high for 3 arms"),
    ],
)
def test_bad_state_is_refused_with_the_field_named(change, expected):
    lp = LPSampler(ARMS, window=6)
    run(lp, Student(), rounds=6)
    state = json.loads(json.dumps(lp.state_dict()))
    change(state)
    with pytest.raises(CurriculumError) as err:
        LPSampler.from_state_dict(state)
    assert str(err.value).startswith("LPSampler state: ")
    assert expected in str(err.value)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"window": 5}, "window: 5 is odd"),
        ({"window": 0}, "window: 0 is out of range"),
        ({"floor": 0.4}, "floor: 0.4 is too high for 3 arms"),
        ({"epsilon": 1.5}, "epsilon: 1.5 is out of range"),
        ({"arms": ["a", "a"]}, "arms[1]: arm 'a' is listed twice"),
        ({"arms": []}, "arms: expected a list of arm names with at least 1 entries"),
    ],
)
def test_bad_arguments_are_refused(kwargs, expected):
    args = {"arms": ARMS, **kwargs}
    with pytest.raises(CurriculumError) as err:
        LPSampler(args.pop("arms"), **args)
    assert str(err.value).startswith("LPSampler: ") and expected in str(err.value)


def test_bad_updates_are_refused():
    lp = LPSampler(ARMS)
    with pytest.raises(ValueError, match="unknown arm 'learnabel'; did you mean 'learnable'"):
        lp.update("learnabel", 0.5)
    with pytest.raises(ValueError, match=r"score: 1.2 is out of range"):
        lp.update("learnable", 1.2)
    with pytest.raises(ValueError, match="not finite"):
        lp.update("learnable", float("nan"))
    assert lp.counts() == dict.fromkeys(ARMS, 0)  # refused updates leave no trace
