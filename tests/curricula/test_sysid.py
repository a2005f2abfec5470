"""System identification on synthetic twin logs with known hidden TaskParams."""

import doctest
import math

import numpy as np
import pytest

import curricula.sysid
import sim
from curricula import (
    Box,
    Component,
    CurriculumError,
    Discrete,
    LogNormal,
    TaskDistribution,
    estimate_obs_noise,
    fit_hand,
    fit_sysid,
    ingest_initial_conditions,
    replay_log_likelihood,
    simulate_episodes,
    update_distribution,
)
from curricula.sysid import clipped_mean_var, cma_minimize, hand_filter, hand_kernel

REACH_TWIN = sim.TaskParams(actuator_gain_scale=0.7, action_latency=3, obs_noise_std=0.004,
                            action_noise_std=0.1)
PUSH_TWIN = sim.TaskParams(actuator_gain_scale=1.3, action_latency=0, obs_noise_std=0.002,
                           action_noise_std=0.05)


@pytest.fixture(scope="module")
def reach_log():
    return simulate_episodes("reach-v3", REACH_TWIN, 4, seed=3)


@pytest.fixture(scope="module")
def reach_fit(reach_log):
    return fit_sysid(reach_log, "reach-v3", replay=False)


def test_obs_noise_from_the_static_goal_channels(reach_log):
    est = estimate_obs_noise(reach_log)
    assert abs(est.value / REACH_TWIN.obs_noise_std - 1) < 0.1
    assert est.contains(REACH_TWIN.obs_noise_std)
    clean = simulate_episodes("reach-v3", sim.TaskParams(), 1, seed=0, max_steps=20)
    zero = estimate_obs_noise(clean)
    assert zero.value == 0.0 and zero.upper is not None and zero.log_std is None


def test_latency_gain_and_action_noise_recovered(reach_fit):
    est = reach_fit.estimates
    assert est["action_latency"].value == REACH_TWIN.action_latency
    assert abs(est["actuator_gain_scale"].value / REACH_TWIN.actuator_gain_scale - 1) < 0.05
    assert abs(est["action_noise_std"].value / REACH_TWIN.action_noise_std - 1) < 0.3
    assert all(reach_fit.covers(REACH_TWIN).values()), reach_fit.summary()


def test_high_gain_no_latency_on_push():
    eps = simulate_episodes("push-v3", PUSH_TWIN, 3, seed=5)
    ic = ingest_initial_conditions(eps, "push-v3")
    keep = [i for i, v in enumerate(ic.rand_vecs) if v is not None]
    fit = fit_hand([eps[i] for i in keep], "push-v3", [ic.rand_vecs[i] for i in keep],
                   obs_noise_std=PUSH_TWIN.obs_noise_std, latencies=range(6))
    assert fit.latency == 0
    assert abs(fit.gain / PUSH_TWIN.actuator_gain_scale - 1) < 0.05
    assert fit.steps_used < sum(len(eps[i]["obs"]) for i in keep)  # contact steps left out


def test_clipped_mean_var_matches_monte_carlo():
    rng = np.random.default_rng(0)
    c = np.array([-1.0, -0.9, 0.0, 0.5, 0.97, 1.0])
    mean, var = clipped_mean_var(c, 0.2)
    draws = np.clip(c + rng.normal(0, 0.2, (200_000, c.size)), -1, 1)
    np.testing.assert_allclose(mean, draws.mean(0), atol=2e-3)
    np.testing.assert_allclose(var, draws.var(0), atol=2e-3)
    assert mean[-1] < 1.0 - 0.35 * 0.2  # a saturated command moves in by ~0.4 sigma


def test_hand_filter_likelihood_peaks_at_the_true_noise():
    """Synthetic residuals from the filter's own model: r = H * u + n."""
    rng = np.random.default_rng(1)
    kernel = hand_kernel("reach-v3")
    full = np.r_[kernel, np.ones(200)]
    q, obs_var, t_len = (0.7 * 0.01 * 0.1) ** 2, 0.003**2, 120
    resid = []
    for _ in range(6):
        u = rng.normal(0, math.sqrt(q), (t_len, 3))
        r = np.zeros((t_len, 3))
        for t in range(1, t_len):
            r[t] = full[t - 1 - np.arange(t)] @ u[:t]
        resid.append(r + rng.normal(0, math.sqrt(obs_var), (t_len, 3)))
    scales = [0.25, 0.5, 1.0, 2.0, 4.0]
    ll = [hand_filter(resid, [np.full((t_len, 3), q * f) for _ in resid], obs_var, kernel)
          ["loglik"] for f in scales]
    assert int(np.argmax(ll)) == 2


