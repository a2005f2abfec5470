"""A fast Meta-World step: the same observations, rewards and info, with less Python around it.

Meta-World's ``env.step`` spends most of its time outside the physics: a Python scan of
``data.contact`` per touching test, a scipy ``Rotation`` per observation, ``reward_utils`` and
``np.linalg.norm`` calls that wrap scalars and 3-vectors in layers of array code, and a name
lookup for every body and site. :func:`fast_class` derives a task's class whose *reward code
is Meta-World's own* — the same functions' code objects, re-bound so that the module names
they read (``np``, ``reward_utils``, ``Rotation``) reach faster stand-ins — and whose shared
``SawyerXYZEnv`` helpers are replaced by drop-ins that perform the same floating-point
operations in the same order:

- ``touching_object``: one pass over the ``data.contact.geom`` array instead of two list
  comprehensions over contact structs; the same forces summed in the same order.
- ``Rotation.from_matrix(m).as_quat()``: scipy's algorithm with its operation order on Python
  floats (a matrix that scipy would orthogonalise first, or reject, goes to scipy itself).
- ``reward_utils.tolerance`` (scalar input; ``long_tail`` and ``gaussian``) and
  ``np.linalg.norm`` (a contiguous float64 vector): the same numpy-scalar expressions and the
  same ``dot``, without the scaffolding; any other input goes to the original function.
- ``_gripper_caging_reward`` (the shared one, and pick-place's own): the same subtractions on
  scalars instead of 2- and 3-element temporaries, the same norms.
- ``get_body_com``, ``tcp_center``, ``_get_site_pos``, the observation and ``step``: ids looked
  up once instead of by name every call, pieces written into one array instead of split and
  stacked; ``get_body_com`` still returns a view into ``data.xpos`` as Meta-World's does (some
  tasks keep that view, e.g. ``init_left_pad``).

The physics is untouched: the same model, ``mj_step`` with the same ``nstep``, the same
``mj_rnePostConstraint`` and ``mj_forward`` calls in the same order. Every replacement
computes the same IEEE-754 operations on the same operands as the code it replaces (where
Meta-World relies on numpy's type promotion, e.g. a float32 gripper action making a reward
term float32, the same types flow), so the results are not merely close but bit-identical:
``tests/sim/test_sim_fast.py`` compares observations, rewards and every info value by bits
and type on every step of every task.

All 50 Meta-World v3 tasks use the fast class; no task's reward had to stay on the slow path.
Should a future Meta-World override one of the replaced helpers in a task, :func:`fast_class`
keeps that task's own method (logged); per-task replacements check the source they were
written against and step aside when it changed.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import textwrap
import types
from typing import Any

import mujoco
import numpy as np
from metaworld.sawyer_xyz_env import SawyerXYZEnv
from metaworld.utils import reward_utils
from scipy.spatial.transform import Rotation

logger = logging.getLogger(__name__)

__all__ = ["fast_class", "quat_from_matrix", "tolerance"]


# ----------------------------------------------------------------------------- reward_utils
_TOLERANCE = reward_utils.tolerance
_SCALAR_TYPES = frozenset((float, int, np.float64))
_DEFAULT_VALUE_AT_MARGIN = 0.1  # reward_utils.tolerance's default value_at_margin
# reward_utils._sigmoids' scale for each sigmoid handled here, by Meta-World's own expression.
_SIGMOID_SCALE_EXPRESSIONS = {
    "long_tail": lambda value_at_1: np.sqrt(1 / value_at_1 - 1),
    "gaussian": lambda value_at_1: np.sqrt(-2 * np.log(value_at_1)),
}
_SCALES = {
    name: scale(_DEFAULT_VALUE_AT_MARGIN) for name, scale in _SIGMOID_SCALE_EXPRESSIONS.items()
}


def tolerance(
    x: Any,
    bounds: tuple[float, float] = (0.0, 0.0),
    margin: Any = 0.0,
    sigmoid: str = "gaussian",
    value_at_margin: float = _DEFAULT_VALUE_AT_MARGIN,
) -> Any:
    """``metaworld.utils.reward_utils.tolerance`` with the same results, faster for scalars.

    For a float ``x``, float bounds and margin and the ``long_tail`` or ``gaussian`` sigmoid
    at the default ``value_at_margin`` (every call in Meta-World's v3 rewards), this
    evaluates the same numpy-scalar expressions as Meta-World's function —
    ``d = (lower - x or x - upper) / margin``, then ``1 / ((d * scale) ** 2 + 1)`` or
    ``np.exp(-0.5 * (d * scale) ** 2)`` with the same ``scale`` — so the value is
    bit-identical; it only skips the ``np.where`` / ``np.logical_and`` array scaffolding. Any
    other input goes to Meta-World's function.

    Args:
        x: The input.
        bounds: Inclusive ``(lower, upper)`` of the interval where the value is 1.
        margin: How far outside the bounds the value falls to ``value_at_margin``.
        sigmoid: The sigmoid's name (see Meta-World's ``reward_utils``).
        value_at_margin: The value at distance ``margin`` from the bounds.

    Returns:
        A float in [0, 1] (an array for array input, as Meta-World's).
    """
    scale = _SCALES.get(sigmoid)
    if (
        scale is None
        or value_at_margin != _DEFAULT_VALUE_AT_MARGIN
        or type(x) not in _SCALAR_TYPES
        or type(margin) not in _SCALAR_TYPES
        or len(bounds) != 2
    ):
        return _TOLERANCE(x, bounds, margin, sigmoid, value_at_margin)
    lower, upper = bounds
    if (
        type(lower) not in _SCALAR_TYPES
        or type(upper) not in _SCALAR_TYPES
        or lower > upper
        or margin < 0
    ):
        return _TOLERANCE(x, bounds, margin, sigmoid, value_at_margin)  # it raises
    if lower <= x and x <= upper:
        return 1.0
    if margin == 0:
        return 0.0
    # Meta-World: np.where(x < lower, lower - x, x - upper) / margin, a numpy float64 scalar.
    d = np.float64(lower - x if x < lower else x - upper) / margin
    if sigmoid == "long_tail":
        return float(1 / ((d * scale) ** 2 + 1))
    return float(np.exp(-0.5 * (d * scale) ** 2))


_LINALG_NORM = np.linalg.norm
_FLOAT64 = np.dtype(np.float64)
_sqrt = np.sqrt


def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A002
    """``np.linalg.norm`` with the same results, without its Python layers for a 3-vector.

    For a contiguous 1-D float64 array and the 2-norm, numpy computes ``sqrt(x.dot(x))``
    (``ravel`` is then a no-op); so does this, through the same ``dot`` (the same BLAS kernel,
    hence the same rounding). Anything else goes to ``np.linalg.norm``.

    Args:
        x: The array.
        ord: Order of the norm (see ``np.linalg.norm``).
        axis: Axis or axes (see ``np.linalg.norm``).
        keepdims: Keep reduced axes (see ``np.linalg.norm``).

    Returns:
        The norm, a numpy float64 for a vector, as ``np.linalg.norm``.
    """
    if (
        type(x) is np.ndarray
        and axis is None
        and (ord is None or ord == 2)
        and not keepdims
        and x.ndim == 1
        and x.dtype is _FLOAT64
        and x.strides == (8,)
    ):
        return _sqrt(x.dot(x))
    return _LINALG_NORM(x, ord, axis, keepdims)


def _module_copy(module: types.ModuleType, **overrides: Any) -> types.ModuleType:
    """A module object with ``module``'s attributes, some replaced; the rest still resolve."""
    copy = types.ModuleType(module.__name__, module.__doc__)
    skip = ("__name__", "__doc__")
    copy.__dict__.update({k: v for k, v in vars(module).items() if k not in skip})
    copy.__dict__.update(overrides)
    copy.__getattr__ = lambda name: getattr(module, name)  # lazily loaded submodules (PEP 562)
    return copy


# numpy and reward_utils as Meta-World's re-bound code sees them.
_NUMPY = _module_copy(np, linalg=_module_copy(np.linalg, norm=norm))
_REWARD_UTILS = _module_copy(reward_utils, tolerance=tolerance)


# ----------------------------------------------------------------------------- quaternions
def _orthogonal_enough(m: list[float]) -> bool:
    """True when scipy's from_matrix keeps ``m`` as is (no SVD, no error), with margin.

    scipy orthogonalises a matrix whose Gramian differs from the identity by more than 1e-12
    (off the diagonal) and rejects a non-positive determinant. Passing a ten times tighter
    bound here, computed on Python floats, guarantees scipy's own (BLAS) computation passes
    too, whatever its rounding.
    """
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    g = (
        m00 * m00 + m01 * m01 + m02 * m02 - 1.0,
        m10 * m10 + m11 * m11 + m12 * m12 - 1.0,
        m20 * m20 + m21 * m21 + m22 * m22 - 1.0,
        m00 * m10 + m01 * m11 + m02 * m12,
        m00 * m20 + m01 * m21 + m02 * m22,
        m10 * m20 + m11 * m21 + m12 * m22,
    )
    if max(abs(v) for v in g) > 1e-13:
        return False
    det = m00 * (m11 * m22 - m12 * m21) - m01 * (m10 * m22 - m12 * m20) + m02 * (
        m10 * m21 - m11 * m20
    )
    return det > 0.5


def _matrix_values(matrix: Any) -> list[float] | None:
    """The nine entries as floats if scipy takes ``matrix`` as it is (no SVD, no error)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        return None
    values = m.ravel().tolist()
    return values if _orthogonal_enough(values) else None


def _quat_from_values(values: list[float]) -> np.ndarray:
    """scipy's ``_from_matrix_orthogonal`` on the nine entries, in its operation order."""
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = values
    trace = m00 + m11 + m22
    # scipy's _argmax4 over (m00, m11, m22, trace): the first strict maximum wins.
    choice, best = 0, m00
    if m11 > best:
        choice, best = 1, m11
    if m22 > best:
        choice, best = 2, m22
    if trace > best:
        choice = 3
    if choice == 0:
        q0, q1, q2, q3 = 1 - trace + 2 * m00, m10 + m01, m20 + m02, m21 - m12
    elif choice == 1:
        q0, q1, q2, q3 = m01 + m10, 1 - trace + 2 * m11, m21 + m12, m02 - m20
    elif choice == 2:
        q0, q1, q2, q3 = m02 + m20, m12 + m21, 1 - trace + 2 * m22, m10 - m01
    else:
        q0, q1, q2, q3 = m21 - m12, m02 - m20, m10 - m01, 1 + trace
    norm = math.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3)
    return np.array((q0 / norm, q1 / norm, q2 / norm, q3 / norm))


