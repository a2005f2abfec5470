"""A fast Meta-World step: the same observations, rewards and info, with less Python around it.

Meta-World's ``env.step`` spends most of its time outside the physics: a Python scan of
``data.contact`` per touching test, a scipy ``Rotation`` per observation, ``reward_utils`` and
``np.linalg.norm`` calls that wrap scalars and 3-vectors in layers of array code, and a name
lookup for every body and site. :func:`fast_class` derives a task's class that computes the
same values with less of that, performing the same floating-point operations on the same
operands in the same order and types:

- Shared ``SawyerXYZEnv`` helpers (:class:`FastStepMixin`): ``touching_object`` (one pass over
  ``data.contact.geom``, the same forces summed in the same order), ``get_body_com``,
  ``tcp_center``, ``_get_site_pos`` (ids and numpy views of the MjData arrays taken once),
  ``set_xyz_action`` (float32 arithmetic on Python floats, rounded as numpy rounds), the
  observation (written into one array instead of split and stacked) and ``step``.
- Each task's ``_get_pos_objects`` / ``_get_quat_objects``, from a table keyed by the sha256
  of Meta-World's source (:data:`_POSITIONS`, :data:`_ORIENTATIONS`): the same rows of
  ``xpos`` / ``geom_xpos`` / ``site_xpos``, returned as the same views or copies, and scipy's
  ``Rotation.from_matrix(m).as_quat()`` algorithm on Python floats (a matrix scipy would
  orthogonalise, or reject, goes to scipy).
- 45 of the 50 tasks' ``compute_reward`` (:data:`_TASK_METHODS`), and the shared and
  pick-place ``_gripper_caging_reward``: Meta-World's v2 reward with norms as ``sqrt`` of the
  same sum of squares, ``reward_utils.tolerance`` as the same expression on Python floats
  (:func:`_tol`; numpy's ``exp``/``log`` kept: they are not libm's), and Meta-World's scalar
  expressions kept as written, so that each value has Meta-World's type (Python float, numpy
  float64 or float32, int, bool). Each rewrite checks its inputs and defers to Meta-World's
  function for anything else (the v1 reward, other dtypes, a reset not yet done).
- The other tasks' reward code (soccer, stick-push, push-back, sweep-into and sweep: each has
  its own 95-line caging reward) is Meta-World's own: the same functions' code objects,
  re-bound so that the module names they read (``np``, ``reward_utils``, ``Rotation``) reach
  the faster stand-ins :func:`norm`, :func:`tolerance` and :func:`quat_from_matrix`.

A norm is ``sqrt(v.dot(v))`` in numpy, with BLAS's dot. OpenBLAS picks its kernel for the CPU
at run time; :func:`_dot_is_sequential` checks at import that it sums the squares of a short
vector one by one without fused multiply-adds, and only then are norms computed as that same
sum on Python floats (otherwise through the dot, as before).

The physics is untouched: the same model, ``mj_step`` with the same ``nstep``, the same
``mj_rnePostConstraint`` and ``mj_forward`` calls in the same order. The results are not merely
close but bit-identical: ``tests/sim/test_sim_fast.py`` compares observations, rewards and every
info value by bits and type on every step of every task, and the physical state after.

Should a future Meta-World (or a subclass) override a replaced shared helper in a task,
:func:`fast_class` keeps that task's own method (logged); every per-task replacement checks the
sha256 of the source it was written against (and of the helpers it inlines, and of
``reward_utils``) and steps aside, keeping Meta-World's code, when it changed.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import struct
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
    hence the same rounding) or, for up to 4 entries where that kernel sums the squares one by
    one (:func:`_dot_is_sequential`), the same sum on Python floats. Anything else goes to
    ``np.linalg.norm``.

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
        if _SEQUENTIAL_DOT and len(x) <= 4:
            total = 0.0  # the dot's own sum (see _dot_is_sequential)
            for value in x.tolist():
                total += value * value
            return _FLOAT64_TYPE(math.sqrt(total))
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
# Already plain Python on scalars; the per-task code below calls it as Meta-World's does.
hamacher_product = reward_utils.hamacher_product


# ----------------------------------------------------------------------------- quaternions
def _orthogonal_enough(m: list[float]) -> bool:
    """True when scipy's from_matrix keeps ``m`` as is (no SVD, no error), with margin.

    scipy orthogonalises a matrix whose Gramian differs from the identity by more than 1e-12
    (off the diagonal) and rejects a non-positive determinant. Passing a ten times tighter
    bound here, computed on Python floats, guarantees scipy's own (BLAS) computation passes
    too, whatever its rounding. NaN entries fail every comparison, so they go to scipy.
    """
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    tol = 1e-13
    if not (
        abs(m00 * m00 + m01 * m01 + m02 * m02 - 1.0) <= tol
        and abs(m10 * m10 + m11 * m11 + m12 * m12 - 1.0) <= tol
        and abs(m20 * m20 + m21 * m21 + m22 * m22 - 1.0) <= tol
        and abs(m00 * m10 + m01 * m11 + m02 * m12) <= tol
        and abs(m00 * m20 + m01 * m21 + m02 * m22) <= tol
        and abs(m10 * m20 + m11 * m21 + m12 * m22) <= tol
    ):
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


def _quat_tuple(values: list[float]) -> tuple[float, float, float, float]:
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
    return (q0 / norm, q1 / norm, q2 / norm, q3 / norm)


def _quat_from_values(values: list[float]) -> np.ndarray:
    """:func:`_quat_tuple` as a fresh float64 array, as scipy's ``as_quat`` returns."""
    return np.array(_quat_tuple(values))


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

_FLOAT32 = np.dtype(np.float32)
_FLOAT64_TYPE = np.float64
_F32, _F32x3 = struct.Struct("f"), struct.Struct("3f")  # a double, rounded to float32
_F32_MINUS_ONE, _F32_ONE = np.float32(-1.0), np.float32(1.0)  # np.clip's bounds, as float32


class _Ids:
    """Name -> id maps of one compiled model, filled on first use of each name."""

    __slots__ = ("_model", "body", "site", "geom", "joint")

    def __init__(self, model: mujoco.MjModel) -> None:
        self._model = model
        self.body: dict[str, int] = {}
        self.site: dict[str, int] = {}
        self.geom: dict[str, int] = {}
        self.joint: dict[str, int] = {}

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

    def qpos_adr(self, name: str) -> int:
        """Index of a joint's first ``qpos`` entry (``data.joint(name).qpos`` starts there)."""
        i = self.joint.get(name)
        if i is None:
            i = self.joint[name] = int(self._model.jnt_qposadr[self._model.joint(name).id])
        return i


# The fixed-size MjData arrays the step reads. Each attribute access on an MjData builds a new
# numpy view (~0.2 us); these are built once. (``contact`` and ``efc_*`` change size, so they
# are always read from the MjData.)
_VIEW_FIELDS = (
    "xpos", "xquat", "xmat", "geom_xpos", "geom_xmat", "site_xpos", "site_xmat",
    "qpos", "qvel", "mocap_pos", "mocap_quat", "ctrl",
)


class _Views:
    """Numpy views of one MjData's fixed-size arrays (the same memory MuJoCo writes).

    Also the rows the step reads (hand, claws, pads, fingers, the task's objects, see
    _POSITIONS), resolved once. Pickled or deep-copied, it is rebuilt on the copied MjData (views of the
    copy, not detached arrays).
    """

    __slots__ = (
        "data", *_VIEW_FIELDS, "_ids", "_spec",
        "hand", "claws", "mocap_row", "fingers", "pads", "obj_parts", "write_objects",
        "read_objects",
    )

    def __init__(self, data: mujoco.MjData, ids: _Ids, spec: tuple[Any, ...] | None) -> None:
        self.data = data
        for name in _VIEW_FIELDS:
            setattr(self, name, getattr(data, name))
        self._ids, self._spec = ids, spec
        xpos = self.xpos
        self.hand = xpos[ids.body_id("hand")]
        self.claws = (xpos[ids.body_id("rightclaw")], xpos[ids.body_id("leftclaw")])
        self.mocap_row = self.mocap_pos[0] if len(self.mocap_pos) else None
        try:
            self.pads = (xpos[ids.body_id("leftpad")], xpos[ids.body_id("rightpad")])
        except KeyError:  # no Sawyer pads: the caging reward takes Meta-World's way
            self.pads = None
        site_xpos = self.site_xpos
        self.fingers = (
            site_xpos[ids.site_id("rightEndEffector")], site_xpos[ids.site_id("leftEndEffector")]
        )
        self.obj_parts = None if spec is None else _bind_objects(spec, ids, self)
        self.write_objects = None if spec is None else _object_writer(self.obj_parts)
        self.read_objects = None if spec is None else _object_reader(self.obj_parts)

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return (_Views, (self.data, self._ids, self._spec))


