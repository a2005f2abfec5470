"""Task distributions: what collection, training and evaluation sample their episodes from.

A :class:`TaskDistribution` is a distribution over ``(task, TaskParams, initial condition)``:

1. **Task** ``t`` is drawn from a categorical over task names (``tasks``, uniform by default).
2. **Component** ``c`` is drawn among the components that apply to ``t`` (those listing ``t``
   in ``tasks``, or with ``tasks=None``), with probability proportional to their ``weight``:
   ``P(c | t) = w_c / sum_{c' applies to t} w_c'``. A component is a mixture entry with its own
   :class:`Provenance` (prior, sim, real cycle k, episodes, fit diagnostics).
3. Inside the component, every **factor** (:mod:`curricula.factors`) draws its own fields
   independently (a product), in list order:

   - :class:`~curricula.Box` (``"box"``): uniform per field in ``[low, high]``, ints uniform
     among the integers, exactly as ``sim.ParamRanges``; density uniform.
   - :class:`~curricula.LogNormal` (``"log_normal"``): ``log x ~ N(mean, cov)`` over float
     fields (the scales), truncated to ``sim.params.LIMITS`` by rejection; density the
     truncated Gaussian's.
   - :class:`~curricula.Discrete` (``"discrete"``): one field from a finite set of weighted
     values, e.g. ``action_latency`` in steps; pmf.
   - :class:`~curricula.EmpiricalParams` (``"empirical_params"``): one observed or fitted
     point over several fields, drawn with its weight; pmf over the points.
   - :class:`~curricula.EmpiricalInit` (``"empirical_init"``): the initial condition, one
     observed Meta-World ``rand_vec`` of the task (object/goal positions) drawn with its
     weight; pmf over the points.

   A field no factor draws keeps its ``TaskParams`` default; with no :class:`EmpiricalInit`,
   ``rand_vec`` is ``None`` (the env draws object and goal positions from its reset seed, as
   stock Meta-World does). Dependence between fields is expressed with mixtures (one
   component per mode or per observed point), not inside a component.

Every sample is a valid ``sim.TaskParams`` by construction: boxes, discrete values and
empirical points are checked against ``sim.params.LIMITS`` when the distribution is built
(out-of-range values are refused, never clipped), and a :class:`LogNormal` is *truncated* to
the limits (rejection sampling), so its samples never pile up on a boundary and its density
stays a density. ``action_latency`` is always an ``int``. The field names, their limits and
which are integers come from ``sim.params`` (``TaskParams.field_names()``, ``LIMITS``, the
type of each default), never from a list kept here.

Sampling is a pure function of the generator passed in: ``sample(np.random.default_rng(s))``
returns the same :class:`TaskSample` for the same ``s`` (and the same numpy version), and
``sample_n(rng, n)`` is exactly ``[sample(rng) for _ in range(n)]``. For per-episode
reproducibility independent of episode order, seed one generator per episode, e.g.
``np.random.default_rng([seed, episode_index])``.

Documents are versioned JSON (:meth:`TaskDistribution.to_json`, :meth:`TaskDistribution.save`);
the format is described in :meth:`TaskDistribution.to_dict` and the README. An invalid
document or argument raises :class:`~curricula.CurriculumError` naming the field.

Example:
    >>> import numpy as np
    >>> from curricula import Box, Component, Discrete, Provenance, TaskDistribution
    >>> dist = TaskDistribution(
    ...     tasks=["reach-v3", "push-v3"],
    ...     components=[
    ...         Component("prior", [Box({"friction_scale": (0.5, 2.0)}),
    ...                             Discrete("action_latency", [0, 1, 2], [0.5, 0.3, 0.2])]),
    ...     ],
    ... )
    >>> s = dist.sample(np.random.default_rng(0))
    >>> s == dist.sample(np.random.default_rng(0))
    True
    >>> 0.5 <= s.params.friction_scale <= 2.0 and isinstance(s.params.action_latency, int)
    True
    >>> TaskDistribution.from_json(dist.to_json()) == dist
    True
    >>> dist.child(description="cycle 1").version, dist.child().parent
    (2, 1)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curricula import _validate as v
from curricula._validate import CurriculumError, CurriculumTypeError
from curricula.factors import (
    DEFAULTS,
    FACTOR_KINDS,
    FIELDS,
    Box,
    EmpiricalInit,
    Factor,
    Value,
    _categorical,
    _cdf,
    _task_name,
    factor_from_dict,
)
from sim import TaskParams

logger = logging.getLogger(__name__)

FORMAT = "robolearn.task_distribution"
"""The ``format`` field of every task-distribution document."""

SCHEMA_VERSION = 1
"""The document schema this code writes (and the newest it reads)."""

PROVENANCE_SOURCES: tuple[str, ...] = ("prior", "sim", "real")
"""Where a component came from: a hand-set prior, a fit in simulation, real-robot episodes."""


def _check_rng(rng: Any, where: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{where} expects a numpy.random.Generator, got {type(rng).__name__}; "
            "use np.random.default_rng(seed)"
        )
    return rng


# --------------------------------------------------------------------------------------------
# Provenance


@dataclass(frozen=True)
class Provenance:
    """Where a component came from.

    Attributes:
        source: ``"prior"`` (set by hand), ``"sim"`` (fitted or chosen in simulation) or
            ``"real"`` (fitted to, or observed in, real-robot episodes).
        cycle: The real-grounded loop's cycle ``k`` that produced it; required for
            ``"real"``, optional otherwise. Integer >= 0.
        episodes: How many episodes it was fitted to or observed in (0 for a prior).
        diagnostics: Free-form JSON fit diagnostics (log-likelihood, residuals, estimator
            name, ...). Copied on construction; treat as read-only.
        note: Free text.

    Example:
        >>> Provenance("real", cycle=2, episodes=40, diagnostics={"nll": 1.25}).source
        'real'
    """

    source: str = "prior"
    cycle: int | None = None
    episodes: int = 0
    diagnostics: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        with v.root("Provenance"):
            with v.at("source"):
                v.string(self.source)
                if self.source not in PROVENANCE_SOURCES:
                    raise CurriculumError(
                        f"unknown source {self.source!r}"
                        f"{v.did_you_mean(self.source, PROVENANCE_SOURCES)} "
                        f"Sources: {', '.join(PROVENANCE_SOURCES)}"
                    )
            with v.at("cycle"):
                if self.cycle is None:
                    if self.source == "real":
                        raise CurriculumError(
                            "source 'real' needs the cycle k it came from (an integer >= 0)"
                        )
                else:
                    object.__setattr__(self, "cycle", v.integer(self.cycle, low=0))
            with v.at("episodes"):
                object.__setattr__(self, "episodes", v.integer(self.episodes, low=0))
            with v.at("diagnostics"):
                v.obj(self.diagnostics)
                object.__setattr__(self, "diagnostics", v.json_value(self.diagnostics))
            with v.at("note"):
                v.string(self.note)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this provenance (all fields)."""
        return {
            "source": self.source,
            "cycle": self.cycle,
            "episodes": self.episodes,
            "diagnostics": json.loads(json.dumps(self.diagnostics)),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: Any) -> Provenance:
        """Inverse of :meth:`to_dict`; only ``source`` is required."""
        d = v.keys(d, ["source"], ["cycle", "episodes", "diagnostics", "note"], "provenance")
        return cls(**d)


