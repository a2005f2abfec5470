"""``TwinRobot``: the Meta-World Sawyer in MuJoCo behind the :class:`~hardware.robot.Robot`
interface, with a configurable reality gap. It is also the worked example of a backend.

The reality gap:

- dynamics, observation noise, action noise and action latency: a :class:`sim.TaskParams`
  (``friction_scale``, ..., ``obs_noise_std``, ``action_noise_std``, ``action_latency``);
- control-rate jitter: with ``realtime=True`` each control period is drawn as
  ``N(1 / control_hz, jitter_std_s)`` (at least 0).

Timing. With ``realtime=True``, ``send_action`` waits for the robot's next control tick, then
steps the simulation once: the robot advances at its control rate, by default Meta-World's
80 Hz (``frame_skip`` 5 × ``timestep`` 2.5 ms = 12.5 ms). A call that comes after its tick
steps at once (counted in :attr:`TwinRobot.overruns`) and the schedule restarts from there.
Unlike a real arm, the simulation does not advance between calls. With ``realtime=False`` (the
default) it steps as fast as possible.

Records for tests: :attr:`TwinRobot.received_actions` holds every command handed to
``send_action`` (before the twin's own checks), :attr:`TwinRobot.executed_actions` every one it
stepped the simulation with, :attr:`TwinRobot.stop_times` the ``time.monotonic()`` of every
``stop()``.

Example:
    >>> import numpy as np
    >>> from hardware import TwinRobot
    >>> from sim import TaskParams
    >>> twin = TwinRobot("reach-v3", params=TaskParams(obs_noise_std=0.01, action_latency=1),
    ...                  seed=0)
    >>> with twin:
    ...     obs = twin.get_observation()
    ...     sent = twin.send_action(np.array([0.0, 0.0, 0.5, 1.0], np.float32))
    ...     obs = twin.reset_episode(seed=1)
    >>> sorted(obs)
    ['ee_pos', 'gripper', 'state', 'step', 'success']
    >>> len(twin.executed_actions)
    1
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import numpy as np

from hardware.robot import Robot, Spec, require_connected, robot_label
from sim import ACTION_DIM, OBS_DIM, MetaWorldEnv, TaskParams, make_env, resolve_task

logger = logging.getLogger(__name__)

METAWORLD_CONTROL_HZ = 80.0
"""Meta-World's control rate: one env step is ``frame_skip`` 5 × ``timestep`` 2.5 ms."""

TWIN_ACTION_SPEC = Spec(
    shape=(ACTION_DIM,), dtype="float32", low=-1.0, high=1.0, names=("dx", "dy", "dz", "gripper")
)
"""Meta-World's action: mocap displacement xyz (1 cm per unit) and gripper effort."""
TWIN_OBSERVATION_SPEC = Spec(shape=(OBS_DIM,), dtype="float64")
"""Meta-World's 39-d observation (``"state"``)."""