class FastStepMixin:
    """Meta-World's shared ``SawyerXYZEnv`` helpers, computing the same values faster.

    Every method mirrors the ``SawyerXYZEnv`` / ``MujocoEnv`` method of the same name
    operation for operation; the docstrings say what differs (only how values are reached).
    """

    _fast_ids: _Ids
    _fv: _Views
    # Set by fast_class: the task's object layout (see _POSITIONS), None for Meta-World's own.
    _fast_objects: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
    _fast_inline_sites = False
    _fast_plain_xyz = False  # set_xyz_action is this mixin's, so step may move the mocap itself
    _fast_evaluate_state: Any = None  # the task's evaluate_state without its task-set check
    _fast_scale = math.nan  # the action_scale whose float32 value _fast_scale32 holds

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model, data = super()._initialize_simulation()  # type: ignore[misc]
        ids = self._fast_ids = _Ids(model)
        # The Sawyer's pad geoms (touching_object); its bodies and sites are in _Views.
        self._fast_pads = (ids.geom_id("leftpad_geom"), ids.geom_id("rightpad_geom"))
        self._fast_nu = model.nu
        self._fast_bind(data)
        return model, data

    def _fast_bind(self, data: mujoco.MjData) -> _Views:
        """Views of ``data`` and the task's object entries resolved to (array, index) pairs."""
        v = self._fv = _Views(data, self._fast_ids, self._fast_objects)
        return v

    # Body, site and contact helpers -----------------------------------------------------
    def get_body_com(self, body_name: str) -> np.ndarray:
        """``data.body(name).xpos``: the same view into ``data.xpos``, found by cached id."""
        i = self._fast_ids.body.get(body_name)
        if i is None:
            i = self._fast_ids.body_id(body_name)
        return self._fv.xpos[i]

    def get_endeff_pos(self) -> np.ndarray:
        """The hand body's ``xpos`` view, as Meta-World's."""
        return self._fv.hand

    @property
    def tcp_center(self) -> np.ndarray:
        """Midpoint of the two finger sites, the same expression as Meta-World's."""
        right, left = self._fv.fingers
        return (right + left) / 2.0

    def _get_site_pos(self, site_name: str) -> np.ndarray:
        """A copy of the site's ``xpos``, by cached id."""
        i = self._fast_ids.site.get(site_name)
        if i is None:
            i = self._fast_ids.site_id(site_name)
        return self._fv.site_xpos[i].copy()

    def _set_pos_site(self, name: str, pos: np.ndarray) -> None:
        """Writes the site's ``xpos`` (Meta-World's asserts kept), by cached id."""
        assert isinstance(pos, np.ndarray)
        assert pos.ndim == 1
        i = self._fast_ids.site.get(name)
        if i is None:
            i = self._fast_ids.site_id(name)
        self._fv.site_xpos[i] = pos[:3]

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
        the same float64 subtractions and ``abs`` run on Python floats (elementwise they are
        the same operations), the x-z norms go through the same ``dot`` on a 2-vector of the
        same values, the tolerances are :func:`_tol`, and the rest is Meta-World's code as
        written, so the value (and its type, e.g. float32 when the gripper action is) is the
        same. Positions other than float64 3-vectors go to Meta-World's function.
        """
        obj_init_pos = self.obj_init_pos  # type: ignore[attr-defined]
        init_tcp = self.init_tcp  # type: ignore[attr-defined]
        if not (
            _is_vec3(obj_pos) and _is_vec3(obj_init_pos) and _is_vec3(init_tcp)
        ) or self._fv.pads is None:
            return super()._gripper_caging_reward(  # type: ignore[misc]
                action, obj_pos, obj_radius, pad_success_thresh, object_reach_radius,
                xz_thresh, desired_gripper_effort, high_density, medium_density,
            )
        if high_density and medium_density:
            raise ValueError("Can only be either high_density or medium_density")
        v = self._fv
        left_pad, right_pad = v.pads
        left_y = left_pad.item(1)
        right_y = right_pad.item(1)
        o0, obj_y, o2 = obj_pos.tolist()
        i0, init_y, i2 = obj_init_pos.tolist()
        # Meta-World: pad_y_lr = hstack((left_y, right_y)); abs(pad_y_lr - obj_y), ... per pad.
        caging_left = _tol(
            abs(left_y - obj_y),
            obj_radius,
            pad_success_thresh,
            abs(abs(left_y - init_y) - pad_success_thresh),
        )
        caging_right = _tol(
            abs(right_y - obj_y),
            obj_radius,
            pad_success_thresh,
            abs(abs(right_y - init_y) - pad_success_thresh),
        )
        caging_y = hamacher_product(caging_left, caging_right)

        # tcp_center's x and z: (right + left) / 2.0 elementwise.
        right, left = v.fingers
        r0, _, r2 = right.tolist()
        f0, _, f2 = left.tolist()
        t0, t2 = (r0 + f0) / 2.0, (r2 + f2) / 2.0
        c0, _, c2 = init_tcp.tolist()
        # Meta-World: norm(obj_init_pos[[0, 2]] - init_tcp[[0, 2]]) and likewise for tcp.
        caging_xz_margin = _FLOAT64_TYPE(_norm_of(i0 - c0, i2 - c2))
        caging_xz_margin -= xz_thresh
        caging_xz = _tol(
            _FLOAT64_TYPE(_norm_of(t0 - o0, t2 - o2)), 0, xz_thresh, caging_xz_margin
        )

        # From here on Meta-World's code as written.
        gripper_closed = (
            min(max(0, action[-1]), desired_gripper_effort) / desired_gripper_effort
        )
        caging = hamacher_product(caging_y, float(caging_xz))
        gripping = gripper_closed if caging > 0.97 else 0.0
        caging_and_gripping = hamacher_product(caging, gripping)

        if high_density:
            caging_and_gripping = (caging_and_gripping + caging) / 2
        if medium_density:
            tcp = self.tcp_center
            tcp_to_obj = _nnorm(obj_pos - tcp)
            tcp_to_obj_init = _nnorm(obj_init_pos - init_tcp)
            reach_margin = abs(tcp_to_obj_init - object_reach_radius)
            reach = _tol(tcp_to_obj, 0, object_reach_radius, reach_margin)
            caging_and_gripping = (caging_and_gripping + float(reach)) / 2

        return caging_and_gripping

    # Observation --------------------------------------------------------------------------
    def _fill_curr_obs(self, out: np.ndarray) -> None:
        """Writes the 18 current entries (see below) into ``out[:18]``, which holds zeros."""
        v = self._fv
        out[0:3] = v.hand
        right, left = v.claws
        r0, r1, r2 = right.tolist()
        l0, l1, l2 = left.tolist()
        # np.linalg.norm(right - left) (see _norm_of); np.clip(g, 0, 1) of a norm (>= +0, or
        # NaN, which both pass through) is min(max(g, 0), 1).
        out[3] = min(max(_norm_of(r0 - l0, r1 - l1, r2 - l2) / 0.1, 0.0), 1.0)
        write_objects = v.write_objects
        if write_objects is not None:
            # The task's objects straight from the MuJoCo arrays (see _POSITIONS).
            write_objects(out)
            return
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
        out = np.zeros(18)
        self._fill_curr_obs(out)
        return out

    def _get_obs(self) -> np.ndarray:
        """Current 18, previous 18, goal 3 (zeros when hidden), as Meta-World's.

        Meta-World's hstack of the three is a concatenate (the same dtype rules); the current
        18 become the next step's previous 18, as Meta-World keeps them.
        """
        pos_goal = self._get_pos_goal()  # type: ignore[attr-defined]
        v = self._fv
        read_objects = v.read_objects
        prev = self._prev_obs  # type: ignore[has-type]
        if (
            read_objects is not None
            and type(prev) is np.ndarray
            and prev.dtype is _FLOAT64
            and prev.shape == (18,)
            and type(pos_goal) is np.ndarray
            and pos_goal.dtype is _FLOAT64
            and pos_goal.shape == (3,)
        ):
            # The same 39 values as below, gathered as Python floats (exact copies of the
            # doubles) and made into one float64 array; the current 18 stay its first 18.
            values = v.hand.tolist()
            right, left = v.claws
            r0, r1, r2 = right.tolist()
            l0, l1, l2 = left.tolist()
            values.append(min(max(_norm_of(r0 - l0, r1 - l1, r2 - l2) / 0.1, 0.0), 1.0))
            values += read_objects()
            values += prev.tolist()
            values += _ZEROS3 if self._partially_observable else pos_goal.tolist()  # type: ignore[attr-defined]
            obs = np.array(values)
            # A view: nothing writes into the array _get_obs returns (step clips into a new
            # one, as Meta-World's np.clip does; reset writes only obs[18:36], then replaces
            # _prev_obs).
            self._prev_obs = obs[:18]
            return obs
        current = np.zeros(18)
        self._fill_curr_obs(current)
        goal = np.zeros_like(pos_goal) if self._partially_observable else pos_goal  # type: ignore[attr-defined]
        obs = np.concatenate((current, self._prev_obs, goal))  # type: ignore[has-type]
        self._prev_obs = current
        return obs

    # Step ----------------------------------------------------------------------------------
    def set_xyz_action(self, action: np.ndarray) -> None:
        """Moves the mocap by the clipped, scaled action: Meta-World's arithmetic and dtypes.

        Meta-World clips the float32 action to [-1, 1], multiplies it by ``action_scale`` in
        float32 (a Python float is a weak scalar: it is rounded to float32 first), adds that
        to every mocap row in float64, clips row 0 to the mocap box and writes both mocap
        arrays. With the Sawyer's one mocap body :meth:`_fast_move_mocap` does the same on
        Python floats. Anything else (another dtype, non-finite values, another scale type,
        more mocap bodies) goes to Meta-World's method.
        """
        if (
            type(action) is not np.ndarray
            or action.dtype is not _FLOAT32
            or action.shape != (3,)
            or not self._fast_move_mocap(self._fv, *action.tolist())
        ):
            super().set_xyz_action(action)  # type: ignore[misc]

    def _fast_move_mocap(self, v: _Views, a0: float, a1: float, a2: float) -> bool:
        """set_xyz_action for a float32 action given as its (exact) Python floats.

        A float32 product is the exact double product (24 x 24 bits fit in 53) rounded once
        to float32 (``struct``'s C cast); the clips pick the same operands as numpy's
        (``x > lo ? x : lo``, then ``< hi``). Returns False, having changed nothing, where it
        does not apply (see set_xyz_action).
        """
        row = v.mocap_row
        scale = self.action_scale  # type: ignore[attr-defined]
        if row is None or len(v.mocap_pos) != 1 or type(scale) is not float or not abs(scale) < 1e30:
            return False
        m0, m1, m2 = row.tolist()
        if not math.isfinite(a0 + a1 + a2 + m0 + m1 + m2):
            return False
        if scale != self._fast_scale:
            self._fast_scale = scale
            self._fast_scale32 = _F32.unpack(_F32.pack(scale))[0]
        s = self._fast_scale32
        a0 = -1.0 if a0 < -1.0 else 1.0 if a0 > 1.0 else a0
        a1 = -1.0 if a1 < -1.0 else 1.0 if a1 > 1.0 else a1
        a2 = -1.0 if a2 < -1.0 else 1.0 if a2 > 1.0 else a2
        d0, d1, d2 = _F32x3.unpack(_F32x3.pack(a0 * s, a1 * s, a2 * s))
        l0, l1, l2 = self.mocap_low.tolist()  # type: ignore[attr-defined]
        h0, h1, h2 = self.mocap_high.tolist()  # type: ignore[attr-defined]
        r0, r1, r2 = m0 + d0, m1 + d1, m2 + d2
        r0 = r0 if r0 > l0 else l0
        r1 = r1 if r1 > l1 else l1
        r2 = r2 if r2 > l2 else l2
        row[0] = r0 if r0 < h0 else h0
        row[1] = r1 if r1 < h1 else h1
        row[2] = r2 if r2 < h2 else h2
        v.mocap_quat[0] = _MOCAP_QUAT
        return True

    def step(self, action: np.ndarray) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        """``SawyerXYZEnv.step``, statement for statement (see the module docstring)."""
        if not self._set_task_called:  # type: ignore[attr-defined]
            raise RuntimeError("You must call env.set_task before using env.step")
        assert len(action) == 4, f"Actions should be size 4, got {len(action)}"
        v = self._fv
        data = self.data  # type: ignore[attr-defined]
        if v.data is not data:
            v = self._fast_bind(data)
        if (
            self._fast_plain_xyz
            and type(action) is np.ndarray
            and action.dtype is _FLOAT32
            and action.shape == (4,)
        ):
            # set_xyz_action(action[:3]) on the float32 values as Python floats (exact);
            # the gripper effort too: the same float64 values in ctrl.
            a0, a1, a2, effort = action.tolist()
            if not self._fast_move_mocap(v, a0, a1, a2):
                self.set_xyz_action(action[:3])
        else:
            self.set_xyz_action(action[:3])
            effort = action[-1]
        if self.curr_path_length >= self.max_path_length:  # type: ignore[attr-defined]
            raise ValueError("You must reset the env manually once truncate==True")
        # MujocoEnv.do_simulation / _step_mujoco_simulation, with the ctrl shape check.
        if self._fast_nu != 2:
            raise ValueError(f"Action dimension mismatch. Expected {(self._fast_nu,)}, found (2,)")
        model = self.model  # type: ignore[attr-defined]
        ctrl = v.ctrl
        ctrl[0] = effort
        ctrl[1] = -effort
        mujoco.mj_step(model, data, nstep=self.frame_skip)  # type: ignore[attr-defined]
        mujoco.mj_rnePostConstraint(model, data)
        self.curr_path_length += 1

        sites = self._target_site_config  # type: ignore[attr-defined]
        if sites:
            if self._fast_inline_sites:
                # _set_pos_site, inlined: Meta-World's asserts, the site found by cached id.
                site_ids, site_xpos = self._fast_ids.site, v.site_xpos
                for name, pos in sites:
                    assert isinstance(pos, np.ndarray)
                    assert pos.ndim == 1
                    i = site_ids.get(name)
                    if i is None:
                        i = self._fast_ids.site_id(name)
                    site_xpos[i] = pos[:3]
            else:
                for site in sites:
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
        obs = _clip(obs, space.low, space.high)  # a new array, as Meta-World's np.clip
        self._last_stable_obs = obs
        # evaluate_state without Meta-World's assert_task_is_set wrapper where it has one:
        # the check is the one this step made first.
        evaluate = self._fast_evaluate_state
        if evaluate is None:
            reward, info = self.evaluate_state(obs, action)  # type: ignore[attr-defined]
        else:
            reward, info = evaluate(self, obs, action)
        truncate = self.curr_path_length == self.max_path_length  # type: ignore[attr-defined]
        return obs.copy(), reward, False, truncate, info


# ----------------------------------------------------------------------------- task objects
# What each task's _get_pos_objects / _get_quat_objects read, as data: per object a position
# (a row of xpos, geom_xpos or site_xpos; optionally plus a constant offset; returned as the
# view itself or a copy, as Meta-World's method does) and an orientation (a row of xquat, the
# scipy quaternion of a row of xmat / geom_xmat / site_xmat, or a constant). The observation
# writes these straight from the MuJoCo arrays; the methods return what Meta-World's return
# (the same views, copies or fresh arrays, with the same values).


def _pos(array: str, name: str, offset: tuple[float, ...] | None = None, *, copy: bool = False):
    return ("pos", array, name, None if offset is None else np.array(offset), copy)


def _xquat(name: str) -> tuple[Any, ...]:
    return ("xquat", "xquat", name)


def _mat(array: str, name: str) -> tuple[Any, ...]:
    return ("mat", array, name)


_ZEROS4 = ("const", (0.0, 0.0, 0.0, 0.0))
_W_FIRST = ("const", (1.0, 0.0, 0.0, 0.0))
_DIAL = ("dial", "xpos", "dial")  # dial-turn: the dial's centre plus its knob's offset

_ID_KIND = {"xpos": "body", "xquat": "body", "xmat": "body", "geom_xpos": "geom",
            "geom_xmat": "geom", "site_xpos": "site", "site_xmat": "site"}

def _bind_objects(spec: tuple[Any, ...], ids: _Ids, v: _Views) -> tuple[Any, ...]:
    """The spec's parts with names resolved to ids and array names to ``v``'s views."""

    def resolve(part: tuple[Any, ...]) -> tuple[Any, ...]:
        kind = part[0]
        if kind == "const":
            return part
        array, name = part[1], part[2]
        getter = {"body": ids.body_id, "geom": ids.geom_id, "site": ids.site_id}[
            _ID_KIND[array]
        ]
        if kind == "dial":
            return (kind, getattr(v, array), getter(name), v.qpos, ids.qpos_adr("knob_Joint_1"))
        return (kind, getattr(v, array), getter(name), *part[3:])

    _digests, pos, quat = spec
    return tuple((resolve(p), resolve(q)) for p, q in zip(pos, quat))


def _dial_position(center: np.ndarray, qpos: np.ndarray, adr: int) -> np.ndarray:
    """SawyerDialTurnEnvV3._get_pos_objects: the centre plus 0.05 * (sin, -cos, 0) of the angle.

    The same numpy sin/cos of the same 1-element ``qpos`` slice; the offset scaled in place by
    0.05 and added to a copy of the centre, as Meta-World does.
    """
    angle = qpos[adr : adr + 1]
    offset = np.array([np.sin(angle).item(), -np.cos(angle).item(), 0.0])
    offset *= 0.05
    return center.copy() + offset


def _quat_of(matrices: np.ndarray, i: int) -> Any:
    """``Rotation.from_matrix(matrices[i].reshape(3, 3)).as_quat()``'s values (see quat_from_matrix)."""
    values = matrices[i].tolist()
    if _orthogonal_enough(values):
        return _quat_tuple(values)
    return Rotation.from_matrix(matrices[i].reshape(3, 3)).as_quat()


def _write_objects(parts: tuple[Any, ...], out: np.ndarray) -> None:
    """Writes the objects' (pos, quat) pairs into ``out[4:18]``, zero-padded, as Meta-World."""
    k = 4
    for (pkind, parray, pi, *prest), (qkind, qarray, *qrest) in parts:
        if pkind == "pos":
            offset = prest[0]
            out[k : k + 3] = parray[pi] if offset is None else parray[pi] + offset
        else:  # dial
            out[k : k + 3] = _dial_position(parray[pi], *prest)
        if qkind == "xquat":
            out[k + 3 : k + 7] = qarray[qrest[0]]
        elif qkind == "mat":
            out[k + 3 : k + 7] = _quat_of(qarray, qrest[0])
        else:
            out[k + 3 : k + 7] = qarray
        k += 7
    if k < 18:
        out[k:18] = 0.0


def _object_writer(parts: tuple[Any, ...]) -> Any:
    """``_write_objects`` for these parts; for one object, with its rows' views taken once."""
    (pkind, parray, pi, *prest), (qkind, qarray, *qrest) = parts[0]
    if len(parts) != 1 or pkind != "pos":
        return lambda out: _write_objects(parts, out)
    position, offset = parray[pi], prest[0]
    if qkind == "const":
        orientation, matrix = qarray, None
    else:
        row = qarray[qrest[0]]
        orientation, matrix = (row, None) if qkind == "xquat" else (None, row)

    def write(out: np.ndarray) -> None:
        # out holds zeros (Meta-World's padding) past the object.
        out[4:7] = position if offset is None else position + offset
        if matrix is None:
            out[7:11] = orientation
            return
        values = matrix.tolist()
        if _orthogonal_enough(values):
            out[7], out[8], out[9], out[10] = _quat_tuple(values)
        else:
            out[7:11] = Rotation.from_matrix(matrix.reshape(3, 3)).as_quat()

    return write


_ZEROS3 = [0.0, 0.0, 0.0]  # np.zeros_like of a float64 goal, as Python floats
_PADDING7 = [0.0] * 7  # Meta-World's zero padding after one object


def _object_reader(parts: tuple[Any, ...]) -> Any:
    """The observation's 14 object entries as Python floats, for one object; else None.

    ``_object_writer``'s values for the same layout, taken as Python floats: the rows'
    doubles exactly (``tolist``), an offset added entry by entry (numpy's elementwise float64
    addition is the same IEEE addition), the quaternion as ``_object_writer`` gets it, then
    Meta-World's 7 zeros. ``None`` (for several objects, or the dial) keeps the array path.
    """
    (pkind, parray, pi, *prest), (qkind, qarray, *qrest) = parts[0]
    if len(parts) != 1 or pkind != "pos":
        return None
    position, offset = parray[pi], prest[0]
    if offset is not None and (offset.dtype is not _FLOAT64 or offset.shape != (3,)):
        return None
    shift = None if offset is None else tuple(offset.tolist())
    if qkind == "const":
        constant, row = [float(q) for q in qarray], None
    else:
        constant, row = None, qarray[qrest[0]]
    from_matrix = qkind == "mat"

    def read() -> list[float]:
        if shift is None:
            values = position.tolist()
        else:
            p0, p1, p2 = position.tolist()
            o0, o1, o2 = shift
            values = [p0 + o0, p1 + o1, p2 + o2]
        if row is None:
            values += constant
        elif not from_matrix:
            values += row.tolist()
        else:
            matrix = row.tolist()
            if _orthogonal_enough(matrix):
                values += _quat_tuple(matrix)
            else:
                values += Rotation.from_matrix(row.reshape(3, 3)).as_quat().tolist()
        values += _PADDING7
        return values

    return read


def _part_position(part: tuple[Any, ...], single: bool) -> np.ndarray:
    kind, array, i, *rest = part
    if kind == "dial":
        return _dial_position(array[i], *rest)
    offset, copy = rest
    if offset is not None:
        return array[i] + offset
    # Meta-World returns the view itself where it does (some tasks keep it, e.g. as
    # obj_init_pos, and see it move); a copy where it copies, or stacks several.
    return array[i].copy() if copy or not single else array[i]


def _part_quat(part: tuple[Any, ...], single: bool) -> np.ndarray:
    kind, array, *rest = part
    if kind == "xquat":
        return array[rest[0]] if single else array[rest[0]].copy()
    if kind == "mat":
        q = _quat_of(array, rest[0])
        return np.array(q) if type(q) is tuple else q
    return np.array(array)


def _fast_get_pos_objects(self: Any) -> np.ndarray:
    """Meta-World's ``_get_pos_objects`` of this task, by cached ids (see _POSITIONS)."""
    parts = self._fv.obj_parts
    if len(parts) == 1:
        return _part_position(parts[0][0], True)
    return np.concatenate([_part_position(p, False) for p, _ in parts])


def _fast_get_quat_objects(self: Any) -> np.ndarray:
    """Meta-World's ``_get_quat_objects`` of this task, by cached ids (see _POSITIONS)."""
    parts = self._fv.obj_parts
    if len(parts) == 1:
        return _part_quat(parts[0][1], True)
    return np.concatenate([_part_quat(q, False) for _, q in parts])

# sha256 of a Meta-World _get_pos_objects source -> its objects' positions. (Tasks share
# sources; any source not listed keeps Meta-World's method and observation path.)
_POSITIONS: dict[str, list[tuple[Any, ...]]] = {
    # return self.data.site("RoundNut-8").xpos
    "bc8823af2c6489b86ddb7d607ab010f7070aad89ea724035b918ffbc8693f7e0":
        [_pos("site_xpos", "RoundNut-8")],
    # return self.get_body_com("bsktball")
    "ec94f4997072729da6d37e96b2ff00abac7b1645eaa07d472f20af22d2c8b8ea":
        [_pos("xpos", "bsktball")],
    # return self.get_body_com("obj")
    "5a0e2bd1a51a0bbba0fc387dd7ab358c400254f4a6f18a42421d53e1ec64b59c": [_pos("xpos", "obj")],
    # return self.get_body_com("top_link")
    "11a1a3cc621361feb86de95b184d3e7fe00b599293e869cd24c73381197bc66c":
        [_pos("xpos", "top_link")],
    # return self.get_body_com("button") + np.array([0.0, 0.0, 0.193])
    "8e208154f94e84c2f8a38c21c4ee0c3a20d7b95861fba4db8a995208d8721c3b":
        [_pos("xpos", "button", (0.0, 0.0, 0.193))],
    # return self.get_body_com("button") + np.array([0.0, -0.193, 0.0])
    "0cb79fb8aa9213ae2f344596f59d5e0b932a39f86a3e670ac6e49a6fccc39d4e":
        [_pos("xpos", "button", (0.0, -0.193, 0.0))],
    # return self._get_site_pos("buttonStart")
    "55e0fb0586cd9004334f02764b232f239b447aca3271ffb77b533b3744a41404":
        [_pos("site_xpos", "buttonStart", copy=True)],
    # dial_center = self.get_body_com("dial").copy(); ... return dial_center + offset
    "5ec865756d9f6c39e7fd3a861406006848abd115f023a6c23c2ec81c3c8909b0": [_DIAL],
    # return self._get_site_pos("RoundNut-8")
    "569973a9152be6e8dd01049696d6d110b2d3dc69ddd3d10be6aa03b9fd709c83":
        [_pos("site_xpos", "RoundNut-8", copy=True)],
    # return self.data.geom("handle").xpos.copy()
    "a2d40bb602e9505cb2a8f13501c547096f723bb90daacfd6c5c85440a22b311a":
        [_pos("geom_xpos", "handle", copy=True)],
    # return self._get_site_pos("lockStartLock")
    "bb0590a107920e0f9da7f97ceb0951fe17c1cdbbd654cd9cacb1758681ca2b2b":
        [_pos("site_xpos", "lockStartLock", copy=True)],
    # return self._get_site_pos("lockStartUnlock")
    "478f37fefb9ea0503b5d27948b6d055f38af398e57df18d6d29995713423a551":
        [_pos("site_xpos", "lockStartUnlock", copy=True)],
    # return self.get_body_com("drawer_link") + np.array([0.0, -0.16, 0.05])
    "46b96b69af848e7da6b76890224d8f9c3bb86de647ea7702a48bfb3be2d79f27":
        [_pos("xpos", "drawer_link", (0.0, -0.16, 0.05))],
    # return self.get_body_com("drawer_link") + np.array([0.0, -0.16, 0.0])
    "1effdb10ef84cf002ad6fc1717429f19fb903a1e22fdf78bc35c030ff2f429c2":
        [_pos("xpos", "drawer_link", (0.0, -0.16, 0.0))],
    # return self._get_site_pos("handleStartOpen") + np.array([0.0, 0.0, -0.01])
    "a8add3865c964fcc0e5deb1a17f2b52606f74cb802d40db305bbb71299f3d8dc":
        [_pos("site_xpos", "handleStartOpen", (0.0, 0.0, -0.01))],
    # return self._get_site_pos("handleStartClose") + np.array([0.0, 0.0, -0.01])
    "8ba2d20d65b1d537ff4c713015b113efaf77e00c2c106bd5046db433f7a1e2c6":
        [_pos("site_xpos", "handleStartClose", (0.0, 0.0, -0.01))],
    # return np.hstack((self.get_body_com("hammer").copy(), self.get_body_com("nail_link").copy()))
    "259d49ea6a18a48a5e8b9934acc043910b58e745c925809a1730c70c9195b821":
        [_pos("xpos", "hammer", copy=True), _pos("xpos", "nail_link", copy=True)],
    # return self._get_site_pos("handleStart")
    "e8c5b34cbd3ef7cd671468e3e78e482ab9bb645b9ce8f0b19d3925ee03ed6209":
        [_pos("site_xpos", "handleStart", copy=True)],
    # return self._get_site_pos("handleCenter")
    "5610ad277459d9576d39e5a238e86c3e8b309e94c8f39ec3f74b689965bb0daa":
        [_pos("site_xpos", "handleCenter", copy=True)],
    # return self._get_site_pos("handleRight")
    "ad3065643843084af16d6c02b95d8765a1b4ab5b51afaf33a1434abbfa461287":
        [_pos("site_xpos", "handleRight", copy=True)],
    # return self._get_site_pos("leverStart")
    "3837fcd42c22aa68b949aa6411504d4ec0ead44f594eb8274fa1145a7f39ca2e":
        [_pos("site_xpos", "leverStart", copy=True)],
    # return self.data.geom("objGeom").xpos
    "06dc4c1703a82e6605baaee47b150d8372a62631fd52805f36f9ca1faadd8212":
        [_pos("geom_xpos", "objGeom")],
    # return self.data.geom("puck").xpos
    "5301f82f045bfa25bcd6824807dd5ed84f9c3ebefb2e22717fb72db02bc47c52":
        [_pos("geom_xpos", "puck")],
    # return self._get_site_pos("pegGrasp")
    "f4f281ca6f23243c17dd9840595c671a0d0374fe4240700cbf88516f1e3c3c80":
        [_pos("site_xpos", "pegGrasp", copy=True)],
    # return self._get_site_pos("pegEnd")
    "2ef3b7ea86d9816b1a2224fb495e4b05b7b7b2d0c0d720764bf498fd1e780b08":
        [_pos("site_xpos", "pegEnd", copy=True)],
    # return self.get_body_com("soccer_ball")
    "53803d1434bb2e792bf5de657ae39f07d62aed6683b0ec65d10b90ecdafb7374":
        [_pos("xpos", "soccer_ball")],
    # np.hstack((get_body_com("stick").copy(), _get_site_pos("insertion") + [0.0, 0.09, 0.0]))
    "46b38ed26ab7d9ca33e0a87f3d1ecc3ba99b0b68417b7df7fc1c26044ed45faa":
        [_pos("xpos", "stick", copy=True), _pos("site_xpos", "insertion", (0.0, 0.09, 0.0))],
    # np.hstack((get_body_com("stick").copy(), _get_site_pos("insertion")))
    "5490d3fba54e448415a3cd82b7f2d2f213391bcc66c9a4d7400d2e34fd941959":
        [_pos("xpos", "stick", copy=True), _pos("site_xpos", "insertion", copy=True)],
    # return self.data.body("obj").xpos
    "439be94bc32de8cd32aea6dc0fd951a6a74350cc8c62cd95a4117b36ddf705a3": [_pos("xpos", "obj")],
    # return self._get_site_pos("handleOpenStart")
    "05fb79e8ffb166cdf31ff56b8b8eeec432c78741bee9f97b83e9ecaf0d2bd0be":
        [_pos("site_xpos", "handleOpenStart", copy=True)],
    # return self._get_site_pos("handleCloseStart")
    "0b2e430c2c0e8be7cdbe2a44e0dafd03e2db0386256771a9c20b0ae088180e06":
        [_pos("site_xpos", "handleCloseStart", copy=True)],
}

# sha256 of a Meta-World _get_quat_objects source -> its objects' orientations.
_ORIENTATIONS: dict[str, list[tuple[Any, ...]]] = {
    # return self.data.body("RoundNut").xquat
    "3ddad3fba7b16935854a4d3109586a35582febfd5b961ee8fdcd3d383bf28912": [_xquat("RoundNut")],
    # return self.data.body("bsktball").xquat
    "a2a5c26b3b4b0a23c4a125ad024ba517079aca8e3e7486a37abe070a90e6caef": [_xquat("bsktball")],
    # return self.data.body("obj").xquat
    "527ccb00e7e61a3381f1c5d123d047494d3fdb11c9cd4db61874b2eec7853c62": [_xquat("obj")],
    # return self.data.body("top_link").xquat
    "3d8dcb0101f99e444f1dd29c0e1d08d92d8bcb7564a065c821804c178b2a2838": [_xquat("top_link")],
    # return self.data.body("button").xquat
    "3c5dd124ba03a4c939fcffd0dbc33a4ea46211aa73ffd5094bf72e6958e307de": [_xquat("button")],
    # return np.array([1.0, 0.0, 0.0, 0.0])
    "396611b2d9cc1097850edeabaa1718f16380fef14213593ea7626678d411b9c4": [_W_FIRST],
    # return Rotation.from_matrix(self.data.geom("mug").xmat.reshape(3, 3)).as_quat()
    "b828fa3fbac6a5a4a11641ac68f647eeff4d83be46ff75a49f7e6e7213d76284":
        [_mat("geom_xmat", "mug")],
    # return self.data.body("dial").xquat
    "7716af231e79ba5071751a4dd7c44253cf741f6a37b96ff3703911e7710f9f45": [_xquat("dial")],
    # return Rotation.from_matrix(self.data.geom("handle").xmat.reshape(3, 3)).as_quat()
    "22cb10fe584b65b9938987b04b7707b5422067445d7708f21ff1b27147140ef1":
        [_mat("geom_xmat", "handle")],
    # return self.data.body("door_link").xquat
    "48170a85b175c21621f39e6c70eed56e99fb7048d983544845e196cdf5eae857": [_xquat("door_link")],
    # return np.zeros(4)
    "f9a4cab63766331415133afc477b9ffa9080a4c0798e99827e5bd0dd103444ac": [_ZEROS4],
    # return self.data.body("drawer_link").xquat
    "b4b5e47afff29fa22d37c9f1eaa479e4bb03f3eae74ab4d3e0ab354648b48327":
        [_xquat("drawer_link")],
    # return self.data.body("faucetBase").xquat
    "c4d390ea9fbbc2db99657afe9fc9140b0be362c48c6cfb5fe5a532f3f11aab3d":
        [_xquat("faucetBase")],
    # return np.hstack((self.data.body("hammer").xquat, self.data.body("nail_link").xquat))
    "2230bf8e99fe8d238850ade6442d423af6e2dd42b29794b88e2b57dc49da5614":
        [_xquat("hammer"), _xquat("nail_link")],
    # return Rotation.from_matrix(self.data.geom("objGeom").xmat.reshape(3, 3)).as_quat()
    "ae65c99d621e922bcbd36018b1e689dc83d8c64ffae55219cc731ea5dfe6964a":
        [_mat("geom_xmat", "objGeom")],
    # the same, written on three lines
    "2fc7d08fecf7df41eeac149e44e4df87fc888c531488263ab659205c6f34426f":
        [_mat("geom_xmat", "objGeom")],
    # return Rotation.from_matrix(self.data.geom("puck").xmat.reshape(3, 3)).as_quat()
    "15057e6572be231023caa13b430a5ba2122ec6f15b4a9201167a0bb90c655dfd":
        [_mat("geom_xmat", "puck")],
    # return Rotation.from_matrix(self.data.site("pegGrasp").xmat.reshape(3, 3)).as_quat()
    "88c4b4c6c46f8a7194c30eb01f2066980932add71facc30909db10b5c77d8c63":
        [_mat("site_xmat", "pegGrasp")],
    # return self.data.body("plug1").xquat
    "051eee35a8535033004d48e779f34454f51d90edaa1d556830acf659470e2f08": [_xquat("plug1")],
    # return Rotation.from_matrix(self.data.body("soccer_ball").xmat.reshape(3, 3)).as_quat()
    "d799b9e249bdf85408cb00fac4c22a6e8ba4f96fff8f182cd84fc70702e93da9":
        [_mat("xmat", "soccer_ball")],
    # np.hstack((Rotation.from_matrix(self.data.body("stick").xmat...).as_quat(), zeros(4)))
    "5c94bb8038133d9b281fe2f5d360099108e88ff60ca510b269dcf9837b3d9705":
        [_mat("xmat", "stick"), _ZEROS4],
}


def _object_spec(base: type) -> tuple[Any, ...] | None:
    """The task's object parts (see _POSITIONS), or None to keep Meta-World's methods."""
    if any(_overridden(base, name) for name in ("get_body_com", "_get_site_pos")):
        return None
    pos_fn = inspect.getattr_static(base, "_get_pos_objects", None)
    quat_fn = inspect.getattr_static(base, "_get_quat_objects", None)
    if not (isinstance(pos_fn, types.FunctionType) and isinstance(quat_fn, types.FunctionType)):
        return None
    pos = _POSITIONS.get(_source_digest(pos_fn) or "")
    quat = _ORIENTATIONS.get(_source_digest(quat_fn) or "")
    if pos is None or quat is None or len(pos) != len(quat):
        logger.info("%s: object methods not known to sim.fast; keeping Meta-World's", base.__name__)
        return None
    return (None, tuple(pos), tuple(quat))


# ----------------------------------------------------------------------------- per-task code
def _is_vec3(x: Any) -> bool:
    return type(x) is np.ndarray and x.dtype is _FLOAT64 and x.shape == (3,)


def _pick_place_caging(meta_world: Any) -> Any:
    """``SawyerPickPlaceEnvV3._gripper_caging_reward`` with the same operations on scalars.

    Meta-World zeroes the y of 3-vectors by adding ``[0, -y, 0]`` arrays before a norm; this
    does those additions elementwise on the same float64 values (``x + 0.0``, ``y + -y``)
    and takes the norm of the same 3-vector (see :func:`_norm_of`); the tolerances are
    :func:`_tol`. Any other input type goes to Meta-World's function (``meta_world``).
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
        v = self._fv
        if v.pads is None:
            return meta_world(
                self, action, obj_pos, obj_radius, pad_success_thresh, object_reach_radius,
                xz_thresh, desired_gripper_effort, high_density, medium_density,
            )
        pad_success_margin = 0.05
        x_z_success_margin = 0.005
        obj_radius = 0.015
        left_y = v.pads[0].item(1)
        right_y = v.pads[1].item(1)
        o0, obj_y, o2 = obj_pos.tolist()
        o1 = obj_y
        right_caging_margin = abs(abs(obj_y - self.init_right_pad[1]) - pad_success_margin)
        left_caging_margin = abs(abs(obj_y - self.init_left_pad[1]) - pad_success_margin)
        right_caging = _tol(obj_y - right_y, obj_radius, pad_success_margin, right_caging_margin)
        left_caging = _tol(left_y - obj_y, obj_radius, pad_success_margin, left_caging_margin)
        y_caging = hamacher_product(left_caging, right_caging)

        # (tcp + [0, -tcp_y, 0]) - (obj_pos + [0, -obj_y, 0]), elementwise, then its norm;
        # tcp_center is (right + left) / 2.0 elementwise.
        right, left = v.fingers
        r0, r1, r2 = right.tolist()
        f0, f1, f2 = left.tolist()
        t0, t1, t2 = (r0 + f0) / 2.0, (r1 + f1) / 2.0, (r2 + f2) / 2.0
        tcp_obj_norm_x_z = _norm_of(
            (t0 + 0.0) - (o0 + 0.0), (t1 + -t1) - (o1 + -o1), (t2 + 0.0) - (o2 + 0.0)
        )
        i0, i1, i2 = obj_init_pos.tolist()
        c0, c1, c2 = init_tcp.tolist()
        tcp_obj_x_z_margin = _FLOAT64_TYPE(
            _norm_of((i0 + 0.0) - (c0 + 0.0), (i1 + -i1) - (c1 + -c1), (i2 + 0.0) - (c2 + 0.0))
        ) - x_z_success_margin

        # From here on Meta-World's code as written.
        x_z_caging = _tol(tcp_obj_norm_x_z, 0, x_z_success_margin, tcp_obj_x_z_margin)
        gripper_closed = min(max(0, action[-1]), 1)
        caging = hamacher_product(y_caging, x_z_caging)
        gripping = gripper_closed if caging > 0.97 else 0.0
        caging_and_gripping = hamacher_product(caging, gripping)
        caging_and_gripping = (caging_and_gripping + caging) / 2
        return caging_and_gripping

    return _gripper_caging_reward


# ----------------------------------------------------------------------------- lean rewards
# Per-task compute_reward rewrites. Each is Meta-World's v2 reward with the same floating-point
# operations on the same operands, in the same order and types, reached with less machinery:
#
# - a norm is ``sqrt(v.dot(v))`` on the same float64 array (what np.linalg.norm computes for a
#   vector), as a Python float where Meta-World takes float() of it, a numpy float64 where not;
# - reward_utils.tolerance on scalars is the same expression on Python floats (:func:`_tol`);
#   numpy's exp stays numpy's (it is not libm's; math.exp differs in the last bit);
# - tcp_center, joint angles and body positions are read by cached ids;
# - Meta-World's scalar expressions (whose types decide whether a value is a Python float, a
#   numpy float64 or float32, or an int) are kept as written.
#
# Each rewrite checks its inputs (the step's float64 observation, float32 action) and falls
# back to Meta-World's function for anything else, for the v1 reward, or where Meta-World
# would raise. _LEAN lists them by the sha256 of the source they were written against.

_LONG_TAIL_SCALE = float(_SCALES["long_tail"])
_GAUSSIAN_SCALE = float(_SCALES["gaussian"])
_exp = np.exp  # numpy's, as reward_utils uses (its SIMD exp is not libm's)


def _tol(x: Any, lower: float, upper: float, margin: Any, gaussian: bool = False) -> float:
    """``reward_utils.tolerance(x, (lower, upper), margin, sigmoid)`` for a scalar x and margin.

    ``sigmoid`` is ``"long_tail"`` or, with ``gaussian``, ``"gaussian"``, at the default
    value_at_margin. The same IEEE operations as Meta-World's numpy scalars, on Python
    floats: ``(d * scale) ** 2`` is the same libm ``pow`` either way; where that overflows
    (Python raises, numpy gives inf) the rest is computed in numpy, as Meta-World does.
    """
    if type(x) not in _SCALAR_TYPES or type(margin) not in _SCALAR_TYPES:
        # e.g. a float32 value, whose numpy arithmetic is float32's: Meta-World's way.
        return tolerance(x, (lower, upper), margin, "gaussian" if gaussian else "long_tail")
    if lower > upper:
        raise ValueError("Lower bound must be <= upper bound.")
    if margin < 0:
        raise ValueError(f"`margin` must be non-negative. Current value: {margin}")
    x = float(x)  # the same double; Python's arithmetic on it is numpy's, faster
    if lower <= x <= upper:
        return 1.0
    if margin == 0:
        return 0.0
    d = (lower - x if x < lower else x - upper) / float(margin)
    if gaussian:
        try:
            return float(_exp(-0.5 * (d * _GAUSSIAN_SCALE) ** 2))
        except OverflowError:
            return float(_exp(-0.5 * (np.float64(d) * _GAUSSIAN_SCALE) ** 2))
    try:
        return float(1 / ((d * _LONG_TAIL_SCALE) ** 2 + 1))
    except OverflowError:
        return float(1 / ((np.float64(d) * _LONG_TAIL_SCALE) ** 2 + 1))


def _dot_is_sequential() -> bool:
    """Whether ``v.dot(v)`` of a short float64 vector is ``((0 + v0*v0) + v1*v1) + ...``.

    np.linalg.norm of a vector is ``sqrt(v.dot(v))``, and the dot is BLAS's (OpenBLAS picks
    its kernel for the CPU at run time). Where that kernel sums the squares one by one
    without fused multiply-adds, the same Python float expression gives the same bits, and
    costs a fifth of the call. This asks the kernel: 8 192 vectors of lengths 1 to 4 over
    60 decades; an FMA or another summation order changes a large share of such sums, so
    any difference shows (and the dot is then kept).
    """
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4):
        vectors = rng.normal(size=(2048, n)) * np.exp(rng.uniform(-69.0, 69.0, (2048, 1)))
        for v in vectors:
            total = 0.0
            for x in v.tolist():
                total += x * x
            if v.dot(v) != total:
                return False
    return True


_SEQUENTIAL_DOT = _dot_is_sequential()


def _fnorm(v: np.ndarray) -> float:
    """``float(np.linalg.norm(v))`` for a float64 vector: ``sqrt(v.dot(v))``."""
    if v.dtype is _FLOAT64 and v.ndim == 1:
        if _SEQUENTIAL_DOT:
            total = 0.0
            for x in v.tolist():
                total += x * x
            return math.sqrt(total)
        return math.sqrt(v.dot(v))
    return float(_LINALG_NORM(v))


def _nnorm(v: np.ndarray) -> Any:
    """``np.linalg.norm(v)`` (a numpy float64) for a float64 vector: ``sqrt(v.dot(v))``."""
    if v.dtype is _FLOAT64 and v.ndim == 1:
        if _SEQUENTIAL_DOT:
            total = 0.0
            for x in v.tolist():
                total += x * x
            return _FLOAT64_TYPE(math.sqrt(total))
        return _sqrt(v.dot(v))
    return _LINALG_NORM(v)


def _dist(a: Any, b: Any) -> float:
    """``float(np.linalg.norm(a - b))`` for vectors of the same length (up to 4).

    Both float64, or one float32 (numpy then subtracts in float64, the float32 values exact
    as doubles, as here); two float32 vectors would subtract in float32: numpy's way.
    """
    if (
        _SEQUENTIAL_DOT
        and type(a) is np.ndarray
        and type(b) is np.ndarray
        and (a.dtype is _FLOAT64 or a.dtype is _FLOAT32)
        and (b.dtype is _FLOAT64 or (b.dtype is _FLOAT32 and a.dtype is _FLOAT64))
        and a.ndim == 1
        and a.shape == b.shape
    ):
        values = a.tolist()
        if len(values) == 3:
            a0, a1, a2 = values
            b0, b1, b2 = b.tolist()
            d0, d1, d2 = a0 - b0, a1 - b1, a2 - b2
            return math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)  # (0 + d0 * d0) is d0 * d0
        if len(values) <= 4:
            total = 0.0
            for x, y in zip(values, b.tolist()):
                d = x - y
                total += d * d
            return math.sqrt(total)
    return _fnorm(a - b)


def _ndist(a: Any, b: Any) -> Any:
    """``np.linalg.norm(a - b)``, a numpy float64, for float64 vectors (see _dist)."""
    if _SEQUENTIAL_DOT and type(a) is np.ndarray and a.dtype is _FLOAT64 and len(a) <= 4:
        return _FLOAT64_TYPE(_dist(a, b))
    return _nnorm(a - b)


def _norm_of(*values: float) -> float:
    """``float(np.linalg.norm(np.array(values)))`` for Python floats (see _dot_is_sequential)."""
    if _SEQUENTIAL_DOT:
        total = 0.0
        for x in values:
            total += x * x
        return math.sqrt(total)
    v = np.array(values)
    return math.sqrt(v.dot(v))


def _snorm(x: Any) -> Any:
    """``np.linalg.norm(x)`` of a float64 scalar: the 1-vector's ``sqrt(dot)``, as numpy."""
    if type(x) is np.float64:
        return _FLOAT64_TYPE(_norm_of(float(x)))
    return _LINALG_NORM(x)