def test_replay_likelihood_ranks_the_true_parameters_first():
    truth = sim.TaskParams(object_mass_scale=2.0, joint_damping_scale=1.5, friction_scale=0.7,
                           obs_noise_std=0.002, action_noise_std=0.02)
    eps = simulate_episodes("handle-press-v3", truth, 2, seed=1)
    vecs = ingest_initial_conditions(eps, "handle-press-v3").rand_vecs
    assert all(v is not None for v in vecs)

    def ll(**change):
        p = sim.TaskParams(**(truth.to_dict() | change))
        return replay_log_likelihood(eps, "handle-press-v3", p, vecs, obs_noise_std=0.002)

    best = ll()
    for wrong in ({"object_mass_scale": 1.0}, {"object_mass_scale": 3.5},
                  {"joint_damping_scale": 0.8}, {"joint_damping_scale": 2.5},
                  {"actuator_gain_scale": 0.8}):
        assert ll(**wrong) < best - 5, wrong


def test_unidentifiable_parameters_keep_their_prior(reach_log):
    prior = Component("prior", [Box({"friction_scale": (0.5, 2.0),
                                     "object_mass_scale": (0.4, 2.5),
                                     "actuator_gain_scale": (0.5, 2.0)}),
                                Discrete("action_latency", [0, 1, 2, 3, 4, 5])])
    fit = fit_sysid(reach_log[:2], "reach-v3", prior=prior,
                    replay_fields=("friction_scale", "object_mass_scale"), replay_budget=24)
    for name in ("friction_scale", "object_mass_scale"):
        est = fit.estimates[name]
        assert not est.identified and "keeps its prior" in est.note, fit.summary()
        assert "no object moved" in est.note  # reach-v3 touches nothing: not even replayed
    factors = fit.component(cycle=1).factors
    boxes = {n: f.ranges[n] for f in factors if isinstance(f, Box) for n in f.ranges}
    assert boxes["friction_scale"] == (0.5, 2.0)
    assert boxes["object_mass_scale"] == (0.4, 2.5)
    assert fit.estimates["action_latency"].value == REACH_TWIN.action_latency


def test_fit_becomes_a_versioned_component(reach_fit):
    comp = reach_fit.component(cycle=2)
    assert comp.provenance.source == "real" and comp.provenance.cycle == 2
    assert comp.provenance.episodes == 4 and comp.tasks == ("reach-v3",)
    assert "estimates" in comp.provenance.diagnostics
    logn = next(f for f in comp.factors if isinstance(f, LogNormal))
    assert "actuator_gain_scale" in logn.fields
    assert comp.init is not None and len(comp.init.points["reach-v3"]) == 4
    prior = Component("prior", [Box({"friction_scale": (0.5, 2.0)})])
    dist = TaskDistribution(["reach-v3"], [prior, comp]).child(description="cycle 2")
    assert TaskDistribution.from_json(dist.to_json()) == dist
    rng = np.random.default_rng(0)
    samples = [s for s in dist.sample_n(rng, 50) if s.component == "real-2"]
    assert samples and all(s.params.action_latency == 3 for s in samples)
    gains = [s.params.actuator_gain_scale for s in samples]
    assert abs(np.median(gains) / REACH_TWIN.actuator_gain_scale - 1) < 0.06
    assert isinstance(reach_fit.params(), sim.TaskParams)


