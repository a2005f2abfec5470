"""RegionGrid: region arms partition the box and drive a distribution through an LPSampler."""

import math

import numpy as np
import pytest

from curricula import Box, CurriculumError, EmpiricalInit, LPSampler, RegionGrid
from sim import ParamRanges, TaskParams

RANGES = ParamRanges(friction_scale=(0.5, 2.0), obs_noise_std=(0.0, 0.01), action_latency=(0, 4))


def test_arms_are_the_grid_cells():
    grid = RegionGrid(RANGES, {"action_latency": 2, "friction_scale": 3})
    assert len(grid.arms) == len(set(grid.arms)) == 6
    assert grid.fields == ("friction_scale", "action_latency")  # TaskParams order
    assert grid.arms[0] == "friction_scale:0/3|action_latency:0/2"
    assert grid.arms[-1] == "friction_scale:2/3|action_latency:1/2"


def test_bins_partition_the_box():
    grid = RegionGrid(RANGES, {"friction_scale": 3, "action_latency": 2})
    f = grid.bins("friction_scale")
    assert f[0][0] == 0.5 and f[-1][1] == 2.0
    assert all(a[1] == b[0] for a, b in zip(f, f[1:]))  # contiguous
    assert [hi - lo for lo, hi in f] == pytest.approx([0.5, 0.5, 0.5])
    lat = grid.bins("action_latency")
    assert lat == [(0, 2), (3, 4)]  # disjoint integer ranges covering 0..4
    region = grid.region("friction_scale:1/3|action_latency:1/2")
    assert region.ranges["friction_scale"] == pytest.approx((1.0, 1.5))
    assert region.ranges["action_latency"] == (3, 4)
    assert region.ranges["obs_noise_std"] == (0.0, 0.01)  # unsplit fields keep the box


def test_log_bins_are_geometric():
    grid = RegionGrid(Box({"friction_scale": (0.1, 10.0)}), {"friction_scale": 4},
                      log_fields=["friction_scale"])
    edges = [lo for lo, _ in grid.bins("friction_scale")] + [10.0]
    ratios = [b / a for a, b in zip(edges, edges[1:])]
    assert ratios == pytest.approx([math.sqrt(10)] * 4)
    assert edges[0] == 0.1 and edges[-1] == 10.0


def test_samples_stay_in_their_region_and_arm_of_finds_it():
    grid = RegionGrid(RANGES, {"friction_scale": 3, "action_latency": 2})
    dist = grid.distribution(["push-v3", "reach-v3"])
    for s in dist.sample_n(np.random.default_rng(0), 2000):
        assert grid.region(s.component).log_prob(s.params.to_dict(), s.task) > -math.inf
        assert grid.arm_of(s.params) == s.component
    assert grid.arm_of(TaskParams(friction_scale=1.0, action_latency=3)) == (
        "friction_scale:1/3|action_latency:1/2")  # an inner edge goes to the upper bin
    with pytest.raises(ValueError, match=r"friction_scale=3.0 lies outside the box \[0.5, 2.0\]"):
        grid.arm_of(TaskParams(friction_scale=3.0))


def test_region_weights_become_component_weights():
    grid = RegionGrid(RANGES, {"friction_scale": 2})
    weights = dict(zip(grid.arms, [3.0, 1.0]))
    dist = grid.distribution(["push-v3"], weights)
    assert dist.component_probabilities("push-v3") == dict(zip(grid.arms, [0.75, 0.25]))
    with pytest.raises(ValueError, match="no weight for 1 arm"):
        grid.distribution(["push-v3"], {grid.arms[0]: 1.0})
    with pytest.raises(ValueError, match="did you mean"):
        grid.distribution(["push-v3"], {**weights, grid.arms[0] + "x": 1.0})


def test_extra_factors_are_shared_by_every_region():
    grid = RegionGrid(Box({"friction_scale": (0.5, 2.0)}), {"friction_scale": 2})
    init = EmpiricalInit({"push-v3": [(0.0, 0.6, 0.02, 0.1, 0.8, 0.02)]})
    dist = grid.distribution(["push-v3"], extra_factors=[init])
    assert all(s.rand_vec is not None for s in dist.sample_n(np.random.default_rng(0), 20))


def test_lp_sampler_drives_the_regions():
    # Low friction is where the (synthetic) policy is improving: the budget should go there.
    grid = RegionGrid(RANGES, {"friction_scale": 3})
    lp = LPSampler(grid.arms, window=4, epsilon=0.1, seed=0)
    learning_arm = grid.arms[0]
    rng = np.random.default_rng(0)
    skill = dict.fromkeys(grid.arms, 0.0)
    for _ in range(6):
        dist = grid.distribution(["push-v3"], lp.probabilities())
        for s in dist.sample_n(rng, 60):
            if s.component == learning_arm:
                skill[learning_arm] = min(1.0, skill[learning_arm] + 0.005)
        for arm in grid.arms:
            lp.update(arm, skill[arm])
    probs = grid.distribution(["push-v3"], lp.probabilities()).component_probabilities("push-v3")
    assert max(probs, key=probs.get) == learning_arm
    assert probs[learning_arm] > 0.7


@pytest.mark.parametrize(
    "box, bins, kwargs, expected",
    [
        (RANGES, {"friction": 2}, {}, "unknown TaskParams field 'friction'; did you mean "
                                      "'friction_scale'"),
        (Box({"friction_scale": (0.5, 2.0)}), {"action_latency": 2}, {},
         "'action_latency' is not a field of the box"),
        (RANGES, {"action_latency": 6}, {}, "6 bins for the 5 integers of [0, 4]"),
        (RANGES, {"joint_damping_scale": 2}, {}, "2 bins for the fixed range [1.0, 1.0]"),
        (RANGES, {"obs_noise_std": 2}, {"log_fields": ["obs_noise_std"]}, "log bins need low > 0"),
        (RANGES, {"friction_scale": 0}, {}, "bins.friction_scale: 0 is out of range"),
        (RANGES, {}, {}, "at least one field"),
    ],
)
def test_bad_grids_are_refused(box, bins, kwargs, expected):
    with pytest.raises(CurriculumError) as err:
        RegionGrid(box, bins, **kwargs)
    assert str(err.value).startswith("RegionGrid: ") and expected in str(err.value)
