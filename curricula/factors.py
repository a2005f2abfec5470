"""The factors of a task-distribution component: each draws some fields independently.

A :class:`~curricula.Component` is a product of factors over disjoint sets of ``TaskParams``
fields; the table of factors and the whole sampling procedure are in
:mod:`curricula.distribution`.

Every factor has ``fields``, ``sample(rng, task)``, ``log_prob(...)``, ``measure()`` (the base
measure its log-density is relative to: ``"lebesgue"`` or ``"counting"`` per field),
``to_dict()`` and ``from_dict(d)``. Values are checked against ``sim.params.LIMITS`` on
construction (refused, never clipped); field names, limits and which fields are integers come
from ``sim.params``, never from a list kept here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from curricula import _validate as v
from curricula._validate import CurriculumError, CurriculumTypeError
from sim import TaskParams, resolve_task
from sim.params import LIMITS

# Derived from sim.params so a new TaskParams field needs no change here.
FIELDS: tuple[str, ...] = TaskParams.field_names()
"""The ``TaskParams`` field names, in declaration order."""
DEFAULTS: dict[str, float | int] = TaskParams().to_dict()
"""The default value of every field (stock Meta-World)."""
INT_FIELDS: frozenset[str] = frozenset(n for n, d in DEFAULTS.items() if isinstance(d, int))
"""Fields that hold an integer (their default is an ``int``): ``action_latency``."""
FLOAT_FIELDS: tuple[str, ...] = tuple(n for n in FIELDS if n not in INT_FIELDS)
"""Fields that hold a float (the :class:`LogNormal` may draw these)."""

_MAX_REJECTIONS = 10_000

Value = float | int


# --------------------------------------------------------------------------------------------
# Field helpers


def _field_name(name: Any) -> str:
    if not isinstance(name, str):
        raise CurriculumTypeError(
            f"expected a TaskParams field name (a string), got {v.type_name(name)} {name!r}"
        )
    if name not in FIELDS:
        raise CurriculumError(
            f"unknown TaskParams field {name!r}{v.did_you_mean(name, FIELDS)} "
            f"Fields: {', '.join(FIELDS)}"
        )
    return name


def _field_value(name: str, value: Any) -> Value:
    """One value of field ``name``, checked against ``LIMITS`` (ints for int fields)."""
    low, high = LIMITS[name]
    if name in INT_FIELDS:
        out: Value = v.integer(value)
        if not low <= out <= high:
            raise CurriculumError(
                f"{name}={value!r} is out of range [{low}, {high}] (sim.params.LIMITS)"
            )
        return out
    out = v.number(value, what=f"a number for {name}")
    if not low <= out <= high:
        raise CurriculumError(
            f"{name}={value!r} is out of range [{low}, {high}] (sim.params.LIMITS)"
        )
    return out


def _field_list(names: Any) -> tuple[str, ...]:
    items = v.seq(names, what="a list of TaskParams field names", min_len=1)
    out: list[str] = []
    for i, name in enumerate(items):
        with v.at(i):
            _field_name(name)
            if name in out:
                raise CurriculumError(f"field {name!r} is listed twice; list each field once")
            out.append(name)
    return tuple(out)


def _task_name(task: Any) -> str:
    try:
        return resolve_task(task)
    except TypeError as err:
        raise CurriculumTypeError(str(err)) from None
    except ValueError as err:
        raise CurriculumError(str(err)) from None


def _cdf(weights: Sequence[float]) -> np.ndarray:
    """Normalised cumulative weights whose last entry is exactly 1."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def _categorical(cdf: np.ndarray, rng: np.random.Generator) -> int:
    """Index ``i`` with probability ``cdf[i] - cdf[i-1]``, from one ``rng.random()`` draw.

    ``side="right"`` makes zero-weight entries (empty steps of the cdf) impossible.
    """
    return min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


# --------------------------------------------------------------------------------------------
# Factors