def _obs_ok(obs: Any) -> bool:
    return type(obs) is np.ndarray and obs.dtype is _FLOAT64 and obs.shape == (39,)


def _action_ok(action: Any) -> bool:
    return type(action) is np.ndarray and action.dtype is _FLOAT32 and action.shape == (4,)


def _tcp(env: Any) -> np.ndarray:
    """``env.tcp_center`` (the mixin's: the same expression), without the property call."""
    right, left = env._fv.fingers
    return (right + left) / 2.0


def _tcp_dist(a: Any, env: Any) -> float:
    """``_dist(a, _tcp(env))``: ``float(np.linalg.norm(a - env.tcp_center))`` for a 3-vector.

    For a float64 ``a``, on Python floats: the tcp entries are ``(right + left) / 2.0`` and
    the differences ``a - tcp``, entry by entry the IEEE operations numpy performs; then the
    squares summed in order as :func:`_dist` does where the dot is that sum, else the same
    ``dot`` of a float64 3-vector of those differences (one array instead of three). The norm
    of ``tcp - a`` is the same: each difference only changes sign (exactly), not its square.
    Anything else goes through ``_dist`` and ``_tcp``.
    """
    if type(a) is np.ndarray and a.dtype is _FLOAT64 and a.shape == (3,):
        right, left = env._fv.fingers
        r0, r1, r2 = right.tolist()
        f0, f1, f2 = left.tolist()
        a0, a1, a2 = a.tolist()
        d0 = a0 - (r0 + f0) / 2.0
        d1 = a1 - (r1 + f1) / 2.0
        d2 = a2 - (r2 + f2) / 2.0
        if _SEQUENTIAL_DOT:
            return math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        d = np.array((d0, d1, d2))
        return math.sqrt(d.dot(d))
    return _dist(a, _tcp(env))


