"""A Gymnasium env around one Meta-World v3 task, with seeded goals and randomisable physics.

The wrapped env is set up the way Meta-World's own goal-observable classes are
(``metaworld.env_dict._create_observable_goal_envs``), except that goals come from the env's
seeded generator instead of numpy's global one, so a reset seed fully determines the goal and
object positions. With default :class:`~sim.params.TaskParams` the observations and rewards
are bit-identical to stock Meta-World.

By default the env steps through :func:`sim.fast.fast_class` (``fast=True``): Meta-World's own
reward code with faster shared helpers, giving bit-identical observations, rewards and info
several times faster; ``fast=False`` runs Meta-World's step unchanged, for comparison.

Example:
    >>> from sim import ScriptedExpert, make_env
    >>> env = make_env("push-v3", seed=0)
    >>> expert = ScriptedExpert("push-v3")
    >>> obs, info = env.reset(seed=12345)                  # obs: (39,) float64
    >>> obs, reward, terminated, truncated, info = env.step(expert.act(obs))
    >>> bool(info["success"])
    False
"""

from __future__ import annotations

import collections
import copy
import functools
import logging
import math
import numbers
import threading
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from sim.fast import fast_class
from sim.params import TaskParams
from sim.tasks import resolve_task

logger = logging.getLogger(__name__)

REWARD_VERSION = "v2"
"""Meta-World reward function version, pinned so rewards do not change under us."""
OBS_DIM = 39
"""Observation size: hand xyz, gripper opening, 14 object entries, the same 18 from the
previous step, goal xyz (zeros when the goal is hidden)."""
ACTION_DIM = 4
"""Action size: mocap displacement xyz and gripper effort, each in [-1, 1]."""
HORIZON = 500
"""Episode length in steps; ``step`` returns ``truncated=True`` at this step."""

_FLOAT32 = np.dtype(np.float32)
_RENDER_MODES = ("rgb_array", "depth_array")
_RESET_OPTIONS = ("rand_vec",)
_ROBOT_ROOT_BODY = "right_arm_base_link"
# Mixed into the reset seed so the noise stream is independent of the goal stream, which
# Meta-World draws from ``seeding.np_random(seed)`` itself.
_NOISE_STREAM = 0x6E6F697365


def _noise_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _NOISE_STREAM])))


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be a non-negative int or None, got {type(seed).__name__} {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"seed={seed} must be non-negative")
    return int(seed)


_MODEL_CACHE: dict[str, mujoco.MjModel] = {}
_MODEL_CACHE_LOCK = threading.Lock()


def _compiled_model(path: str) -> mujoco.MjModel:
    """A private copy of the model compiled from ``path``; each XML is compiled once."""
    with _MODEL_CACHE_LOCK:
        model = _MODEL_CACHE.get(path)
        if model is None:
            model = _MODEL_CACHE[path] = mujoco.MjModel.from_xml_path(path)
        return copy.copy(model)  # MjModel copies are deep: the cached master is never mutated


class _RandVecRejected(Exception):
    """Meta-World's reset rejected a given ``rand_vec`` (it would draw again; see ``reset``)."""


@functools.cache
def _metaworld_class(task: str) -> type:
    """Meta-World's class for ``task``, reusing compiled models across instances.

    Compiling a task's XML takes 0.3-0.7 s, copying a compiled model a few milliseconds; the
    copy is identical, so physics are unchanged. The random vector each reset draws is also
    recorded (``_episode_rand_vec``), and a frozen one that the task's reset would redraw
    raises instead of looping forever. Otherwise this is Meta-World's class as is.
    """
    base = ALL_V3_ENVIRONMENTS[task]

    def _initialize_simulation(self: Any) -> tuple[mujoco.MjModel, mujoco.MjData]:
        # As gymnasium.envs.mujoco.MujocoEnv._initialize_simulation, from the cache.
        model = _compiled_model(self.fullpath)
        model.vis.global_.offwidth = self.width
        model.vis.global_.offheight = self.height
        return model, mujoco.MjData(model)

    def reset_model(self: Any) -> np.ndarray:
        # SawyerXYZEnv.reset runs reset_model twice (itself, then MujocoEnv.reset); count the
        # vectors each run asks for.
        self._rand_vec_calls = 0
        return base.reset_model(self)

    def _get_state_rand_vec(self: Any) -> np.ndarray:
        # Tasks with a minimum object-goal distance ask again when the vector is too close;
        # a frozen vector would then come back unchanged forever.
        self._rand_vec_calls = getattr(self, "_rand_vec_calls", 0) + 1
        if self._freeze_rand_vec and self._rand_vec_calls > 1:
            raise _RandVecRejected(task)
        vec = base._get_state_rand_vec(self)
        if self._freeze_rand_vec:
            # A fresh array per draw, as a seeded draw gives: a task may write into it.
            vec = np.array(vec, dtype=np.float64)
        self._episode_rand_vec = np.array(vec, dtype=np.float64)  # as drawn, before any use
        return vec

    return type(
        base.__name__,
        (base,),
        {
            "_initialize_simulation": _initialize_simulation,
            "reset_model": reset_model,
            "_get_state_rand_vec": _get_state_rand_vec,
            "__module__": __name__,
        },
    )