@dataclass(frozen=True)
class Box:
    """Independent uniform ranges over some ``TaskParams`` fields (``sim.ParamRanges`` style).

    Floats are uniform on ``[low, high]``, int fields uniform among the integers in
    ``[low, high]``; a field with ``low == high`` is fixed and draws no random number. Fields
    are drawn in ``TaskParams`` declaration order with the same generator calls as
    ``sim.ParamRanges.sample``, so a box over every field reproduces ``ParamRanges`` exactly.

    Log-density (w.r.t. Lebesgue measure on float fields, counting measure on int fields and
    fixed fields): ``-sum log(high - low)`` over varying float fields, ``-sum log(n_ints)``
    over varying int fields, ``-inf`` outside the box.

    Attributes:
        ranges: ``{field: (low, high)}``, inside ``sim.params.LIMITS``; stored in declaration
            order. Treat as read-only.

    Example:
        >>> Box({"friction_scale": (0.5, 2.0), "action_latency": (0, 3)}).fields
        ('friction_scale', 'action_latency')
    """

    ranges: dict[str, tuple[Value, Value]]
    kind: ClassVar[str] = "box"

    def __post_init__(self) -> None:
        with v.root("Box"), v.at("ranges"):
            ranges = v.obj(self.ranges, "a {field: [low, high]} object")
            if not ranges:
                raise CurriculumError("a box needs at least one field")
            out: dict[str, tuple[Value, Value]] = {}
            for name in ranges:
                _field_name(name)
            for name in FIELDS:
                if name not in ranges:
                    continue
                with v.at(name):
                    pair = v.seq(ranges[name], what="a [low, high] pair")
                    if len(pair) != 2:
                        raise CurriculumError(f"expected a [low, high] pair, got {pair!r}")
                    low, high = (_field_value(name, x) for x in pair)
                    if low > high:
                        raise CurriculumError(
                            f"[{low}, {high}] has low > high; expected low <= high"
                        )
                    out[name] = (low, high)
            object.__setattr__(self, "ranges", out)

    @classmethod
    def from_param_ranges(cls, ranges: Any, fields: Sequence[str] | None = None) -> Box:
        """The box of a ``sim.ParamRanges`` (every field, or only ``fields``)."""
        items = ranges.to_dict()
        names = FIELDS if fields is None else _field_list(fields)
        return cls({name: items[name] for name in names})

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields this box draws."""
        return tuple(self.ranges)

    def measure(self) -> dict[str, str]:
        """``{field: "lebesgue" | "counting"}``: the base measure of :meth:`log_prob`."""
        return {
            n: "lebesgue" if n not in INT_FIELDS and lo < hi else "counting"
            for n, (lo, hi) in self.ranges.items()
        }

    def sample(self, rng: np.random.Generator, task: str) -> dict[str, Value]:
        """Draws ``{field: value}`` (``task`` is unused: a box applies to every task)."""
        out: dict[str, Value] = {}
        for name, (low, high) in self.ranges.items():
            if low == high:
                out[name] = low
            elif name in INT_FIELDS:
                out[name] = int(rng.integers(low, high, endpoint=True))
            else:
                # uniform() draws from [low, high); min() guards the rounding edge case.
                out[name] = min(float(rng.uniform(low, high)), high)
        return out

    def log_prob(self, values: Mapping[str, Value], task: str) -> float:
        """Log-density of ``values`` (see the class docstring for the base measure)."""
        total = 0.0
        for name, (low, high) in self.ranges.items():
            x = values[name]
            if not low <= x <= high:
                return -math.inf
            if low == high:
                continue
            if name in INT_FIELDS:
                if x != int(x):
                    return -math.inf
                total -= math.log(high - low + 1)
            else:
                total -= math.log(high - low)
        return total

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "box", "ranges": {field: [low, high]}}``."""
        return {"kind": self.kind, "ranges": {n: list(p) for n, p in self.ranges.items()}}

    @classmethod
    def from_dict(cls, d: Any) -> Box:
        """Inverse of :meth:`to_dict`."""
        d = v.keys(d, ["kind", "ranges"], what="box factor")
        return cls(d["ranges"])


