"""The safety layer: :class:`SafeRobot` wraps any backend and filters every command.

Every action passes these checks, in this order, before it reaches the backend:

1. **shape and type** (``bad_shape``): not convertible to a numeric array of
   ``action_spec.shape`` → rejected, the robot holds.
2. **finite** (``nonfinite``): any NaN or ±Inf → rejected, the robot holds. This comes before any
   clamp because ``np.clip`` passes NaN through.
3. **limits** (``clamped``): clipped to ``[action_low, action_high]``.
4. **rate** (``rate_limited``): each entry moves at most ``max_delta`` from the previous action
   sent, ``|a_t - a_{t-1}| <= max_delta``.
5. **workspace** (``workspace``): the motion entries are displacements per step; the layer
   predicts the end effector's next position ``ee + position_scale * a[motion_dims]`` and
   shrinks each motion entry (towards zero, per axis) so the prediction stays in the box
   ``[workspace_low, workspace_high]``. An end effector already outside the box may only move
   back towards it. ``ee`` is estimated twice and both must stay inside: the last observed
   ``obs[ee_key]`` plus the displacements sent since (dead reckoning, so action chunks executed
   without observing are covered too), and the commanded target (the first observation after
   ``connect``/``reset_episode`` plus every displacement sent), which leads the lagging arm.
   The target estimate assumes the arm moves ``position_scale`` per unit action; a real arm
   that moves less (a lower gain) would see it run ahead and freeze short of the box's edge,
   so at every observation it is pulled back to within a *lead bound* of the hand: the arm's
   possible tracking lag, a low-pass of the commanded speed over ``tracking_lag_steps`` steps
   (``l <- (1 - 1/n) l + |step|``, per axis) plus ``tracking_margin_m``. The bound covers
   the lag of an arm that tracks as commanded (Meta-World's hand trails its mocap by 3.4 steps
   of travel at full speed and settles in ~5 steps; the default bound is 4 steps of travel +
   1 cm), so there the estimate is untouched; it decays when the motion stops, so an arm of
   any gain reaches the box's edge. Commands still queued in the robot (action latency) are
   lead the hand has not begun to follow: add the latency in steps to ``tracking_lag_steps``
   (measured on the twin: at latency 4 and the default 4, a full-speed run into the box's floor
   takes the arm's target 1.9 cm past it; with 4 + 4 it stays inside). A bound much wider than
   the lag cuts a weaker arm's motion early (the MT10 policy on push-v3 with gain 0.6: 5/10
   episodes with 4 steps, as many as with no workspace check, 0/10 with 8 steps or no bound).
   ``tracking_lag_steps=None``: no bound (pure dead reckoning: exact for an arm whose gain is
   ``position_scale``, freezes a weaker one). When no observation has been read yet the layer
   reads one.

**Hold** is the action "stay where you are": the motion entries zero, every other entry (the
gripper) as in the last action sent, so a grasped object is not dropped. Before the first
command the other entries are 0 clipped into the limits. A rejected command sends the hold
action instead (so the control loop keeps its rhythm and a driver-side watchdog stays fed); an
explicit :meth:`SafeRobot.stop` calls the backend's ``stop``. Stopping is never rate limited: on
the motion entries, a hold or a workspace cut may jump towards zero by more than
``max_delta``; every other change obeys the rate cap.

The **watchdog** (a background thread waiting on a ``threading.Event`` with the monotonic
deadline as timeout) stops the robot when no valid command arrived for ``watchdog_timeout_s``
since the last one. It arms at the first valid command after ``connect``/``rearm``/``stop``;
once it has fired, ``send_action`` raises :class:`~hardware.errors.WatchdogTrippedError`
until :meth:`SafeRobot.rearm`. Rejected commands do not feed it.

Every intervention is counted by kind in :attr:`SafeRobot.interventions`, kept in the
(bounded) :attr:`SafeRobot.events` list and logged on ``logging.getLogger("hardware.safety")``:
rejections and watchdog stops at WARNING, clamps, rate limits and workspace cuts (routine for a
saturating policy, up to 80 a second) at DEBUG.

Example:
    >>> from hardware import SafeRobot, SafetyConfig, TwinRobot
    >>> config = SafetyConfig.for_metaworld(max_delta=0.2, watchdog_timeout_s=None)
    >>> with SafeRobot(TwinRobot("reach-v3", seed=0), config) as robot:
    ...     sent = robot.send_action(np.array([np.nan, 0.0, 0.0, 0.0]))   # rejected: holds
    ...     sent = robot.send_action(np.array([5.0, 0.0, 0.0, 0.0]))      # clamped, rate limited
    >>> sent.tolist()
    [0.20000000298023224, 0.0, 0.0, 0.0]
    >>> robot.interventions["nonfinite"], robot.interventions["clamped"]
    (1, 1)
"""