class TwinRobot(Robot):
    """The simulated twin of the Sawyer arm: a Meta-World env driven as a robot.

    Observation keys: ``"state"`` (39,) float64 (Meta-World's observation, with observation
    noise if configured), ``"ee_pos"`` (3,) float64 (hand position in metres, noise-free, as a
    real arm's kinematics would report it), ``"gripper"`` (1,) float64 (opening in [0, 1]),
    ``"success"`` () bool (the last step's ``info["success"]``), ``"step"`` () int64.

    Attributes:
        observation_spec: Spec of ``"state"``.
        action_spec: ``(4,)`` float32 in [-1, 1]: dx, dy, dz, gripper.
        received_actions: Every command given to ``send_action``, as received.
        executed_actions: Every action the simulation was stepped with, float32 (4,).
        stop_times: ``time.monotonic()`` of every ``stop()`` while connected.
        overruns: Real-time steps whose call came after the control tick.
    """

    observation_spec = TWIN_OBSERVATION_SPEC
    action_spec = TWIN_ACTION_SPEC

    def __init__(
        self,
        task: str = "reach-v3",
        params: TaskParams | None = None,
        *,
        seed: int | None = 0,
        realtime: bool = False,
        control_hz: float = METAWORLD_CONTROL_HZ,
        jitter_std_s: float = 0.0,
        goal_observable: bool = True,
        name: str = "twin",
    ) -> None:
        """Configures the twin; nothing is built until ``connect()``.

        Args:
            task: Meta-World v3 task of the first episode, e.g. ``"reach-v3"``.
            params: The reality gap (dynamics, noise, latency); ``None`` is stock Meta-World.
            seed: Seed of the first episode (goal, noise) and of the jitter.
            realtime: Step at ``control_hz`` in wall-clock time instead of as fast as possible.
            control_hz: Control rate for ``realtime``, Hz.
            jitter_std_s: Standard deviation of each control period, seconds (``realtime``).
            goal_observable: Whether ``"state"`` holds the goal (MT suites) or zeros (ML).
            name: Name used in messages.
        """
        self.task = resolve_task(task)
        if params is not None and not isinstance(params, TaskParams):
            raise TypeError(f"TwinRobot params must be a sim.TaskParams, got {type(params).__name__}")
        self.params = params or TaskParams()
        self.seed = seed
        self.realtime = bool(realtime)
        if not (isinstance(control_hz, (int, float)) and math.isfinite(control_hz) and control_hz > 0):
            raise ValueError(f"TwinRobot control_hz must be a number > 0. Got {control_hz=}")
        self.control_hz = float(control_hz)
        if not (isinstance(jitter_std_s, (int, float)) and 0 <= jitter_std_s < math.inf):
            raise ValueError(f"TwinRobot jitter_std_s must be a number >= 0. Got {jitter_std_s=}")
        self.jitter_std_s = float(jitter_std_s)
        self.goal_observable = goal_observable
        self.name = name
        self.received_actions: list[Any] = []
        self.executed_actions: list[np.ndarray] = []
        self.stop_times: list[float] = []
        self.overruns = 0
        self._lock = threading.RLock()
        self._env: MetaWorldEnv | None = None
        self._obs: np.ndarray | None = None
        self._success = False
        self._episode_success = False
        self._truncated = False
        self._step = 0
        self._next_tick: float | None = None
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------------------ Robot API
    @property
    def is_connected(self) -> bool:
        return self._env is not None

    @property
    def period_s(self) -> float:
        """Nominal control period, seconds."""
        return 1.0 / self.control_hz

    @property
    def episode_success(self) -> bool:
        """Whether ``info["success"]`` fired at any step of the current episode."""
        return self._episode_success

    @property
    def env(self) -> MetaWorldEnv:
        """The simulation (for tests and experts: ``env.expert_observation()``)."""
        require_connected(self, "env")
        assert self._env is not None
        return self._env

    def connect(self) -> None:
        """Builds the simulation and starts the first episode (``task``, ``seed``)."""
        with self._lock:
            if self._env is not None:
                return
            self._build(self.task)
            self._reset(self.seed)
            logger.info("%s connected: %s, control %.1f Hz, realtime=%s", robot_label(self),
                        self.task, self.control_hz, self.realtime)

    def reset_episode(self, task: str | None = None, seed: int | None = None) -> dict[str, np.ndarray]:
        """Starts a new episode, optionally of another task.

        Args:
            task: Meta-World task; ``None`` keeps the current one.
            seed: Reset seed (goal and object positions, noise); ``None`` continues the streams.

        Returns:
            The first observation (as :meth:`get_observation`).
        """
        require_connected(self, "reset_episode")
        with self._lock:
            if task is not None and resolve_task(task) != self.task:
                assert self._env is not None
                self._env.close()
                self._build(resolve_task(task))
            self._reset(seed)
            return self._observation()

    def get_observation(self) -> dict[str, np.ndarray]:
        require_connected(self, "get_observation")
        with self._lock:
            return self._observation()

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Steps the simulation once with ``action`` (waiting for the control tick when
        ``realtime``).

        Raises:
            ValueError: ``action`` is not (4,) finite numbers in [-1, 1]: the twin, like a
                careful driver, refuses rather than guesses.
            RuntimeError: The episode reached Meta-World's horizon; call ``reset_episode``.
        """
        require_connected(self, "send_action")
        with self._lock:
            try:
                self.received_actions.append(np.array(action, copy=True))
            except Exception:  # not array-like; keep it as is for the record
                self.received_actions.append(action)
            if not TWIN_ACTION_SPEC.contains(action):
                raise ValueError(
                    f"{robot_label(self)}.send_action: {action!r} is not a (4,) finite action in "
                    "[-1, 1] (dx, dy, dz, gripper)"
                )
            if self._truncated:
                raise RuntimeError(
                    f"{robot_label(self)}: the episode ended at Meta-World's horizon; call "
                    "reset_episode() to start another"
                )
            a = np.asarray(action, dtype=np.float32).copy()
            if self.realtime:
                self._wait_for_tick()
            assert self._env is not None
            obs, _reward, _terminated, truncated, info = self._env.step(a)
            self.executed_actions.append(a)
            self._obs = obs
            self._success = bool(info["success"])
            self._episode_success |= self._success
            self._truncated = bool(truncated)
            self._step += 1
            return a

    def stop(self) -> None:
        """Holds: the twin's mocap stays where it is until the next command (and time is
        frozen between commands anyway); records the time in :attr:`stop_times`."""
        with self._lock:
            if self._env is None:
                return
            self.stop_times.append(time.monotonic())
            self._next_tick = None
            logger.info("%s stopped (hold)", robot_label(self))

    def disconnect(self) -> None:
        with self._lock:
            if self._env is None:
                return
            self._env.close()
            self._env = None
            self._obs = None
            logger.info("%s disconnected", robot_label(self))

    # ------------------------------------------------------------------------------ internals
    def _build(self, task: str) -> None:
        self._env = make_env(
            task, params=self.params, seed=self.seed, goal_observable=self.goal_observable
        )
        self.task = task
        inner = self._env.unwrapped_metaworld
        sim_hz = 1.0 / (inner.frame_skip * inner.model.opt.timestep)
        if self.realtime and abs(sim_hz - self.control_hz) > 1e-6:
            logger.warning(
                "%s: control_hz=%.2f differs from the simulation's %.2f Hz step (frame_skip %d x "
                "timestep %g s): simulated time runs %.2fx wall time",
                robot_label(self), self.control_hz, sim_hz, inner.frame_skip,
                inner.model.opt.timestep, sim_hz / self.control_hz,
            )

    def _reset(self, seed: int | None) -> None:
        assert self._env is not None
        self._obs, _ = self._env.reset(seed=seed)
        self._success = self._episode_success = self._truncated = False
        self._step = 0
        self._next_tick = None

    def _observation(self) -> dict[str, np.ndarray]:
        assert self._env is not None and self._obs is not None
        clean = self._env.expert_observation()
        return {
            "state": self._obs.copy(),
            "ee_pos": clean[:3].copy(),
            "gripper": clean[3:4].copy(),
            "success": np.array(self._success),
            "step": np.array(self._step, dtype=np.int64),
        }

    def _wait_for_tick(self) -> None:
        now = time.monotonic()
        tick = self._next_tick
        if tick is None:
            tick = now  # first step after connect/reset/stop: at once
        elif now > tick:
            self.overruns += 1
            tick = now
        else:
            time.sleep(tick - now)  # one bounded wait until the tick
        period = self.period_s
        if self.jitter_std_s:
            period = max(0.0, float(self._rng.normal(period, self.jitter_std_s)))
        self._next_tick = tick + period