def _joint_qpos(env: Any, name: str) -> float:
    """``float(env.data.joint(name).qpos.item())`` of a 1-dof joint, by cached address."""
    return env._fv.qpos.item(env._fast_ids.qpos_adr(name))


def _lean_reach(meta_world: Any) -> Any:
    """SawyerReachEnvV3 / SawyerReachWallEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.obj_init_pos is None or self.reward_function_version != "v2":
            return meta_world(self, actions, obs)
        tcp_to_target = _tcp_dist(target, self)  # norm(tcp - target): the same squares
        in_place_margin = _dist(self.hand_init_pos, target)
        in_place = _tol(tcp_to_target, 0, 0.05, in_place_margin)
        return (10 * in_place, tcp_to_target, in_place)

    return compute_reward


def _lean_door_close(meta_world: Any) -> Any:
    """SawyerDoorCloseEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
        target = self._target_pos
        if (
            target is None
            or self.hand_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, actions, obs)
        obj = obs[4:7]
        tcp_to_target = _tcp_dist(target, self)  # norm(tcp - target): the same squares
        obj_to_target = _dist(obj, target)
        in_place_margin = _ndist(self.obj_init_pos, target)
        in_place = _tol(obj_to_target, 0, 0.05, in_place_margin, gaussian=True)
        hand_margin = _dist(self.hand_init_pos, obj) + 0.1
        hand_in_place = _tol(tcp_to_target, 0, 0.25 * 0.05, hand_margin, gaussian=True)
        reward = 3 * hand_in_place + 6 * in_place
        if obj_to_target < 0.05:
            reward = 10
        return (reward, obj_to_target, hand_in_place)

    return compute_reward


_DOOR_HANDLE_OFFSET = np.array([-0.05, 0, 0])  # SawyerDoorEnvV3._reward_pos's constants
_DOOR_IN_PLACE_OFFSET = np.array([0.05, 0.03, -0.01])


def _lean_door_open(meta_world: Any) -> Any:
    """SawyerDoorEnvV3.compute_reward (v2) with its _reward_grab_effort and _reward_pos."""

    def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
        target = self._target_pos
        if (
            target is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
            or not _action_ok(actions)
        ):
            return meta_world(self, actions, obs)
        theta = _joint_qpos(self, "doorjoint")
        # _reward_grab_effort: float((np.clip(actions[3], -1, 1) + 1.0) / 2.0), in float32.
        effort = actions[3]
        if effort < -1:
            effort = _F32_MINUS_ONE
        elif effort > 1:
            effort = _F32_ONE
        reward_grab = float((effort + 1.0) / 2.0)
        # _reward_pos(obs, theta)
        hand = obs[:3]
        door = obs[4:7] + _DOOR_HANDLE_OFFSET
        threshold = 0.12
        radius = _ndist(hand[:2], door[:2])
        if radius <= threshold:
            floor = 0.0
        else:
            floor = 0.04 * np.log(radius - threshold) + 0.4
        hand_z = hand[2]
        above_floor = (
            1.0 if hand_z >= floor else _tol(floor - hand_z, 0.0, 0.01, floor / 2.0)
        )
        in_place = _tol(_fnorm(hand - door - _DOOR_IN_PLACE_OFFSET), 0, threshold / 2.0, 0.5)
        ready_to_open = hamacher_product(above_floor, in_place)
        door_angle = -theta
        opened = 0.2 * float(theta < -np.pi / 90.0) + 0.8 * _tol(
            np.pi / 2.0 + np.pi / 6 - door_angle, 0, 0.5, np.pi / 3.0
        )
        reward = sum(
            (2.0 * hamacher_product(ready_to_open, reward_grab), 8.0 * opened)
        )
        if abs(obs[4] - target[0]) <= 0.08:
            reward = 10.0
        return reward, reward_grab, ready_to_open, opened

    return compute_reward


def _lean_plate_slide(margin_offset: float, side_bonus: bool) -> Any:
    """The four SawyerPlateSlide*EnvV3.compute_reward (v2): margins less ``margin_offset``;
    ``side_bonus``: the side/back variants' reward (1.5 grasped, 2 + 7 in place near the
    table) instead of plate-slide's hamacher product."""

    def factory(meta_world: Any) -> Any:
        def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
            target, obj_init_pos = self._target_pos, self.obj_init_pos
            if (
                target is None
                or obj_init_pos is None
                or self.reward_function_version != "v2"
                or not _obs_ok(obs)
            ):
                return meta_world(self, actions, obs)
            tcp = _tcp(self)
            obj = obs[4:7]
            tcp_opened = obs[3]
            obj_to_target = _dist(obj, target)
            in_place_margin = _dist(obj_init_pos, target)
            tcp_to_obj = _dist(tcp, obj)
            obj_grasped_margin = _dist(self.init_tcp, obj_init_pos)
            if margin_offset:
                in_place = _tol(obj_to_target, 0, 0.05, in_place_margin - margin_offset)
                object_grasped = _tol(tcp_to_obj, 0, 0.05, obj_grasped_margin - margin_offset)
            else:
                in_place = _tol(obj_to_target, 0, 0.05, in_place_margin)
                object_grasped = _tol(tcp_to_obj, 0, 0.05, obj_grasped_margin)
            if side_bonus:
                reward = 1.5 * object_grasped
                if tcp[2] <= 0.03 and tcp_to_obj < 0.07:
                    reward = 2.0 + (7.0 * in_place)
            else:
                reward = 8 * hamacher_product(object_grasped, in_place)
            if obj_to_target < 0.05:
                reward = 10.0
            return (reward, tcp_to_obj, tcp_opened, obj_to_target, object_grasped, in_place)

        return compute_reward

    return factory


_LEVER_SCALE = np.array([4.0, 1.0, 4.0])  # SawyerLeverPullEnvV3.compute_reward's constants
_LEVER_OFFSET = np.array([0.0, 0.055, 0.07])