from __future__ import annotations

import collections
import logging
import math
import numbers
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware.errors import RobotNotConnectedError, WatchdogTrippedError
from hardware.robot import Robot, Spec, require_connected, robot_label

logger = logging.getLogger(__name__)

INTERVENTION_KINDS = ("nonfinite", "bad_shape", "clamped", "rate_limited", "workspace", "watchdog")
"""The kinds counted in :attr:`SafeRobot.interventions`."""

_WARN_KINDS = frozenset({"nonfinite", "bad_shape", "watchdog"})

# Meta-World's Sawyer: the hand (mocap) box of SawyerXYZEnv, metres in the world frame, and the
# mocap displacement per unit action (action_scale = 1/100).
METAWORLD_WORKSPACE_LOW = (-0.5, 0.40, 0.05)
METAWORLD_WORKSPACE_HIGH = (0.5, 1.0, 0.5)
METAWORLD_POSITION_SCALE = 0.01


def _fail(field: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"SafetyConfig.{field} must be {expected}. Got SafetyConfig.{field}={value!r}")


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _float_tuple(field: str, value: Any, length: int | None = None) -> tuple[float, ...] | None:
    if value is None:
        return None
    if _is_number(value):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _fail(field, value, "a sequence of numbers or None")
    if not all(_is_number(x) and not math.isnan(x) for x in value):
        raise _fail(field, value, "a sequence of numbers (no NaN) or None")
    if length is not None and len(value) != length:
        raise _fail(field, value, f"{length} numbers")
    return tuple(float(x) for x in value)