@dataclass(frozen=True)
class LogNormal:
    """A Gaussian over the logs of some float fields, truncated to ``sim.params.LIMITS``.

    ``y = log x ~ N(mean, cov)``, conditioned on every ``x_i`` lying in its limits. Sampling
    draws ``y = mean + L z`` (``L L^T = cov``, ``z`` standard normal) and rejects draws outside
    the limits (at most 10 000 tries, then :class:`RuntimeError`; ``mean`` must lie inside the
    limits so that cannot happen for a sensible fit). Truncating, not clipping, keeps the
    samples valid without a point mass on the boundary.

    Log-density of ``x`` (w.r.t. Lebesgue measure on the field values, Jacobian included)::

        log p(x) = log N(log x; mean, cov) - sum_i log x_i - log Z,
        Z = P_{y ~ N(mean, cov)}(log low <= y <= log high)

    ``Z`` is exact (a product of normal CDFs) for a diagonal ``cov``; for a full ``cov`` it is
    scipy's Genz integration of the multivariate normal CDF (absolute error ~1e-5, fixed
    seed, so deterministic).

    Attributes:
        fields: Float ``TaskParams`` fields (e.g. the ``*_scale`` fields).
        mean: ``E[log x]`` per field, inside the log-limits.
        cov: The covariance of ``log x``: symmetric positive definite, one row per field.

    Example:
        >>> g = LogNormal.diagonal(["friction_scale", "object_mass_scale"], [0.0, 0.2], [0.3, 0.1])
        >>> g.cov
        ((0.09, 0.0), (0.0, 0.010000000000000002))
    """

    fields: tuple[str, ...]
    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    kind: ClassVar[str] = "log_normal"

    def __post_init__(self) -> None:
        with v.root("LogNormal"):
            with v.at("fields"):
                names = _field_list(self.fields)
                for i, name in enumerate(names):
                    if name in INT_FIELDS:
                        raise CurriculumError(
                            f"[{i}] {name!r} is an integer field; a log-normal draws float "
                            f"fields ({', '.join(FLOAT_FIELDS)}); use a Discrete factor for it"
                        )
            d = len(names)
            with v.at("mean"):
                items = v.seq(self.mean, what="a list of numbers")
                if len(items) != d:
                    raise CurriculumError(f"expected {d} numbers (one per field), got {len(items)}")
                mean = []
                for i, (name, m) in enumerate(zip(names, items)):
                    with v.at(i):
                        m = v.number(m, what="a number (the mean of log " + name + ")")
                        lo, hi = (_log(b) for b in LIMITS[name])
                        if not lo < m < hi:
                            raise CurriculumError(
                                f"{m!r} (log {name}, i.e. {name}={math.exp(m):.6g}) lies outside "
                                f"the log-limits ({lo:.6g}, {hi:.6g}) of {name} "
                                f"{list(LIMITS[name])}; expected a mean inside them"
                            )
                        mean.append(m)
            with v.at("cov"):
                rows = v.seq(self.cov, what="a list of rows")
                if len(rows) != d:
                    raise CurriculumError(f"expected {d} rows (one per field), got {len(rows)}")
                cov = []
                for i, row in enumerate(rows):
                    with v.at(i):
                        row = v.seq(row, what="a row of numbers")
                        if len(row) != d:
                            raise CurriculumError(f"expected {d} numbers, got {len(row)}")
                        cov.append(tuple(v.number(c) for c in row))
                c = np.array(cov, dtype=np.float64)
                if not np.allclose(c, c.T, rtol=1e-12, atol=0.0):
                    raise CurriculumError("the covariance is not symmetric; expected cov == cov.T")
                try:
                    np.linalg.cholesky(c)
                except np.linalg.LinAlgError:
                    raise CurriculumError(
                        f"the covariance {cov!r:.200} is not positive definite; fix a field "
                        "with zero variance with a Box or Discrete factor instead"
                    ) from None
        object.__setattr__(self, "fields", names)
        object.__setattr__(self, "mean", tuple(mean))
        object.__setattr__(self, "cov", tuple(cov))

    @classmethod
    def diagonal(
        cls, fields: Sequence[str], mean: Sequence[float], std: Sequence[float]
    ) -> LogNormal:
        """Independent log-normals: ``log x_i ~ N(mean_i, std_i**2)``."""
        with v.root("LogNormal"), v.at("std"):
            stds = []
            for i, s in enumerate(v.seq(std, what="a list of stds")):
                with v.at(i):
                    stds.append(v.number(s, low=0.0, low_open=True, what="a std"))
        cov = [[s * s if i == j else 0.0 for j in range(len(stds))] for i, s in enumerate(stds)]
        return cls(tuple(fields), tuple(mean), tuple(tuple(r) for r in cov))

    @functools.cached_property
    def _chol(self) -> np.ndarray:
        return np.linalg.cholesky(np.array(self.cov, dtype=np.float64))

    @functools.cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([LIMITS[n][0] for n in self.fields], dtype=np.float64),
            np.array([LIMITS[n][1] for n in self.fields], dtype=np.float64),
        )

    @functools.cached_property
    def log_normaliser(self) -> float:
        """``log Z``: the log of the Gaussian mass inside the limits (see the class doc)."""
        mean = np.array(self.mean)
        cov = np.array(self.cov)
        lo = np.array([_log(LIMITS[n][0]) for n in self.fields])
        hi = np.array([_log(LIMITS[n][1]) for n in self.fields])
        if np.count_nonzero(cov - np.diag(np.diag(cov))) == 0:
            sd = np.sqrt(np.diag(cov))
            z = 1.0
            for m, s, a, b in zip(mean, sd, lo, hi):
                # Phi(u) - Phi(l) per field; erf(-inf) = -1 handles an open lower limit.
                r2 = s * math.sqrt(2.0)
                z *= 0.5 * (math.erf((b - m) / r2) - math.erf((a - m) / r2))
        else:
            from scipy.stats import multivariate_normal

            z = float(
                multivariate_normal.cdf(
                    hi, mean=mean, cov=cov, lower_limit=lo, rng=np.random.default_rng(0)
                )
            )
        return _log(z)

    def measure(self) -> dict[str, str]:
        """``{field: "lebesgue"}``: the base measure of :meth:`log_prob`."""
        return dict.fromkeys(self.fields, "lebesgue")

    def sample(self, rng: np.random.Generator, task: str) -> dict[str, Value]:
        """Draws ``{field: value}`` by rejection (see the class docstring)."""
        low, high = self._bounds
        mean = np.array(self.mean)
        for _ in range(_MAX_REJECTIONS):
            x = np.exp(mean + self._chol @ rng.standard_normal(len(self.fields)))
            # The test is on x itself, after exp(), so rounding can never yield x > high.
            if np.all((x >= low) & (x <= high)):
                return {n: float(xi) for n, xi in zip(self.fields, x)}
        raise RuntimeError(
            f"LogNormal over {self.fields}: no draw inside sim.params.LIMITS in "
            f"{_MAX_REJECTIONS} tries; the Gaussian (mean {self.mean}) puts almost no mass "
            "inside the limits: refit it or narrow its covariance"
        )

    def log_prob(self, values: Mapping[str, Value], task: str) -> float:
        """Log-density of ``values`` (see the class docstring)."""
        x = np.array([values[n] for n in self.fields], dtype=np.float64)
        low, high = self._bounds
        if not np.all((x > 0) & (x >= low) & (x <= high)):
            return -math.inf
        y = np.log(x)
        r = np.linalg.solve(self._chol, y - np.array(self.mean))
        logdet = 2.0 * float(np.sum(np.log(np.diag(self._chol))))
        d = len(self.fields)
        log_n = -0.5 * (d * math.log(2 * math.pi) + logdet + float(r @ r))
        return log_n - float(np.sum(y)) - self.log_normaliser

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "log_normal", "fields": [...], "mean": [...], "cov": [[...], ...]}``."""
        return {
            "kind": self.kind,
            "fields": list(self.fields),
            "mean": list(self.mean),
            "cov": [list(r) for r in self.cov],
        }

    @classmethod
    def from_dict(cls, d: Any) -> LogNormal:
        """Inverse of :meth:`to_dict`."""
        d = v.keys(d, ["kind", "fields", "mean", "cov"], what="log_normal factor")
        return cls(d["fields"], d["mean"], d["cov"])


@dataclass(frozen=True)
class Discrete:
    """One field drawn from a finite set of values with weights.

    Meant for ``action_latency`` (integer steps) but any field works. Always draws one
    ``rng.random()``. Log-density (counting measure): ``log(w_i / sum w)`` for value ``i``.

    Attributes:
        field: The ``TaskParams`` field.
        values: Distinct values inside ``sim.params.LIMITS`` (ints for int fields).
        weights: One weight >= 0 per value, positive sum (not normalised; default all 1).

    Example:
        >>> Discrete("action_latency", [0, 2], [3, 1]).weights
        (3.0, 1.0)
    """

    field: str
    values: tuple[Value, ...]
    weights: tuple[float, ...] | None = None
    kind: ClassVar[str] = "discrete"

    def __post_init__(self) -> None:
        with v.root("Discrete"):
            with v.at("field"):
                _field_name(self.field)
            with v.at("values"):
                items = v.seq(self.values, what="a list of values", min_len=1)
                values: list[Value] = []
                for i, x in enumerate(items):
                    with v.at(i):
                        x = _field_value(self.field, x)
                        if x in values:
                            raise CurriculumError(f"value {x!r} is listed twice; list each once")
                        values.append(x)
            with v.at("weights"):
                w = (1.0,) * len(values) if self.weights is None else self.weights
                w = v.weights(w, n=len(values))
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "weights", w)

    @property
    def fields(self) -> tuple[str, ...]:
        """``(field,)``."""
        return (self.field,)

    @functools.cached_property
    def _cdf(self) -> np.ndarray:
        return _cdf(self.weights)

    def measure(self) -> dict[str, str]:
        """``{field: "counting"}``: the base measure of :meth:`log_prob`."""
        return {self.field: "counting"}

    def sample(self, rng: np.random.Generator, task: str) -> dict[str, Value]:
        """Draws ``{field: value}``."""
        return {self.field: self.values[_categorical(self._cdf, rng)]}

    def log_prob(self, values: Mapping[str, Value], task: str) -> float:
        """``log P(field = values[field])``."""
        x = values[self.field]
        total = sum(w for val, w in zip(self.values, self.weights) if val == x)
        return _log(total / sum(self.weights))

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "discrete", "field": ..., "values": [...], "weights": [...]}``."""
        return {
            "kind": self.kind,
            "field": self.field,
            "values": list(self.values),
            "weights": list(self.weights or ()),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Discrete:
        """Inverse of :meth:`to_dict` (``weights`` optional: uniform)."""
        d = v.keys(d, ["kind", "field", "values"], ["weights"], what="discrete factor")
        return cls(d["field"], d["values"], d.get("weights"))


@dataclass(frozen=True)
class EmpiricalParams:
    """Observed or fitted parameter points over several fields, drawn with their weights.

    E.g. the parameter sets a system identification kept, each with its posterior weight.
    Always draws one ``rng.random()``. Log-density (counting measure on the points):
    ``log(sum of the normalised weights of the points equal to the value)``.

    Attributes:
        fields: The ``TaskParams`` fields of every point.
        points: One tuple of values per point (``len(fields)`` each, inside ``LIMITS``).
        weights: One weight >= 0 per point, positive sum (default all 1).

    Example:
        >>> e = EmpiricalParams(["friction_scale", "action_latency"], [(0.8, 1), (1.2, 2)])
        >>> e.points
        ((0.8, 1), (1.2, 2))
    """

    fields: tuple[str, ...]
    points: tuple[tuple[Value, ...], ...]
    weights: tuple[float, ...] | None = None
    kind: ClassVar[str] = "empirical_params"

    def __post_init__(self) -> None:
        with v.root("EmpiricalParams"):
            with v.at("fields"):
                names = _field_list(self.fields)
            with v.at("points"):
                items = v.seq(self.points, what="a list of points", min_len=1)
                points = []
                for i, p in enumerate(items):
                    with v.at(i):
                        p = v.seq(p, what=f"a point ({len(names)} values: {', '.join(names)})")
                        if len(p) != len(names):
                            raise CurriculumError(
                                f"expected {len(names)} values ({', '.join(names)}), got {len(p)}"
                            )
                        point = []
                        for j, (name, x) in enumerate(zip(names, p)):
                            with v.at(j):
                                point.append(_field_value(name, x))
                        points.append(tuple(point))
            with v.at("weights"):
                w = (1.0,) * len(points) if self.weights is None else self.weights
                w = v.weights(w, n=len(points))
        object.__setattr__(self, "fields", names)
        object.__setattr__(self, "points", tuple(points))
        object.__setattr__(self, "weights", w)

    @functools.cached_property
    def _cdf(self) -> np.ndarray:
        return _cdf(self.weights)

    def measure(self) -> dict[str, str]:
        """``{field: "counting"}``: the base measure of :meth:`log_prob`."""
        return dict.fromkeys(self.fields, "counting")

    def sample(self, rng: np.random.Generator, task: str) -> dict[str, Value]:
        """Draws one point as ``{field: value}``."""
        return dict(zip(self.fields, self.points[_categorical(self._cdf, rng)]))

    def log_prob(self, values: Mapping[str, Value], task: str) -> float:
        """``log P(point == values)``."""
        x = tuple(values[n] for n in self.fields)
        total = sum(w for p, w in zip(self.points, self.weights) if p == x)
        return _log(total / sum(self.weights))

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "empirical_params", "fields", "points": [[...]], "weights": [...]}``."""
        return {
            "kind": self.kind,
            "fields": list(self.fields),
            "points": [list(p) for p in self.points],
            "weights": list(self.weights or ()),
        }

    @classmethod
    def from_dict(cls, d: Any) -> EmpiricalParams:
        """Inverse of :meth:`to_dict` (``weights`` optional: uniform)."""
        d = v.keys(d, ["kind", "fields", "points"], ["weights"], what="empirical_params factor")
        return cls(d["fields"], d["points"], d.get("weights"))


@dataclass(frozen=True)
class EmpiricalInit:
    """Observed initial conditions: Meta-World ``rand_vec`` points per task, with weights.

    ``rand_vec`` is the vector Meta-World draws at reset for a task's object and goal
    positions (its length depends on the task); ``sim`` resets an env to one with
    ``env.reset(seed=..., options={"rand_vec": vec})``. Points are checked to be finite and of
    one length per task; whether they lie in the task's reset space is checked by ``sim`` at
    reset. Always draws one ``rng.random()``. Log-density (counting measure on the points of
    the task): ``log(sum of the normalised weights of the points equal to rand_vec)``.

    Attributes:
        points: ``{task: ((x, y, z, ...), ...)}``: at least one point per task.
        weights: ``{task: (w, ...)}``: one weight >= 0 per point, positive sum per task
            (default all 1).

    Example:
        >>> e = EmpiricalInit({"reach-v3": [(0.0, 0.6, 0.02, -0.1, 0.8, 0.2)]})
        >>> e.weights
        {'reach-v3': (1.0,)}
    """

    points: dict[str, tuple[tuple[float, ...], ...]]
    weights: dict[str, tuple[float, ...]] | None = None
    kind: ClassVar[str] = "empirical_init"

    def __post_init__(self) -> None:
        with v.root("EmpiricalInit"):
            with v.at("points"):
                items = v.obj(self.points, "a {task: [[...], ...]} object")
                if not items:
                    raise CurriculumError("expected points for at least one task, got {}")
                points: dict[str, tuple[tuple[float, ...], ...]] = {}
                for task, vecs in items.items():
                    with v.at(task):
                        _task_name(task)
                        vecs = v.seq(vecs, what="a list of rand_vec points", min_len=1)
                        out = []
                        for i, vec in enumerate(vecs):
                            with v.at(i):
                                vec = v.seq(vec, what="a rand_vec (a list of numbers)", min_len=1)
                                vec = tuple(v.number(x) for x in vec)
                                if out and len(vec) != len(out[0]):
                                    raise CurriculumError(
                                        f"rand_vec has length {len(vec)}, the first point of "
                                        f"{task!r} has {len(out[0])}; expected one length per task"
                                    )
                                out.append(vec)
                        points[task] = tuple(out)
            with v.at("weights"):
                given = {} if self.weights is None else v.obj(self.weights, "a {task: [w]} object")
                for task in given:
                    if task not in points:
                        raise CurriculumError(
                            f"weights for task {task!r}, which has no points"
                            f"{v.did_you_mean(task, points)} Tasks with points: {', '.join(points)}"
                        )
                weights = {}
                for task, vecs in points.items():
                    with v.at(task):
                        weights[task] = v.weights(given.get(task, (1.0,) * len(vecs)), n=len(vecs))
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "weights", weights)

    @property
    def fields(self) -> tuple[str, ...]:
        """``()``: an initial-condition factor draws no ``TaskParams`` field."""
        return ()

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks that have points."""
        return tuple(self.points)

    @functools.cached_property
    def _cdfs(self) -> dict[str, np.ndarray]:
        return {t: _cdf(w) for t, w in (self.weights or {}).items()}

    def measure(self) -> dict[str, str]:
        """``{}``: no ``TaskParams`` fields."""
        return {}

    def sample(self, rng: np.random.Generator, task: str) -> tuple[float, ...]:
        """Draws one ``rand_vec`` of ``task``."""
        if task not in self.points:
            raise KeyError(f"EmpiricalInit has no rand_vec points for task {task!r}")
        return self.points[task][_categorical(self._cdfs[task], rng)]

    def log_prob(self, task: str, rand_vec: Sequence[float] | None) -> float:
        """``log P(rand_vec | task)``."""
        if rand_vec is None or task not in self.points:
            return -math.inf
        vec = tuple(float(x) for x in rand_vec)
        w = (self.weights or {})[task]
        total = sum(wi for p, wi in zip(self.points[task], w) if p == vec)
        return _log(total / sum(w))

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "empirical_init", "points": {task: [[...]]}, "weights": {task: [...]}}``."""
        return {
            "kind": self.kind,
            "points": {t: [list(p) for p in ps] for t, ps in self.points.items()},
            "weights": {t: list(w) for t, w in (self.weights or {}).items()},
        }

    @classmethod
    def from_dict(cls, d: Any) -> EmpiricalInit:
        """Inverse of :meth:`to_dict` (``weights`` optional: uniform)."""
        d = v.keys(d, ["kind", "points"], ["weights"], what="empirical_init factor")
        return cls(d["points"], d.get("weights"))


Factor = Box | LogNormal | Discrete | EmpiricalParams | EmpiricalInit
"""One factor of a :class:`Component`."""

FACTOR_KINDS: dict[str, type] = {
    cls.kind: cls for cls in (Box, LogNormal, Discrete, EmpiricalParams, EmpiricalInit)
}
"""``{kind: factor class}``: the ``kind`` field of a factor in a document."""


def factor_from_dict(d: Any) -> Factor:
    """Builds a factor from its JSON object, dispatching on ``kind``."""
    d = v.obj(d, "a factor object with a 'kind'")
    if "kind" not in d:
        raise CurriculumError(
            f"a factor needs a 'kind' (one of {', '.join(FACTOR_KINDS)}); got fields "
            f"{', '.join(d) or 'none'}"
        )
    with v.at("kind"):
        kind = v.string(d["kind"])
        if kind not in FACTOR_KINDS:
            raise CurriculumError(
                f"unknown factor kind {kind!r}{v.did_you_mean(kind, FACTOR_KINDS)} "
                f"Kinds: {', '.join(FACTOR_KINDS)}"
            )
    # Errors inside the factor's own checks carry the factor's class as root; the caller's
    # v.at() replaces it with the document path.
    return FACTOR_KINDS[kind].from_dict(d)  # type: ignore[no-any-return, attr-defined]