def quat_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """``Rotation.from_matrix(matrix).as_quat()``, bit-identical, in ~1/20 of the time.

    scipy's algorithm (its ``_from_matrix_orthogonal``: the largest of the diagonal and the
    trace picks the branch, then a normalisation) with its operation order, on Python floats,
    whose IEEE-754 double arithmetic and correctly rounded ``sqrt`` are what scipy's C code
    does. A matrix scipy would orthogonalise (by SVD) or reject goes to scipy itself.

    Args:
        matrix: ``(3, 3)`` rotation matrix, e.g. ``data.geom_xmat[i].reshape(3, 3)``.

    Returns:
        ``(4,)`` float64 quaternion, scalar last (x, y, z, w), not canonicalised (as scipy).
    """
    values = _matrix_values(matrix)
    if values is None:
        return Rotation.from_matrix(matrix).as_quat()
    return _quat_from_values(values)


class _QuatRotation:
    """What ``Rotation.from_matrix(m)`` returns here: the matrix's entries, taken then."""

    __slots__ = ("_values",)

    def __init__(self, values: list[float]) -> None:
        self._values = values

    def _scipy(self) -> Rotation:
        return Rotation.from_matrix(np.array(self._values).reshape(3, 3))

    def as_quat(self, canonical: bool = False, *, scalar_first: bool = False) -> np.ndarray:
        if canonical or scalar_first:
            return self._scipy().as_quat(canonical=canonical, scalar_first=scalar_first)
        return _quat_from_values(self._values)  # a fresh array per call, as scipy's

    def __getattr__(self, name: str) -> Any:
        # Anything else Meta-World might ask of a Rotation: scipy's own object.
        return getattr(self._scipy(), name)