@dataclass
class SafetyConfig:
    """Limits that :class:`SafeRobot` enforces on every command, per robot.

    Attributes:
        action_low: Lower action limit per entry (a number broadcasts); ``None``: the robot's
            ``action_spec.low``. Must be finite once resolved.
        action_high: Upper action limit per entry; ``None``: the robot's ``action_spec.high``.
        max_delta: Largest change of any action entry from one sent action to the next
            (action units per control step).
        max_delta_per_dim: Optional per-entry override of ``max_delta``.
        motion_dims: Action entries that command end-effector motion as a displacement per
            step (Meta-World: dx, dy, dz = ``(0, 1, 2)``). Hold zeroes them; the workspace
            check uses them. ``()`` when the action has none.
        position_scale: End-effector displacement in metres per unit action on
            ``motion_dims`` (Meta-World: 0.01). With an uncertain real gain use an upper bound.
        tracking_lag_steps: Time constant (control steps) of the lead bound on the
            commanded-target estimate, see the module docstring: the arm's tracking lag plus
            its action latency, in steps (Meta-World: 3.4 + 0). ``None``: never bounded.
        tracking_margin_m: Constant part of that bound (metres): the hand's offset from its
            target at rest (Meta-World: 4 mm in z) and observation noise.
        workspace_low: Lower corner of the allowed end-effector box (metres, one per motion
            dim, the frame of ``obs[ee_key]``); ``None`` with ``workspace_high`` disables the
            workspace check.
        workspace_high: Upper corner of that box.
        ee_key: Observation key holding the end-effector position.
        watchdog_timeout_s: Stop the robot when no valid command arrives for this many
            seconds; ``None`` disables the watchdog. The default is 8 control periods at
            80 Hz: generous for a Python loop on a busy machine; use ~2 periods on a real-time
            box.
        max_events: How many recent events :attr:`SafeRobot.events` keeps (counts keep all).

    Example:
        >>> SafetyConfig(max_delta=-1)
        Traceback (most recent call last):
        ...
        ValueError: SafetyConfig.max_delta must be a finite number > 0 (largest change of an \
action entry per step). Got SafetyConfig.max_delta=-1
    """

    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    max_delta: float = 0.5
    max_delta_per_dim: tuple[float, ...] | None = None
    motion_dims: tuple[int, ...] = (0, 1, 2)
    position_scale: float = METAWORLD_POSITION_SCALE
    workspace_low: tuple[float, ...] | None = None
    workspace_high: tuple[float, ...] | None = None
    ee_key: str = "ee_pos"
    tracking_lag_steps: float | None = 4.0
    tracking_margin_m: float = 0.01
    watchdog_timeout_s: float | None = 0.1
    max_events: int = 1000

    def __post_init__(self) -> None:
        self.action_low = _float_tuple("action_low", self.action_low)
        self.action_high = _float_tuple("action_high", self.action_high)
        if not (_is_number(self.max_delta) and math.isfinite(self.max_delta) and self.max_delta > 0):
            raise _fail(
                "max_delta", self.max_delta,
                "a finite number > 0 (largest change of an action entry per step)",
            )
        self.max_delta = float(self.max_delta)
        self.max_delta_per_dim = _float_tuple("max_delta_per_dim", self.max_delta_per_dim)
        if self.max_delta_per_dim is not None and not all(
            math.isfinite(x) and x > 0 for x in self.max_delta_per_dim
        ):
            raise _fail("max_delta_per_dim", self.max_delta_per_dim, "finite numbers > 0 or None")
        dims = self.motion_dims
        if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in dims
        ) or len(set(dims)) != len(dims):
            raise _fail("motion_dims", dims, "distinct non-negative action indices, e.g. (0, 1, 2)")
        self.motion_dims = tuple(int(d) for d in dims)
        if not (
            _is_number(self.position_scale)
            and math.isfinite(self.position_scale)
            and self.position_scale > 0
        ):
            raise _fail(
                "position_scale", self.position_scale,
                "a finite number > 0 (metres of end-effector motion per unit action)",
            )
        self.position_scale = float(self.position_scale)
        n = len(self.motion_dims)
        self.workspace_low = _float_tuple("workspace_low", self.workspace_low, n)
        self.workspace_high = _float_tuple("workspace_high", self.workspace_high, n)
        if (self.workspace_low is None) != (self.workspace_high is None):
            raise _fail(
                "workspace_high" if self.workspace_high is None else "workspace_low",
                None,
                "set together with the other workspace corner (or both None)",
            )
        if self.workspace_low is not None:
            if n == 0:
                raise _fail("workspace_low", self.workspace_low, "None when motion_dims is ()")
            bounds = zip(self.workspace_low, self.workspace_high)  # type: ignore[arg-type]
            if not all(math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in bounds):
                raise _fail(
                    "workspace_high", self.workspace_high,
                    f"finite and > workspace_low={self.workspace_low} on every axis",
                )
        if not isinstance(self.ee_key, str) or not self.ee_key:
            raise _fail("ee_key", self.ee_key, "a non-empty observation key")
        n_lag = self.tracking_lag_steps
        if n_lag is not None:
            if not (_is_number(n_lag) and math.isfinite(n_lag) and n_lag >= 1):
                raise _fail(
                    "tracking_lag_steps", n_lag,
                    "a number of control steps >= 1 (the arm's tracking lag + latency), or None",
                )
            self.tracking_lag_steps = float(n_lag)
        m = self.tracking_margin_m
        if not (_is_number(m) and math.isfinite(m) and m >= 0):
            raise _fail("tracking_margin_m", m, "a finite number of metres >= 0")
        self.tracking_margin_m = float(m)
        if self.watchdog_timeout_s is not None:
            t = self.watchdog_timeout_s
            if not (_is_number(t) and math.isfinite(t) and t > 0):
                raise _fail("watchdog_timeout_s", t, "a finite number of seconds > 0, or None")
            self.watchdog_timeout_s = float(t)
        if isinstance(self.max_events, bool) or not isinstance(self.max_events, numbers.Integral) \
                or self.max_events < 0:
            raise _fail("max_events", self.max_events, "an int >= 0")

    @property
    def workspace_enabled(self) -> bool:
        """Whether the workspace box is checked."""
        return self.workspace_low is not None

    @classmethod
    def for_metaworld(cls, **overrides: Any) -> SafetyConfig:
        """The config for Meta-World's Sawyer (and the twin): delta-xyz + gripper actions in
        [-1, 1], 1 cm per unit action, workspace = Meta-World's hand box
        ``(-0.5, 0.40, 0.05)``–``(0.5, 1.0, 0.5)`` m.

        Args:
            **overrides: Any :class:`SafetyConfig` field.
        """
        fields: dict[str, Any] = {
            "action_low": (-1.0,) * 4,
            "action_high": (1.0,) * 4,
            "motion_dims": (0, 1, 2),
            "position_scale": METAWORLD_POSITION_SCALE,
            "workspace_low": METAWORLD_WORKSPACE_LOW,
            "workspace_high": METAWORLD_WORKSPACE_HIGH,
        }
        fields.update(overrides)
        return cls(**fields)