def test_update_mixes_the_fit_with_the_previous_version(reach_fit):
    prior = Component("prior", [Box({"friction_scale": (0.5, 2.0)})])
    p0 = TaskDistribution(["reach-v3", "push-v3"], [prior, Component("nominal", weight=3.0)])
    fit = reach_fit.component(cycle=0, name="real-0-reach-v3")
    p1 = update_distribution(p0, [fit], 0.6, description="cycle 0")
    assert (p1.version, p1.parent, p1.description) == (2, 1, "cycle 0")
    probs = p1.component_probabilities("reach-v3")
    assert probs["real-0-reach-v3"] == pytest.approx(0.6)
    assert probs["prior"] / probs["nominal"] == pytest.approx(1 / 3)  # old proportions kept
    assert "real-0-reach-v3" not in p1.component_probabilities("push-v3")
    assert p1.component("real-0-reach-v3").provenance.cycle == 0
    # the next cycle: the new fit takes 0.6, the older ones share 0.4 as they stood
    fit2 = reach_fit.component(cycle=1, name="real-1-reach-v3")
    p2 = update_distribution(p1, [fit2], 0.6)
    probs = p2.component_probabilities("reach-v3")
    assert probs["real-1-reach-v3"] == pytest.approx(0.6)
    assert probs["real-0-reach-v3"] == pytest.approx(0.4 * 0.6)
    only = update_distribution(p0, [fit], 1.0).component_probabilities("reach-v3")
    assert only == {"real-0-reach-v3": 1.0}
    assert TaskDistribution.from_json(p2.to_json()) == p2
    with pytest.raises(CurriculumError, match="already a component"):
        update_distribution(p1, [fit], 0.5)
    with pytest.raises(CurriculumError, match=r"weight=0 must be a number in \(0, 1\]"):
        update_distribution(p0, [fit], 0)
    with pytest.raises(CurriculumError, match="must name the task"):
        update_distribution(p0, [Component("x")], 0.5)


def test_bad_arguments_are_refused(reach_log):
    with pytest.raises(CurriculumError, match="not a replay field"):
        fit_sysid(reach_log, "reach-v3", replay_fields=("friction",))
    with pytest.raises(CurriculumError, match="min_log_std"):
        fit_sysid(reach_log, "reach-v3", min_log_std=-1)
    with pytest.raises(CurriculumError, match="one initial condition per episode"):
        fit_hand(reach_log, "reach-v3", [], obs_noise_std=0.0)
    with pytest.raises(CurriculumError, match="did you mean 'reach-v3'"):
        fit_sysid(reach_log, "reach-v33")


def test_bad_recordings_are_refused(reach_log):
    # too few episodes to fit
    with pytest.raises(CurriculumError, match=r"1 episode\(s\); expected at least 2"):
        fit_sysid(reach_log[:1], "reach-v3", replay=False)
    # episodes an episode store labels with another task
    labelled = [dict(e, task="push-v3") for e in reach_log[:2]]
    with pytest.raises(CurriculumError, match="recorded on task 'push-v3', not 'reach-v3'"):
        fit_sysid(labelled, "reach-v3", replay=False)
    # another robot spec (a 7-dof arm's action, a different observation)
    seven = [dict(e, action=np.zeros((len(e["obs"]), 7))) for e in reach_log[:2]]
    with pytest.raises(CurriculumError, match=r"expected \(T, 4\), the Meta-World arm"):
        fit_sysid(seven, "reach-v3", replay=False)
    with pytest.raises(CurriculumError, match="action_dim=7; expected 4"):
        fit_sysid([dict(e, action_dim=7) for e in reach_log[:2]], "reach-v3", replay=False)
    # unlabelled episodes of another task: their starts are not this task's layouts
    door = simulate_episodes("door-close-v3", sim.TaskParams(), 2, seed=0, max_steps=20)
    with pytest.raises(CurriculumError, match="probably not of door-close-v3") as err:
        fit_sysid(reach_log[:2], "door-close-v3", replay=False)
    assert "0 of the 2 episodes" in str(err.value)
    assert door  # the task itself is fine: its own episodes ingest
    assert all(v is not None for v in ingest_initial_conditions(door, "door-close-v3").rand_vecs)
    with pytest.raises(CurriculumError, match="min_episodes"):
        fit_sysid(reach_log, "reach-v3", min_episodes=0)


def test_cma_minimize_finds_a_bounded_quadratic_minimum():
    centre = np.array([0.3, -0.5, 1.2])
    a = np.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 9.0]])

    def f(x):
        return float((x - centre) @ a @ (x - centre))

    box = (-np.full(3, 3.0), np.full(3, 3.0))
    x, sd, fx, evals = cma_minimize(f, np.zeros(3), np.full(3, 0.5), *box, budget=200, seed=1)
    assert np.abs(x - centre).max() < 0.05 and fx < 1e-2 and evals <= 200
    assert sd.max() < 0.1  # the search distribution shrank around the optimum
    # a minimum outside the box ends on its edge
    hi = np.array([3.0, 3.0, 0.5])
    x, *_ = cma_minimize(f, np.zeros(3), np.full(3, 0.5), box[0], hi, budget=200, seed=1)
    assert x[2] == pytest.approx(0.5) and abs(x[0] - 0.25) < 0.1
    # same seed, same search
    again = cma_minimize(f, np.zeros(3), np.full(3, 0.5), *box, budget=64, seed=3)
    assert np.array_equal(again[0], cma_minimize(f, np.zeros(3), np.full(3, 0.5), *box,
                                                 budget=64, seed=3)[0])