class _RotationNamespace:
    """Stands in for ``scipy.spatial.transform.Rotation`` inside Meta-World's task code."""

    @staticmethod
    def from_matrix(matrix: Any, **kwargs: Any) -> Any:
        values = None if kwargs else _matrix_values(matrix)
        if values is None:
            return Rotation.from_matrix(matrix, **kwargs)
        return _QuatRotation(values)

    def __getattr__(self, name: str) -> Any:
        return getattr(Rotation, name)


_ROTATION = _RotationNamespace()


# ----------------------------------------------------------------------------- re-binding
def _global_replacements(fast_cls: type, base: type) -> tuple[dict[int, Any], dict[int, Any]]:
    """Objects (by id) Meta-World's code reaches through module globals, and their stand-ins.

    Returns the helper replacements (numpy, for its ``linalg.norm``; ``reward_utils``, for
    its ``tolerance``; scipy's ``Rotation``) and the class replacements: the task's own
    classes map to the fast class, so ``SawyerXEnv._reward_pos(...)`` calls reach the
    re-bound static methods too.
    """
    helpers: dict[int, Any] = {
        id(np): _NUMPY,
        id(reward_utils): _REWARD_UTILS,
        id(_TOLERANCE): tolerance,
        id(Rotation): _ROTATION,
    }
    classes = {id(c): fast_cls for c in base.__mro__ if c.__module__.startswith("metaworld.envs.")}
    return helpers, classes


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


class _Rebinder:
    """Copies Meta-World functions with module globals swapped for the fast stand-ins."""

    def __init__(self, helpers: dict[int, Any], classes: dict[int, Any]) -> None:
        self._helpers = helpers
        self._with_classes = {**helpers, **classes}
        self._globals: dict[tuple[int, bool], dict[str, Any]] = {}  # swapped module globals
        self._done: dict[int, Any] = {}

    def _replacements(self, fn: types.FunctionType) -> dict[int, Any]:
        # Never map a class for code that calls super(): super(Cls, self) with Cls mapped to
        # the fast subclass would resolve to the wrong place in the MRO.
        if "super" in _code_names(fn.__code__):
            return self._helpers
        return self._with_classes

    def needs(self, fn: Any) -> bool:
        """Whether ``fn`` (or a function in its closure) reads a replaced global."""
        if not isinstance(fn, types.FunctionType) or not fn.__module__.startswith("metaworld"):
            return False
        g, replacements = fn.__globals__, self._replacements(fn)
        if any(
            name in g and id(g[name]) in replacements for name in _code_names(fn.__code__)
        ):
            return True
        return any(
            self.needs(cell.cell_contents)
            for cell in fn.__closure__ or ()
            if _cell_is_set(cell)
        )

    def rebind(self, fn: types.FunctionType) -> types.FunctionType:
        """A copy of ``fn`` reading the stand-ins; closures (decorators) re-bound too."""
        done = self._done.get(id(fn))
        if done is not None:
            return done
        g, replacements = fn.__globals__, self._replacements(fn)
        key = (id(g), replacements is self._helpers)
        swapped = self._globals.get(key)
        if swapped is None:
            swapped = dict(g)
            for name, value in g.items():
                if id(value) in replacements:
                    swapped[name] = replacements[id(value)]
            self._globals[key] = swapped
        closure = None
        if fn.__closure__ is not None:
            closure = tuple(
                types.CellType(self.rebind(cell.cell_contents))
                if _cell_is_set(cell) and self.needs(cell.cell_contents)
                else cell
                for cell in fn.__closure__
            )
        new = types.FunctionType(fn.__code__, swapped, fn.__name__, fn.__defaults__, closure)
        new.__kwdefaults__ = fn.__kwdefaults__
        new.__qualname__ = fn.__qualname__
        new.__doc__ = fn.__doc__
        new.__module__ = fn.__module__
        new.__dict__.update(fn.__dict__)
        new.__wrapped__ = fn  # type: ignore[attr-defined]
        self._done[id(fn)] = new
        return new