@dataclass(frozen=True)
class SafetyEvent:
    """One intervention of the safety layer.

    Attributes:
        kind: One of :data:`INTERVENTION_KINDS`.
        time: ``time.monotonic()`` when it happened.
        step: Index of the ``send_action`` call (0-based); the watchdog uses the number of
            calls so far.
        detail: What was changed and why, for people.
    """

    kind: str
    time: float
    step: int
    detail: str


class SafeRobot(Robot):
    """Wraps a backend so that only finite, in-limit, rate-limited, in-workspace commands reach
    it, and stops it when commands stall. See the module docstring for the rules.

    Attributes:
        robot: The wrapped backend.
        config: The :class:`SafetyConfig`.
        name: Used in messages.

    Example:
        >>> from hardware import SafeRobot, SafetyConfig, TwinRobot
        >>> robot = SafeRobot(TwinRobot("reach-v3"), SafetyConfig.for_metaworld())
        >>> with robot:
        ...     obs = robot.get_observation()
        ...     sent = robot.send_action(np.zeros(4))
        >>> robot.interventions["watchdog"]
        0
    """

    def __init__(self, robot: Robot, config: SafetyConfig | None = None, name: str | None = None):
        """Wraps ``robot``; limits are resolved against its ``action_spec`` at ``connect()``.

        Args:
            robot: Any :class:`~hardware.robot.Robot` backend.
            config: The limits; ``None`` is ``SafetyConfig()`` (the backend's action limits,
                ``max_delta`` 0.5, no workspace, 0.1 s watchdog).
            name: Name for messages; defaults to the backend's.
        """
        if config is None:
            config = SafetyConfig()
        if not isinstance(config, SafetyConfig):
            raise TypeError(f"SafeRobot config must be a SafetyConfig, got {type(config).__name__}")
        self.robot = robot
        self.config = config
        self.name = name or getattr(robot, "name", None) or type(robot).__name__
        # _io_lock serialises every call into the backend (the watchdog thread calls stop());
        # _state_lock guards the watchdog deadline, which the watchdog reads without _io_lock.
        self._io_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._interventions = dict.fromkeys(INTERVENTION_KINDS, 0)
        self._events: collections.deque[SafetyEvent] = collections.deque(maxlen=config.max_events)
        self._connected = False
        self._spec: Spec | None = None
        self._low = self._high = self._max_delta = np.zeros(0)
        self._motion = np.array(config.motion_dims, dtype=np.int64)
        self._last_sent = np.zeros(0)
        # Two end-effector estimates, see _keep_in_workspace.
        self._ee_measured: np.ndarray | None = None
        self._ee_target: np.ndarray | None = None
        self._lead = np.zeros(len(config.motion_dims))  # the lag model of the lead bound
        n_lag = config.tracking_lag_steps
        self._lead_keep = None if n_lag is None else 1.0 - 1.0 / n_lag  # its per-step decay
        self._steps = 0
        self._tripped = False
        self._deadline: float | None = None
        self._closing = False
        self._wake = threading.Event()
        self._watchdog: threading.Thread | None = None

    # ------------------------------------------------------------------------------ state
    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def observation_spec(self) -> Spec:  # type: ignore[override]
        return self.robot.observation_spec

    @property
    def action_spec(self) -> Spec:  # type: ignore[override]
        """The backend's action spec with the limits this layer enforces."""
        return self._spec if self._spec is not None else self.robot.action_spec

    @property
    def interventions(self) -> dict[str, int]:
        """Count of interventions by kind (all of :data:`INTERVENTION_KINDS`, zeros included)."""
        with self._state_lock:
            return dict(self._interventions)

    @property
    def events(self) -> list[SafetyEvent]:
        """The most recent ``config.max_events`` interventions, oldest first."""
        with self._state_lock:
            return list(self._events)

    @property
    def tripped(self) -> bool:
        """Whether the watchdog has stopped the robot (until :meth:`rearm`)."""
        with self._state_lock:
            return self._tripped

    @property
    def hold_action(self) -> np.ndarray:
        """The action sent instead of a rejected one: zero motion, other entries as last sent."""
        if not self._connected:
            raise RobotNotConnectedError(robot_label(self), "hold_action", attribute=True)
        return self._hold().astype(self._spec.dtype)  # type: ignore[union-attr]

    # ------------------------------------------------------------------------------ Robot API
    def connect(self) -> None:
        """Connects the backend, resolves the limits against its action spec, starts the
        watchdog."""
        if self._connected:
            return
        with self._io_lock:
            if not self.robot.is_connected:
                self.robot.connect()
            try:
                self._resolve(self.robot.action_spec)
            except Exception:
                self.robot.disconnect()
                raise
            self._last_sent = self._initial_hold()
            self._ee_measured = self._ee_target = None
            self._lead = np.zeros(self._motion.size)
            with self._state_lock:
                self._tripped = False
                self._deadline = None
            self._connected = True
        if self.config.watchdog_timeout_s is not None:
            self._closing = False
            self._wake.clear()
            self._watchdog = threading.Thread(
                target=self._watch, name=f"watchdog[{self.name}]", daemon=True
            )
            self._watchdog.start()

    def get_observation(self) -> dict[str, np.ndarray]:
        """The backend's observation; also refreshes the end-effector estimate."""
        require_connected(self, "get_observation")
        with self._io_lock:
            obs = self.robot.get_observation()
            self._observe_ee(obs)
            return obs

    def send_action(self, action: Any) -> np.ndarray:
        """Filters ``action`` through the checks and sends the result.

        Args:
            action: Anything array-like; see the module docstring for what happens to it.

        Returns:
            The action actually sent (``action_spec.dtype``): the filtered command, or the hold
            action when the command was rejected.

        Raises:
            WatchdogTrippedError: The watchdog stopped the robot; call :meth:`rearm` first.
        """
        require_connected(self, "send_action")
        with self._io_lock:
            if self._tripped:
                raise WatchdogTrippedError(
                    f"{robot_label(self)}: the watchdog stopped the robot (no valid command for "
                    f"{self.config.watchdog_timeout_s} s); commands are refused until "
                    "robot.rearm() is called"
                )
            safe, valid = self._filter(action)
            if valid and self.config.watchdog_timeout_s is not None:
                # Fed before the backend call: a send that blocks until the next control tick
                # must not trip the watchdog while it waits.
                with self._state_lock:
                    arming = self._deadline is None
                    self._deadline = time.monotonic() + self.config.watchdog_timeout_s
                if arming:
                    self._wake.set()  # the watchdog sleeps without a timeout while unarmed
            sent = self.robot.send_action(safe)
            sent_arr = np.asarray(sent, dtype=np.float64)
            if sent_arr.shape != safe.shape or not np.isfinite(sent_arr).all():
                sent_arr = safe.astype(np.float64)  # the backend returned junk; trust our own
            self._last_sent = sent_arr
            if self._motion.size:
                step = self.config.position_scale * sent_arr[self._motion]
                if self._ee_measured is not None:
                    self._ee_measured = self._ee_measured + step
                if self._ee_target is not None:
                    self._ee_target = self._ee_target + step
                if self._lead_keep is not None:
                    self._lead = self._lead_keep * self._lead + np.abs(step)
            self._steps += 1
            return np.asarray(sent)

    def stop(self) -> None:
        """Stops the backend (hold) and disarms the watchdog until the next valid command.
        No-op when not connected."""
        if not self._connected:
            return
        with self._io_lock:
            with self._state_lock:
                self._deadline = None
            self._last_sent = self._hold()
            self.robot.stop()

    def reset_episode(self, task: str | None = None, seed: int | None = None) -> dict[str, np.ndarray]:
        """Forwards to the backend's ``reset_episode`` (the twin's), then starts the new episode
        from the hold action with a fresh end-effector estimate and the watchdog disarmed.

        Raises:
            TypeError: The backend has no ``reset_episode``.
        """
        require_connected(self, "reset_episode")
        reset = getattr(self.robot, "reset_episode", None)
        if reset is None:
            raise TypeError(f"{robot_label(self.robot)} does not support reset_episode()")
        with self._io_lock:
            with self._state_lock:
                self._deadline = None
            obs = reset(task=task, seed=seed)
            self._last_sent = self._initial_hold()
            self._ee_measured = self._ee_target = None
            self._lead = np.zeros(self._motion.size)
            self._observe_ee(obs)
            return obs

    def rearm(self) -> None:
        """Clears a watchdog trip; the watchdog arms again at the next valid command."""
        require_connected(self, "rearm")
        with self._io_lock, self._state_lock:
            if self._tripped:
                logger.info("%s: watchdog re-armed; commands accepted again", robot_label(self))
            self._tripped = False
            self._deadline = None

    def disconnect(self) -> None:
        """Stops the watchdog thread (joined before returning), then disconnects the backend.
        No-op when not connected."""
        if not self._connected:
            return
        watchdog = self._watchdog
        if watchdog is not None:
            with self._state_lock:
                self._closing = True
            self._wake.set()
            if watchdog is not threading.current_thread():
                watchdog.join()  # exits at once: it only ever waits on _wake or _io_lock
            self._watchdog = None
        with self._io_lock:
            self._connected = False
            self.robot.disconnect()

    # ------------------------------------------------------------------------------ filter
    def _resolve(self, spec: Spec) -> None:
        cfg = self.config
        label = robot_label(self.robot)
        if len(spec.shape) != 1:
            raise ValueError(
                f"SafeRobot needs a 1-d action; {label}.action_spec.shape={spec.shape}"
            )
        n = spec.size
        bounds = []
        for field, configured, own in (("action_low", cfg.action_low, spec.low),
                                       ("action_high", cfg.action_high, spec.high)):
            value = configured if configured is not None else own
            if value is None:
                raise ValueError(
                    f"{label}.action_spec has no {field[7:]} bound; set SafetyConfig.{field}"
                )
            if len(value) not in (1, n):
                raise ValueError(
                    f"SafetyConfig.{field} has {len(value)} entries; {label} takes {n}-d actions"
                )
            bounds.append(np.broadcast_to(np.array(value, dtype=np.float64), (n,)).copy())
        low_arr, high_arr = bounds
        if not (np.isfinite(low_arr).all() and np.isfinite(high_arr).all()):
            raise ValueError(
                f"action limits must be finite; got low={low_arr.tolist()} high="
                f"{high_arr.tolist()} for {label}; set SafetyConfig.action_low/action_high"
            )
        # Never looser than the backend's own limits.
        low_arr = np.maximum(low_arr, spec.low_array)
        high_arr = np.minimum(high_arr, spec.high_array)
        if (low_arr > high_arr).any():
            raise ValueError(
                f"SafetyConfig action limits {low_arr.tolist()}..{high_arr.tolist()} do not "
                f"overlap {label}.action_spec limits {spec.low}..{spec.high}"
            )
        if cfg.max_delta_per_dim is not None and len(cfg.max_delta_per_dim) != n:
            raise ValueError(
                f"SafetyConfig.max_delta_per_dim has {len(cfg.max_delta_per_dim)} entries; "
                f"{label} takes {n}-d actions"
            )
        if any(d >= n for d in cfg.motion_dims):
            raise ValueError(
                f"SafetyConfig.motion_dims={cfg.motion_dims} index past the {n}-d action of {label}"
            )
        motion = list(cfg.motion_dims)
        if ((low_arr[motion] > 0) | (high_arr[motion] < 0)).any():
            raise ValueError(
                f"the action limits of motion_dims {cfg.motion_dims} must include 0 (the hold "
                f"action); got low={low_arr.tolist()} high={high_arr.tolist()}"
            )
        self._low, self._high = low_arr, high_arr
        self._max_delta = np.array(cfg.max_delta_per_dim or (cfg.max_delta,) * n, dtype=np.float64)
        self._spec = Spec(spec.shape, spec.dtype, tuple(low_arr), tuple(high_arr), spec.names)

    def _initial_hold(self) -> np.ndarray:
        hold = np.clip(np.zeros(self._low.shape), self._low, self._high)
        hold[self._motion] = 0.0
        return hold

    def _hold(self) -> np.ndarray:
        hold = self._last_sent.copy()
        hold[self._motion] = 0.0
        return hold

    def _record(self, kind: str, detail: str) -> None:
        event = SafetyEvent(kind, time.monotonic(), self._steps, detail)
        with self._state_lock:
            self._interventions[kind] += 1
            self._events.append(event)
        level = logging.WARNING if kind in _WARN_KINDS else logging.DEBUG
        logger.log(level, "%s: safety %s at step %d: %s", robot_label(self), kind, self._steps,
                   detail)

    def _reject(self, kind: str, detail: str) -> tuple[np.ndarray, bool]:
        self._record(kind, f"{detail}; holding")
        return self._hold().astype(self._spec.dtype), False  # type: ignore[union-attr]

    def _filter(self, action: Any) -> tuple[np.ndarray, bool]:
        """Returns ``(safe action in spec dtype, whether the command was valid)``."""
        spec = self._spec
        assert spec is not None
        try:
            raw = np.asarray(action)
        except Exception as err:  # ragged lists, odd objects: not an action
            return self._reject("bad_shape", f"not an array ({type(err).__name__}: {err})")
        if raw.dtype.kind not in "biuf":
            return self._reject("bad_shape", f"dtype {raw.dtype} is not numeric")
        if raw.shape != spec.shape:
            return self._reject("bad_shape", f"shape {raw.shape}, expected {spec.shape}")
        a = raw.astype(np.float64)
        bad = ~np.isfinite(a)
        if bad.any():
            return self._reject("nonfinite", f"non-finite entries at {np.flatnonzero(bad).tolist()}")

        clamped = np.clip(a, self._low, self._high)
        if (clamped != a).any():
            self._record("clamped", f"{a.tolist()} clipped to {clamped.tolist()}")

        prev = self._last_sent
        limited = np.clip(clamped, prev - self._max_delta, prev + self._max_delta)
        if (limited != clamped).any():
            self._record(
                "rate_limited",
                f"{clamped.tolist()} moved from {prev.tolist()} by at most "
                f"{self._max_delta.tolist()} to {limited.tolist()}",
            )

        safe = limited
        if self.config.workspace_enabled:
            safe = self._keep_in_workspace(limited)
        return safe.astype(spec.dtype), True

    def _observe_ee(self, obs: Any) -> None:
        if not self.config.workspace_enabled:
            return
        key = self.config.ee_key
        ee = obs.get(key) if isinstance(obs, dict) else None
        ee_arr = None if ee is None else np.asarray(ee, dtype=np.float64).reshape(-1)
        if ee_arr is None or ee_arr.shape != self._motion.shape or not np.isfinite(ee_arr).all():
            self._ee_measured = None
            logger.warning(
                "%s: observation has no valid %r (got %r); motion is held until it has",
                robot_label(self), key, ee,
            )
            return
        self._ee_measured = ee_arr
        if self._ee_target is None:
            self._ee_target = ee_arr.copy()
        elif self.config.tracking_lag_steps is not None:
            bound = self._lead + self.config.tracking_margin_m
            self._ee_target = ee_arr + np.clip(self._ee_target - ee_arr, -bound, bound)

    def _keep_in_workspace(self, action: np.ndarray) -> np.ndarray:
        """Cuts the motion entries so that both end-effector estimates stay in the box.

        The *measured* estimate is the last observed ``obs[ee_key]`` plus the displacements
        sent since; the *target* estimate is the first observation after ``connect`` or
        ``reset_episode`` plus every displacement sent since: where a position-controlled arm
        is heading. A real or simulated arm lags its target (Meta-World's hand trails its mocap
        by ~3 cm at full speed), so the measured estimate alone would let the target, and then
        the arm, overshoot the box; the target alone would drift when the real gain is below
        ``position_scale``, hence its lead bound (see the module docstring). Each axis gets the
        intersection of both allowed intervals, each widened to include 0 (hold, or move back
        towards the box, is always allowed).
        """
        cfg = self.config
        if self._ee_measured is None:
            self._observe_ee(self.robot.get_observation())
        motion = action[self._motion]
        out = action.copy()
        if self._ee_measured is None or self._ee_target is None:
            out[self._motion] = 0.0
            if motion.any():
                self._record("workspace", f"end-effector position {cfg.ee_key!r} unknown; "
                                          "motion held")
            return out
        box_low, box_high = np.array(cfg.workspace_low), np.array(cfg.workspace_high)
        lo = np.full(motion.shape, -np.inf)
        hi = np.full(motion.shape, np.inf)
        for ee in (self._ee_measured, self._ee_target):
            lo = np.maximum(lo, np.minimum(box_low - ee, 0.0) / cfg.position_scale)
            hi = np.minimum(hi, np.maximum(box_high - ee, 0.0) / cfg.position_scale)
        cut = np.clip(motion, lo, hi)
        if (cut != motion).any():
            self._record(
                "workspace",
                f"end effector at {np.round(self._ee_measured, 4).tolist()} (target "
                f"{np.round(self._ee_target, 4).tolist()}) would leave the box "
                f"{list(box_low)}..{list(box_high)}; motion {motion.tolist()} cut to "
                f"{cut.tolist()}",
            )
        out[self._motion] = cut
        return out

    # ------------------------------------------------------------------------------ watchdog
    def _watch(self) -> None:
        timeout = self.config.watchdog_timeout_s
        assert timeout is not None
        while True:
            # Clear before reading the state: a set() after the read wakes the wait below.
            self._wake.clear()
            with self._state_lock:
                closing, deadline = self._closing, self._deadline
            if closing:
                return
            if deadline is None:
                self._wake.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining > 0:
                self._wake.wait(remaining)
                continue
            self._trip(timeout)

    def _trip(self, timeout: float) -> None:
        with self._io_lock:
            now = time.monotonic()
            with self._state_lock:
                # A command may have arrived while we waited for _io_lock.
                if self._closing or self._deadline is None or now < self._deadline:
                    return
                late = now - self._deadline
                self._tripped = True
                self._deadline = None
            self._record(
                "watchdog",
                f"no valid command for {timeout} s (noticed {late * 1e3:.1f} ms after the "
                "deadline); robot stopped, call rearm() to resume",
            )
            self._last_sent = self._hold()
            try:
                self.robot.stop()
            except Exception:  # the watchdog thread must survive a failing backend
                logger.exception("%s: watchdog could not stop the robot", robot_label(self))
