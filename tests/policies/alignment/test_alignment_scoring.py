"""Trajectory costs on hand-built records (known path, jerk, chunk jumps, contacts) and scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies.alignment import (
    PRESETS,
    CostConfig,
    group_scale,
    resolve_weights,
    score_trajectories,
    stage_bounds,
    trajectory_costs,
)


def record(T=10, approach_at=3, success_at=7, **extra):
    """A record with near_object firing at row `approach_at` and success at `success_at`."""
    rows = np.arange(T)
    steps = {
        "obs": np.zeros((T, 39)),
        "action": np.zeros((T, 4)),
        "success": rows == success_at if success_at is not None else np.zeros(T, bool),
        "info_near_object": (rows >= approach_at).astype(float) if approach_at is not None
        else np.zeros(T),
        "info_grasp_success": np.zeros(T),
        "chunk_index": np.full(T, -1),
        "info_obj_to_target": np.linspace(0.5, 0.1, T),
    }
    steps.update(extra)
    return steps


def test_stage_bounds():
    assert stage_bounds(record()) == {"approach": (0, 4), "manipulate": (4, 8)}
    # Never near the object: all approach. Success before approach: approach ends there.
    assert stage_bounds(record(approach_at=None, success_at=None)) == {
        "approach": (0, 10), "manipulate": (10, 10)}
    assert stage_bounds(record(approach_at=8, success_at=5)) == {
        "approach": (0, 6), "manipulate": (6, 6)}
    # grasp_success ends the approach too.
    s = record(approach_at=None)
    s["info_grasp_success"] = (np.arange(10) >= 2).astype(float)
    assert stage_bounds(s)["approach"] == (0, 3)


def test_duration_and_ignoring_rows_after_success():
    c = trajectory_costs(record(T=12, approach_at=3, success_at=7))
    assert c["approach/duration"] == 4 and c["manipulate/duration"] == 4


def test_path_excess_of_an_l_shaped_hand_path():
    steps = record(T=10, approach_at=None, success_at=None)  # one stage: rows 0..9
    hand = np.zeros((10, 3))
    hand[:6, 0] = np.linspace(0.0, 0.1, 6)  # 0.1 m along x ...
    hand[5:, 0] = 0.1
    hand[5:, 1] = np.linspace(0.0, 0.1, 5)  # ... then 0.1 m along y
    steps["obs"][:, :3] = hand
    c = trajectory_costs(steps)
    assert c["approach/path_excess"] == pytest.approx(0.2 / math.hypot(0.1, 0.1) - 1.0)
    straight = record(T=10, approach_at=None, success_at=None)
    straight["obs"][:, 0] = np.linspace(0, 0.3, 10)
    assert trajectory_costs(straight)["approach/path_excess"] == pytest.approx(0.0, abs=1e-12)


def test_path_excess_uses_the_hand_after_the_stage_last_action():
    steps = record(T=6, approach_at=1, success_at=None)  # approach rows 0..1, manipulate 2..5
    steps["obs"][:, :3] = [[0, 0, 0], [0.1, 0, 0], [0.1, 0.1, 0], [0.1, 0.1, 0], [0.1, 0.1, 0],
                           [0.1, 0.1, 0]]
    c = trajectory_costs(steps)
    # approach: positions of rows 0..2 (o_2 is where its last action took the hand)
    assert c["approach/path_excess"] == pytest.approx(0.2 / math.hypot(0.1, 0.1) - 1.0)
    assert c["manipulate/path_excess"] == 0.0  # no movement: floored straight line, zero path


def test_jerk_of_a_quadratic_command():
    steps = record(T=10, approach_at=None, success_at=None)
    t = np.arange(10.0)
    steps["action"][:, 0] = 0.01 * t**2  # second difference 0.02 everywhere
    steps["action"][:, 2] = -0.03 * t  # linear: no jerk
    c = trajectory_costs(steps)
    assert c["approach/jerk"] == pytest.approx(0.02**2)


def test_chunk_jump_at_boundaries():
    steps = record(T=6, approach_at=None, success_at=None)
    steps["chunk_index"] = np.array([0, 0, 1, 1, 2, 2])
    steps["action"][:, 0] = [0.0, 0.0, 0.3, 0.3, 0.3, 0.3]  # jump 0.3 at t=2, 0 at t=4
    steps["action"][:, 1] = [0.0, 0.0, 0.0, 0.0, 0.4, 0.4]  # jump 0.4 at t=4
    assert trajectory_costs(steps)["approach/chunk_jump"] == pytest.approx((0.3 + 0.4) / 2)
    steps["chunk_index"] = np.full(6, -1)  # no chunks: no boundaries
    assert trajectory_costs(steps)["approach/chunk_jump"] == 0.0


def test_saturation_counts_motion_dims_only_by_default():
    steps = record(T=4, approach_at=None, success_at=None)
    steps["action"][:, 3] = 1.0  # the gripper, commanded at ±1 by design
    steps["action"][0, 0] = -1.0
    steps["action"][1, 1] = 0.9995
    c = trajectory_costs(steps)
    assert c["approach/saturation"] == pytest.approx(2 / 12)
    all_dims = trajectory_costs(steps, config=CostConfig(saturation_dims=None))
    assert all_dims["approach/saturation"] == pytest.approx(6 / 16)


def test_contacts_force_interventions_and_remaining_distance():
    T = 10
    contacts = np.zeros(T, int)
    contacts[[1, 2, 6]] = [1, 3, 2]
    force = np.zeros(T)
    force[[1, 2, 6]] = [5.0, 12.0, 7.5]
    iv = np.zeros((T, 2), int)
    iv[5] = [1, 2]
    steps = record(T=T, approach_at=3, success_at=None, contact_count=contacts,
                   contact_force=force, interventions=iv)
    c = trajectory_costs(steps)  # approach rows 0..3, manipulate 4..9
    assert c["approach/contacts"] == 2 and c["manipulate/contacts"] == 1
    assert c["approach/peak_force"] == 12.0 and c["manipulate/peak_force"] == 7.5
    assert c["approach/interventions"] == 0 and c["manipulate/interventions"] == 3
    assert c["manipulate/remaining_distance"] == pytest.approx(0.1)  # failed: final distance
    assert "approach/remaining_distance" not in c
    assert trajectory_costs(record())["manipulate/remaining_distance"] == 0.0  # succeeded
    assert "approach/contacts" not in trajectory_costs(record())  # not recorded


def test_bad_records_are_named():
    steps = record()
    steps["action"] = np.zeros((9, 4))
    with pytest.raises(ValueError, match=r"action.shape=\(9, 4\), expected \(10, D\)"):
        trajectory_costs(steps)
    with pytest.raises(ValueError, match="lacks every stage key"):
        trajectory_costs({k: v for k, v in record().items() if not k.startswith("info_")})


def test_group_scale_median_mad_and_guards():
    costs = np.array([[1.0, 5.0, 2.0], [2.0, 5.0, 2.0], [4.0, 5.0, 2.0], [9.0, 5.0, 8.0]])
    tau, scale = group_scale(costs)
    assert tau.tolist() == [3.0, 5.0, 2.0]
    # col 0: |dev| = 2, 1, 1, 6 → MAD 1.5; col 1: constant → 0; col 2: MAD 0 → mean dev 1.5
    np.testing.assert_allclose(scale, [1 / 1.5, 0.0, 1 / 1.5])


def test_scores_follow_grape_constants():
    costs = [{"approach/duration": d, "approach/jerk": j}
             for d, j in ((10.0, 0.0), (20.0, 0.0), (30.0, 0.0), (20.0, 3.0))]
    s = score_trajectories(costs, [True, True, True, False], ["g"] * 4, weights="all",
                           log_self=[-100.0, 0.0, 0.0, 0.0])
    # duration: τ = 20, MAD 5 → trajectory 2 is 2 MADs over; jerk: τ = 0, MAD 0 → mean dev 0.75
    r_ext = np.exp(-np.array([0.0, 0.0, 2.0, 3.0 / 0.75]))
    np.testing.assert_allclose(s.r_ext, r_ext)
    np.testing.assert_allclose(s.score, 0.01 * np.array([-100, 0, 0, 0]) + r_ext
                               + 5 * np.array([1, 1, 1, 0]))
    assert s.keys == ["approach/duration", "approach/jerk"]


def test_scaling_is_per_group():
    costs = [{"approach/duration": d} for d in (10.0, 20.0, 30.0, 100.0, 200.0, 300.0)]
    s = score_trajectories(costs, [True] * 6, ["a"] * 3 + ["b"] * 3,
                           weights={"duration": 1.0})
    np.testing.assert_allclose(s.r_ext, np.exp(-np.array([0, 0, 1, 0, 0, 1.0])))
    np.testing.assert_allclose(s.tau[:, 0], [20] * 3 + [200] * 3)


def test_presets_and_weights_are_validated():
    assert set(PRESETS) == {"efficiency", "smooth", "safe", "robust", "all"}
    with pytest.raises(ValueError, match="Did you mean 'efficiency'"):
        resolve_weights("efficency")
    with pytest.raises(ValueError, match="Did you mean 'jerk'"):
        resolve_weights({"jerks": 1.0})
    with pytest.raises(ValueError, match="expected a finite number >= 0"):
        resolve_weights({"jerk": -1.0})
    w = resolve_weights({"jerk": 2.0, "manipulate/duration": 0.5})
    assert w == {"approach/jerk": 2.0, "manipulate/jerk": 2.0, "manipulate/duration": 0.5}
    costs = [trajectory_costs(record(T=10 + i)) for i in range(3)]  # no contacts recorded
    with pytest.raises(ValueError, match="do not have"):
        score_trajectories(costs, [True] * 3, [0] * 3, weights={"contacts": 1.0})
    with pytest.raises(ValueError, match="none of their costs was recorded"):
        score_trajectories(costs, [True] * 3, [0] * 3, weights="safe")
    s = score_trajectories(costs, [True] * 3, [0] * 3, weights="robust")  # skips interventions
    assert "approach/interventions" not in s.keys and "manipulate/saturation" in s.keys


def test_mismatched_cost_keys_are_rejected():
    a = trajectory_costs(record())
    b = trajectory_costs(record(contact_count=np.zeros(10, int)))
    with pytest.raises(ValueError, match="recorded the same way"):
        score_trajectories([a, b], [True, True], [0, 0])
