"""MetaWorldEnv: fidelity to stock Meta-World, seeding, parameters, errors, rendering."""

import os

import numpy as np
import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

from sim import HORIZON, MetaWorldEnv, ScriptedExpert, TaskParams, make_env

SEED = 7


def stock_env(task: str, seed: int):
    """Stock Meta-World, built by its own goal-observable class, switched to seeded goals."""
    env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-goal-observable"](seed=seed)
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env.seed(seed)
    return env


def expert_rollout(env, task, n_steps, seed=SEED):
    """Runs the expert for n_steps; returns obs (n+1, 39), actions (n, 4), rewards (n,)."""
    expert = ScriptedExpert(task)
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards = [obs], [], []
    for _ in range(n_steps):
        action = expert.act(env.expert_observation())
        obs, reward, *_ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
    return np.array(observations), np.array(actions), np.array(rewards)


def replay(env, actions, seed=SEED):
    """Steps fixed actions open loop; returns obs (n+1, 39)."""
    obs, _ = env.reset(seed=seed)
    observations = [obs]
    for action in actions:
        observations.append(env.step(action)[0])
    return np.array(observations)


def assert_matches_stock(env, task, n_steps=50):
    stock = stock_env(task, SEED)
    expert = ScriptedExpert(task)
    obs, _ = env.reset(seed=SEED)
    stock_obs, _ = stock.reset()
    assert np.array_equal(obs, stock_obs)
    for _ in range(n_steps):
        action = expert.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        stock_obs, stock_reward, _, _, stock_info = stock.step(action)
        assert np.array_equal(obs, stock_obs)
        assert reward == stock_reward
        assert info["success"] == bool(stock_info["success"])
        assert terminated is False and truncated is False
    stock.close()


@pytest.mark.parametrize(
    "task", ["push-v3", "door-open-v3", "pick-place-v3", "assembly-v3", "coffee-push-v3"]
)
def test_default_params_reproduce_stock_bit_for_bit(task):
    assert_matches_stock(make_env(task), task)


def test_back_to_default_params_reproduces_stock():
    env = make_env(
        "push-v3",
        params=TaskParams(
            friction_scale=0.5,
            object_mass_scale=3.0,
            joint_damping_scale=2.0,
            actuator_gain_scale=1.5,
            obs_noise_std=0.1,
            action_noise_std=0.1,
            action_latency=2,
        ),
    )
    env.reset(seed=SEED)
    env.step(env.action_space.sample())
    env.set_params(TaskParams())
    assert_matches_stock(env, "push-v3", n_steps=20)


def test_spaces_and_constants():
    env = make_env("reach-v3")
    assert env.observation_space.shape == (39,) and env.observation_space.dtype == np.float64
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    assert env.max_episode_steps == HORIZON == 500
    assert env.task == "reach-v3"
    assert env.params == TaskParams()
    assert env.unwrapped_metaworld.reward_function_version == "v2"


def test_step_returns_types():
    env = make_env("reach-v3", seed=0)
    env.reset()
    obs, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
    assert obs.dtype == np.float64 and obs.shape == (39,)
    assert type(reward) is float
    assert terminated is False and truncated is False
    assert type(info["success"]) is bool
    assert {"near_object", "grasp_success", "obj_to_target", "unscaled_reward"} <= set(info)
    assert info["applied_action"].dtype == np.float32


# ---------------------------------------------------------------------------- seeding
def test_same_seed_same_initial_obs_even_after_other_episodes():
    env = make_env("push-v3")
    first, _ = env.reset(seed=3)
    env.reset(seed=4)
    for _ in range(10):
        env.step(env.action_space.sample())
    again, _ = env.reset(seed=3)
    assert np.array_equal(first, again)
    assert np.array_equal(make_env("push-v3").reset(seed=3)[0], first)
    assert env.seed_used == 3


def test_different_seeds_give_different_goals():
    env = make_env("push-v3")
    goals = {tuple(env.reset(seed=s)[0][-3:]) for s in range(5)}
    assert len(goals) == 5


def test_reset_without_seed_continues_stream():
    env = make_env("push-v3")
    first, _ = env.reset(seed=11)
    second, _ = env.reset()
    assert not np.array_equal(first[-3:], second[-3:])
    seeded_at_construction = make_env("push-v3", seed=11)
    assert seeded_at_construction.seed_used == 11
    assert np.array_equal(seeded_at_construction.reset()[0], first)
    assert np.array_equal(seeded_at_construction.reset()[0], second)


