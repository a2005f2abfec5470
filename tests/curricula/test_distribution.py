"""TaskDistribution sampling: reproducible, valid TaskParams, weights honoured, log-densities."""

import math

import numpy as np
import pytest
from scipy import stats

from curricula import (
    Box,
    Component,
    Discrete,
    EmpiricalInit,
    EmpiricalParams,
    LogNormal,
    Provenance,
    TaskDistribution,
    TaskSample,
)
from sim import ParamRanges, TaskParams
from sim.params import LIMITS

PUSH_VECS = [(0.0, 0.6, 0.02, 0.1, 0.8, 0.02), (0.05, 0.65, 0.02, -0.1, 0.85, 0.02)]


def rich_distribution() -> TaskDistribution:
    """Every factor kind, a task-restricted component and unequal weights."""
    return TaskDistribution(
        {"push-v3": 2.0, "reach-v3": 1.0},
        [
            Component(
                "prior",
                [
                    Box({"friction_scale": (0.5, 2.0), "action_latency": (0, 3)}),
                    LogNormal.diagonal(["object_mass_scale"], [0.1], [0.3]),
                ],
                weight=3.0,
            ),
            Component(
                "real-1",
                [
                    Discrete("action_latency", [0, 1, 2], [0.6, 0.3, 0.1]),
                    EmpiricalParams(["friction_scale", "joint_damping_scale"],
                                    [(0.8, 1.1), (1.3, 0.9)], [1.0, 3.0]),
                    EmpiricalInit({"push-v3": PUSH_VECS}, {"push-v3": [1.0, 2.0]}),
                ],
                weight=1.0,
                tasks=["push-v3"],
                provenance=Provenance("real", cycle=1, episodes=20, diagnostics={"nll": 1.5}),
            ),
        ],
    )


def chi_square_p(counts, probs):
    counts = np.asarray(counts, dtype=float)
    return stats.chisquare(counts, counts.sum() * np.asarray(probs, dtype=float)).pvalue


# ---- reproducibility


def test_same_seed_same_samples():
    dist = rich_distribution()
    a = dist.sample_n(np.random.default_rng(123), 200)
    b = dist.sample_n(np.random.default_rng(123), 200)
    assert a == b
    assert a != dist.sample_n(np.random.default_rng(124), 200)


def test_sample_n_is_repeated_sample():
    dist = rich_distribution()
    rng = np.random.default_rng(5)
    loop = [dist.sample(rng) for _ in range(50)]
    assert dist.sample_n(np.random.default_rng(5), 50) == loop


def test_sample_depends_only_on_the_generator_passed():
    dist = rich_distribution()
    first = dist.sample(np.random.default_rng(9))
    dist.sample_n(np.random.default_rng(0), 100)  # no hidden state between calls
    np.random.seed(1)  # the global generator is not used either
    assert dist.sample(np.random.default_rng(9)) == first


def test_sample_refuses_a_non_generator():
    with pytest.raises(TypeError, match="default_rng"):
        rich_distribution().sample(0)


def test_box_reproduces_param_ranges_exactly():
    ranges = ParamRanges(friction_scale=(0.5, 2.0), obs_noise_std=(0.0, 0.01),
                         action_latency=(0, 3))
    box = Box.from_param_ranges(ranges)
    for seed in range(20):
        got = box.sample(np.random.default_rng(seed), "push-v3")
        assert TaskParams(**got) == ranges.sample(np.random.default_rng(seed))


# ---- samples are valid


def test_samples_are_valid_task_params_with_int_latency():
    dist = rich_distribution()
    for s in dist.sample_n(np.random.default_rng(0), 500):
        assert isinstance(s, TaskSample)
        assert isinstance(s.params, TaskParams)
        assert type(s.params.action_latency) is int
        assert s.task in ("push-v3", "reach-v3")
        if s.component == "real-1":
            assert s.task == "push-v3"
            assert s.rand_vec in PUSH_VECS
            assert (s.params.friction_scale, s.params.joint_damping_scale) in [(0.8, 1.1),
                                                                              (1.3, 0.9)]
        else:
            assert s.rand_vec is None
            assert 0.5 <= s.params.friction_scale <= 2.0
            # Fields no factor draws keep their default.
            assert s.params.joint_damping_scale == 1.0