# --------------------------------------------------------------------------------------------
# Components and samples


@dataclass(frozen=True)
class TaskSample:
    """One draw from a :class:`TaskDistribution`.

    Attributes:
        task: The Meta-World task name.
        params: Valid ``sim.TaskParams`` to apply at reset.
        rand_vec: The initial condition (object/goal positions) for
            ``env.reset(options={"rand_vec": rand_vec})``, or ``None`` to let the env draw it
            from its reset seed.
        component: The name of the component it came from (a region arm, a fit, ...).
    """

    task: str
    params: TaskParams
    rand_vec: tuple[float, ...] | None
    component: str

    def to_dict(self) -> dict[str, Any]:
        """``{"task", "params": {...}, "rand_vec": [...] | None, "component"}`` (JSON-ready)."""
        return {
            "task": self.task,
            "params": self.params.to_dict(),
            "rand_vec": None if self.rand_vec is None else list(self.rand_vec),
            "component": self.component,
        }


@dataclass(frozen=True)
class Component:
    """One mixture entry: a product of factors, a weight, the tasks it applies to, provenance.

    The factors draw disjoint sets of fields (at most one :class:`EmpiricalInit`); fields none
    of them draws keep their ``TaskParams`` default. Factors draw in list order.

    Attributes:
        name: Unique within a distribution; reported as ``TaskSample.component``.
        factors: The factors (possibly none: the nominal ``TaskParams()``).
        weight: Mixture weight >= 0 (relative to the other components of the same task).
        tasks: The tasks it applies to, or ``None`` for every task of the distribution.
        provenance: Where it came from.

    Example:
        >>> c = Component("fit", [Box({"friction_scale": (0.9, 1.1)})],
        ...               provenance=Provenance("real", cycle=1, episodes=20))
        >>> c.fields
        ('friction_scale',)
    """

    name: str
    factors: tuple[Factor, ...] = ()
    weight: float = 1.0
    tasks: tuple[str, ...] | None = None
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        with v.root("Component"):
            with v.at("name"):
                v.string(self.name, non_empty=True)
            with v.at("weight"):
                object.__setattr__(self, "weight", v.number(self.weight, low=0.0, what="a weight"))
            if self.tasks is not None:
                with v.at("tasks"):
                    tasks: list[str] = []
                    items = v.seq(self.tasks, what="a list of task names", min_len=1)
                    for i, t in enumerate(items):
                        with v.at(i):
                            _task_name(t)
                            if t in tasks:
                                raise CurriculumError(f"task {t!r} is listed twice")
                            tasks.append(t)
                    object.__setattr__(self, "tasks", tuple(tasks))
            with v.at("provenance"):
                if not isinstance(self.provenance, Provenance):
                    raise CurriculumTypeError(
                        f"expected a Provenance, got {v.type_name(self.provenance)}"
                    )
            with v.at("factors"):
                factors = tuple(v.seq(self.factors, what="a list of factors"))
                owner: dict[str, int] = {}
                inits = 0
                for i, f in enumerate(factors):
                    with v.at(i):
                        if not isinstance(f, tuple(FACTOR_KINDS.values())):
                            kinds = ", ".join(c.__name__ for c in FACTOR_KINDS.values())
                            raise CurriculumTypeError(
                                f"expected a factor ({kinds}), got {v.type_name(f)}"
                            )
                        if isinstance(f, EmpiricalInit):
                            inits += 1
                            if inits > 1:
                                raise CurriculumError(
                                    "a second empirical_init factor; a component has at most one "
                                    "initial-condition factor"
                                )
                        for name in f.fields:
                            if name in owner:
                                raise CurriculumError(
                                    f"field {name!r} is already drawn by factors[{owner[name]}] "
                                    f"({factors[owner[name]].kind}); each field may be drawn "
                                    "by one factor of a component"
                                )
                            owner[name] = i
        object.__setattr__(self, "factors", factors)

    @property
    def fields(self) -> tuple[str, ...]:
        """The ``TaskParams`` fields the factors draw, in declaration order."""
        drawn = {n for f in self.factors for n in f.fields}
        return tuple(n for n in FIELDS if n in drawn)

    @property
    def init(self) -> EmpiricalInit | None:
        """The initial-condition factor, if any."""
        return next((f for f in self.factors if isinstance(f, EmpiricalInit)), None)

    def applies_to(self, task: str) -> bool:
        """Whether this component applies to ``task``."""
        return self.tasks is None or task in self.tasks

    def measure(self) -> tuple[str, ...]:
        """The base measure of :meth:`log_prob`, one of ``"lebesgue"``/``"counting"`` per field.

        Fields no factor draws are fixed at their default (counting measure).
        """
        m = dict.fromkeys(FIELDS, "counting")
        for f in self.factors:
            m.update(f.measure())
        return tuple(m[n] for n in FIELDS)

    def sample(
        self, rng: np.random.Generator, task: str
    ) -> tuple[TaskParams, tuple[float, ...] | None]:
        """Draws ``(params, rand_vec)`` for ``task``: each factor in order, from ``rng``."""
        values: dict[str, Value] = dict(DEFAULTS)
        rand_vec = None
        for f in self.factors:
            if isinstance(f, EmpiricalInit):
                rand_vec = f.sample(rng, task)
            else:
                values.update(f.sample(rng, task))
        return TaskParams(**values), rand_vec

    def log_prob(self, task: str, params: TaskParams, rand_vec: Sequence[float] | None) -> float:
        """Log-density of ``(params, rand_vec)`` given ``task``, w.r.t. :meth:`measure`.

        The sum of the factors' log-densities; ``-inf`` if a field no factor draws differs
        from its default, or if ``rand_vec`` is set and there is no initial-condition factor.
        """
        values = params.to_dict()
        drawn = set(self.fields)
        if any(values[n] != DEFAULTS[n] for n in FIELDS if n not in drawn):
            return -math.inf
        total = 0.0
        for f in self.factors:
            if not isinstance(f, EmpiricalInit):
                total += f.log_prob(values, task)
        init = self.init
        if init is None:
            return total if rand_vec is None else -math.inf
        return total + init.log_prob(task, rand_vec)

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "weight", "tasks", "provenance", "factors"}``."""
        return {
            "name": self.name,
            "weight": self.weight,
            "tasks": None if self.tasks is None else list(self.tasks),
            "provenance": self.provenance.to_dict(),
            "factors": [f.to_dict() for f in self.factors],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Component:
        """Inverse of :meth:`to_dict`; ``weight`` (1), ``tasks`` (all), ``provenance`` optional."""
        d = v.keys(d, ["name", "factors"], ["weight", "tasks", "provenance"], "component")
        with v.at("factors"):
            factors = []
            for i, f in enumerate(v.seq(d["factors"], what="a list of factors")):
                with v.at(i):
                    factors.append(factor_from_dict(f))
        with v.at("provenance"):
            prov = Provenance.from_dict(d["provenance"]) if "provenance" in d else Provenance()
        kwargs = {k: d[k] for k in ("weight", "tasks") if k in d}
        return cls(d["name"], tuple(factors), provenance=prov, **kwargs)


# --------------------------------------------------------------------------------------------
# The distribution


def _task_weights(tasks: Any) -> tuple[tuple[str, float], ...]:
    if isinstance(tasks, Mapping):
        items = list(v.obj(tasks, "a {task: weight} object").items())
    else:
        seq = v.seq(tasks, what="a list of task names or a {task: weight} object", min_len=1)
        items = []
        for entry in seq:
            if isinstance(entry, str):
                items.append((entry, 1.0))
            elif isinstance(entry, Sequence) and len(entry) == 2:
                items.append((entry[0], entry[1]))
            else:
                raise CurriculumTypeError(
                    f"expected task names or (task, weight) pairs, got {entry!r:.80}"
                )
    if not items:
        raise CurriculumError("expected at least one task, got none")
    names: list[str] = []
    weights: list[float] = []
    for i, (task, weight) in enumerate(items):
        with v.at(task if isinstance(tasks, Mapping) else i):
            _task_name(task)
            if task in names:
                raise CurriculumError(f"task {task!r} is listed twice")
            names.append(task)
            weights.append(v.number(weight, low=0.0, what="a task weight"))
    if not sum(weights) > 0:
        raise CurriculumError(
            f"task weights {weights!r:.120} sum to {sum(weights)}; expected a positive sum "
            "(at least one weight > 0)"
        )
    return tuple(zip(names, weights))


@dataclass(frozen=True)
class TaskDistribution:
    """A versioned distribution over ``(task, TaskParams, initial condition)``.

    See the module docstring for the sampling procedure and the factors. The object is
    immutable; :meth:`child` makes the next version.

    Attributes:
        tasks: The task names with their weights, as ``((task, weight), ...)``; the
            constructor also takes a list of names (uniform weights 1) or ``{task: weight}``.
            Weights >= 0 with a positive sum.
        components: The mixture. Every task needs at least one component that applies to it
            with a positive weight; every task a component lists must be one of ``tasks``.
        version: This distribution's version number (>= 1).
        parent: The version it was derived from (``< version``), or ``None`` for a root.
        description: Free text.

    Example:
        >>> from sim import ParamRanges
        >>> dist = TaskDistribution.from_param_ranges(
        ...     ["push-v3"], ParamRanges(friction_scale=(0.5, 2.0)))
        >>> [c.name for c in dist.components]
        ['prior']
        >>> dist.task_probabilities()
        {'push-v3': 1.0}
    """

    tasks: tuple[tuple[str, float], ...]
    components: tuple[Component, ...]
    version: int = 1
    parent: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        with v.root("TaskDistribution"):
            with v.at("tasks"):
                tasks = _task_weights(self.tasks)
            names = [t for t, _ in tasks]
            with v.at("version"):
                version = v.integer(self.version, low=1)
            with v.at("parent"):
                if self.parent is not None:
                    parent = v.integer(self.parent, low=1)
                    if parent >= version:
                        raise CurriculumError(
                            f"parent {parent} is not older than version {version}; expected "
                            "parent < version (use child() to make the next version)"
                        )
            with v.at("description"):
                v.string(self.description)
            with v.at("components"):
                comps = tuple(v.seq(self.components, what="a list of components", min_len=1))
                seen: dict[str, int] = {}
                for i, c in enumerate(comps):
                    with v.at(i):
                        self._check_component(c, names, seen, i)
            by_task: dict[str, tuple[tuple[Component, ...], np.ndarray]] = {}
            for task in names:
                applicable = tuple(c for c in comps if c.applies_to(task))
                total = sum(c.weight for c in applicable)
                if not total > 0:
                    which = ", ".join(repr(c.name) for c in applicable) or "none"
                    raise CurriculumError(
                        f"task {task!r} has no component with a positive weight (applicable: "
                        f"{which}); add a component with tasks=None or listing {task!r}",
                        ("components",),
                    )
                by_task[task] = (applicable, _cdf([c.weight for c in applicable]))
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "components", comps)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "_by_task", by_task)
        object.__setattr__(self, "_task_names", tuple(names))
        object.__setattr__(self, "_task_cdf", _cdf([w for _, w in tasks]))

    @staticmethod
    def _check_component(c: Any, names: list[str], seen: dict[str, int], i: int) -> None:
        if not isinstance(c, Component):
            raise CurriculumTypeError(f"expected a Component, got {v.type_name(c)}")
        with v.at("name"):
            if c.name in seen:
                raise CurriculumError(
                    f"name {c.name!r} is already used by components[{seen[c.name]}]; "
                    "component names must be unique"
                )
        seen[c.name] = i
        if c.tasks is not None:
            for j, t in enumerate(c.tasks):
                if t not in names:
                    raise CurriculumError(
                        f"{t!r} is not one of the distribution's tasks ({', '.join(names)}); "
                        "add it to tasks or remove it here",
                        ("tasks", j),
                    )
        init = c.init
        if init is not None:
            k = c.factors.index(init)
            applies = list(c.tasks) if c.tasks is not None else names
            missing = [t for t in applies if t not in init.points]
            extra = [t for t in init.points if t not in applies]
            if missing:
                raise CurriculumError(
                    f"no rand_vec points for task(s) {', '.join(map(repr, missing))}, which this "
                    "component applies to; add points or list the tasks it covers in its 'tasks'",
                    ("factors", k, "points"),
                )
            if extra:
                raise CurriculumError(
                    f"rand_vec points for task(s) {', '.join(map(repr, extra))}, which this "
                    f"component does not apply to ({', '.join(applies)}); remove them or add the "
                    "tasks",
                    ("factors", k, "points"),
                )

    # ---- construction helpers

    @classmethod
    def from_param_ranges(
        cls,
        tasks: Any,
        ranges: Any,
        *,
        provenance: Provenance | None = None,
        description: str = "",
    ) -> TaskDistribution:
        """Today's collection as a distribution: uniform tasks, one box over every field.

        Args:
            tasks: Task names (uniform) or ``{task: weight}``.
            ranges: A ``sim.ParamRanges``.
            provenance: Of the single component ``"prior"`` (default: ``Provenance()``).
            description: Free text.
        """
        comp = Component(
            "prior", (Box.from_param_ranges(ranges),), provenance=provenance or Provenance()
        )
        return cls(tasks, (comp,), description=description)

    def child(self, **changes: Any) -> TaskDistribution:
        """The next version: ``version + 1``, ``parent = version``, with ``changes`` applied.

        Args:
            **changes: Any of ``tasks``, ``components``, ``description``.

        Example:
            >>> from sim import ParamRanges
            >>> d1 = TaskDistribution.from_param_ranges(["push-v3"], ParamRanges())
            >>> d2 = d1.child(tasks={"push-v3": 2.0})
            >>> (d2.version, d2.parent)
            (2, 1)
        """
        allowed = ("tasks", "components", "description")
        for key in changes:
            if key not in allowed:
                raise TypeError(
                    f"TaskDistribution.child got unknown field {key!r}"
                    f"{v.did_you_mean(key, allowed)} Allowed: {', '.join(allowed)} (version and "
                    "parent are set by child)"
                )
        return dataclasses.replace(self, version=self.version + 1, parent=self.version, **changes)

    # ---- queries

    @property
    def task_names(self) -> tuple[str, ...]:
        """The task names, in order."""
        return self._task_names  # type: ignore[attr-defined,no-any-return]

    def task_probabilities(self) -> dict[str, float]:
        """``{task: P(task)}`` (normalised task weights)."""
        total = sum(w for _, w in self.tasks)
        return {t: w / total for t, w in self.tasks}

    def component_probabilities(self, task: str) -> dict[str, float]:
        """``{component name: P(component | task)}`` over the components that apply."""
        comps, _ = self._applicable(task)
        total = sum(c.weight for c in comps)
        return {c.name: c.weight / total for c in comps}

    def component(self, name: str) -> Component:
        """The component called ``name`` (unknown names raise with the closest match)."""
        for c in self.components:
            if c.name == name:
                return c
        names = [c.name for c in self.components]
        raise KeyError(
            f"no component {name!r}{v.did_you_mean(name, names)} Components: {', '.join(names)}"
        )

    def _applicable(self, task: str) -> tuple[tuple[Component, ...], np.ndarray]:
        by_task = self._by_task  # type: ignore[attr-defined]
        if task not in by_task:
            raise ValueError(
                f"task {task!r} is not in this distribution{v.did_you_mean(task, by_task)} "
                f"Tasks: {', '.join(by_task)}"
            )
        return by_task[task]  # type: ignore[no-any-return]

    # ---- sampling

    def sample(self, rng: np.random.Generator, task: str | None = None) -> TaskSample:
        """Draws one :class:`TaskSample`: a pure function of ``rng``'s state.

        Draw order: one ``rng.random()`` for the task (skipped when ``task`` is given), one for
        the component, then each factor of the component in order.

        Args:
            rng: The generator (advanced by the draw).
            task: Sample conditionally on this task (e.g. to evaluate per task) instead of
                drawing it.

        Returns:
            The sample.
        """
        _check_rng(rng, "TaskDistribution.sample")
        if task is None:
            task = self.task_names[_categorical(self._task_cdf, rng)]  # type: ignore[attr-defined]
        comps, cdf = self._applicable(task)
        comp = comps[_categorical(cdf, rng)]
        params, rand_vec = comp.sample(rng, task)
        return TaskSample(task, params, rand_vec, comp.name)

    def sample_n(
        self, rng: np.random.Generator, n: int, task: str | None = None
    ) -> list[TaskSample]:
        """``[self.sample(rng, task) for _ in range(n)]``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"TaskDistribution.sample_n: n={n!r} must be an int >= 0")
        _check_rng(rng, "TaskDistribution.sample_n")
        return [self.sample(rng, task) for _ in range(n)]

    def log_prob(self, sample: TaskSample) -> float:
        """``log p(task, params, rand_vec)`` of a sample (its ``component`` is ignored).

        ``log P(task) + log sum_c P(c | task) p_c(params, rand_vec)`` over the components that
        apply to the task. Defined only when those components share a base measure
        (:meth:`Component.measure`: e.g. all draw ``friction_scale`` from continuous factors);
        otherwise there is no density and :class:`ValueError` says which components differ
        (use :meth:`Component.log_prob` per component instead).
        """
        comps, _ = self._applicable(sample.task)
        measures = {c.measure() for c in comps if c.weight > 0}
        if len(measures) > 1:
            raise ValueError(
                f"the components of task {sample.task!r} ({', '.join(c.name for c in comps)}) mix "
                "continuous and discrete draws of the same field, so the mixture has no density; "
                "use Component.log_prob per component"
            )
        total = sum(c.weight for c in comps)
        terms = [
            math.log(c.weight / total) + c.log_prob(sample.task, sample.params, sample.rand_vec)
            for c in comps
            if c.weight > 0
        ]
        finite = [t for t in terms if t > -math.inf]
        if not finite:
            return -math.inf
        m = max(finite)
        log_mix = m + math.log(sum(math.exp(t - m) for t in finite))
        return math.log(self.task_probabilities()[sample.task]) + log_mix

    # ---- serialisation

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (a plain dict of JSON types).

        Layout::

            {"format": "robolearn.task_distribution", "schema_version": 1,
             "version": 3, "parent": 2, "description": "...",
             "tasks": {"push-v3": 1.0, ...},
             "components": [{"name": ..., "weight": ..., "tasks": null | [...],
                             "provenance": {"source", "cycle", "episodes", "diagnostics", "note"},
                             "factors": [{"kind": "box" | "log_normal" | "discrete" |
                                          "empirical_params" | "empirical_init", ...}]}]}
        """
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "version": self.version,
            "parent": self.parent,
            "description": self.description,
            "tasks": dict(self.tasks),
            "components": [c.to_dict() for c in self.components],
        }

    @classmethod
    def from_dict(cls, d: Any) -> TaskDistribution:
        """Validates a document and builds the distribution.

        Raises:
            CurriculumError: The document is invalid; the message names the field by its
                JSON path (``components[1].factors[0].ranges.friction_scale``).
        """
        with v.root("task distribution"):
            d = v.keys(
                d,
                ["format", "schema_version", "version", "tasks", "components"],
                ["parent", "description"],
                "task distribution",
            )
            with v.at("format"):
                if d["format"] != FORMAT:
                    raise CurriculumError(
                        f"{d['format']!r} is not a task distribution; expected {FORMAT!r}"
                    )
            with v.at("schema_version"):
                sv = v.integer(d["schema_version"], low=1)
                if sv > SCHEMA_VERSION:
                    raise CurriculumError(
                        f"schema version {sv} is newer than this robolearn reads "
                        f"({SCHEMA_VERSION}); upgrade robolearn to read it"
                    )
            with v.at("tasks"):
                v.obj(d["tasks"], "a {task: weight} object")
            with v.at("components"):
                comps = []
                for i, c in enumerate(v.seq(d["components"], what="a list of components")):
                    with v.at(i):
                        comps.append(Component.from_dict(c))
            kwargs = {k: d[k] for k in ("parent", "description") if k in d}
            with v.root("task distribution", replace=True):
                return cls(d["tasks"], tuple(comps), d["version"], **kwargs)

    def to_json(self, indent: int | None = 2) -> str:
        """The document as JSON text.

        :meth:`from_json` restores an equal distribution and ``to_json`` of that is the same
        text (floats are written in Python's shortest round-trip form). With ``indent``,
        objects are indented and lists of numbers stay on one line; ``indent=None`` is compact.
        """
        if indent is None:
            return json.dumps(self.to_dict(), allow_nan=False)
        return _pretty(self.to_dict(), indent)

    @classmethod
    def from_json(cls, text: str) -> TaskDistribution:
        """Parses and validates a document (duplicate keys and NaN/Infinity are refused)."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise TypeError(
                f"TaskDistribution.from_json expects JSON text, got {type(text).__name__}"
            )
        with v.root("task distribution"):
            return cls.from_dict(_loads(text))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the JSON document atomically (a temp file in the same folder, then rename).

        A reader sees the old file or the new one, never a partial one.

        Returns:
            The path written.
        """
        path = Path(path)
        text = self.to_json() + "\n"
        # Same folder (rename is atomic only within a filesystem); a plain open() so the file
        # gets the usual umask permissions (mkstemp would make it owner-only).
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logger.info("wrote task distribution v%d to %s", self.version, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaskDistribution:
        """Reads and validates a document written by :meth:`save` (errors name the file)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        with v.root(str(path), replace=True):
            return cls.from_json(text)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON (sorted keys, no spaces): identifies the content."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canon.encode()).hexdigest()


def _pretty(value: Any, indent: int, level: int = 0) -> str:
    """JSON with indented objects and lists, but each list of scalars on one line."""
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    if isinstance(value, dict) and value:
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {_pretty(x, indent, level + 1)}"
            for k, x in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(x, (dict, list)) for x in value):
        items = [f"{inner}{_pretty(x, indent, level + 1)}" for x in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _loads(text: str | bytes | bytearray) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise CurriculumError(f"duplicate key {key!r} in a JSON object; keep one")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise CurriculumError(f"{name} is not valid JSON; use a finite number")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as err:
        raise CurriculumError(
            f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