def test_global_numpy_rng_untouched():
    state = np.random.get_state()
    env = make_env("push-v3", params=TaskParams(obs_noise_std=0.1, action_noise_std=0.1))
    env.reset()
    env.step(np.zeros(4, np.float32))
    env.reset(seed=1)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_noise_is_seeded_and_separate_from_goals():
    params = TaskParams(obs_noise_std=0.01)
    a = make_env("reach-v3", params=params).reset(seed=5)[0]
    b = make_env("reach-v3", params=params).reset(seed=5)[0]
    clean = make_env("reach-v3", seed=5)
    c = clean.reset()[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    noisy = make_env("reach-v3", params=params)
    noisy.reset(seed=5)
    assert np.array_equal(noisy.expert_observation(), c)  # noise leaves goals untouched


# ---------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "params",
    [
        TaskParams(friction_scale=0.5),
        TaskParams(object_mass_scale=5.0),
        TaskParams(joint_damping_scale=3.0),
        TaskParams(actuator_gain_scale=2.0),
    ],
    ids=["friction", "mass", "damping", "gain"],
)
def test_physics_params_change_the_trajectory(params):
    reference, actions, _ = expert_rollout(make_env("push-v3"), "push-v3", 80)
    changed = replay(make_env("push-v3", params=params), actions)
    assert np.abs(changed - reference).max() > 1e-3


def test_params_scale_nominal_values_without_compounding():
    env = make_env("push-v3")
    model = env.unwrapped_metaworld.model
    friction, mass, damping = (
        model.geom_friction.copy(),
        model.body_mass.copy(),
        model.dof_damping.copy(),
    )
    gain, bias = model.actuator_gainprm[:, 0].copy(), model.actuator_biasprm[:, 1].copy()
    obj = model.body("obj").id
    arm = model.body("right_l0").id
    env.set_params(
        TaskParams(
            friction_scale=2.0,
            object_mass_scale=3.0,
            joint_damping_scale=0.5,
            actuator_gain_scale=4.0,
        )
    )
    for _ in range(2):  # a second reset must not compound
        env.reset(seed=0)
        assert np.array_equal(model.geom_friction, friction * 2.0)
        assert model.body_mass[obj] == mass[obj] * 3.0
        assert model.body_mass[arm] == mass[arm]
        assert np.array_equal(model.dof_damping, damping * 0.5)
        assert np.array_equal(model.actuator_gainprm[:, 0], gain * 4.0)
        assert np.array_equal(model.actuator_biasprm[:, 1], bias * 4.0)
        assert env.unwrapped_metaworld.action_scale == 0.04
    assert env.object_bodies == ("obj",)


def test_envs_do_not_share_models():
    changed = make_env("push-v3", params=TaskParams(friction_scale=2.0, object_mass_scale=2.0))
    changed.reset(seed=0)
    fresh = make_env("push-v3")
    assert fresh.unwrapped_metaworld.model is not changed.unwrapped_metaworld.model
    assert np.array_equal(
        fresh.unwrapped_metaworld.model.geom_friction * 2.0,
        changed.unwrapped_metaworld.model.geom_friction,
    )


def test_set_params_applies_at_next_reset():
    env = make_env("push-v3")
    env.reset(seed=0)
    env.set_params(TaskParams(friction_scale=2.0))
    model = env.unwrapped_metaworld.model
    assert env.params.friction_scale == 2.0
    before = model.geom_friction.copy()
    env.reset()
    assert np.array_equal(model.geom_friction, before * 2.0)


def test_gain_scales_mocap_displacement():
    moves = []
    for scale in (1.0, 2.0):
        env = make_env("reach-v3", params=TaskParams(actuator_gain_scale=scale))
        env.reset(seed=0)
        start = env.unwrapped_metaworld.data.mocap_pos[0].copy()
        env.step(np.array([0.5, 0.0, 0.0, 0.0], np.float32))
        moves.append(env.unwrapped_metaworld.data.mocap_pos[0] - start)
    assert moves[0][0] == pytest.approx(0.005)
    assert moves[1][0] == pytest.approx(0.010)


def test_obs_noise_has_requested_std():
    std = 0.05
    env = make_env("reach-v3", params=TaskParams(obs_noise_std=std))
    obs, _ = env.reset(seed=0)
    residuals = [obs - env.expert_observation()]
    for _ in range(60):
        obs, *_ = env.step(np.zeros(4, np.float32))
        residuals.append(obs - env.expert_observation())
    residuals = np.concatenate(residuals)
    assert abs(residuals.mean()) < 0.005
    assert residuals.std() == pytest.approx(std, rel=0.05)


def test_action_noise_perturbs_applied_action():
    env = make_env("reach-v3", params=TaskParams(action_noise_std=0.1))
    env.reset(seed=0)
    commanded = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
    applied = np.array([env.step(commanded)[4]["applied_action"] for _ in range(200)])
    assert np.all(np.abs(applied) <= 1.0)
    assert np.abs(applied.mean(0) - commanded).max() < 0.03
    assert applied.std(0) == pytest.approx(np.full(4, 0.1), rel=0.2)