def test_log_normal_is_truncated_to_limits_not_clipped():
    # Mean near the upper limit with a wide spread: most of the mass is outside LIMITS.
    g = LogNormal.diagonal(["friction_scale"], [math.log(8.0)], [1.0])
    low, high = LIMITS["friction_scale"]
    rng = np.random.default_rng(0)
    xs = np.array([g.sample(rng, "push-v3")["friction_scale"] for _ in range(3000)])
    assert xs.min() >= low and xs.max() <= high
    assert not np.any(xs == high)  # clipping would pile ~40% of the samples here
    # The truncated law: P(x <= 8) = (Phi(0) - Phi((log .1 - log 8)/1)) / Z.
    z = stats.norm.cdf(math.log(high / 8.0)) - stats.norm.cdf(math.log(low / 8.0))
    p8 = (0.5 - stats.norm.cdf(math.log(low / 8.0))) / z
    assert abs(np.mean(xs <= 8.0) - p8) < 4 * math.sqrt(p8 * (1 - p8) / len(xs))


def test_log_normal_moments_with_full_covariance():
    cov = ((0.04, 0.018), (0.018, 0.09))
    g = LogNormal(("friction_scale", "actuator_gain_scale"), (0.1, -0.2), cov)
    rng = np.random.default_rng(1)
    draws = [g.sample(rng, "t") for _ in range(4000)]
    y = np.log([[d[n] for n in g.fields] for d in draws])
    np.testing.assert_allclose(y.mean(axis=0), [0.1, -0.2], atol=0.02)
    np.testing.assert_allclose(np.cov(y.T), cov, atol=0.01)


def test_log_normal_refuses_integer_fields():
    with pytest.raises(ValueError, match="action_latency.*integer field.*Discrete"):
        LogNormal.diagonal(["action_latency"], [0.0], [1.0])


# ---- weights honoured (chi-square on 10k samples)


def test_mixture_weights_honoured():
    comps = [Component(name, [Box({"friction_scale": (0.5, 2.0)})], weight=w)
             for name, w in [("a", 5.0), ("b", 3.0), ("c", 2.0)]]
    dist = TaskDistribution(["push-v3"], comps)
    samples = dist.sample_n(np.random.default_rng(0), 10_000)
    counts = [sum(s.component == n for s in samples) for n in "abc"]
    assert chi_square_p(counts, [0.5, 0.3, 0.2]) > 1e-3
    # The same test has the power to see wrong weights.
    assert chi_square_p(counts, [1 / 3, 1 / 3, 1 / 3]) < 1e-6


def test_task_weights_and_conditional_component_weights_honoured():
    dist = rich_distribution()
    samples = dist.sample_n(np.random.default_rng(1), 10_000)
    tasks = [sum(s.task == t for s in samples) for t in ("push-v3", "reach-v3")]
    assert chi_square_p(tasks, [2 / 3, 1 / 3]) > 1e-3
    assert chi_square_p(tasks, [0.5, 0.5]) < 1e-6
    push = [s for s in samples if s.task == "push-v3"]
    comps = [sum(s.component == c for s in push) for c in ("prior", "real-1")]
    assert dist.component_probabilities("push-v3") == {"prior": 0.75, "real-1": 0.25}
    assert chi_square_p(comps, [0.75, 0.25]) > 1e-3
    assert all(s.component == "prior" for s in samples if s.task == "reach-v3")


def test_factor_weights_honoured():
    d = Discrete("action_latency", [0, 1, 2], [0.6, 0.3, 0.1])
    rng = np.random.default_rng(2)
    lat = [d.sample(rng, "t")["action_latency"] for _ in range(10_000)]
    assert chi_square_p(np.bincount(lat, minlength=3), [0.6, 0.3, 0.1]) > 1e-3
    init = EmpiricalInit({"push-v3": PUSH_VECS}, {"push-v3": [1.0, 3.0]})
    vecs = [init.sample(rng, "push-v3") for _ in range(10_000)]
    assert chi_square_p([vecs.count(PUSH_VECS[0]), vecs.count(PUSH_VECS[1])], [0.25, 0.75]) > 1e-3


def test_zero_weight_entries_are_never_drawn():
    d = Discrete("action_latency", [0, 1, 2], [1.0, 0.0, 1.0])
    rng = np.random.default_rng(3)
    assert 1 not in {d.sample(rng, "t")["action_latency"] for _ in range(2000)}


def test_sample_conditional_on_task():
    dist = rich_distribution()
    samples = dist.sample_n(np.random.default_rng(4), 300, task="reach-v3")
    assert {s.task for s in samples} == {"reach-v3"}
    with pytest.raises(ValueError, match="did you mean 'push-v3'"):
        dist.sample(np.random.default_rng(0), task="push-v2")


# ---- log-densities


