"""The ``Robot`` protocol every backend implements, and the ``Spec`` of its arrays.

A backend is one class with six members (``observation_spec``, ``action_spec``, ``connect``,
``get_observation``, ``send_action``, ``stop``, ``disconnect``) plus ``is_connected``.
Subclassing :class:`Robot` explicitly is optional for type checking but gives the context
manager for free: ``with robot:`` connects, and on the way out (exceptions included) stops and
disconnects.

Example:
    >>> import numpy as np
    >>> from hardware import Spec
    >>> spec = Spec(shape=(4,), dtype="float32", low=-1.0, high=1.0,
    ...             names=("dx", "dy", "dz", "gripper"))
    >>> spec.contains(np.zeros(4, np.float32))
    True
    >>> spec.contains(np.array([2.0, 0.0, 0.0, 0.0]))
    False
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hardware.errors import RobotNotConnectedError

logger = logging.getLogger(__name__)

_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned int, float: all that may cross the wire


def robot_label(robot: object) -> str:
    """``ClassName('name')`` for messages; ``ClassName`` when the robot has no ``name``."""
    name = getattr(robot, "name", None)
    return f"{type(robot).__name__}({name!r})" if name else type(robot).__name__


def require_connected(robot: Robot, method: str) -> None:
    """Raises :class:`RobotNotConnectedError` unless ``robot.is_connected``."""
    if not robot.is_connected:
        raise RobotNotConnectedError(robot_label(robot), method)


def _bounds(owner: str, field: str, value: Any, size: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (float(value),) * size
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != size:
        raise ValueError(
            f"{owner}.{field} has {arr.size} entries; expected {size} (one per element) or a "
            f"single number. Got {owner}.{field}={value!r}"
        )
    if np.isnan(arr).any():
        raise ValueError(f"{owner}.{field} must not contain NaN. Got {owner}.{field}={value!r}")
    return tuple(float(x) for x in arr)


@dataclass(frozen=True)
class Spec:
    """Shape, dtype, bounds and element names of one array a robot reads or accepts.

    Attributes:
        shape: Array shape, e.g. ``(4,)``.
        dtype: Numpy dtype name (``"float32"``, ``"float64"``, ints or ``"bool"``).
        low: Per-element lower bound, flattened (``None``: unbounded). A number broadcasts.
        high: Per-element upper bound, flattened (``None``: unbounded). A number broadcasts.
        names: Optional per-element names, e.g. ``("dx", "dy", "dz", "gripper")``.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        shape = self.shape
        if isinstance(shape, numbers.Integral):
            shape = (shape,)
        if not isinstance(shape, Sequence) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ValueError(
                f"Spec.shape must be a tuple of non-negative ints. Got Spec.shape={self.shape!r}"
            )
        shape = tuple(int(d) for d in shape)
        object.__setattr__(self, "shape", shape)
        try:
            dtype = np.dtype(self.dtype)
        except TypeError as err:
            raise ValueError(f"Spec.dtype is not a numpy dtype. Got Spec.dtype={self.dtype!r}") from err
        if dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(
                f"Spec.dtype must be numeric (bool, int or float). Got Spec.dtype={self.dtype!r}"
            )
        object.__setattr__(self, "dtype", dtype.name)
        size = self.size
        low = _bounds("Spec", "low", self.low, size)
        high = _bounds("Spec", "high", self.high, size)
        if low is not None and high is not None and any(lo > hi for lo, hi in zip(low, high)):
            raise ValueError(f"Spec.low must be <= Spec.high elementwise. Got {low=} {high=}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if self.names is not None:
            names = tuple(self.names)
            if len(names) != size or not all(isinstance(n, str) for n in names):
                raise ValueError(
                    f"Spec.names must be {size} strings, one per element. Got Spec.names={self.names!r}"
                )
            object.__setattr__(self, "names", names)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def low_array(self) -> np.ndarray:
        """Lower bounds with ``shape``, float64; ``-inf`` where unbounded."""
        if self.low is None:
            return np.full(self.shape, -np.inf)
        return np.array(self.low, dtype=np.float64).reshape(self.shape)

    @property
    def high_array(self) -> np.ndarray:
        """Upper bounds with ``shape``, float64; ``+inf`` where unbounded."""
        if self.high is None:
            return np.full(self.shape, np.inf)
        return np.array(self.high, dtype=np.float64).reshape(self.shape)

    def contains(self, x: Any) -> bool:
        """Whether ``x`` has this shape, a numeric dtype, finite entries and lies in bounds."""
        arr = np.asarray(x)
        if arr.shape != self.shape or arr.dtype.kind not in _NUMERIC_KINDS:
            return False
        arr = arr.astype(np.float64)
        return bool(
            np.isfinite(arr).all()
            and (arr >= self.low_array).all()
            and (arr <= self.high_array).all()
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists, strings, floats) for JSON or the wire."""
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "low": None if self.low is None else list(self.low),
            "high": None if self.high is None else list(self.high),
            "names": None if self.names is None else list(self.names),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Spec:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, Mapping):
            raise TypeError(f"Spec.from_dict expects a mapping, got {type(d).__name__}")
        unknown = set(d) - {"shape", "dtype", "low", "high", "names"}
        if unknown:
            raise ValueError(f"Spec.from_dict got unknown fields {sorted(unknown)}")
        return cls(
            shape=tuple(d["shape"]),
            dtype=d.get("dtype", "float32"),
            low=d.get("low"),
            high=d.get("high"),
            names=None if d.get("names") is None else tuple(d["names"]),
        )


@runtime_checkable
class Robot(Protocol):
    """A robot the deployment runner can drive: the one interface a vendor driver implements.

    Methods other than ``stop`` and ``disconnect`` raise
    :class:`~hardware.errors.RobotNotConnectedError` before ``connect()``; ``stop`` and
    ``disconnect`` are no-ops then, so cleanup code can always call them.

    Attributes:
        observation_spec: Spec of ``get_observation()["state"]``, the policy input.
        action_spec: Spec of the action ``send_action`` accepts.

    Example:
        >>> from hardware import TwinRobot
        >>> with TwinRobot("reach-v3", seed=0) as robot:      # connect; stop + disconnect
        ...     obs = robot.get_observation()                 # {"state": (39,), "ee_pos": (3,), ...}
        ...     sent = robot.send_action(np.zeros(4, np.float32))
        >>> robot.is_connected
        False
    """

    observation_spec: Spec
    action_spec: Spec

    @property
    def is_connected(self) -> bool:
        """Whether ``connect()`` succeeded and ``disconnect()`` has not been called since."""
        ...

    def connect(self) -> None:
        """Opens the connection (driver, socket, simulator) and brings the robot to a ready,
        holding state."""
        ...

    def get_observation(self) -> dict[str, np.ndarray]:
        """The latest observation: at least ``"state"`` (see ``observation_spec``) and
        ``"ee_pos"`` (3,) float64, the end-effector position in metres in the robot's base
        frame."""
        ...

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Commands one control step; returns the action actually sent (after any clipping)."""
        ...

    def stop(self) -> None:
        """Holds position / e-stops. Always safe to call, idempotent, a no-op when not
        connected. A later ``send_action`` moves the robot again (the safety watchdog latches,
        this does not)."""
        ...

    def disconnect(self) -> None:
        """Releases the connection; idempotent, a no-op when not connected."""
        ...

    def __enter__(self) -> Robot:
        if not self.is_connected:
            self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop_and_disconnect(self, exc)


def stop_and_disconnect(robot: Robot, exc: BaseException | None = None) -> None:
    """Stops then disconnects ``robot``; disconnects even when ``stop`` raises.

    Args:
        robot: The robot.
        exc: The exception being handled, if any. Errors from ``stop``/``disconnect`` are then
            logged and ``exc`` keeps propagating; without one, the first error is raised.
    """
    errors: list[Exception] = []
    for method in (robot.stop, robot.disconnect):
        try:
            method()
        except Exception as err:  # cleanup must run both steps
            errors.append(err)
    if not errors:
        return
    if exc is None:
        for err in errors[1:]:
            logger.error("%s: also failed during cleanup: %r", robot_label(robot), err)
        raise errors[0]
    for err in errors:
        logger.error(
            "%s: cleanup after %r failed: %r", robot_label(robot), exc, err, exc_info=err
        )