@functools.cache
def _fast_metaworld_class(task: str) -> type:
    """:func:`_metaworld_class` with the fast step of :mod:`sim.fast` (same results)."""
    return fast_class(_metaworld_class(task))


def object_body_ids(model: mujoco.MjModel) -> np.ndarray:
    """Ids of the task's movable bodies, those whose mass ``object_mass_scale`` scales.

    A body counts when it is not welded to the world (it moves through some joint) and is not
    in the Sawyer's kinematic subtree rooted at ``right_arm_base_link``. That picks the puck,
    door leaf, drawer, button, etc.; the table, walls, fixed fixtures (whose mass is irrelevant
    anyway), the robot and the mocap body are excluded.

    Args:
        model: The task's MuJoCo model.

    Returns:
        (K,) int array of body ids.
    """
    robot_root = model.body(_ROBOT_ROOT_BODY).id
    ids = []
    for body in range(1, model.nbody):
        if model.body_weldid[body] == 0:
            continue
        ancestor = body
        while ancestor not in (0, robot_root):
            ancestor = model.body_parentid[ancestor]
        if ancestor != robot_root:
            ids.append(body)
    return np.array(ids, dtype=np.int64)


class MetaWorldEnv(gym.Env[np.ndarray, np.ndarray]):
    """One Meta-World v3 task as a Gymnasium env, with :class:`~sim.params.TaskParams`.

    Observations are float64 ``(39,)`` (``OBS_DIM``), actions float32 ``(4,)`` in [-1, 1]
    (``ACTION_DIM``). Episodes never terminate; they truncate at step ``HORIZON`` (500), after
    which ``step`` raises until ``reset`` is called. ``info["success"]`` is a bool; the other
    info keys are Meta-World's, plus ``"applied_action"``: the float32 ``(4,)`` action actually
    applied after latency and action noise.

    Seeding: ``reset(seed=s)`` reseeds Meta-World's goal generator with ``s`` (goal and object
    positions are a deterministic function of ``s``) and, separately, the noise generator
    (``env.np_random``). ``reset()`` without a seed continues both streams. No global numpy
    state is used.

    Physics parameters are stored as nominal values at construction and applied as
    nominal x scale at every reset; :meth:`set_params` takes effect at the next reset.

    The observation space has infinite bounds: observation noise and changed physics can leave
    Meta-World's nominal box, and the hidden goal slot of an ML suite carries noise too.

    Example:
        >>> env = MetaWorldEnv("reach-v3", params=TaskParams(friction_scale=0.5))
        >>> obs, info = env.reset(seed=3)
        >>> obs.shape
        (39,)
    """

    metadata = {"render_modes": list(_RENDER_MODES), "render_fps": 80}
    max_episode_steps = HORIZON

    def __init__(
        self,
        task: str,
        params: TaskParams | None = None,
        seed: int | None = None,
        render_mode: str | None = None,
        goal_observable: bool = True,
        *,
        camera_name: str = "corner",
        width: int = 480,
        height: int = 480,
        fast: bool = True,
    ) -> None:
        """Builds the env.

        Args:
            task: Meta-World v3 task name, e.g. ``"push-v3"``.
            params: Physics/task parameters; ``None`` means stock :class:`TaskParams`.
            seed: Seeds the goal and noise generators now, so a plain ``reset()`` is
                reproducible; ``None`` leaves them unseeded (fresh OS entropy).
            render_mode: ``None``, ``"rgb_array"`` or ``"depth_array"``.
            goal_observable: Whether the goal xyz is in the observation (MT suites) or zeros
                (ML suites; experts then need :meth:`expert_observation`).
            camera_name: Meta-World camera used by :meth:`render` (``"corner"``,
                ``"corner2"``, ``"corner3"``, ``"topview"``, ``"behindGripper"``,
                ``"gripperPOV"``).
            width: Rendered image width in pixels.
            height: Rendered image height in pixels.
            fast: Step through :mod:`sim.fast` (Meta-World's reward code with faster
                helpers; bit-identical results). ``False`` runs Meta-World's own step, for
                comparison and debugging.
        """
        super().__init__()
        self._task = resolve_task(task)
        self._params = self._check_params(params)
        seed = _check_seed(seed)
        if render_mode is not None and render_mode not in _RENDER_MODES:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported; expected None or one of "
                f"{', '.join(_RENDER_MODES)}"
            )
        if not isinstance(goal_observable, bool):
            raise TypeError(f"goal_observable must be a bool, got {goal_observable!r}")
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be a bool, got {fast!r}")
        self.render_mode = render_mode
        self._goal_observable = goal_observable
        self._fast = fast

        env_class = _fast_metaworld_class if fast else _metaworld_class
        inner = env_class(self._task)(
            reward_function_version=REWARD_VERSION,
            render_mode=render_mode,
            camera_name=camera_name,
            width=width,
            height=height,
        )
        # As metaworld.env_dict._create_observable_goal_envs, but goals from the seeded
        # generator (seeded_rand_vec) rather than numpy's global one.
        inner._partially_observable = not goal_observable
        inner.__dict__.pop("sawyer_observation_space", None)  # cached; recompute for the goal
        inner._freeze_rand_vec = False
        inner.seeded_rand_vec = True
        inner._set_task_called = True
        if inner.max_path_length != HORIZON:
            raise RuntimeError(f"Meta-World horizon {inner.max_path_length} != {HORIZON}")
        self._inner = inner

        model = inner.model
        self._nominal = {
            "geom_friction": model.geom_friction.copy(),
            "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(),
            "dof_damping": model.dof_damping.copy(),
            "actuator_gainprm": model.actuator_gainprm.copy(),
            "actuator_biasprm": model.actuator_biasprm.copy(),
        }
        self._nominal_action_scale = float(inner.action_scale)
        self._object_bodies = object_body_ids(model)
        # The gripper fingers are MuJoCo position actuators: gain kp, bias (0, -kp, -kv).
        self._position_actuators = np.flatnonzero(
            (model.actuator_gaintype == mujoco.mjtGain.mjGAIN_FIXED)
            & (model.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE)
        )
        self._applied_mass_scale = 1.0

        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)

        self._seed_used: int | None = None
        if seed is not None:
            self._seed(seed)
        self._steps = 0
        self._needs_reset = True
        self._latency_queue: collections.deque[np.ndarray] = collections.deque()
        self._clean_obs: np.ndarray | None = None
        self._clean_obs_from_step = False

    # ----------------------------------------------------------------------------- properties
    @property
    def task(self) -> str:
        """The Meta-World task name."""
        return self._task

    @property
    def params(self) -> TaskParams:
        """The parameters the next reset applies (and, unless changed since, the current ones)."""
        return self._params

    @property
    def goal_observable(self) -> bool:
        """Whether the goal xyz is part of the observation."""
        return self._goal_observable

    @property
    def fast(self) -> bool:
        """Whether steps go through :mod:`sim.fast` (``False``: Meta-World's own step)."""
        return self._fast

    @property
    def rand_vec(self) -> np.ndarray:
        """The current episode's Meta-World task random vector (a copy).

        Object and goal positions as the task's reset drew them (its ``_random_reset_space``;
        e.g. object xyz then goal xyz for ``push-v3``). ``reset(options={"rand_vec": v})``
        starts an episode from it again.

        Raises:
            RuntimeError: Called before the first ``reset``.
        """
        vec = getattr(self._inner, "_episode_rand_vec", None)
        if vec is None:
            raise RuntimeError(f"MetaWorldEnv({self._task!r}).rand_vec read before reset()")
        return vec.copy()

    @property
    def rand_vec_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of the task's random vector (Meta-World's ``_random_reset_space``)."""
        space = self._inner._random_reset_space
        return space.low.copy(), space.high.copy()

    @property
    def seed_used(self) -> int | None:
        """The last seed given to the constructor or ``reset``; ``None`` if never seeded."""
        return self._seed_used

    @property
    def unwrapped_metaworld(self) -> Any:
        """The inner Meta-World ``SawyerXYZEnv`` (its model, data and task internals)."""
        return self._inner

    @property
    def object_bodies(self) -> tuple[str, ...]:
        """Names of the bodies whose mass ``object_mass_scale`` scales (see ``object_body_ids``)."""
        model = self._inner.model
        return tuple(model.body(int(b)).name for b in self._object_bodies)

    def set_params(self, params: TaskParams) -> None:
        """Sets the parameters applied from the next :meth:`reset` on.

        Args:
            params: The new parameters.
        """
        self._params = self._check_params(params)

    # ----------------------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts an episode.

        Args:
            seed: Reseeds the goal generator (Meta-World's own, seeded with ``seed`` exactly) and
                the noise generator. ``None`` continues both streams.
            options: ``None``, or a dict with the key ``"rand_vec"``: a Meta-World task random
                vector (see :attr:`rand_vec`, :attr:`rand_vec_bounds`) to start from instead of
                drawing one. The start is a function of the vector alone (whatever the env
                did before) and, for 35 of the 50 tasks, the very start the seed that drew the
                vector gives. (Meta-World's reset runs the task's ``reset_model`` twice and
                keeps the second draw; in box-close, dial-turn, disassemble, door-lock,
                door-unlock, drawer-open, faucet-open, handle-press(-side), handle-pull(-side),
                lever-pull, peg-unplug-side and window-open/-close the first, discarded draw
                leaks into a seeded start: a body moved without a forward pass shows in the
                reset observation, the hand settles against the first layout.) The goal
                generator is not advanced by such a reset. Physics changes go through
                :meth:`set_params`, not options.

        Returns:
            ``(obs, info)``: obs ``(39,)`` float64, info an empty dict.

        Raises:
            ValueError: An unknown option, or a ``rand_vec`` of the wrong length, outside the
                task's bounds, non-finite, or one the task's reset rejects (it redraws
                vectors with object and goal too close together).
        """
        seed = _check_seed(seed)
        rand_vec = self._check_options(options)
        super().reset(seed=seed)
        if seed is not None:
            self._seed(seed)
        self._apply_params()
        inner = self._inner
        if rand_vec is not None:
            inner._last_rand_vec = rand_vec
            inner._freeze_rand_vec = True
        self._needs_reset = True
        try:
            obs, info = inner.reset()
        except _RandVecRejected:
            raise ValueError(
                f"MetaWorldEnv({self._task!r}).reset: rand_vec {rand_vec.tolist()} is inside "
                "the task's bounds but its reset rejects it (Meta-World redraws such vectors, "
                "e.g. when the object starts too close to the goal); use a vector a seeded "
                "reset produced (env.rand_vec) or move object and goal apart"
            ) from None
        finally:
            inner._freeze_rand_vec = False
        self._steps = 0
        self._needs_reset = False
        self._latency_queue = collections.deque(
            np.zeros(ACTION_DIM, dtype=np.float32) for _ in range(self._params.action_latency)
        )
        return self._observe(obs, from_step=False), dict(info)

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Advances one control step (5 MuJoCo substeps).

        Args:
            action: ``(4,)`` in [-1, 1]: mocap displacement xyz and gripper effort. Converted to
                float32 (the action space dtype).

        Returns:
            ``(obs, reward, terminated, truncated, info)``: obs ``(39,)`` float64, reward a
            float, terminated always False, truncated True at step ``HORIZON``, info with
            ``success`` (bool), Meta-World's keys and ``applied_action``.

        Raises:
            RuntimeError: Called before ``reset`` or after the episode was truncated.
            ValueError: ``action`` has the wrong shape or non-finite entries.
        """
        if self._needs_reset:
            if self._steps >= HORIZON:
                raise RuntimeError(
                    f"MetaWorldEnv({self._task!r}).step: the episode was truncated at step "
                    f"{HORIZON}; call env.reset() to start a new episode"
                )
            raise RuntimeError(
                f"MetaWorldEnv({self._task!r}).step called before reset(); call env.reset() first"
            )
        if type(action) is np.ndarray and action.dtype is _FLOAT32:
            commanded = action.copy()  # np.array(action, dtype=np.float32), without its dispatch
        else:
            commanded = np.array(action, dtype=np.float32)
        if commanded.shape != (ACTION_DIM,):
            raise ValueError(
                f"action has shape {commanded.shape}; expected ({ACTION_DIM},) "
                "(dx, dy, dz, gripper)"
            )
        # The float64 sum of four float32 values is finite exactly when all of them are.
        if not math.isfinite(sum(commanded.tolist())):
            raise ValueError(f"action {commanded.tolist()} has non-finite entries")
        p = self._params
        applied = (
            self._perturb_action(commanded)
            if p.action_latency or p.action_noise_std
            else commanded
        )

        obs, reward, _terminated, _truncated, info = self._inner.step(applied)
        steps = self._steps = self._steps + 1
        truncated = steps >= HORIZON
        self._needs_reset = truncated
        if not self._fast:
            info = dict(info)
        # (The fast step builds a fresh info dict every step, as Meta-World's evaluate_state
        # does; only Meta-World's own step gets the defensive copy.)
        info["success"] = bool(info["success"])
        info["applied_action"] = applied
        if self._fast and not p.obs_noise_std:
            # _observe, inlined: the fast step returns a float64 copy of the array it keeps as
            # _last_stable_obs, which it never writes into: that one serves as the clean copy
            # (unless it is the very array returned, as after a simulation exception).
            clean = self._inner._last_stable_obs
            self._clean_obs = obs.copy() if clean is obs or clean is None else clean
            self._clean_obs_from_step = True
            return obs, float(reward), False, truncated, info
        return self._observe(obs, from_step=True), float(reward), False, truncated, info

    def render(self) -> np.ndarray:
        """Renders the current frame from ``camera_name``.

        Returns:
            ``(H, W, 3)`` uint8 for ``"rgb_array"``, ``(H, W)`` float for ``"depth_array"``,
            upright (Meta-World's cameras come out upside down from Gymnasium's renderer, so
            rows are flipped back).

        Raises:
            RuntimeError: The env was built without a ``render_mode``.
        """
        if self.render_mode is None:
            raise RuntimeError(
                "render() needs a render mode; build the env with "
                "make_env(task, render_mode='rgb_array')"
            )
        frame = self._inner.render()
        return np.ascontiguousarray(frame[::-1])

    def close(self) -> None:
        """Frees the renderer, if one was opened."""
        self._inner.close()

    def expert_observation(self) -> np.ndarray:
        """The latest observation as a goal-observable, noise-free env would return it.

        Scripted experts need the goal position, which ML suites hide; give them this instead
        of the policy's observation. Equal to the last returned observation when the goal is
        observable and there is no observation noise.

        Returns:
            ``(39,)`` float64.
        """
        if self._clean_obs is None:
            raise RuntimeError("expert_observation() called before reset(); call env.reset()")
        obs = self._clean_obs.copy()
        if not self._goal_observable:
            goal = np.asarray(self._inner._get_pos_goal(), dtype=np.float64)
            if self._clean_obs_from_step:
                # Meta-World clips step observations (not reset ones) to its observation box.
                goal_space = self._inner.goal_space
                goal = np.clip(goal, goal_space.low, goal_space.high)
            obs[-3:] = goal
        return obs

    # ----------------------------------------------------------------------------- internals
    def _check_options(self, options: dict[str, Any] | None) -> np.ndarray | None:
        """The validated ``rand_vec`` option (float64 copy), or None."""
        if options is None:
            return None
        if not isinstance(options, dict):
            raise TypeError(f"reset options must be a dict or None, got {type(options).__name__}")
        unknown = sorted(set(options) - set(_RESET_OPTIONS))
        if unknown:
            raise ValueError(
                f"MetaWorldEnv.reset got unknown options {unknown}; the known ones are "
                f"{list(_RESET_OPTIONS)} (change physics with set_params(...) before reset)"
            )
        if options.get("rand_vec") is None:
            return None
        low, high = self.rand_vec_bounds
        where = (
            f"MetaWorldEnv({self._task!r}).reset: options['rand_vec'] must have length "
            f"{low.size} within low={low.tolist()}, high={high.tolist()}"
        )
        try:
            vec = np.array(options["rand_vec"], dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{where}; got {options['rand_vec']!r}") from None
        if vec.shape != low.shape:
            raise ValueError(f"{where}; got shape {vec.shape}")
        if not np.all(np.isfinite(vec)):
            raise ValueError(f"{where}; got non-finite entries {vec.tolist()}")
        outside = np.flatnonzero((vec < low) | (vec > high))
        if outside.size:
            raise ValueError(
                f"{where}; entries {outside.tolist()} are outside: {vec.tolist()} "
                "(read a valid one from env.rand_vec after a seeded reset)"
            )
        return vec

    @staticmethod
    def _check_params(params: TaskParams | None) -> TaskParams:
        if params is None:
            return TaskParams()
        if not isinstance(params, TaskParams):
            raise TypeError(
                f"params must be a sim.TaskParams, got {type(params).__name__}; "
                "use TaskParams.from_dict(...) for a dict"
            )
        return params

    def _seed(self, seed: int) -> None:
        self._inner.seed(seed)
        self._np_random = _noise_rng(seed)
        self._np_random_seed = seed
        self._seed_used = seed

    def _apply_params(self) -> None:
        """Writes nominal x scale into the model (never compounding)."""
        p = self._params
        model = self._inner.model
        nominal = self._nominal
        model.geom_friction[:] = nominal["geom_friction"] * p.friction_scale
        model.dof_damping[:] = nominal["dof_damping"] * p.joint_damping_scale

        gain = nominal["actuator_gainprm"].copy()
        bias = nominal["actuator_biasprm"].copy()
        gain[self._position_actuators, 0] *= p.actuator_gain_scale
        bias[self._position_actuators, 1] *= p.actuator_gain_scale
        model.actuator_gainprm[:] = gain
        model.actuator_biasprm[:] = bias
        self._inner.action_scale = self._nominal_action_scale * p.actuator_gain_scale

        if p.object_mass_scale != self._applied_mass_scale:
            mass = nominal["body_mass"].copy()
            inertia = nominal["body_inertia"].copy()
            mass[self._object_bodies] *= p.object_mass_scale
            inertia[self._object_bodies] *= p.object_mass_scale
            model.body_mass[:] = mass
            model.body_inertia[:] = inertia
            # Recompute mass-derived constants (subtree masses, invweight0 used by the
            # constraint solver). On nominal masses this reproduces the compiled values
            # bit for bit; it uses data as scratch, which the reset below overwrites.
            mujoco.mj_setConst(model, self._inner.data)
            self._applied_mass_scale = p.object_mass_scale

    def _perturb_action(self, commanded: np.ndarray) -> np.ndarray:
        p = self._params
        applied = commanded
        if p.action_latency:
            self._latency_queue.append(commanded)
            applied = self._latency_queue.popleft()
        if p.action_noise_std:
            noise = self.np_random.normal(0.0, p.action_noise_std, ACTION_DIM)
            applied = np.clip(applied + noise, -1.0, 1.0).astype(np.float32)
        return applied

    def _observe(self, obs: np.ndarray, *, from_step: bool) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        self._clean_obs = obs.copy()
        self._clean_obs_from_step = from_step
        if self._params.obs_noise_std:
            obs = obs + self.np_random.normal(0.0, self._params.obs_noise_std, OBS_DIM)
        return obs


def make_env(
    task: str,
    params: TaskParams | None = None,
    seed: int | None = None,
    render_mode: str | None = None,
    goal_observable: bool = True,
    fast: bool = True,
    **kwargs: Any,
) -> MetaWorldEnv:
    """Builds a :class:`MetaWorldEnv` for one Meta-World v3 task.

    Args:
        task: Task name, e.g. ``"push-v3"`` (see ``sim.ALL_TASKS``).
        params: Physics/task parameters; ``None`` is stock Meta-World.
        seed: Seeds the goal and noise generators at construction.
        render_mode: ``None``, ``"rgb_array"`` or ``"depth_array"``.
        goal_observable: ``True`` for MT suites, ``False`` for ML suites (``Suite.goal_observable``).
        fast: The fast step of :mod:`sim.fast` (default; bit-identical results) or, with
            ``False``, Meta-World's own step.
        **kwargs: ``camera_name``, ``width``, ``height`` (see :class:`MetaWorldEnv`).

    Returns:
        The env; call ``reset`` before ``step``.

    Example:
        >>> env = make_env("push-v3", seed=0)
        >>> obs, info = env.reset()
    """
    return MetaWorldEnv(
        task,
        params=params,
        seed=seed,
        render_mode=render_mode,
        goal_observable=goal_observable,
        fast=fast,
        **kwargs,
    )