def test_box_log_prob_is_uniform_density():
    dist = TaskDistribution(
        ["push-v3", "reach-v3"],
        [Component("c", [Box({"friction_scale": (0.5, 2.0), "action_latency": (0, 3)})])],
    )
    s = dist.sample(np.random.default_rng(0))
    assert dist.log_prob(s) == pytest.approx(math.log(0.5) - math.log(1.5) - math.log(4))
    outside = TaskSample(s.task, TaskParams(friction_scale=2.5), None, "c")
    assert dist.log_prob(outside) == -math.inf


def test_mixture_log_prob_sums_component_densities():
    comps = [Component("wide", [Box({"friction_scale": (0.5, 2.0)})], weight=1.0),
             Component("narrow", [Box({"friction_scale": (0.9, 1.1)})], weight=3.0)]
    dist = TaskDistribution(["push-v3"], comps)
    inside_both = TaskSample("push-v3", TaskParams(friction_scale=1.0), None, "wide")
    expected = math.log(0.25 / 1.5 + 0.75 / 0.2)
    assert dist.log_prob(inside_both) == pytest.approx(expected)
    only_wide = TaskSample("push-v3", TaskParams(friction_scale=1.5), None, "wide")
    assert dist.log_prob(only_wide) == pytest.approx(math.log(0.25 / 1.5))


def test_log_normal_density_integrates_to_one_under_truncation():
    g = LogNormal.diagonal(["friction_scale"], [math.log(8.0)], [1.0])
    low, high = LIMITS["friction_scale"]
    y = np.linspace(math.log(low), math.log(high), 5_001)  # integrate p(x) dx = p(e^y) e^y dy
    x = np.clip(np.exp(y), low, high)  # exp(log(10)) rounds above 10, outside the support
    p = np.exp([g.log_prob({"friction_scale": xi}, "t") for xi in x])
    assert np.trapezoid(p * x, y) == pytest.approx(1.0, abs=1e-5)
    assert g.log_prob({"friction_scale": 10.5}, "t") == -math.inf


def test_full_covariance_normaliser_matches_monte_carlo():
    cov = ((1.0, 0.6), (0.6, 1.0))
    g = LogNormal(("friction_scale", "object_mass_scale"), (1.8, -1.5), cov)
    y = np.random.default_rng(0).multivariate_normal(g.mean, cov, size=200_000)
    lim = math.log(10.0)
    inside = np.mean(np.all(np.abs(y) <= lim, axis=1))
    assert math.exp(g.log_normaliser) == pytest.approx(inside, abs=0.005)
    assert math.exp(g.log_normaliser) < 0.8  # the truncation matters here


def test_empirical_log_prob_is_point_mass():
    e = EmpiricalParams(["friction_scale"], [(0.8,), (1.2,), (0.8,)], [1.0, 1.0, 2.0])
    assert e.log_prob({"friction_scale": 0.8}, "t") == pytest.approx(math.log(0.75))
    assert e.log_prob({"friction_scale": 0.9}, "t") == -math.inf


def test_log_prob_refuses_mixtures_without_a_common_density():
    dist = rich_distribution()  # push-v3 mixes a box (continuous) and points (discrete)
    s = dist.sample(np.random.default_rng(0), task="push-v3")
    with pytest.raises(ValueError, match="no density"):
        dist.log_prob(s)
    # Per component it is defined.
    comp = dist.component("real-1")
    s2 = next(x for x in dist.sample_n(np.random.default_rng(1), 100) if x.component == "real-1")
    assert comp.log_prob(s2.task, s2.params, s2.rand_vec) > -math.inf
    # reach-v3 has one component: defined there.
    r = dist.sample(np.random.default_rng(0), task="reach-v3")
    assert math.isfinite(dist.log_prob(r))


def test_from_param_ranges_is_todays_collection():
    ranges = ParamRanges(friction_scale=(0.5, 2.0))
    dist = TaskDistribution.from_param_ranges(["push-v3", "reach-v3"], ranges)
    assert dist.task_probabilities() == {"push-v3": 0.5, "reach-v3": 0.5}
    for s in dist.sample_n(np.random.default_rng(0), 100):
        assert ranges.contains(s.params) and s.rand_vec is None and s.component == "prior"


def test_task_sample_to_dict_is_json_ready():
    s = rich_distribution().sample(np.random.default_rng(0), task="push-v3")
    d = s.to_dict()
    assert TaskParams.from_dict(d["params"]) == s.params
    assert d["task"] == "push-v3" and d["component"] == s.component


def test_pickles_for_worker_processes():
    # Ray env runners receive the distribution by pickle; the JSON document is the contract,
    # but a pickled copy must sample identically too.
    import pickle

    dist = rich_distribution()
    copy = pickle.loads(pickle.dumps(dist))
    assert copy == dist
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    assert copy.sample_n(rng_a, 50) == dist.sample_n(rng_b, 50)
