"""The rollout engine: trajectory records (steps, chunks, info, contacts), physics per episode,
and rollouts written to the episode store with source=policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sim
from policies import make_policy
from robolearn.data import EpisodeStore
from robolearn.rollout import (
    INFO_KEYS,
    EpisodeSpec,
    ExpertAgent,
    FixedPhysics,
    RolloutOptions,
    episode_seed,
    make_envs,
    physics_from_config,
    run_batch,
    store_extras,
    trajectory_rows,
)
from robolearn.rollout.physics import RandomizationConfig
from robolearn.runtime import PolicyRunner

TASK = "reach-v3"


def _runner(exec_horizon: int = 3) -> PolicyRunner:
    torch.manual_seed(0)
    policy = make_policy("flow_matching", obs_dim=sim.OBS_DIM, action_dim=sim.ACTION_DIM,
                         num_tasks=1, action_horizon=4, action_exec_horizon=exec_horizon,
                         backbone_kwargs={"hidden_dim": 32, "num_blocks": 1})
    rng = np.random.default_rng(0)
    policy.fit_normalizers(rng.normal(size=(100, sim.OBS_DIM)), rng.uniform(-1, 1, (100, 4)))
    return PolicyRunner(policy, [TASK])


def _specs(n: int, **kw) -> list[EpisodeSpec]:
    return [EpisodeSpec(TASK, i, episode_seed(7, TASK, i), **kw) for i in range(n)]


def test_a_policy_trajectory_records_steps_and_the_chunks_they_came_from():
    runner = _runner(exec_horizon=3)
    trajs = run_batch(runner, make_envs(TASK, 2), _specs(2),
                      RolloutOptions(horizon=10, record="steps"))
    for traj in trajs:
        s, c = traj.steps, traj.chunks
        assert traj.length == 10 and not traj.success and traj.first_success is None
        assert s["obs"].shape == (10, sim.OBS_DIM) and s["action"].shape == (10, 4)
        assert set(f"info_{k}" for k in INFO_KEYS) <= set(s)
        # a chunk every exec_horizon steps; each executed action is its chunk's next one
        assert list(c["step"]) == [0, 3, 6, 9] and c["action"].shape == (4, 4, 4)
        assert list(s["chunk_index"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
        for t in range(10):
            k = s["chunk_index"][t]
            np.testing.assert_array_equal(s["action"][t], c["action"][k][t - c["step"][k]])
        # no latency, no noise: what was applied is what was commanded
        np.testing.assert_array_equal(s["applied_action"], s["action"])
        assert traj.episode_return == pytest.approx(float(s["reward"].sum()), rel=1e-6)
    # the chunk's observation history is the true past (o_t-1, o_t), not o_t twice
    c, s = trajs[0].chunks, trajs[0].steps
    np.testing.assert_array_equal(c["obs"][1], s["obs"][2:4])


def test_the_applied_action_lags_the_commanded_one_under_latency():
    params = sim.TaskParams(action_latency=2)
    (traj,) = run_batch(ExpertAgent(), make_envs(TASK, 1), _specs(1, params=params),
                        RolloutOptions(horizon=12, record="steps"))
    s = traj.steps
    np.testing.assert_array_equal(s["applied_action"][:2], np.zeros((2, 4), np.float32))
    np.testing.assert_array_equal(s["applied_action"][2:], s["action"][:-2])


def test_physics_of_each_episode_is_applied_and_reproducible():
    physics = physics_from_config(None, RandomizationConfig(friction_scale=[0.5, 0.9]))
    a = [physics.draw(TASK, s) for s in (1, 2, 3)]
    assert a == [physics.draw(TASK, s) for s in (1, 2, 3)]
    assert len({p.friction_scale for p, _ in a}) == 3
    envs = make_envs(TASK, 3)
    specs = [EpisodeSpec(TASK, i, s, p) for i, (s, (p, _)) in enumerate(zip((1, 2, 3), a))]
    run_batch(ExpertAgent(), envs, specs, RolloutOptions(horizon=2))
    assert [env.params for env in envs] == [p for p, _ in a]
    assert FixedPhysics().describe() == {"mode": "default", "params": sim.TaskParams().to_dict()}


def test_contacts_are_recorded_on_request():
    (traj,) = run_batch(ExpertAgent(), make_envs("push-v3", 1),
                        [EpisodeSpec("push-v3", 0, 3)],
                        RolloutOptions(record="steps", contacts=True))
    s = traj.steps
    assert traj.success and s["contact_count"].dtype == np.int32
    assert s["contact_count"].max() > 0 and s["contact_force"].max() > 0  # it pushed the puck


def test_policy_rollouts_go_to_the_store_with_source_policy(tmp_path):
    options = RolloutOptions(horizon=6, record="steps", contacts=True)
    trajs = run_batch(_runner(), make_envs(TASK, 2), _specs(2), options)
    extras = store_extras(options, sim.ACTION_DIM)
    with EpisodeStore.create(tmp_path / "r.zarr", sim.OBS_DIM, sim.ACTION_DIM,
                             extras=extras) as store:
        for t in trajs:
            store.add_episode(trajectory_rows(t, tuple(extras)), task=t.task, source="policy",
                              params=t.spec.params, seed=t.seed, policy_id=t.policy_id)
    with EpisodeStore.open(tmp_path / "r.zarr") as store:
        ep = store.episode(1)
        assert len(store) == 2 and ep.source == "policy" and ep.seed == trajs[1].seed
        np.testing.assert_array_equal(ep.data["action"], trajs[1].steps["action"])
        np.testing.assert_array_equal(ep.data["chunk_index"], trajs[1].steps["chunk_index"])


def test_a_summary_rollout_has_no_steps_and_rows_are_refused():
    (traj,) = run_batch(ExpertAgent(), make_envs(TASK, 1), _specs(1))
    assert traj.steps is None and traj.success
    with pytest.raises(ValueError, match="record='steps'"):
        trajectory_rows(traj)


def test_bad_batches_are_refused():
    envs = make_envs(TASK, 2)
    with pytest.raises(ValueError, match="2 envs for 1 episode specs"):
        run_batch(ExpertAgent(), envs, _specs(1))
    with pytest.raises(ValueError, match="one task"):
        run_batch(ExpertAgent(), envs, [_specs(1)[0], EpisodeSpec("push-v3", 0, 1)])


def test_the_fast_step_and_meta_worlds_own_give_the_same_trajectory():
    options = RolloutOptions(record="steps", contacts=True)
    spec = [EpisodeSpec("push-v3", 0, 11, sim.TaskParams(friction_scale=0.8, action_latency=1))]
    (fast,) = run_batch(ExpertAgent(), make_envs("push-v3", 1), spec, options)
    (slow,) = run_batch(ExpertAgent(), make_envs("push-v3", 1, fast=False), spec, options)
    assert fast.success and fast.length == slow.length
    for key, value in fast.steps.items():
        np.testing.assert_array_equal(value, slow.steps[key], err_msg=key)