def _lean_lever_pull(meta_world: Any) -> Any:
    """SawyerLeverPullEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        lever_init = self._lever_pos_init
        if lever_init is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, action, obs)
        gripper = obs[:3]
        lever = obs[4:7]
        shoulder_to_lever = (gripper + _LEVER_OFFSET - lever) * _LEVER_SCALE
        shoulder_to_lever_init = (self.init_tcp + _LEVER_OFFSET - lever_init) * _LEVER_SCALE
        shoulder_distance = _fnorm(shoulder_to_lever)
        ready_to_lift = _tol(shoulder_distance, 0, 0.02, _nnorm(shoulder_to_lever_init))
        lever_angle = float(-_joint_qpos(self, "LeverAxis"))
        lever_error = abs(lever_angle - np.pi / 2.0)
        lever_engagement = _tol(lever_error, 0, np.pi / 48.0, (np.pi / 2.0) - (np.pi / 12.0))
        target = self._target_pos
        obj_to_target = _dist(lever, target)
        in_place_margin = _dist(lever_init, target)
        in_place = _tol(obj_to_target, 0, 0.04, in_place_margin)
        reward = 10.0 * hamacher_product(ready_to_lift, in_place)
        # Meta-World takes the same norm again for the returned value: the same number.
        return (reward, shoulder_distance, ready_to_lift, lever_error, lever_engagement)

    return compute_reward


_FAUCET_OPEN_OFFSET = np.array([-0.04, 0.0, 0.03])  # SawyerFaucetOpenEnvV3's handle offset


def _lean_faucet(opening: bool) -> Any:
    """SawyerFaucetOpenEnvV3 / SawyerFaucetCloseEnvV3.compute_reward (v2)."""

    def factory(meta_world: Any) -> Any:
        def compute_reward(self: Any, action: Any, obs: Any) -> Any:
            target = self._target_pos
            if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
                return meta_world(self, action, obs)
            obj = obs[4:7] + _FAUCET_OPEN_OFFSET if opening else obs[4:7]
            tcp = _tcp(self)
            target_radius = self._target_radius
            target_to_obj = _ndist(obj, target)
            target_to_obj_init = _ndist(self.obj_init_pos, target)
            in_place = _tol(
                target_to_obj, 0, target_radius, abs(target_to_obj_init - target_radius)
            )
            tcp_to_obj = _dist(obj, tcp)
            tcp_to_obj_init = _ndist(self.obj_init_pos, self.init_tcp)
            reach = _tol(tcp_to_obj, 0, 0.01, abs(tcp_to_obj_init - 0.01), gaussian=True)
            reward = 2 * reach + 3 * in_place
            reward *= 2
            reward = 10 if target_to_obj <= target_radius else reward
            return (reward, tcp_to_obj, 0, target_to_obj, reach, in_place)

        return compute_reward

    return factory


def _lean_handle_press(side: bool) -> Any:
    """SawyerHandlePressEnvV3 / SawyerHandlePressSideEnvV3.compute_reward (v2).

    The side task takes float() of the height difference's norm, the other does not.
    """

    def factory(meta_world: Any) -> Any:
        def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
            target = self._target_pos
            if target is None or self.reward_function_version != "v2":
                return meta_world(self, actions, obs)
            obj = self._get_pos_objects()
            handle_init = self._handle_init_pos
            if not (_is_vec3(obj) and _is_vec3(target) and _is_vec3(handle_init)):
                return meta_world(self, actions, obs)
            radius = self.TARGET_RADIUS
            target_to_obj = _snorm(obj[2] - target[2])
            if side:
                target_to_obj = float(target_to_obj)
            target_to_obj_init = _snorm(handle_init[2] - target[2])
            in_place = _tol(target_to_obj, 0, radius, abs(target_to_obj_init - radius))
            tcp_to_obj = _tcp_dist(obj, self)
            tcp_to_obj_init = _ndist(handle_init, self.init_tcp)
            reach = _tol(tcp_to_obj, 0, 0.02, abs(tcp_to_obj_init - 0.02))
            reward = hamacher_product(reach, in_place)
            reward = 1.0 if target_to_obj <= radius else reward
            reward *= 10
            return (reward, tcp_to_obj, 0, target_to_obj, reach, in_place)

        return compute_reward

    return factory


def _lean_button_press(axis: int, variant: str) -> Any:
    """The SawyerButtonPress*EnvV3.compute_reward (v2): the button moves along ``axis``.

    ``variant``: "topdown" (1 - opening; 5 + 5; near 0.01, pressed from 0.03), "topdown_wall"
    (max(opening, 0) instead), "front" (max(opening, 0); 2 + 8 at 0.05).
    """

    def factory(meta_world: Any) -> Any:
        def compute_reward(self: Any, action: Any, obs: Any) -> Any:
            target = self._target_pos
            if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
                return meta_world(self, action, obs)
            obj = obs[4:7]
            tcp_to_obj = _tcp_dist(obj, self)
            tcp_to_obj_init = _dist(obj, self.init_tcp)
            obj_to_target = abs(target[axis] - obj[axis])
            opening = obs[3]
            if variant == "front":
                tcp_closed = max(opening, 0.0)
                near_button = _tol(tcp_to_obj, 0, 0.05, tcp_to_obj_init)
                button_pressed = _tol(obj_to_target, 0, 0.005, self._obj_to_target_init)
                reward = 2 * hamacher_product(tcp_closed, near_button)
                if tcp_to_obj <= 0.05:
                    reward += 8 * button_pressed
            else:
                tcp_closed = 1 - opening if variant == "topdown" else max(opening, 0.0)
                near_button = _tol(tcp_to_obj, 0, 0.01, tcp_to_obj_init)
                button_pressed = _tol(obj_to_target, 0, 0.005, self._obj_to_target_init)
                reward = 5 * hamacher_product(tcp_closed, near_button)
                if tcp_to_obj <= 0.03:
                    reward += 5 * button_pressed
            return (reward, tcp_to_obj, opening, obj_to_target, near_button, button_pressed)

        return compute_reward

    return factory


def _lean_button_press_wall(meta_world: Any) -> Any:
    """SawyerButtonPressWallEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        tcp_to_obj = _tcp_dist(obj, self)
        tcp_to_obj_init = _dist(obj, self.init_tcp)
        obj_to_target = abs(target[1] - obj[1])
        near_button = _tol(tcp_to_obj, 0, 0.01, tcp_to_obj_init)
        button_pressed = _tol(obj_to_target, 0, 0.005, self._obj_to_target_init)
        opening = obs[3]
        if tcp_to_obj > 0.07:
            tcp_status = (1 - opening) / 2.0
            reward = 2 * hamacher_product(tcp_status, near_button)
        else:
            reward = 2
            reward += 2 * (1 + opening)
            reward += 4 * button_pressed**2
        return (reward, tcp_to_obj, opening, obj_to_target, near_button, button_pressed)

    return compute_reward


_BASKETBALL_SCALE = np.array([1.0, 1.0, 2.0])


def _lean_basketball(meta_world: Any) -> Any:
    """SawyerBasketballEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        obj_init_pos = self.obj_init_pos
        if (
            self._target_pos is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        target = self._target_pos.copy()
        target[2] = 0.3
        radius = self.TARGET_RADIUS
        target_to_obj = _fnorm((obj - target) * _BASKETBALL_SCALE)
        target_to_obj_init = _nnorm((obj_init_pos - target) * _BASKETBALL_SCALE)
        in_place = _tol(target_to_obj, 0, radius, target_to_obj_init)
        tcp_opened = float(obs[3])
        tcp_to_obj = _tcp_dist(obj, self)
        object_grasped = self._gripper_caging_reward(
            action,
            obj,
            object_reach_radius=0.01,
            obj_radius=0.025,
            pad_success_thresh=0.06,
            xz_thresh=0.005,
            high_density=True,
        )
        lifted = tcp_to_obj < 0.035 and tcp_opened > 0 and obj[2] - 0.01 > obj_init_pos[2]
        if lifted:
            object_grasped = 1.0
        reward = hamacher_product(object_grasped, in_place)
        if lifted:
            reward += 1.0 + 5.0 * in_place
        if target_to_obj < radius:
            reward = 10.0
        return (reward, tcp_to_obj, tcp_opened, target_to_obj, object_grasped, in_place)

    return compute_reward


_HAMMER_HEAD_OFFSET = np.array([0.16, 0.06, 0.0])  # SawyerHammerEnvV3's constants
_HAMMER_IDEAL_QUAT = np.array([1.0, 0.0, 0.0, 0.0])


def _lean_hammer(meta_world: Any) -> Any:
    """SawyerHammerEnvV3.compute_reward (v2) with its _reward_quat and _reward_pos."""

    def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
        if self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, actions, obs)
        hand = obs[:3]
        hammer = obs[4:7]
        hammer_head = hammer + _HAMMER_HEAD_OFFSET
        hammer_threshed = hammer.copy()
        threshold = self.HAMMER_HANDLE_LENGTH / 2.0
        if abs(hammer[0] - hand[0]) < threshold:
            hammer_threshed[0] = hand[0]
        # _reward_quat(obs)
        error = _dist(obs[7:11], _HAMMER_IDEAL_QUAT)
        reward_quat = max(1.0 - error / 0.4, 0.0)
        reward_grab = self._gripper_caging_reward(
            actions,
            hammer_threshed,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.02,
            xz_thresh=0.01,
            high_density=True,
        )
        # _reward_pos(hammer_head, self._target_pos)
        pos_error = self._target_pos - hammer_head
        lifted = hammer_head[2] > 0.02
        reward_in_place = 0.1 * float(lifted) + 0.9 * _tol(_nnorm(pos_error), 0, 0.02, 0.2)
        reward = (2.0 * reward_grab + 6.0 * reward_in_place) * reward_quat
        success = bool(self._fv.qpos.item(self._fast_ids.qpos_adr("NailSlideJoint")) > 0.09)
        if success and reward > 5.0:
            reward = 10.0
        return (reward, reward_grab, reward_quat, reward_in_place, success)

    return compute_reward


_LOCK_OFFSET = np.array([0.0, 0.055, 0.07])  # SawyerDoorLock/UnlockEnvV3's constants
_LOCK_SCALE = np.array([0.25, 1.0, 0.5])


def _lean_door_unlock(meta_world: Any) -> Any:
    """SawyerDoorUnlockEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, action, obs)
        gripper = obs[:3]
        lock = obs[4:7]
        shoulder_to_lock = (gripper + _LOCK_OFFSET - lock) * _LOCK_SCALE
        shoulder_to_lock_init = (self.init_tcp + _LOCK_OFFSET - self.obj_init_pos) * _LOCK_SCALE
        shoulder_distance = _fnorm(shoulder_to_lock)
        ready_to_push = _tol(shoulder_distance, 0, 0.02, _nnorm(shoulder_to_lock_init))
        obj_to_target = abs(float(target[0] - lock[0]))
        pushed = _tol(obj_to_target, 0, 0.005, self._lock_length)
        reward = 2 * ready_to_push + 8 * pushed
        return (reward, shoulder_distance, obs[3], obj_to_target, ready_to_push, pushed)

    return compute_reward


def _lean_door_lock(meta_world: Any) -> Any:
    """SawyerDoorLockEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        tcp = self.get_body_com("leftpad")
        tcp_to_obj = _fnorm((obj - tcp) * _LOCK_SCALE)
        tcp_to_obj_init = _fnorm((obj - self.init_left_pad) * _LOCK_SCALE)
        obj_to_target = abs(target[2] - obj[2])
        tcp_opened = max(obs[3], 0.0)
        near_lock = _tol(tcp_to_obj, 0, 0.01, tcp_to_obj_init)
        lock_pressed = _tol(obj_to_target, 0, 0.005, self._lock_length)
        reward = 2 * hamacher_product(tcp_opened, near_lock)
        reward += 8 * lock_pressed
        return (reward, tcp_to_obj, obs[3], obj_to_target, near_lock, lock_pressed)

    return compute_reward


_DIAL_PUSH_OFFSET = np.array([0.05, 0.02, 0.09])  # SawyerDialTurnEnvV3's push point


def _lean_dial_turn(meta_world: Any) -> Any:
    """SawyerDialTurnEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.reward_function_version != "v2" or not _action_ok(action):
            return meta_world(self, action, obs)
        # Meta-World calls _get_pos_objects twice; both return the same fresh values.
        obj = self._get_pos_objects()
        dial_push_position = obj + _DIAL_PUSH_OFFSET
        radius = self.TARGET_RADIUS
        target_to_obj = _dist(obj, target)
        target_to_obj_init = _ndist(self.dial_push_position, target)
        in_place = _tol(target_to_obj, 0, radius, abs(target_to_obj_init - radius))
        tcp_to_obj = _tcp_dist(dial_push_position, self)
        tcp_to_obj_init = _dist(self.dial_push_position, self.init_tcp)
        reach = _tol(tcp_to_obj, 0, 0.005, abs(tcp_to_obj_init - 0.005), gaussian=True)
        gripper_closed = min(max(0, action[-1]), 1)
        reach = hamacher_product(reach, gripper_closed)
        reward = 10 * hamacher_product(reach, in_place)
        return (reward, tcp_to_obj, 0, target_to_obj, reach, in_place)

    return compute_reward


_ONES3 = np.array([1.0, 1.0, 1.0])  # SawyerHandlePullSideEnvV3's scale


def _lean_handle_pull(side: bool) -> Any:
    """SawyerHandlePullEnvV3 / SawyerHandlePullSideEnvV3.compute_reward (v2)."""

    def factory(meta_world: Any) -> Any:
        def compute_reward(self: Any, action: Any, obs: Any) -> Any:
            target, obj_init_pos = self._target_pos, self.obj_init_pos
            if (
                target is None
                or obj_init_pos is None
                or self.reward_function_version != "v2"
                or not _obs_ok(obs)
            ):
                return meta_world(self, action, obs)
            obj = obs[4:7]
            radius = self.TARGET_RADIUS
            if side:
                target_to_obj = _nnorm((obj - target) * _ONES3)
                target_to_obj_init = _nnorm((obj_init_pos - target) * _ONES3)
                object_grasped = self._gripper_caging_reward(
                    action, obj, pad_success_thresh=0.06, obj_radius=0.032,
                    object_reach_radius=0.01, xz_thresh=0.01, high_density=True,
                )
            else:
                target_to_obj = abs(target[2] - obj[2])
                target_to_obj_init = abs(target[2] - obj_init_pos[2])
                object_grasped = self._gripper_caging_reward(
                    action, obj, pad_success_thresh=0.05, obj_radius=0.022,
                    object_reach_radius=0.01, xz_thresh=0.01, high_density=True,
                )
            in_place = _tol(target_to_obj, 0, radius, target_to_obj_init)
            reward = hamacher_product(object_grasped, in_place)
            tcp_opened = obs[3]
            tcp_to_obj = _tcp_dist(obj, self)
            lifted = obj[2] - 0.01 > obj_init_pos[2] if side else obj[1] - 0.01 > obj_init_pos[2]
            if tcp_to_obj < 0.035 and tcp_opened > 0 and lifted:
                reward += 1.0 + 5.0 * in_place
            if target_to_obj < radius:
                reward = 10.0
            return (reward, tcp_to_obj, tcp_opened, target_to_obj, object_grasped, in_place)

        return compute_reward

    return factory


_DRAWER_SCALE = np.array([3.0, 3.0, 1.0])  # SawyerDrawerOpenEnvV3's scale