def _cell_is_set(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - probing an empty cell raises
    except ValueError:
        return False
    return True


def _rebound_attribute(rebinder: _Rebinder, attr: Any) -> Any | None:
    """The fast version of a class attribute, or None when it reads no replaced global."""
    if isinstance(attr, staticmethod):
        fn = attr.__func__
        return staticmethod(rebinder.rebind(fn)) if rebinder.needs(fn) else None
    if isinstance(attr, classmethod):
        fn = attr.__func__
        return classmethod(rebinder.rebind(fn)) if rebinder.needs(fn) else None
    if isinstance(attr, property):
        parts = (attr.fget, attr.fset, attr.fdel)
        if not any(rebinder.needs(p) for p in parts):
            return None
        return property(
            *(rebinder.rebind(p) if rebinder.needs(p) else p for p in parts), doc=attr.__doc__
        )
    if isinstance(attr, types.FunctionType):
        return rebinder.rebind(attr) if rebinder.needs(attr) else None
    return None


# ----------------------------------------------------------------------------- fast helpers
try:
    # The ufunc np.clip dispatches to, without np.clip's Python layers: the same elementwise
    # operation, so the same values.
    from numpy._core.umath import clip as _clip
except ImportError:  # another numpy layout
    _clip = np.clip


class _Ids:
    """Name -> id maps of one compiled model, filled on first use of each name."""

    __slots__ = ("_model", "body", "site", "geom")

    def __init__(self, model: mujoco.MjModel) -> None:
        self._model = model
        self.body: dict[str, int] = {}
        self.site: dict[str, int] = {}
        self.geom: dict[str, int] = {}

    def body_id(self, name: str) -> int:
        i = self.body.get(name)
        if i is None:
            i = self.body[name] = self._model.body(name).id
        return i

    def site_id(self, name: str) -> int:
        i = self.site.get(name)
        if i is None:
            i = self.site[name] = self._model.site(name).id
        return i

    def geom_id(self, name: str) -> int:
        i = self.geom.get(name)
        if i is None:
            i = self.geom[name] = self._model.geom(name).id
        return i


class FastStepMixin:
    """Meta-World's shared ``SawyerXYZEnv`` helpers, computing the same values faster.

    Every method mirrors the ``SawyerXYZEnv`` / ``MujocoEnv`` method of the same name
    operation for operation; the docstrings say what differs (only how values are reached).
    """

    _fast_ids: _Ids

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model, data = super()._initialize_simulation()  # type: ignore[misc]
        ids = self._fast_ids = _Ids(model)
        # The Sawyer's own bodies, sites and pad geoms, used every step.
        self._fast_hand = ids.body_id("hand")
        self._fast_claws = (ids.body_id("rightclaw"), ids.body_id("leftclaw"))
        self._fast_fingers = (ids.site_id("rightEndEffector"), ids.site_id("leftEndEffector"))
        self._fast_pads = (ids.geom_id("leftpad_geom"), ids.geom_id("rightpad_geom"))
        return model, data

    # Body, site and contact helpers -----------------------------------------------------
    def get_body_com(self, body_name: str) -> np.ndarray:
        """``data.body(name).xpos``: the same view into ``data.xpos``, found by cached id."""
        ids = self._fast_ids.body
        i = ids.get(body_name)
        if i is None:
            i = self._fast_ids.body_id(body_name)
        return self.data.xpos[i]  # type: ignore[attr-defined]

    def get_endeff_pos(self) -> np.ndarray:
        """The hand body's ``xpos`` view, as Meta-World's."""
        return self.data.xpos[self._fast_hand]  # type: ignore[attr-defined]

    @property
    def tcp_center(self) -> np.ndarray:
        """Midpoint of the two finger sites, the same expression as Meta-World's."""
        site_xpos = self.data.site_xpos  # type: ignore[attr-defined]
        right, left = self._fast_fingers
        return (site_xpos[right] + site_xpos[left]) / 2.0

    def _get_site_pos(self, site_name: str) -> np.ndarray:
        """A copy of the site's ``xpos``, by cached id."""
        i = self._fast_ids.site.get(site_name)
        if i is None:
            i = self._fast_ids.site_id(site_name)
        return self.data.site_xpos[i].copy()  # type: ignore[attr-defined]

    def _set_pos_site(self, name: str, pos: np.ndarray) -> None:
        """Writes the site's ``xpos`` (Meta-World's asserts kept), by cached id."""
        assert isinstance(pos, np.ndarray)
        assert pos.ndim == 1
        i = self._fast_ids.site.get(name)
        if i is None:
            i = self._fast_ids.site_id(name)
        self.data.site_xpos[i] = pos[:3]  # type: ignore[attr-defined]

    def _get_id_main_object(self) -> int:
        """The ``objGeom`` geom's id, as Meta-World's default, by cached id."""
        return self._fast_ids.geom_id("objGeom")

    def touching_object(self, object_geom_id: int) -> bool:
        """Whether both finger pads push on the object: Meta-World's test on contact arrays.

        Meta-World sums ``efc_force[efc_address]`` over the contacts between each pad and the
        object (in contact order, starting from 0) and asks for both sums to be positive.
        This finds the same contacts from the ``data.contact.geom`` array and sums the same
        forces in the same order, so the answer is the same, without building a Python
        object per contact.
        """
        data = self.data  # type: ignore[attr-defined]
        if data.ncon == 0:
            return False
        contact = data.contact
        left, right = self._fast_pads
        on_left: list[int] = []
        on_right: list[int] = []
        for i, (g1, g2) in enumerate(contact.geom.tolist()):
            if g1 == object_geom_id or g2 == object_geom_id:
                if g1 == left or g2 == left:
                    on_left.append(i)
                if g1 == right or g2 == right:
                    on_right.append(i)
        if not on_left or not on_right:
            return False  # a sum over no contacts is 0, not > 0
        address = contact.efc_address
        efc_force = data.efc_force
        left_force: Any = 0
        for i in on_left:
            left_force = left_force + efc_force[address[i]]
        right_force: Any = 0
        for i in on_right:
            right_force = right_force + efc_force[address[i]]
        return bool(0 < left_force and 0 < right_force)

    # Reward ---------------------------------------------------------------------------------
    def _gripper_caging_reward(
        self,
        action: np.ndarray,
        obj_pos: np.ndarray,
        obj_radius: float,
        pad_success_thresh: float,
        object_reach_radius: float,
        xz_thresh: float,
        desired_gripper_effort: float = 1.0,
        high_density: bool = False,
        medium_density: bool = False,
    ) -> float:
        """``SawyerXYZEnv._gripper_caging_reward``: the same arithmetic on scalars.

        Meta-World builds 2-element arrays for the two pads and fancy-indexes x-z pairs; here
        the same float64 subtractions and ``abs`` run on numpy scalars (elementwise they are
        the same operations), the x-z norms go through the same ``dot`` on a 2-vector of the
        same values, and the rest is Meta-World's code as written, so the value (and its type,
        e.g. float32 when the gripper action is) is the same. Positions other than float64
        3-vectors go to Meta-World's function.
        """
        obj_init_pos = self.obj_init_pos  # type: ignore[attr-defined]
        init_tcp = self.init_tcp  # type: ignore[attr-defined]
        if not (_is_vec3(obj_pos) and _is_vec3(obj_init_pos) and _is_vec3(init_tcp)):
            return super()._gripper_caging_reward(  # type: ignore[misc]
                action, obj_pos, obj_radius, pad_success_thresh, object_reach_radius,
                xz_thresh, desired_gripper_effort, high_density, medium_density,
            )
        if high_density and medium_density:
            raise ValueError("Can only be either high_density or medium_density")
        xpos = self.data.xpos  # type: ignore[attr-defined]
        ids = self._fast_ids
        left_y = xpos[ids.body_id("leftpad"), 1]
        right_y = xpos[ids.body_id("rightpad"), 1]
        obj_y, init_y = obj_pos[1], obj_init_pos[1]
        # Meta-World: pad_y_lr = hstack((left_y, right_y)); abs(pad_y_lr - obj_y), ... per pad.
        caging_left = tolerance(
            abs(left_y - obj_y),
            bounds=(obj_radius, pad_success_thresh),
            margin=abs(abs(left_y - init_y) - pad_success_thresh),
            sigmoid="long_tail",
        )
        caging_right = tolerance(
            abs(right_y - obj_y),
            bounds=(obj_radius, pad_success_thresh),
            margin=abs(abs(right_y - init_y) - pad_success_thresh),
            sigmoid="long_tail",
        )
        caging_y = reward_utils.hamacher_product(caging_left, caging_right)

        tcp = self.tcp_center
        # Meta-World: norm(obj_init_pos[[0, 2]] - init_tcp[[0, 2]]) and likewise for tcp.
        caging_xz_margin = norm(
            np.array((obj_init_pos[0] - init_tcp[0], obj_init_pos[2] - init_tcp[2]))
        )
        caging_xz_margin -= xz_thresh
        caging_xz = tolerance(
            norm(np.array((tcp[0] - obj_pos[0], tcp[2] - obj_pos[2]))),
            bounds=(0, xz_thresh),
            margin=caging_xz_margin,
            sigmoid="long_tail",
        )

        # From here on Meta-World's code as written.
        gripper_closed = (
            min(max(0, action[-1]), desired_gripper_effort) / desired_gripper_effort
        )
        caging = reward_utils.hamacher_product(caging_y, float(caging_xz))
        gripping = gripper_closed if caging > 0.97 else 0.0
        caging_and_gripping = reward_utils.hamacher_product(caging, gripping)

        if high_density:
            caging_and_gripping = (caging_and_gripping + caging) / 2
        if medium_density:
            tcp_to_obj = norm(obj_pos - tcp)
            tcp_to_obj_init = norm(obj_init_pos - init_tcp)
            reach_margin = abs(tcp_to_obj_init - object_reach_radius)
            reach = tolerance(
                tcp_to_obj,
                bounds=(0, object_reach_radius),
                margin=reach_margin,
                sigmoid="long_tail",
            )
            caging_and_gripping = (caging_and_gripping + float(reach)) / 2

        return caging_and_gripping

    # Observation --------------------------------------------------------------------------
    def _fill_curr_obs(self, out: np.ndarray) -> None:
        """Writes the 18 current entries (see below) into ``out[:18]``."""
        xpos = self.data.xpos  # type: ignore[attr-defined]
        out[0:3] = xpos[self._fast_hand]
        right, left = self._fast_claws
        apart = xpos[right] - xpos[left]
        # np.linalg.norm of a vector is sqrt(v.dot(v)); np.clip(g, 0, 1) of a norm (>= +0,
        # or NaN, which both pass through) is min(max(g, 0), 1).
        out[3] = min(max(np.sqrt(apart.dot(apart)) / 0.1, 0.0), 1.0)
        obj_pos = self._get_pos_objects()  # type: ignore[attr-defined]
        obj_quat = self._get_quat_objects()  # type: ignore[attr-defined]
        n_pos, n_quat = len(obj_pos), len(obj_quat)
        assert n_pos % 3 == 0
        assert n_quat % 4 == 0
        if n_pos == 3 and n_quat == 4:
            out[4:7] = obj_pos
            out[7:11] = obj_quat
            out[11:18] = 0.0
            return
        n = n_pos // 3
        if n != n_quat // 4 or 7 * n > 14:
            # Not a layout Meta-World's own code can stack either; let it raise as it does.
            out[:18] = super()._get_curr_obs_combined_no_goal()  # type: ignore[misc]
            return
        out[4:18] = 0.0
        for k in range(n):
            out[4 + 7 * k : 7 + 7 * k] = obj_pos[3 * k : 3 * k + 3]
            out[7 + 7 * k : 11 + 7 * k] = obj_quat[4 * k : 4 * k + 4]

    def _get_curr_obs_combined_no_goal(self) -> np.ndarray:
        """Hand xyz, gripper opening, objects' (pos, quat) padded to 14: as Meta-World's.

        The same values, written into one array instead of split and stacked.
        """
        out = np.empty(18)
        self._fill_curr_obs(out)
        return out

    def _get_obs(self) -> np.ndarray:
        """Current 18, previous 18, goal 3 (zeros when hidden), as Meta-World's."""
        pos_goal = self._get_pos_goal()  # type: ignore[attr-defined]
        obs = np.empty(39)
        self._fill_curr_obs(obs)
        obs[18:36] = self._prev_obs  # type: ignore[has-type]
        obs[36:39] = 0.0 if self._partially_observable else pos_goal  # type: ignore[attr-defined]
        self._prev_obs = obs[:18].copy()
        return obs

    # Step ----------------------------------------------------------------------------------
    def set_xyz_action(self, action: np.ndarray) -> None:
        """Moves the mocap by the clipped, scaled action: Meta-World's arithmetic and dtypes.

        Meta-World adds the (float32) delta to every mocap row, clips row 0 and writes both
        mocap arrays; with the Sawyer's one mocap body that is this, on row 0 in place.
        """
        pos_delta = _clip(action, -1, 1) * self.action_scale  # type: ignore[attr-defined]
        data = self.data  # type: ignore[attr-defined]
        mocap_pos = data.mocap_pos
        if mocap_pos.shape[0] != 1:
            super().set_xyz_action(action)  # type: ignore[misc]
            return
        row = mocap_pos[0] + pos_delta
        low, high = self.mocap_low, self.mocap_high  # type: ignore[attr-defined]
        mocap_pos[0] = _clip(row, low, high, out=row)
        data.mocap_quat[0] = _MOCAP_QUAT

    def step(self, action: np.ndarray) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        """``SawyerXYZEnv.step``, statement for statement (see the module docstring)."""
        if not self._set_task_called:  # type: ignore[attr-defined]
            raise RuntimeError("You must call env.set_task before using env.step")
        assert len(action) == 4, f"Actions should be size 4, got {len(action)}"
        self.set_xyz_action(action[:3])
        if self.curr_path_length >= self.max_path_length:  # type: ignore[attr-defined]
            raise ValueError("You must reset the env manually once truncate==True")
        model = self.model  # type: ignore[attr-defined]
        data = self.data  # type: ignore[attr-defined]
        # MujocoEnv.do_simulation / _step_mujoco_simulation, with the ctrl shape check.
        if model.nu != 2:
            raise ValueError(f"Action dimension mismatch. Expected {(model.nu,)}, found (2,)")
        ctrl = data.ctrl
        ctrl[0] = action[-1]
        ctrl[1] = -action[-1]
        mujoco.mj_step(model, data, nstep=self.frame_skip)  # type: ignore[attr-defined]
        mujoco.mj_rnePostConstraint(model, data)
        self.curr_path_length += 1

        for site in self._target_site_config:  # type: ignore[attr-defined]
            self._set_pos_site(*site)

        if self._did_see_sim_exception:  # type: ignore[attr-defined]
            assert self._last_stable_obs is not None  # type: ignore[has-type]
            return (
                self._last_stable_obs,  # type: ignore[has-type]
                0.0,
                False,
                False,
                {
                    "success": False,
                    "near_object": 0.0,
                    "grasp_success": False,
                    "grasp_reward": 0.0,
                    "in_place_reward": 0.0,
                    "obj_to_target": 0.0,
                    "unscaled_reward": 0.0,
                },
            )
        mujoco.mj_forward(model, data)
        obs = self._get_obs()
        space = self.sawyer_observation_space  # type: ignore[attr-defined]
        _clip(obs, space.low, space.high, out=obs)
        self._last_stable_obs = obs
        reward, info = self.evaluate_state(obs, action)  # type: ignore[attr-defined]
        truncate = self.curr_path_length == self.max_path_length  # type: ignore[attr-defined]
        return obs.copy(), reward, False, truncate, info


# ----------------------------------------------------------------------------- per-task code
def _is_vec3(x: Any) -> bool:
    return type(x) is np.ndarray and x.dtype is _FLOAT64 and x.shape == (3,)


def _pick_place_caging(meta_world: Any) -> Any:
    """``SawyerPickPlaceEnvV3._gripper_caging_reward`` with the same operations on scalars.

    Meta-World zeroes the y of 3-vectors by adding ``[0, -y, 0]`` arrays before a norm; this
    does those additions elementwise on the same float64 values (``x + 0.0``, ``y + -y``)
    and takes the norm of the same 3-vector through the same ``dot``. Any other input type
    goes to Meta-World's function (``meta_world``).
    """

    def _gripper_caging_reward(
        self: Any,
        action: np.ndarray,
        obj_pos: np.ndarray,
        obj_radius: float = 0,
        pad_success_thresh: float = 0,
        object_reach_radius: float = 0,
        xz_thresh: float = 0,
        desired_gripper_effort: float = 1.0,
        high_density: bool = False,
        medium_density: bool = False,
    ) -> float:
        obj_init_pos, init_tcp = self.obj_init_pos, self.init_tcp
        if not (_is_vec3(obj_pos) and _is_vec3(obj_init_pos) and _is_vec3(init_tcp)):
            return meta_world(
                self, action, obj_pos, obj_radius, pad_success_thresh, object_reach_radius,
                xz_thresh, desired_gripper_effort, high_density, medium_density,
            )
        pad_success_margin = 0.05
        x_z_success_margin = 0.005
        obj_radius = 0.015
        tcp = self.tcp_center
        xpos = self.data.xpos
        ids = self._fast_ids
        left_y = xpos[ids.body_id("leftpad"), 1]
        right_y = xpos[ids.body_id("rightpad"), 1]
        obj_y = obj_pos[1]
        right_caging_margin = abs(abs(obj_y - self.init_right_pad[1]) - pad_success_margin)
        left_caging_margin = abs(abs(obj_y - self.init_left_pad[1]) - pad_success_margin)
        right_caging = tolerance(
            obj_y - right_y,
            bounds=(obj_radius, pad_success_margin),
            margin=right_caging_margin,
            sigmoid="long_tail",
        )
        left_caging = tolerance(
            left_y - obj_y,
            bounds=(obj_radius, pad_success_margin),
            margin=left_caging_margin,
            sigmoid="long_tail",
        )
        y_caging = reward_utils.hamacher_product(left_caging, right_caging)

        # (tcp + [0, -tcp_y, 0]) - (obj_pos + [0, -obj_y, 0]), elementwise, then its norm.
        t0, t1, t2 = tcp.tolist()
        o0, o1, o2 = obj_pos.tolist()
        xz = np.array(((t0 + 0.0) - (o0 + 0.0), (t1 + -t1) - (o1 + -o1), (t2 + 0.0) - (o2 + 0.0)))
        tcp_obj_norm_x_z = float(norm(xz, ord=2))
        i0, i1, i2 = obj_init_pos.tolist()
        c0, c1, c2 = init_tcp.tolist()
        xz = np.array(((i0 + 0.0) - (c0 + 0.0), (i1 + -i1) - (c1 + -c1), (i2 + 0.0) - (c2 + 0.0)))
        tcp_obj_x_z_margin = norm(xz, ord=2) - x_z_success_margin

        # From here on Meta-World's code as written.
        x_z_caging = tolerance(
            tcp_obj_norm_x_z,
            bounds=(0, x_z_success_margin),
            margin=tcp_obj_x_z_margin,
            sigmoid="long_tail",
        )
        gripper_closed = min(max(0, action[-1]), 1)
        caging = reward_utils.hamacher_product(y_caging, x_z_caging)
        gripping = gripper_closed if caging > 0.97 else 0.0
        caging_and_gripping = reward_utils.hamacher_product(caging, gripping)
        caging_and_gripping = (caging_and_gripping + caging) / 2
        return caging_and_gripping

    return _gripper_caging_reward


# (Meta-World class, method) -> (sha256 of the method's source this was written against, the
# factory of its fast version, given Meta-World's). A changed source keeps Meta-World's.
_TASK_METHODS: dict[tuple[str, str], tuple[str, Any]] = {
    ("SawyerPickPlaceEnvV3", "_gripper_caging_reward"): (
        "d73749f3d46f273d94a0a63a0703cf8ace311ad4e0edc9fe3fa7fbf1deeb0b35",
        _pick_place_caging,
    ),
}


def _source_digest(fn: Any) -> str | None:
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(textwrap.dedent(source).encode()).hexdigest()


_MOCAP_QUAT = np.array([1.0, 0.0, 1.0, 0.0])  # SawyerXYZEnv.set_xyz_action's
# Methods of FastStepMixin that replace SawyerXYZEnv's, and the SawyerXYZEnv / MujocoEnv methods
# each one also stands in for (it inlines them): a task overriding any of these keeps
# Meta-World's method, so its override is still called.
_REPLACES: dict[str, tuple[str, ...]] = {
    "get_body_com": ("get_body_com",),
    "get_endeff_pos": ("get_endeff_pos",),
    "tcp_center": ("tcp_center",),
    "_get_site_pos": ("_get_site_pos",),
    "_set_pos_site": ("_set_pos_site",),
    "touching_object": ("touching_object",),
    "_get_id_main_object": ("_get_id_main_object",),
    "_gripper_caging_reward": ("_gripper_caging_reward", "get_body_com", "tcp_center"),
    "_fill_curr_obs": ("_get_curr_obs_combined_no_goal", "get_endeff_pos"),
    "_get_curr_obs_combined_no_goal": ("_get_curr_obs_combined_no_goal", "get_endeff_pos"),
    "_get_obs": ("_get_obs", "_get_curr_obs_combined_no_goal", "get_endeff_pos"),
    "set_xyz_action": ("set_xyz_action",),
    "step": ("step", "do_simulation", "_step_mujoco_simulation"),
}
_SHARED_OWNERS = ("metaworld.sawyer_xyz_env", "gymnasium.envs.mujoco.mujoco_env")


def _overridden(base: type, name: str) -> bool:
    """Whether ``base`` takes ``name`` from somewhere other than Meta-World's shared classes."""
    owner = next((c for c in base.__mro__ if name in vars(c)), None)
    return owner is not None and owner.__module__ not in _SHARED_OWNERS


def fast_class(base: type) -> type:
    """The fast-step subclass of a Meta-World task class (see the module docstring).

    Args:
        base: A ``SawyerXYZEnv`` subclass, e.g. ``ALL_V3_ENVIRONMENTS["push-v3"]`` or a
            subclass of it.

    Returns:
        A subclass of ``base`` whose step, observation and reward give the same results.

    Raises:
        TypeError: ``base`` is not a Meta-World ``SawyerXYZEnv`` class.
    """
    if not (isinstance(base, type) and issubclass(base, SawyerXYZEnv)):
        raise TypeError(f"fast_class needs a Meta-World SawyerXYZEnv subclass, got {base!r}")
    namespace: dict[str, Any] = {"__module__": __name__, "__doc__": base.__doc__}
    for name, replaced in _REPLACES.items():
        overridden = [r for r in replaced if _overridden(base, r)]
        if overridden:
            # The mixin's version would shadow (or bypass) the task's own; keep Meta-World's.
            logger.info("%s overrides %s; keeping Meta-World's %s", base.__name__, overridden, name)
            namespace[name] = inspect.getattr_static(base, name, None)
            if namespace[name] is None:
                del namespace[name]
    fast = type(base.__name__, (FastStepMixin, base), namespace)
    rebinder = _Rebinder(*_global_replacements(fast, base))
    for name in dir(base):
        if name in namespace or name.startswith("__"):
            continue
        owner = next((c for c in base.__mro__ if name in vars(c)), None)
        if owner is None or owner.__module__.startswith(("gymnasium", "builtins")):
            continue
        if name in _REPLACES and name not in namespace:
            continue  # the mixin's replacement stands
        rebound = _rebound_attribute(rebinder, inspect.getattr_static(base, name))
        if rebound is not None:
            setattr(fast, name, rebound)
    _install_task_methods(fast, base)
    return fast


def _install_task_methods(fast: type, base: type) -> None:
    """Puts the per-task fast methods of ``_TASK_METHODS`` on ``fast``, where they apply."""
    for (cls_name, name), (digest, factory) in _TASK_METHODS.items():
        owner = next((c for c in base.__mro__ if name in vars(c)), None)
        if owner is None or owner.__name__ != cls_name:
            continue  # not this task's, or overridden further down
        meta_world = vars(fast).get(name, vars(owner)[name])  # the re-bound one if any
        if _source_digest(vars(owner)[name]) != digest:
            logger.warning(
                "%s.%s is not the code sim.fast was written against; keeping Meta-World's",
                cls_name,
                name,
            )
            continue
        setattr(fast, name, factory(meta_world))