@pytest.mark.parametrize("k", [1, 3])
def test_latency_delays_actions_by_exactly_k_steps(k):
    actions = np.random.default_rng(0).uniform(-1, 1, (12, 4)).astype(np.float32)

    def mocap_track(latency):
        env = make_env("reach-v3", params=TaskParams(action_latency=latency))
        env.reset(seed=0)
        track, applied = [env.unwrapped_metaworld.data.mocap_pos[0].copy()], []
        for action in actions:
            applied.append(env.step(action)[4]["applied_action"])
            track.append(env.unwrapped_metaworld.data.mocap_pos[0].copy())
        return np.array(track), np.array(applied)

    reference, _ = mocap_track(0)
    delayed, applied = mocap_track(k)
    assert np.array_equal(applied[:k], np.zeros((k, 4)))
    assert np.array_equal(applied[k:], actions[:-k])
    assert np.array_equal(delayed[: k + 1], np.repeat(reference[:1], k + 1, axis=0))
    assert np.array_equal(delayed[k:], reference[:-k])


# ---------------------------------------------------------------------------- goal hidden
def test_goal_hidden_zeroes_goal_and_expert_observation_restores_it():
    hidden = make_env("push-v3", goal_observable=False)
    visible = make_env("push-v3")
    expert = ScriptedExpert("push-v3")
    obs_h, _ = hidden.reset(seed=2)
    obs_v, _ = visible.reset(seed=2)
    assert np.array_equal(obs_h[-3:], np.zeros(3))
    assert np.array_equal(hidden.expert_observation(), obs_v)
    for _ in range(30):
        action = expert.act(hidden.expert_observation())
        obs_h, *_ = hidden.step(action)
        obs_v, *_ = visible.step(action)
        assert np.array_equal(obs_h[-3:], np.zeros(3))
        assert np.array_equal(hidden.expert_observation(), obs_v)


# ---------------------------------------------------------------------------- errors
def test_unknown_task_raises_with_close_match():
    with pytest.raises(ValueError, match="did you mean 'push-v3'"):
        make_env("psh-v3")


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError, match=r"before reset\(\)"):
        make_env("reach-v3").step(np.zeros(4, np.float32))


def test_truncates_at_horizon_then_requires_reset():
    env = make_env("reach-v3", seed=0)
    env.reset()
    zero = np.zeros(4, np.float32)
    truncations = [env.step(zero)[3] for _ in range(HORIZON)]
    assert truncations[-1] is True and not any(truncations[:-1])
    with pytest.raises(RuntimeError, match=r"truncated at step 500; call env.reset\(\)"):
        env.step(zero)
    env.reset()
    env.step(zero)


@pytest.mark.parametrize(
    "action", [np.zeros(3), np.zeros((1, 4)), np.array([0.0, np.nan, 0.0, 0.0])]
)
def test_bad_action_raises(action):
    env = make_env("reach-v3", seed=0)
    env.reset()
    with pytest.raises(ValueError, match="action"):
        env.step(action)


def test_bad_constructor_arguments_raise():
    with pytest.raises(TypeError, match="params must be a sim.TaskParams"):
        make_env("reach-v3", params={"friction_scale": 1.0})
    with pytest.raises(ValueError, match="render_mode='human' is not supported"):
        make_env("reach-v3", render_mode="human")
    with pytest.raises(ValueError, match="seed=-1 must be non-negative"):
        make_env("reach-v3", seed=-1)
    with pytest.raises(ValueError, match=r"unknown options \['params'\].*set_params"):
        make_env("reach-v3").reset(options={"params": TaskParams()})


def test_render_without_mode_raises():
    env = make_env("reach-v3", seed=0)
    env.reset()
    with pytest.raises(RuntimeError, match="render_mode='rgb_array'"):
        env.render()


def _egl_error() -> str | None:
    try:
        from mujoco.egl import GLContext

        context = GLContext(8, 8)
        context.make_current()
        context.free()
    except Exception as err:  # any failure to get a context means no EGL here
        return f"{type(err).__name__}: {err}"
    return None


def test_render_rgb_array(monkeypatch):
    if os.environ.get("MUJOCO_GL", "egl") != "egl":
        pytest.skip(f"MUJOCO_GL={os.environ['MUJOCO_GL']}; this test renders with EGL")
    monkeypatch.setenv("MUJOCO_GL", "egl")
    error = _egl_error()
    if error is not None:
        pytest.skip(f"EGL unavailable: {error}")
    env = MetaWorldEnv("reach-v3", seed=0, render_mode="rgb_array", width=32, height=32)
    try:
        env.reset()
        frame = env.render()
    finally:
        env.close()
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
    assert frame.std() > 0