def _lean_drawer_open(meta_world: Any) -> Any:
    """SawyerDrawerOpenEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, action, obs)
        gripper = obs[:3]
        handle = obs[4:7]
        max_dist = self.maxDist
        handle_error = _dist(handle, target)
        reward_for_opening = _tol(handle_error, 0, 0.02, max_dist)
        handle_pos_init = target + np.array([0.0, max_dist, 0.0])
        gripper_error = (handle - gripper) * _DRAWER_SCALE
        gripper_error_init = (handle_pos_init - self.init_tcp) * _DRAWER_SCALE
        reward_for_caging = _tol(_fnorm(gripper_error), 0, 0.01, _nnorm(gripper_error_init))
        reward = reward_for_caging + reward_for_opening
        reward *= 5.0
        return (
            reward,
            _dist(handle, gripper),
            obs[3],
            handle_error,
            reward_for_caging,
            reward_for_opening,
        )

    return compute_reward


def _lean_drawer_close(meta_world: Any) -> Any:
    """SawyerDrawerCloseEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target = self._target_pos
        if (
            target is None
            or self.hand_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
            or not _action_ok(action)
        ):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        radius = self.TARGET_RADIUS
        target_to_obj = _ndist(obj, target)
        target_to_obj_init = _ndist(self.obj_init_pos, target)
        in_place = _tol(target_to_obj, 0, radius, abs(target_to_obj_init - radius))
        tcp_to_obj = _tcp_dist(obj, self)
        tcp_to_obj_init = _ndist(self.obj_init_pos, self.init_tcp)
        reach = _tol(tcp_to_obj, 0, 0.005, abs(tcp_to_obj_init - 0.005), gaussian=True)
        gripper_closed = min(max(0, action[-1]), 1)
        reach = hamacher_product(reach, gripper_closed)
        reward = hamacher_product(reach, in_place)
        if target_to_obj <= radius + 0.015:
            reward = 1.0
        reward *= 10
        return (reward, tcp_to_obj, 0, target_to_obj, reach, in_place)

    return compute_reward


def _lean_window(opening: bool) -> Any:
    """SawyerWindowOpenEnvV3 / SawyerWindowCloseEnvV3.compute_reward (v2)."""

    def factory(meta_world: Any) -> Any:
        def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
            target = self._target_pos
            if (
                target is None
                or self.obj_init_pos is None
                or self.reward_function_version != "v2"
            ):
                return meta_world(self, actions, obs)
            obj = self._get_pos_objects()
            handle_init = self.window_handle_pos_init
            if not (_is_vec3(obj) and _is_vec3(target) and _is_vec3(handle_init)):
                return meta_world(self, actions, obs)
            radius = self.TARGET_RADIUS
            target_to_obj = float(_snorm(obj[0] - target[0]))
            start = self.obj_init_pos if opening else handle_init
            target_to_obj_init = float(_snorm(start[0] - target[0]))
            in_place = _tol(target_to_obj, 0, radius, abs(target_to_obj_init - radius))
            tcp_to_obj = _tcp_dist(obj, self)
            tcp_to_obj_init = _dist(handle_init, self.init_tcp)
            reach = _tol(
                tcp_to_obj, 0, 0.02, abs(tcp_to_obj_init - 0.02), gaussian=not opening
            )
            reward = 10 * hamacher_product(reach, in_place)
            return (reward, tcp_to_obj, 0.0, target_to_obj, reach, in_place)

        return compute_reward

    return factory


def _rect_prism(curr: np.ndarray, zero: np.ndarray, one: np.ndarray) -> Any:
    """``reward_utils.rect_prism_tolerance`` on Python floats (a numpy float64 inside, as it)."""
    c0, c1, c2 = curr.tolist()
    z0, z1, z2 = zero.tolist()
    o0, o1, o2 = one.tolist()

    def in_range(a: float, b: float, c: float) -> float:
        return float(b <= a <= c) if c >= b else float(c <= a <= b)

    if in_range(c0, z0, o0) and in_range(c1, z1, o1) and in_range(c2, z2, o2):
        d0, d1, d2 = o0 - z0, o1 - z1, o2 - z2
        if d0 == 0 or d1 == 0 or d2 == 0:
            # numpy divides by zero (inf or nan, with a warning); Python would raise.
            return reward_utils.rect_prism_tolerance(curr=curr, zero=zero, one=one)
        return np.float64((c0 - z0) / d0 * ((c1 - z1) / d1) * ((c2 - z2) / d2))
    return 1.0


_PEG_SCALE = np.array([1.0, 2.0, 2.0])  # SawyerPegInsertionSideEnvV3's scale


