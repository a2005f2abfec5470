"""Randomisable physical and task parameters of a Meta-World env.

:class:`TaskParams` is one point (stored with every episode as JSON); :class:`ParamRanges` is a
box of them that data collection samples from. The defaults reproduce stock Meta-World bit for
bit: every scale is exactly 1.0, there is no noise and no latency.

Example:
    >>> import numpy as np
    >>> from sim import ParamRanges, TaskParams
    >>> p = TaskParams(friction_scale=0.8, action_latency=2)
    >>> TaskParams.from_json(p.to_json()) == p
    True
    >>> ranges = ParamRanges(friction_scale=(0.5, 2.0), action_latency=(0, 3))
    >>> q = ranges.sample(np.random.default_rng(0))
    >>> 0.5 <= q.friction_scale <= 2.0
    True
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.tasks import close_matches

logger = logging.getLogger(__name__)

_SCALE = (0.1, 10.0)
_STD = (0.0, 1.0)
LIMITS: dict[str, tuple[float, float]] = {
    "friction_scale": _SCALE,
    "object_mass_scale": _SCALE,
    "joint_damping_scale": _SCALE,
    "actuator_gain_scale": _SCALE,
    "obs_noise_std": _STD,
    "action_noise_std": _STD,
    "action_latency": (0, 20),
}
"""The allowed ``[low, high]`` of every :class:`TaskParams` field (inclusive)."""

_INT_FIELDS = frozenset({"action_latency"})


def _check_value(owner: str, name: str, value: Any) -> float | int:
    """Validates one parameter value and returns it as a plain ``float`` or ``int``."""
    low, high = LIMITS[name]
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"{owner}.{name}={value!r} must be an int (steps) in [{low}, {high}], "
                f"got {type(value).__name__}"
            )
        value = int(value)
    else:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"{owner}.{name}={value!r} must be a number in [{low}, {high}], "
                f"got {type(value).__name__}"
            )
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{owner}.{name}={value!r} is not finite; expected [{low}, {high}]")
    if not low <= value <= high:
        raise ValueError(f"{owner}.{name}={value!r} is out of range [{low}, {high}]")
    return value


def _unknown_key_error(owner: str, key: Any, names: tuple[str, ...]) -> ValueError:
    matches = close_matches(key, names) if isinstance(key, str) else []
    hint = f"; did you mean {matches[0]!r}?" if matches else ""
    return ValueError(f"unknown {owner} field {key!r}{hint} Fields: {', '.join(names)}")


def _load_json_object(owner: str, text: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise TypeError(f"{owner}.from_json expects a JSON string, got {type(text).__name__}")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{owner}.from_json expects a JSON object, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class TaskParams:
    """Physical and task parameters applied to a Meta-World env at every reset.

    Scales multiply the nominal value from the task's MuJoCo model (stored once when the env is
    built), so they never compound across resets. Limits are in :data:`LIMITS`.

    Attributes:
        friction_scale: Multiplies ``model.geom_friction`` (sliding, torsional and rolling) of
            every geom. Range [0.1, 10].
        object_mass_scale: Multiplies ``body_mass`` and ``body_inertia`` of the task's movable
            bodies: bodies not welded to the world and outside the Sawyer arm's kinematic
            subtree (``right_arm_base_link``); e.g. the puck, a door leaf, a drawer, a button.
            The table, the robot and the mocap body are untouched. Range [0.1, 10].
        joint_damping_scale: Multiplies ``model.dof_damping`` of every degree of freedom (arm,
            fingers, objects' joints). Range [0.1, 10].
        actuator_gain_scale: Multiplies the stiffness of the gripper's position actuators
            (``actuator_gainprm[:, 0]`` and ``actuator_biasprm[:, 1]`` together) and the arm's
            mocap displacement per unit action (``env.action_scale``, 1 cm nominal): Meta-World
            moves the arm by a mocap weld, so this is the arm's effective gain. Range [0.1, 10].
        obs_noise_std: Standard deviation of Gaussian noise added to every entry of the
            returned observation. Range [0, 1].
        action_noise_std: Standard deviation of Gaussian noise added to the action before it is
            applied (the result is clipped to [-1, 1]). Range [0, 1].
        action_latency: The applied action is the one commanded this many steps earlier (zeros
            before the first command of an episode). Integer in [0, 20].
    """

    friction_scale: float = 1.0
    object_mass_scale: float = 1.0
    joint_damping_scale: float = 1.0
    actuator_gain_scale: float = 1.0
    obs_noise_std: float = 0.0
    action_noise_std: float = 0.0
    action_latency: int = 0

    def __post_init__(self) -> None:
        for name in self.field_names():
            # Normalised to plain float/int so equality and JSON are exact.
            object.__setattr__(self, name, _check_value("TaskParams", name, getattr(self, name)))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The parameter names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def is_default(self) -> bool:
        """Whether these are the stock Meta-World parameters (no change at all)."""
        return self == TaskParams()

    def to_dict(self) -> dict[str, float | int]:
        """Returns ``{field: value}`` with plain Python numbers."""
        return {name: getattr(self, name) for name in self.field_names()}

    def to_json(self) -> str:
        """Returns a JSON object string; :meth:`from_json` restores it exactly."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskParams:
        """Builds parameters from a mapping; missing fields take their defaults.

        Args:
            d: ``{field: value}``.

        Raises:
            TypeError: ``d`` is not a mapping, or a value has the wrong type.
            ValueError: Unknown field (the message names the closest field) or a bad value.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"TaskParams.from_dict expects a mapping, got {type(d).__name__}")
        names = cls.field_names()
        for key in d:
            if key not in names:
                raise _unknown_key_error("TaskParams", key, names)
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> TaskParams:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(_load_json_object("TaskParams", s))


@dataclass(frozen=True)
class ParamRanges:
    """A box of :class:`TaskParams`: one inclusive ``(low, high)`` per field.

    The defaults are the default point (no randomisation). Floats are sampled uniformly,
    ``action_latency`` uniformly among the integers in ``[low, high]``. Fields whose range is a
    single point draw no random numbers.

    Example:
        >>> ranges = ParamRanges(friction_scale=(0.5, 1.5), obs_noise_std=(0.0, 0.01))
        >>> params = ranges.sample(np.random.default_rng(7))
    """

    friction_scale: tuple[float, float] = (1.0, 1.0)
    object_mass_scale: tuple[float, float] = (1.0, 1.0)
    joint_damping_scale: tuple[float, float] = (1.0, 1.0)
    actuator_gain_scale: tuple[float, float] = (1.0, 1.0)
    obs_noise_std: tuple[float, float] = (0.0, 0.0)
    action_noise_std: tuple[float, float] = (0.0, 0.0)
    action_latency: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        for name in self.field_names():
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
                raise TypeError(f"ParamRanges.{name}={value!r} must be a (low, high) pair")
            low = _check_value("ParamRanges", f"{name}", value[0])
            high = _check_value("ParamRanges", f"{name}", value[1])
            if low > high:
                raise ValueError(
                    f"ParamRanges.{name}={value!r} has low > high; expected low <= high"
                )
            object.__setattr__(self, name, (low, high))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The parameter names, in declaration order (same as :class:`TaskParams`)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def fixed(cls, params: TaskParams) -> ParamRanges:
        """The degenerate box holding only ``params``."""
        return cls(**{name: (value, value) for name, value in params.to_dict().items()})

    def contains(self, params: TaskParams) -> bool:
        """Whether every field of ``params`` lies in its range."""
        return all(
            low <= getattr(params, name) <= high for name, (low, high) in self.to_dict().items()
        )

    def sample(self, rng: np.random.Generator) -> TaskParams:
        """Draws one :class:`TaskParams` from the box.

        Args:
            rng: The random generator (the result is a deterministic function of its state).

        Returns:
            The sampled parameters.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"ParamRanges.sample expects a numpy.random.Generator, got {type(rng).__name__}; "
                "use np.random.default_rng(seed)"
            )
        values: dict[str, float | int] = {}
        for name, (low, high) in self.to_dict().items():
            if low == high:
                values[name] = low
            elif name in _INT_FIELDS:
                values[name] = int(rng.integers(low, high, endpoint=True))
            else:
                # uniform() draws from [low, high); min() guards the rounding edge case.
                values[name] = min(float(rng.uniform(low, high)), high)
        return TaskParams(**values)

    def to_dict(self) -> dict[str, tuple[float, float] | tuple[int, int]]:
        """Returns ``{field: (low, high)}``."""
        return {name: getattr(self, name) for name in self.field_names()}

    def to_json(self) -> str:
        """Returns a JSON object string (pairs as lists); :meth:`from_json` restores it."""
        return json.dumps({name: list(pair) for name, pair in self.to_dict().items()})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParamRanges:
        """Builds ranges from ``{field: (low, high)}`` (lists accepted); missing fields default.

        Raises:
            TypeError: ``d`` is not a mapping, or a value is not a pair of numbers.
            ValueError: Unknown field (the message names the closest field) or a bad range.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"ParamRanges.from_dict expects a mapping, got {type(d).__name__}")
        names = cls.field_names()
        for key in d:
            if key not in names:
                raise _unknown_key_error("ParamRanges", key, names)
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> ParamRanges:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(_load_json_object("ParamRanges", s))