def test_docstring_examples():
    result = doctest.testmod(curricula.sysid)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_end_to_end_gain_gap_twin():
    """A twin where a nominal policy undershoots (gain 0.6, latency 2): the whole fit."""
    truth = sim.TaskParams(actuator_gain_scale=0.6, action_latency=2, obs_noise_std=0.003,
                           action_noise_std=0.1, joint_damping_scale=1.4)
    eps = simulate_episodes("push-v3", truth, 5, seed=7)
    fit = fit_sysid(eps, "push-v3", replay_budget=40)
    est = fit.estimates
    assert est["action_latency"].value == 2
    assert abs(est["actuator_gain_scale"].value / 0.6 - 1) < 0.05
    assert abs(est["obs_noise_std"].value / 0.003 - 1) < 0.2
    assert abs(est["action_noise_std"].value / 0.1 - 1) < 0.3
    assert est["joint_damping_scale"].identified
    covered = fit.covers(truth)
    # (the action noise comes out ~0.03 where the twin has none: a residual misfit it absorbs)
    assert all(v for n, v in covered.items() if n != "action_noise_std"), fit.summary()
    TaskDistribution(["push-v3"], [fit.component(cycle=0)])


@pytest.mark.slow
def test_hand_refit_is_kept_only_where_it_explains_the_hand_better():
    """A heavy handle (contact at the reset): the replay fit's physics may misplace the arm.

    The hand is refitted under that physics, and the refit replaces the first hand fit only
    where its log-likelihood per logged step is at least as high; the estimates are the kept
    fit's, and the action noise is not inflated to absorb a misplaced arm.
    """
    truth = sim.TaskParams(actuator_gain_scale=0.9, action_latency=1, obs_noise_std=0.002,
                           action_noise_std=0.05, friction_scale=0.7, object_mass_scale=2.0,
                           joint_damping_scale=1.5)
    eps = simulate_episodes("handle-press-v3", truth, 5, seed=0)
    fit = fit_sysid(eps, "handle-press-v3")
    diag = fit.diagnostics
    assert "hand_refit" in diag, "this recording's replay fit moves the physics: a refit runs"
    first, refit = diag["hand"], diag["hand_refit"]
    better = refit["loglik"] / refit["steps_used"] >= first["loglik"] / first["steps_used"]
    assert refit["kept"] == better
    kept = refit if better else first
    assert fit.estimates["action_noise_std"].value == pytest.approx(kept["action_noise_std"])
    assert fit.estimates["action_latency"].value == kept["latency"] == 1
    assert abs(fit.estimates["actuator_gain_scale"].value / 0.9 - 1) < 0.05
    assert fit.estimates["action_noise_std"].value < 2 * 0.05, fit.summary()


@pytest.mark.slow
def test_damping_beyond_the_prior_is_found_and_flagged():
    """A twin at 3x joint damping behind the default prior (damping box [0.5, 2]).

    The hand fit's damping screen, at the prior's end, steps on beyond it instead of stopping
    there (it stopped at 2 and the fit made up for it with gain 1.8, latency 5, action noise
    1.0); the replay fit then identifies the damping, and the fit says it lies outside the prior.
    """
    truth = sim.TaskParams(joint_damping_scale=3.0)
    eps = simulate_episodes("pick-place-v3", truth, 5, seed=3)
    fit = fit_sysid(eps, "pick-place-v3")
    est = fit.estimates
    assert fit.diagnostics["hand"]["damping"] > 2.0, "the screen went beyond the prior's end"
    assert est["joint_damping_scale"].identified
    assert abs(math.log(est["joint_damping_scale"].value / 3.0)) < 0.1, fit.summary()
    assert est["joint_damping_scale"].contains(3.0)
    assert est["action_latency"].value == 0
    assert abs(est["actuator_gain_scale"].value - 1.0) < 0.05, fit.summary()
    assert est["action_noise_std"].value < 0.1, fit.summary()
    assert set(fit.diagnostics["outside_prior"]) == {"joint_damping_scale"}
    assert "outside the prior" in est["joint_damping_scale"].note
    covered = fit.covers(truth)
    # (the action noise comes out ~0.03 where the twin has none: a residual misfit it absorbs)
    assert all(v for n, v in covered.items() if n != "action_noise_std"), fit.summary()