def _lean_peg_insert_side(meta_world: Any) -> Any:
    """SawyerPegInsertionSideEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target, obj_init_pos = self._target_pos, self.obj_init_pos
        if (
            target is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        site_xpos, site_id = self._fv.site_xpos, self._fast_ids.site_id
        obj = obs[4:7]
        obj_head = site_xpos[site_id("pegHead")]
        tcp_opened = obs[3]
        tcp_to_obj = _tcp_dist(obj, self)
        obj_to_target = _fnorm((obj_head - target) * _PEG_SCALE)
        in_place_margin = _fnorm((self.peg_head_pos_init - target) * _PEG_SCALE)
        in_place = _tol(obj_to_target, 0, self.TARGET_RADIUS, in_place_margin)
        ip_orig = in_place
        collision_box_bottom_1 = _rect_prism(
            obj_head,
            zero=site_xpos[site_id("bottom_right_corner_collision_box_1")],
            one=site_xpos[site_id("top_left_corner_collision_box_1")],
        )
        collision_box_bottom_2 = _rect_prism(
            obj_head,
            zero=site_xpos[site_id("bottom_right_corner_collision_box_2")],
            one=site_xpos[site_id("top_left_corner_collision_box_2")],
        )
        collision_boxes = hamacher_product(collision_box_bottom_2, collision_box_bottom_1)
        in_place = hamacher_product(in_place, collision_boxes)
        object_grasped = self._gripper_caging_reward(
            action,
            obj,
            object_reach_radius=0.01,
            obj_radius=0.0075,
            pad_success_thresh=0.03,
            xz_thresh=0.005,
            high_density=True,
        )
        grasped = tcp_to_obj < 0.08 and (tcp_opened > 0) and (obj[2] - 0.01 > obj_init_pos[2])
        if grasped:
            object_grasped = 1.0
        reward = hamacher_product(object_grasped, in_place)
        if grasped:
            reward += 1.0 + 5 * in_place
        if obj_to_target <= 0.07:
            reward = 10.0
        return (
            reward,
            tcp_to_obj,
            tcp_opened,
            obj_to_target,
            object_grasped,
            in_place,
            collision_boxes,
            ip_orig,
        )

    return compute_reward


_BOX_IDEAL_QUAT = np.array([0.707, 0, 0, 0.707])  # SawyerBoxCloseEnvV3's constants
_BOX_LID_OFFSET = np.array([0.0, 0.0, 0.02])
_BOX_ERROR_SCALE = np.array([1.0, 1.0, 3.0])


def _lean_box_close(meta_world: Any) -> Any:
    """SawyerBoxCloseEnvV3.compute_reward (v2) with its _reward_grab_effort, _reward_quat and
    _reward_pos."""

    def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
        target = self._target_pos
        if (
            target is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
            or not _action_ok(actions)
        ):
            return meta_world(self, actions, obs)
        # _reward_grab_effort: float(np.clip((np.clip(a3, -1, 1) + 1.0) / 2.0, 0.0, 1.0)),
        # in float32; np.clip keeps its operand unless it is outside (NaN passes).
        effort = actions[3]
        if effort < -1:
            effort = _F32_MINUS_ONE
        elif effort > 1:
            effort = _F32_ONE
        grab = (effort + 1.0) / 2.0
        reward_grab = float(0.0 if grab < 0.0 else 1.0 if grab > 1.0 else grab)
        # _reward_quat(obs)
        error = _dist(obs[7:11], _BOX_IDEAL_QUAT)
        reward_quat = max(1.0 - error / 0.2, 0.0)
        # _reward_pos(obs, target)
        hand = obs[:3]
        lid = obs[4:7] + _BOX_LID_OFFSET
        radius = _ndist(hand[:2], lid[:2])
        if radius <= 0.02:
            floor = 0.0
        else:
            floor = 0.04 * np.log(radius - 0.02) + 0.4
        hand_z = hand[2]
        above_floor = (
            1.0 if hand_z >= floor else _tol(floor - hand_z, 0.0, 0.01, floor / 2.0)
        )
        in_place = _tol(_dist(hand, lid), 0, 0.02, 0.5)
        ready_to_lift = hamacher_product(above_floor, in_place)
        pos_error = target - lid
        lifted = 0.2 * float(lid[2] > 0.04) + 0.8 * _tol(
            _fnorm(pos_error * _BOX_ERROR_SCALE), 0, 0.05, 0.25
        )
        reward = sum((2.0 * hamacher_product(reward_grab, ready_to_lift), 8.0 * lifted))
        success = bool(_ndist(obs[4:7], target) < 0.08)
        if success:
            reward = 10.0
        reward *= reward_quat
        return (reward, reward_grab, ready_to_lift, lifted, success)

    return compute_reward


def _lean_bin_picking(meta_world: Any) -> Any:
    """SawyerBinPickingEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        obj_init_pos, target = self.obj_init_pos, self._target_pos
        if (
            obj_init_pos is None
            or target is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        hand = obs[:3]
        obj = obs[4:7]
        target_to_obj = _dist(obj, target)
        if self._target_to_obj_init is None:
            self._target_to_obj_init = target_to_obj
        in_place = _tol(target_to_obj, 0, self.TARGET_RADIUS, self._target_to_obj_init)
        threshold = 0.03
        radii = [_ndist(hand[:2], obj_init_pos[:2]), _ndist(hand[:2], target[:2])]
        floor = min(
            [
                0.02 * np.log(radius - threshold) + 0.2 if radius > threshold else 0.0
                for radius in radii
            ]
        )
        hand_z = hand[2]
        above_floor = (
            1.0 if hand_z >= floor else _tol(max(floor - hand_z, 0.0), 0.0, 0.01, 0.05)
        )
        object_grasped = self._gripper_caging_reward(
            action,
            obj,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            object_reach_radius=0.01,
            xz_thresh=0.01,
            desired_gripper_effort=0.7,
            high_density=True,
        )
        reward = hamacher_product(object_grasped, in_place)
        near_object = bool(_ndist(obj, hand) < 0.04)
        pinched_without_obj = bool(obs[3] < 0.43)
        lifted = bool(obj[2] - 0.02 > obj_init_pos[2])
        grasp_success = near_object and lifted and not pinched_without_obj
        if grasp_success:
            reward += 1.0 + 5.0 * hamacher_product(above_floor, in_place)
        if target_to_obj < self.TARGET_RADIUS:
            reward = 10.0
        return (reward, near_object, grasp_success, target_to_obj, object_grasped, in_place)

    return compute_reward


def _lean_coffee_button(meta_world: Any) -> Any:
    """SawyerCoffeeButtonEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        tcp_to_obj = _tcp_dist(obj, self)
        tcp_to_obj_init = _dist(obj, self.init_tcp)
        obj_to_target = abs(target[1] - obj[1])
        opening = obs[3]
        tcp_closed = max(opening, 0.0)
        near_button = _tol(tcp_to_obj, 0, 0.05, tcp_to_obj_init)
        button_pressed = _tol(obj_to_target, 0, 0.005, self.max_dist)
        reward = 2 * hamacher_product(tcp_closed, near_button)
        if tcp_to_obj <= 0.05:
            reward += 8 * button_pressed
        return (reward, tcp_to_obj, opening, obj_to_target, near_button, button_pressed)

    return compute_reward


def _lean_push(meta_world: Any) -> Any:
    """SawyerPushEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target, obj_init_pos = self._target_pos, self.obj_init_pos
        if (
            target is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        tcp_opened = obs[3]
        tcp_to_obj = _tcp_dist(obj, self)
        target_to_obj = _dist(obj, target)
        target_to_obj_init = _dist(obj_init_pos, target)
        in_place = _tol(target_to_obj, 0, self.TARGET_RADIUS, target_to_obj_init)
        object_grasped = self._gripper_caging_reward(
            action,
            obj,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            xz_thresh=0.005,
            high_density=True,
        )
        reward = 2 * object_grasped
        if tcp_to_obj < 0.02 and tcp_opened > 0:
            reward += 1.0 + reward + 5.0 * in_place
        if target_to_obj < self.TARGET_RADIUS:
            reward = 10.0
        return (reward, tcp_to_obj, tcp_opened, target_to_obj, object_grasped, in_place)

    return compute_reward


def _lean_hand_insert(meta_world: Any) -> Any:
    """SawyerHandInsertEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        target_to_obj = _dist(obj, target)
        target_to_obj_init = _dist(self.obj_init_pos, target)
        in_place = _tol(target_to_obj, 0, self.TARGET_RADIUS, target_to_obj_init)
        object_grasped = self._gripper_caging_reward(
            action,
            obj,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            xz_thresh=0.005,
            high_density=True,
        )
        reward = hamacher_product(object_grasped, in_place)
        tcp_opened = obs[3]
        tcp_to_obj = _tcp_dist(obj, self)
        if tcp_to_obj < 0.02 and tcp_opened > 0:
            reward += 1.0 + 7.0 * in_place
        if target_to_obj < self.TARGET_RADIUS:
            reward = 10.0
        return (reward, tcp_to_obj, tcp_opened, target_to_obj, object_grasped, in_place)

    return compute_reward


def _lean_pick_out_of_hole(meta_world: Any) -> Any:
    """SawyerPickOutOfHoleEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target, obj_init_pos = self._target_pos, self.obj_init_pos
        if (
            target is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        gripper = _tcp(self)
        obj_to_target = _dist(obj, target)
        tcp_to_obj = _dist(obj, gripper)
        in_place_margin = _dist(obj_init_pos, target)
        threshold = 0.03
        radius = _dist(gripper[:2], obj_init_pos[:2])
        if radius <= threshold:
            floor = 0.0
        else:
            floor = 0.015 * np.log(radius - threshold) + 0.15
        gripper_z = gripper[2]
        above_floor = (
            1.0 if gripper_z >= floor else _tol(max(floor - gripper_z, 0.0), 0.0, 0.01, 0.02)
        )
        object_grasped = self._gripper_caging_reward(
            action,
            obj,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.02,
            xz_thresh=0.03,
            desired_gripper_effort=0.1,
            high_density=True,
        )
        in_place = _tol(obj_to_target, 0, 0.02, in_place_margin)
        reward = hamacher_product(object_grasped, in_place)
        near_object = tcp_to_obj < 0.04
        pinched_without_obj = obs[3] < 0.33
        lifted = obj[2] - 0.02 > obj_init_pos[2]
        grasp_success = near_object and lifted and not pinched_without_obj
        if grasp_success:
            reward += 1.0 + 5.0 * hamacher_product(in_place, above_floor)
        if obj_to_target < self.TARGET_RADIUS:
            reward = 10.0
        return (reward, tcp_to_obj, grasp_success, obj_to_target, object_grasped, in_place)

    return compute_reward


_WRENCH_IDEAL_QUAT = np.array([0.707, 0, 0, 0.707])  # SawyerNutAssemblyEnvV3's constants
_WRENCH_SCALE = np.array([1.0, 1.0, 3.0])


def _lean_assembly(meta_world: Any) -> Any:
    """SawyerNutAssemblyEnvV3.compute_reward (v2) with its _reward_quat and _reward_pos."""

    def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, actions, obs)
        hand = obs[:3]
        wrench = obs[4:7]
        wrench_center = self._get_site_pos("RoundNut")
        wrench_threshed = wrench.copy()
        threshold = self.WRENCH_HANDLE_LENGTH / 2.0
        if abs(wrench[0] - hand[0]) < threshold:
            wrench_threshed[0] = hand[0]
        # _reward_quat(obs)
        error = _dist(obs[7:11], _WRENCH_IDEAL_QUAT)
        reward_quat = max(1.0 - error / 0.4, 0.0)
        reward_grab = self._gripper_caging_reward(
            actions,
            wrench_threshed,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.02,
            xz_thresh=0.01,
            medium_density=True,
        )
        # _reward_pos(wrench_center, target)
        pos_error = target - wrench_center
        radius = _nnorm(pos_error[:2])
        aligned = radius < 0.02
        hooked = pos_error[2] > 0.0
        success = bool(aligned and hooked)
        threshold = 0.02 if success else 0.01
        target_height = 0.0
        if radius > threshold:
            target_height = 0.02 * np.log(radius - threshold) + 0.2
        pos_error[2] = target_height - wrench_center[2]
        lifted = wrench_center[2] > 0.02 or radius < threshold
        reward_in_place = 0.1 * float(lifted) + 0.9 * _tol(
            _fnorm(pos_error * _WRENCH_SCALE), 0, 0.02, 0.4
        )
        reward = (2.0 * reward_grab + 6.0 * reward_in_place) * reward_quat
        if success:
            reward = 10.0
        return (reward, reward_grab, reward_quat, reward_in_place, success)

    return compute_reward


def _lean_pick_place(meta_world: Any) -> Any:
    """SawyerPickPlaceEnvV3.compute_reward (v2); its own caging reward is _pick_place_caging."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target, obj_init_pos = self._target_pos, self.obj_init_pos
        if (
            target is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        tcp_opened = obs[3]
        obj_to_target = _dist(obj, target)
        tcp_to_obj = _tcp_dist(obj, self)
        in_place_margin = _ndist(obj_init_pos, target)
        in_place = _tol(obj_to_target, 0, 0.05, in_place_margin)
        object_grasped = self._gripper_caging_reward(action, obj)
        reward = hamacher_product(object_grasped, in_place)
        if tcp_to_obj < 0.02 and (tcp_opened > 0) and (obj[2] - 0.01 > obj_init_pos[2]):
            reward += 1.0 + 5.0 * in_place
        if obj_to_target < 0.05:
            reward = 10.0
        return (reward, tcp_to_obj, tcp_opened, obj_to_target, object_grasped, in_place)

    return compute_reward


_PUSH_WALL_SCALE = np.array([3.0, 1.0, 1.0])  # SawyerPushWallEnvV3's in_place_scaling


def _lean_push_wall(meta_world: Any) -> Any:
    """SawyerPushWallEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target, obj_init_pos = self._target_pos, self.obj_init_pos
        if (
            target is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        tcp_opened = obs[3]
        midpoint = np.array([-0.05, 0.77, obj[2]])
        tcp_to_obj = _tcp_dist(obj, self)
        obj_to_midpoint = _fnorm((obj - midpoint) * _PUSH_WALL_SCALE)
        obj_to_midpoint_init = _fnorm((obj_init_pos - midpoint) * _PUSH_WALL_SCALE)
        obj_to_target = _dist(obj, target)
        obj_to_target_init = _dist(obj_init_pos, target)
        in_place_part1 = _tol(obj_to_midpoint, 0, 0.05, obj_to_midpoint_init)
        in_place_part2 = _tol(obj_to_target, 0, 0.05, obj_to_target_init)
        object_grasped = self._gripper_caging_reward(
            action,
            obj,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            xz_thresh=0.005,
            high_density=True,
        )
        reward = 2 * object_grasped
        if tcp_to_obj < 0.02 and tcp_opened > 0:
            reward = 2.0 * object_grasped + 1.0 + 4.0 * in_place_part1
            if obj[1] > 0.75:
                reward = 2 * object_grasped + 1.0 + 4.0 + 3.0 * in_place_part2
        if obj_to_target < 0.05:
            reward = 10.0
        # Meta-World takes the same norm again for the returned value: the same number.
        return (reward, tcp_to_obj, tcp_opened, obj_to_target, object_grasped, in_place_part2)

    return compute_reward


_DISASSEMBLE_LIFT = np.array([0.0, 0.0, 0.1])  # SawyerNutDisassembleEnvV3._reward_pos's


def _lean_disassemble(meta_world: Any) -> Any:
    """SawyerNutDisassembleEnvV3.compute_reward (v2) with its _reward_quat and _reward_pos."""

    def compute_reward(self: Any, actions: Any, obs: Any) -> Any:
        target = self._target_pos
        if target is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, actions, obs)
        hand = obs[:3]
        wrench = obs[4:7]
        wrench_center = self._get_site_pos("RoundNut")
        wrench_threshed = wrench.copy()
        threshold = self.WRENCH_HANDLE_LENGTH / 2.0
        if abs(wrench[0] - hand[0]) < threshold:
            wrench_threshed[0] = hand[0]
        # _reward_quat(obs)
        error = _dist(obs[7:11], _WRENCH_IDEAL_QUAT)
        reward_quat = max(1.0 - error / 0.4, 0.0)
        reward_grab = self._gripper_caging_reward(
            actions,
            wrench_threshed,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.02,
            xz_thresh=0.01,
            high_density=True,
        )
        # _reward_pos(wrench_center, target)
        pos_error = target + _DISASSEMBLE_LIFT - wrench_center
        lifted = wrench_center[2] > 0.02
        reward_in_place = 0.1 * float(lifted) + 0.9 * _tol(_fnorm(pos_error), 0, 0.02, 0.2)
        reward = (2.0 * reward_grab + 6.0 * reward_in_place) * reward_quat
        success = obs[6] > target[2]
        if success:
            reward = 10.0
        return (reward, reward_grab, reward_quat, reward_in_place, success)

    return compute_reward


def _lean_peg_unplug_side(meta_world: Any) -> Any:
    """SawyerPegUnplugSideEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target, obj_init_pos = self._target_pos, self.obj_init_pos
        if (
            target is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        tcp_opened = obs[3]
        tcp_to_obj = _tcp_dist(obj, self)
        obj_to_target = _dist(obj, target)
        object_grasped = self._gripper_caging_reward(
            action,
            obj,
            object_reach_radius=0.01,
            obj_radius=0.025,
            pad_success_thresh=0.05,
            xz_thresh=0.005,
            desired_gripper_effort=0.8,
            high_density=True,
        )
        in_place_margin = _dist(obj_init_pos, target)
        in_place = _tol(obj_to_target, 0, 0.05, in_place_margin)
        grasp_success = tcp_opened > 0.5 and (obj[0] - obj_init_pos[0] > 0.015)
        reward = 2 * object_grasped
        if grasp_success and tcp_to_obj < 0.035:
            reward = 1 + 2 * object_grasped + 5 * in_place
        if obj_to_target <= 0.05:
            reward = 10.0
        return (
            reward,
            tcp_to_obj,
            tcp_opened,
            obj_to_target,
            object_grasped,
            in_place,
            float(grasp_success),
        )

    return compute_reward


_COFFEE_SCALE = np.array([2.0, 2.0, 1.0])  # SawyerCoffeePull/PushEnvV3's scale


def _lean_coffee_mug(meta_world: Any) -> Any:
    """SawyerCoffeePullEnvV3 / SawyerCoffeePushEnvV3.compute_reward (v2; the same code)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        if self._target_pos is None or self.reward_function_version != "v2" or not _obs_ok(obs):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        target = self._target_pos.copy()
        target_to_obj = _nnorm((obj - target) * _COFFEE_SCALE)
        target_to_obj_init = _nnorm((self.obj_init_pos - target) * _COFFEE_SCALE)
        in_place = _tol(target_to_obj, 0, 0.05, target_to_obj_init)
        tcp_opened = obs[3]
        tcp_to_obj = _tcp_dist(obj, self)
        object_grasped = self._gripper_caging_reward(
            action,
            obj,
            object_reach_radius=0.04,
            obj_radius=0.02,
            pad_success_thresh=0.05,
            xz_thresh=0.05,
            desired_gripper_effort=0.7,
            medium_density=True,
        )
        reward = hamacher_product(object_grasped, in_place)
        if tcp_to_obj < 0.04 and tcp_opened > 0:
            reward += 1.0 + 5.0 * in_place
        if target_to_obj < 0.05:
            reward = 10.0
        return (
            reward,
            tcp_to_obj,
            tcp_opened,
            _dist(obj, target),
            object_grasped,
            in_place,
        )

    return compute_reward


_PICK_PLACE_WALL_SCALE = np.array([1.0, 1.0, 3.0])  # SawyerPickPlaceWallEnvV3's scaling


def _lean_pick_place_wall(meta_world: Any) -> Any:
    """SawyerPickPlaceWallEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target, obj_init_pos = self._target_pos, self.obj_init_pos
        if (
            target is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        obj = obs[4:7]
        tcp_opened = obs[3]
        midpoint = np.array([target[0], 0.77, 0.25])
        tcp_to_obj = _tcp_dist(obj, self)
        obj_to_midpoint = _fnorm((obj - midpoint) * _PICK_PLACE_WALL_SCALE)
        obj_to_midpoint_init = _fnorm((obj_init_pos - midpoint) * _PICK_PLACE_WALL_SCALE)
        obj_to_target = _dist(obj, target)
        obj_to_target_init = _dist(obj_init_pos, target)
        in_place_part1 = _tol(obj_to_midpoint, 0, 0.05, obj_to_midpoint_init)
        in_place_part2 = _tol(obj_to_target, 0, 0.05, obj_to_target_init)
        object_grasped = self._gripper_caging_reward(
            action=action,
            obj_pos=obj,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            object_reach_radius=0.01,
            xz_thresh=0.005,
            high_density=False,
        )
        in_place_and_object_grasped = hamacher_product(object_grasped, in_place_part1)
        reward = in_place_and_object_grasped
        if tcp_to_obj < 0.02 and (tcp_opened > 0) and (obj[2] - 0.015 > obj_init_pos[2]):
            reward = in_place_and_object_grasped + 1.0 + 4.0 * in_place_part1
            if obj[1] > 0.75:
                reward = in_place_and_object_grasped + 1.0 + 4.0 + 3.0 * in_place_part2
        if obj_to_target < 0.05:
            reward = 10.0
        return (reward, tcp_to_obj, tcp_opened, obj_to_target, object_grasped, in_place_part2)

    return compute_reward


_STICK_CONTAINER_OFFSET = np.array([0.05, 0.0, 0.0])  # SawyerStickPullEnvV3's constants
_STICK_YZ_SCALE = np.array([1.0, 1.0, 2.0])


def _lean_stick_pull(meta_world: Any) -> Any:
    """SawyerStickPullEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target, obj_init_pos = self._target_pos, self.obj_init_pos
        if (
            target is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        stick = obs[4:7]
        end_of_stick = self._get_site_pos("stick_end")
        container = obs[11:14] + _STICK_CONTAINER_OFFSET
        container_init_pos = obj_init_pos + _STICK_CONTAINER_OFFSET
        handle = obs[11:14]
        tcp_opened = obs[3]
        stick_init_pos = self.stick_init_pos
        tcp_to_stick = _tcp_dist(stick, self)
        handle_to_target = _dist(handle, target)
        stick_to_container = _fnorm((stick - container) * _STICK_YZ_SCALE)
        stick_in_place_margin = _fnorm((stick_init_pos - container_init_pos) * _STICK_YZ_SCALE)
        stick_in_place = _tol(stick_to_container, 0, 0.05, stick_in_place_margin)
        stick_to_target = _dist(stick, target)
        stick_in_place_margin_2 = _dist(stick_init_pos, target)
        stick_in_place_2 = _tol(stick_to_target, 0, 0.05, stick_in_place_margin_2)
        container_to_target = _dist(container, target)
        container_in_place_margin = _dist(obj_init_pos, target)
        container_in_place = _tol(container_to_target, 0, 0.05, container_in_place_margin)
        object_grasped = self._gripper_caging_reward(
            action=action,
            obj_pos=stick,
            obj_radius=0.014,
            pad_success_thresh=0.05,
            object_reach_radius=0.01,
            xz_thresh=0.01,
            high_density=True,
        )
        grasp_success = (
            tcp_to_stick < 0.02 and (tcp_opened > 0) and (stick[2] - 0.01 > stick_init_pos[2])
        )
        object_grasped = 1 if grasp_success else object_grasped
        in_place_and_object_grasped = hamacher_product(object_grasped, stick_in_place)
        reward = in_place_and_object_grasped
        if grasp_success:
            reward = 1.0 + in_place_and_object_grasped + 5.0 * stick_in_place
            if self._stick_is_inserted(handle, end_of_stick):
                reward = (
                    1.0
                    + in_place_and_object_grasped
                    + 5.0
                    + 2.0 * stick_in_place_2
                    + 1.0 * container_in_place
                )
                if handle_to_target <= 0.12:
                    reward = 10.0
        return (reward, tcp_to_stick, tcp_opened, handle_to_target, object_grasped, stick_in_place)

    return compute_reward


def _lean_shelf_place(meta_world: Any) -> Any:
    """SawyerShelfPlaceEnvV3.compute_reward (v2)."""

    def compute_reward(self: Any, action: Any, obs: Any) -> Any:
        target, obj_init_pos = self._target_pos, self.obj_init_pos
        if (
            target is None
            or obj_init_pos is None
            or self.reward_function_version != "v2"
            or not _obs_ok(obs)
        ):
            return meta_world(self, action, obs)
        radius = 0.05
        obj = obs[4:7]
        tcp_opened = obs[3]
        obj_to_target = _dist(obj, target)
        tcp_to_obj = _tcp_dist(obj, self)
        in_place_margin = _ndist(obj_init_pos, target)
        in_place = _tol(obj_to_target, 0, radius, in_place_margin)
        object_grasped = self._gripper_caging_reward(
            action=action,
            obj_pos=obj,
            obj_radius=0.02,
            pad_success_thresh=0.05,
            object_reach_radius=0.01,
            xz_thresh=0.01,
            high_density=False,
        )
        reward = hamacher_product(object_grasped, in_place)
        if (
            0.0 < obj[2] < 0.24
            and (target[0] - 0.15 < obj[0] < target[0] + 0.15)
            and ((target[1] - 3 * radius) < obj[1] < target[1])
        ):
            z_scaling = (0.24 - obj[2]) / 0.24
            y_scaling = (obj[1] - (target[1] - 3 * radius)) / (3 * radius)
            bound_loss = hamacher_product(y_scaling, z_scaling)
            in_place = np.clip(in_place - bound_loss, 0.0, 1.0)
        if (
            (0.0 < obj[2] < 0.24)
            and (target[0] - 0.15 < obj[0] < target[0] + 0.15)
            and (obj[1] > target[1])
        ):
            in_place = 0.0
        if tcp_to_obj < 0.025 and (tcp_opened > 0) and (obj[2] - 0.01 > obj_init_pos[2]):
            reward += 1.0 + 5.0 * in_place
        if obj_to_target < radius:
            reward = 10.0
        return (reward, tcp_to_obj, tcp_opened, obj_to_target, object_grasped, in_place)

    return compute_reward


# (Meta-World class, method) -> (sha256 of the method's source this was written against, the
# factory of its fast version, given Meta-World's). A changed source keeps Meta-World's.
_TASK_METHODS: dict[tuple[str, str], tuple[str, Any]] = {
    ("SawyerPickPlaceEnvV3", "_gripper_caging_reward"): (
        "d73749f3d46f273d94a0a63a0703cf8ace311ad4e0edc9fe3fa7fbf1deeb0b35",
        _pick_place_caging,
    ),
    ("SawyerReachEnvV3", "compute_reward"): (
        "1d342b217151da5c624be44f5f7d79bc8ab6b67f043648e0ae0f26078235976f",
        _lean_reach,
    ),
    ("SawyerReachWallEnvV3", "compute_reward"): (
        "1c091ac1a5053706db0fad56120be0b5ec18e32a4cd4b4b1e6707b54c8b5b209",
        _lean_reach,
    ),
    ("SawyerDoorCloseEnvV3", "compute_reward"): (
        "11e2e095abe4433e6059663aea053d1c0151d3815700346993b9dea50c456d1a",
        _lean_door_close,
    ),
    ("SawyerDoorEnvV3", "compute_reward"): (
        "9d03b28ad339e1288a7b000ec4e9bd0a5d01de17c0dd0aebc4694011b9b73fb5",
        _lean_door_open,
    ),
    ("SawyerPlateSlideEnvV3", "compute_reward"): (
        "66be26ca073ebdc6df1fa824122d96c94d342e055bb69002e405c6b3794dc2f3",
        _lean_plate_slide(0.0, side_bonus=False),
    ),
    ("SawyerPlateSlideSideEnvV3", "compute_reward"): (
        "b500c0b72f61b5c1739bff10e686183c2d12b65bf1bf86fa87c245c4c05d96c6",
        _lean_plate_slide(0.05, side_bonus=True),
    ),
    ("SawyerPlateSlideBackEnvV3", "compute_reward"): (
        "58353ff63328aba62a69e44d96d7c086943868a08c8e81c7522c95bc8e40d17f",
        _lean_plate_slide(0.05, side_bonus=True),
    ),
    ("SawyerPlateSlideBackSideEnvV3", "compute_reward"): (
        "e83eb41784e7f7a72f07a0fa43334e642d073b59cb3a76aa906c2a25d0743e0e",
        _lean_plate_slide(0.05, side_bonus=True),
    ),
    ("SawyerLeverPullEnvV3", "compute_reward"): (
        "131addf90a07657613026a9695554f5717b91d8103a871486d80e8531d3ebbdc",
        _lean_lever_pull,
    ),
    ("SawyerFaucetOpenEnvV3", "compute_reward"): (
        "6eb4fb53d08f542d547a3fd67ef5c32300cab01a307d839118a58fef30434b5e",
        _lean_faucet(opening=True),
    ),
    ("SawyerFaucetCloseEnvV3", "compute_reward"): (
        "6d4a10a6b6ab4cc365e6c53e8d470ce9e3dab8329df6bd7bef033b161e5a6264",
        _lean_faucet(opening=False),
    ),
    ("SawyerHandlePressEnvV3", "compute_reward"): (
        "f1d620afe0adde37c4e8b13c94386034a0204e15af7312da72c4d51aba0e8872",
        _lean_handle_press(side=False),
    ),
    ("SawyerHandlePressSideEnvV3", "compute_reward"): (
        "899dd89449451ba479a94de37e8ae984b4edf629b3cbe88ce03a3ec7bc645eed",
        _lean_handle_press(side=True),
    ),
    ("SawyerButtonPressTopdownEnvV3", "compute_reward"): (
        "b7a69413f4c623698ed83374cf15f58a52dc89899fac764260c2bf6f6306eec9",
        _lean_button_press(2, "topdown"),
    ),
    ("SawyerButtonPressTopdownWallEnvV3", "compute_reward"): (
        "d8632e1babfb3482eae929e8cbc814d00c6ac42ff33dc6a790393ac77df22165",
        _lean_button_press(2, "topdown_wall"),
    ),
    ("SawyerButtonPressEnvV3", "compute_reward"): (
        "2f111c768c8bfea0bf12b2aa6f803de523881a17341a4fe9a3e6953cd9db0dbc",
        _lean_button_press(1, "front"),
    ),
    ("SawyerButtonPressWallEnvV3", "compute_reward"): (
        "ac1ff25e664bb57970908165e7988907bd61927ebe5172306c26b6c5066cc452",
        _lean_button_press_wall,
    ),
    ("SawyerBasketballEnvV3", "compute_reward"): (
        "d07ba06b9b5768fe8b009b5b63425ad0e2ef6be2209303f95b71e5b878ebb03b",
        _lean_basketball,
    ),
    ("SawyerHammerEnvV3", "compute_reward"): (
        "3ee22a97da44b0ebc065be0337de19119ee2845b21e2116b97f8e6153079a50b",
        _lean_hammer,
    ),
    ("SawyerDoorUnlockEnvV3", "compute_reward"): (
        "cd0b0566da7c896641629e98920ff7c78efb6ee9f740de3abbfb26bdfd56716b",
        _lean_door_unlock,
    ),
    ("SawyerDoorLockEnvV3", "compute_reward"): (
        "789cb86dc7eb35260184766166391767b09ccbede7d0bb55d4753543f346cfea",
        _lean_door_lock,
    ),
    ("SawyerDialTurnEnvV3", "compute_reward"): (
        "f7ffd9aeea13a6ddafa1f6dfce4e146aa8e3535d2f937771e84fa9b926b1421f",
        _lean_dial_turn,
    ),
    ("SawyerHandlePullEnvV3", "compute_reward"): (
        "193703a4d2b66e42afbb3ef6718f0d6f196e91a8cfb4edba4fe1f2c0207a1a18",
        _lean_handle_pull(side=False),
    ),
    ("SawyerHandlePullSideEnvV3", "compute_reward"): (
        "9faa08de37c54525d1c769d5b09741f41f2970a85a9dea0f01b98ab0834d257b",
        _lean_handle_pull(side=True),
    ),
    ("SawyerDrawerOpenEnvV3", "compute_reward"): (
        "99a2316e6c072ee97807f543040ce167ac35e0a1986539c02827b842b5689c82",
        _lean_drawer_open,
    ),
    ("SawyerDrawerCloseEnvV3", "compute_reward"): (
        "1d3420ddb668ee96e4d8b221445038f0e0b087e1087012fb80fb5dd8e79c3102",
        _lean_drawer_close,
    ),
    ("SawyerWindowOpenEnvV3", "compute_reward"): (
        "904186aba9d4e8971ad4ff39faf5657c41d99ea99ad1b58bfcd398bd8700bed5",
        _lean_window(opening=True),
    ),
    ("SawyerWindowCloseEnvV3", "compute_reward"): (
        "1610387d098040c3f639c15e8f2378e9c0452d95817ae2dc612c401dda9086fb",
        _lean_window(opening=False),
    ),
    ("SawyerPegInsertionSideEnvV3", "compute_reward"): (
        "1b27c1ee264a480118e53b38f41cf6b991e6ed5677d5ae3031f8761ab6e17d8b",
        _lean_peg_insert_side,
    ),
    ("SawyerBoxCloseEnvV3", "compute_reward"): (
        "3de215463c2761119dd1def4c9abf00c754d5444be42053d8fa56fc3eaccfafb",
        _lean_box_close,
    ),
    ("SawyerBinPickingEnvV3", "compute_reward"): (
        "3ac2e282dddc211b7544033130d315ba545bd9aceca4b2627838b3010b825446",
        _lean_bin_picking,
    ),
    ("SawyerCoffeeButtonEnvV3", "compute_reward"): (
        "8bab28455adca48fe17a8c2855b1ca7cbe7821216185f077f272017c38336eb4",
        _lean_coffee_button,
    ),
    ("SawyerPushEnvV3", "compute_reward"): (
        "578fd65506b6bbfc649fac4a6b726d2fd0fd974abe05041b9187b266e3a9df3c",
        _lean_push,
    ),
    ("SawyerHandInsertEnvV3", "compute_reward"): (
        "ed5a1a9746f43357522274eab195fd331e2b65747d71f62f62bcb7121c9c7826",
        _lean_hand_insert,
    ),
    ("SawyerPickOutOfHoleEnvV3", "compute_reward"): (
        "751b8ab86dd30bbd3cdaf7cff11615a7c1f6d6b956df74236b1fffccc1231d2a",
        _lean_pick_out_of_hole,
    ),
    ("SawyerNutAssemblyEnvV3", "compute_reward"): (
        "5f9ad1a250f7e711c32f52e3e83c50fece3aaed815a0ed12f1e5b27fd7f32b2f",
        _lean_assembly,
    ),
    ("SawyerPickPlaceEnvV3", "compute_reward"): (
        "7c14e9ed432ffb86feb7a45c1e879cc9be522e3432013cb11aa0faef8e36113a",
        _lean_pick_place,
    ),
    ("SawyerPushWallEnvV3", "compute_reward"): (
        "0a30f6306c6c1d3c76013729b9ecc401b59ed62620d239efe754b7808ed0e955",
        _lean_push_wall,
    ),
    ("SawyerNutDisassembleEnvV3", "compute_reward"): (
        "d30a5e7d914f5b5ff92a9364291b2dc69f76406bfe3c64486609c0ecf2c1bcb3",
        _lean_disassemble,
    ),
    ("SawyerPegUnplugSideEnvV3", "compute_reward"): (
        "dff630f565b890dcd9cf7b7557926ff510182efc173053778a69b66a853fd851",
        _lean_peg_unplug_side,
    ),
    ("SawyerCoffeePullEnvV3", "compute_reward"): (
        "74fa73555bf2a5c3e39a82ff8b11605ec9d7a198795902b363eccaa0f2bd8308",
        _lean_coffee_mug,
    ),
    ("SawyerCoffeePushEnvV3", "compute_reward"): (
        "b579ef4ce0d025cb6001473c87a773d1e498933fc99f47d9adc7b042e429ca91",
        _lean_coffee_mug,
    ),
    ("SawyerPickPlaceWallEnvV3", "compute_reward"): (
        "ba3b8e87952043701da4a00d154f50b6739d8bcab8206c9f775f819082abf778",
        _lean_pick_place_wall,
    ),
    ("SawyerStickPullEnvV3", "compute_reward"): (
        "b2b85371da98796b8803de568288a512bb6ed51d87413c9b02b7b3c546307f0a",
        _lean_stick_pull,
    ),
    ("SawyerShelfPlaceEnvV3", "compute_reward"): (
        "33e9dc250d5cc6d8cebee196d4a151732a1bb6fca1ba35079b532dc7c0c52957",
        _lean_shelf_place,
    ),
}
# The reward_utils functions the rewrites (and _tol, tolerance) reproduce, by source sha256.
_REWARD_UTILS_SOURCES = {
    "tolerance": "6a4d52642ce136a8931d4bd903151b417ad3b5f60fcd76459ecb84e43aefc355",
    "_sigmoids": "beccb2487a844485b571e3b8d3d0af04425e5af6aed5c9817eb19751ae15e576",
    "hamacher_product": "79e620808695c26e80080d80afd1f37a0e43a4a168ce233e642d29ea880317f4",
}
# Methods a rewrite inlines besides its own: (class, method) -> {name: sha256 of its source}.
_TASK_HELPERS: dict[tuple[str, str], dict[str, str]] = {
    ("SawyerDoorEnvV3", "compute_reward"): {
        "_reward_grab_effort": "aca9d6791d35e6f2294e544d88183632fdfbd5b3e8ee6e4c17cb35ad1ef2ac15",
        "_reward_pos": "94e8fd251ff946c6b15fcf8a4186e4ec22cd29a7d2d77eea147a2f62d162905c",
    },
    ("SawyerPegInsertionSideEnvV3", "compute_reward"): {
        "reward_utils.rect_prism_tolerance":
            "d990556c9f487acabbf8f6c75b91bd95e3b332da83243e4ade01d806e3fe7a56",
    },
    ("SawyerBoxCloseEnvV3", "compute_reward"): {
        "_reward_grab_effort": "6cb17ae0be175e18b6c5e99dc4a2d7a81ed337caed9e48fc1e7ef39bb7cf7052",
        "_reward_quat": "905bf60828166b467c337f0b77b2656508928e1f693bb8a7a61d6ddaca395003",
        "_reward_pos": "ee6238a5a904c6f25cc7d53756847956141dac0a5effd4ee86ff70cd71a8540d",
    },
    ("SawyerNutAssemblyEnvV3", "compute_reward"): {
        "_reward_quat": "92605da43a10ce49d1424c3ebc71ffaf733c25bf8129eeac4ce797d5c9517426",
        "_reward_pos": "fd784f0f5d825d6ed7d9e060ef05a63419af1ca05f38b7b4aabc7e827b9de08a",
    },
    ("SawyerNutDisassembleEnvV3", "compute_reward"): {
        "_reward_quat": "92605da43a10ce49d1424c3ebc71ffaf733c25bf8129eeac4ce797d5c9517426",
        "_reward_pos": "ec55455a2d534b635ceb1a2bc133de3c26eee1c62994e561834e7ceb0df68197",
    },
    ("SawyerHammerEnvV3", "compute_reward"): {
        "_reward_quat": "51d9a1898989a226103889c4f57d435ab0e434a5978a003aa61c6313798bfdf3",
        "_reward_pos": "43974cf2659599a355d678c275b56ee84c6c476a79bd6a4066b71ab4545bc677",
    },
}


def _function(attr: Any) -> Any:
    """The function behind a class attribute (static/class method, property getter)."""
    if isinstance(attr, (staticmethod, classmethod)):
        return attr.__func__
    if isinstance(attr, property):
        return attr.fget
    return attr


def _helper(base: type, name: str) -> Any:
    """A method of ``base`` or, for ``reward_utils.<name>``, Meta-World's reward helper."""
    if name.startswith("reward_utils."):
        return getattr(reward_utils, name.partition(".")[2], None)
    return _function(inspect.getattr_static(base, name, None))


def _source_digest(fn: Any) -> str | None:
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(textwrap.dedent(source).encode()).hexdigest()


_REWARD_UTILS_KNOWN = all(
    _source_digest(getattr(reward_utils, name, None)) == digest
    for name, digest in _REWARD_UTILS_SOURCES.items()
)

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


# The code of the function SawyerXYZEnv._Decorators.assert_task_is_set wraps methods in.
_TASK_CHECK_CODE = SawyerXYZEnv._Decorators.assert_task_is_set(lambda *a, **k: None).__code__


def _undecorated(fn: Any) -> Any:
    """The function inside Meta-World's ``assert_task_is_set`` wrapper ``fn``, else None."""
    if not isinstance(fn, types.FunctionType) or fn.__code__ is not _TASK_CHECK_CODE:
        return None
    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or ()))
    inner = cells.get("func")
    return inner.cell_contents if inner is not None and _cell_is_set(inner) else None


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
            logger.debug("%s overrides %s; keeping Meta-World's %s", base.__name__, overridden, name)
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
    spec = _object_spec(base)
    if spec is not None:
        fast._fast_objects = spec
        fast._get_pos_objects = _fast_get_pos_objects
        fast._get_quat_objects = _fast_get_quat_objects
    fast._fast_inline_sites = fast._set_pos_site is FastStepMixin._set_pos_site
    fast._fast_plain_xyz = fast.set_xyz_action is FastStepMixin.set_xyz_action
    evaluate = _undecorated(inspect.getattr_static(fast, "evaluate_state", None))
    if evaluate is not None:
        fast._fast_evaluate_state = staticmethod(evaluate)  # called as (self, obs, action)
    _install_task_methods(fast, base)
    return fast


def _install_task_methods(fast: type, base: type) -> None:
    """Puts the per-task fast methods of ``_TASK_METHODS`` on ``fast``, where they apply."""
    for (cls_name, name), (digest, factory) in _TASK_METHODS.items():
        owner = next((c for c in base.__mro__ if name in vars(c)), None)
        if owner is None or owner.__name__ != cls_name:
            continue  # not this task's, or overridden further down
        if not _REWARD_UTILS_KNOWN:
            logger.warning(
                "metaworld.utils.reward_utils is not the code sim.fast was written against; "
                "keeping Meta-World's %s.%s",
                cls_name,
                name,
            )
            continue
        meta_world = vars(fast).get(name, vars(owner)[name])  # the re-bound one if any
        helpers = _TASK_HELPERS.get((cls_name, name), {})
        if name == "compute_reward" and _overridden(base, "tcp_center"):
            continue  # the rewrites read the fingers' sites as the mixin's tcp_center does
        if _source_digest(vars(owner)[name]) != digest or any(
            _source_digest(_helper(base, h)) != d for h, d in helpers.items()
        ):
            logger.warning(
                "%s.%s is not the code sim.fast was written against; keeping Meta-World's",
                cls_name,
                name,
            )
            continue
        setattr(fast, name, factory(meta_world))
