"""Regions of a parameter space as arms: a grid over chosen fields of a box.

:class:`RegionGrid` splits a :class:`~curricula.Box` (or a ``sim.ParamRanges``) along some of
its fields into a grid of sub-boxes. Each cell is an *arm* with a stable name
(``"friction_scale:0/3|action_latency:1/2"``: bin 0 of 3 along ``friction_scale``, bin 1 of 2
along ``action_latency``), so an :class:`~curricula.LPSampler` over ``grid.arms`` drives
"regions of a parameter space" the same way it drives tasks (RIAC's region arms, Baranes &
Oudeyer 2009). :meth:`RegionGrid.distribution` turns the sampler's probabilities into a
:class:`~curricula.TaskDistribution` with one component per region, named by its arm, so every
:class:`~curricula.TaskSample` says which arm its score belongs to.

Bins:
    - float fields: equal width (``log_fields``: equal width in ``log``, i.e. geometric
      edges, for scales); the outer edges are exactly the box's ``low`` and ``high``.
      Regions are closed boxes that share their inner edges; :meth:`RegionGrid.arm_of` puts a
      value on an inner edge in the upper bin (a measure-zero set; a sample's own
      ``component`` is always exact).
    - int fields: contiguous, disjoint integer ranges of near-equal size
      (``[0, 3]`` in 2 bins: ``[0, 1]`` and ``[2, 3]``); at most one bin per integer.

Example:
    >>> from sim import ParamRanges
    >>> grid = RegionGrid(ParamRanges(friction_scale=(0.5, 2.0), action_latency=(0, 3)),
    ...                   {"friction_scale": 2, "action_latency": 2})
    >>> grid.arms[:2]
    ('friction_scale:0/2|action_latency:0/2', 'friction_scale:0/2|action_latency:1/2')
    >>> grid.region(grid.arms[1]).ranges["action_latency"]
    (2, 3)
    >>> dist = grid.distribution(["push-v3"], weights=dict.fromkeys(grid.arms, 1.0))
    >>> len(dist.components)
    4
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from curricula import _validate as v
from curricula._validate import CurriculumError
from curricula.distribution import Component, Provenance, TaskDistribution
from curricula.factors import FIELDS, INT_FIELDS, Box, Factor, Value, _field_list, _field_name
from sim import TaskParams


def _float_edges(low: float, high: float, n: int, log: bool) -> list[float]:
    if log:
        a, b = math.log(low), math.log(high)
        edges = [math.exp(a + (b - a) * k / n) for k in range(n + 1)]
    else:
        edges = [low + (high - low) * k / n for k in range(n + 1)]
    edges[0], edges[-1] = low, high  # exact outer edges, whatever the rounding
    return edges


class RegionGrid:
    """A grid of sub-boxes of a box, one arm per cell (see the module docstring).

    Args:
        box: The box to split: a :class:`~curricula.Box` or a ``sim.ParamRanges`` (all fields).
        bins: ``{field: number of bins}`` for the fields to split (each >= 1, a field of the
            box; a fixed field can only have 1 bin).
        log_fields: Float fields split with geometric edges (their ``low`` must be > 0).
    """

    def __init__(
        self, box: Any, bins: Mapping[str, int], *, log_fields: Sequence[str] = ()
    ) -> None:
        with v.root("RegionGrid"):
            if not isinstance(box, Box):
                if not hasattr(box, "to_dict") or not hasattr(box, "field_names"):
                    raise v.CurriculumTypeError(
                        f"box: expected a curricula.Box or sim.ParamRanges, got {v.type_name(box)}"
                    )
                box = Box.from_param_ranges(box)
            with v.at("bins"):
                bins = v.obj(bins, "a {field: number of bins} object")
                if not bins:
                    raise CurriculumError("expected at least one field to split, got {}")
                for name in bins:
                    _field_name(name)
                    if name not in box.ranges:
                        raise CurriculumError(
                            f"{name!r} is not a field of the box ({', '.join(box.fields)})"
                        )
            logs = set(_field_list(log_fields)) if log_fields else set()
            edges: dict[str, list[tuple[Value, Value]]] = {}
            for name in FIELDS:
                if name not in bins:
                    continue
                low, high = box.ranges[name]
                with v.at("bins", name):
                    n = v.integer(bins[name], low=1)
                    if name in INT_FIELDS:
                        count = int(high - low + 1)
                        if n > count:
                            raise CurriculumError(
                                f"{n} bins for the {count} integers of [{low}, {high}]; expected "
                                f"at most {count}"
                            )
                        groups = np.array_split(np.arange(low, high + 1), n)
                        edges[name] = [(int(g[0]), int(g[-1])) for g in groups]
                    else:
                        if n > 1 and low == high:
                            raise CurriculumError(
                                f"{n} bins for the fixed range [{low}, {high}]; expected 1"
                            )
                        if name in logs and low <= 0:
                            raise CurriculumError(
                                f"log bins need low > 0, the box has [{low}, {high}]"
                            )
                        e = _float_edges(low, high, n, name in logs)
                        edges[name] = list(zip(e[:-1], e[1:]))
            for name in logs:
                if name not in edges or name in INT_FIELDS:
                    raise CurriculumError(
                        f"log_fields: {name!r} is not a float field being split "
                        f"({', '.join(n for n in edges if n not in INT_FIELDS) or 'none'})"
                    )
        self._box = box
        self._edges = edges
        self._log_fields = frozenset(logs)
        cells = itertools.product(*(range(len(e)) for e in edges.values()))
        self._cells: dict[str, tuple[int, ...]] = {}
        for cell in cells:
            self._cells[self._name(cell)] = cell

    def _name(self, cell: Sequence[int]) -> str:
        return "|".join(
            f"{name}:{i}/{len(e)}" for (name, e), i in zip(self._edges.items(), cell)
        )

    @property
    def box(self) -> Box:
        """The whole box."""
        return self._box

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields that are split, in ``TaskParams`` order."""
        return tuple(self._edges)

    @property
    def arms(self) -> tuple[str, ...]:
        """The arm names, one per cell (the last field varies fastest)."""
        return tuple(self._cells)

    def bins(self, field: str) -> list[tuple[Value, Value]]:
        """The ``(low, high)`` of every bin along ``field``."""
        if field not in self._edges:
            raise KeyError(f"RegionGrid does not split {field!r}; it splits {self.fields}")
        return list(self._edges[field])

    def region(self, arm: str) -> Box:
        """The sub-box of ``arm``: the whole box with the split fields narrowed."""
        cell = self._cell(arm)
        ranges = dict(self._box.ranges)
        for (name, e), i in zip(self._edges.items(), cell):
            ranges[name] = e[i]
        return Box(ranges)

    def _cell(self, arm: str) -> tuple[int, ...]:
        if arm not in self._cells:
            raise KeyError(
                f"unknown region arm {arm!r}{v.did_you_mean(arm, self._cells)} "
                f"({len(self._cells)} arms, e.g. {self.arms[0]!r})"
            )
        return self._cells[arm]

    def arm_of(self, params: TaskParams) -> str:
        """The arm whose region holds ``params`` (inner edges belong to the upper bin).

        Raises:
            ValueError: ``params`` lies outside the box.
        """
        values = params.to_dict()
        for name, (low, high) in self._box.ranges.items():
            if not low <= values[name] <= high:
                raise ValueError(
                    f"RegionGrid.arm_of: {name}={values[name]!r} lies outside the box "
                    f"[{low}, {high}]"
                )
        cell = []
        for name, e in self._edges.items():
            x = values[name]
            lows = [lo for lo, _ in e]
            cell.append(max(0, int(np.searchsorted(lows, x, side="right")) - 1))
        return self._name(cell)

    def components(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        extra_factors: Sequence[Factor] = (),
        provenance: Provenance | None = None,
    ) -> tuple[Component, ...]:
        """One component per arm: its region's box plus ``extra_factors``, named by the arm.

        Args:
            weights: ``{arm: weight}`` (e.g. ``LPSampler.probabilities()``); every arm must be
                present. ``None``: all 1.
            extra_factors: Factors shared by every region (they must not draw the box's fields).
            provenance: Of every component (default ``Provenance()``).
        """
        if weights is None:
            weights = dict.fromkeys(self.arms, 1.0)
        missing = [a for a in self.arms if a not in weights]
        unknown = [a for a in weights if a not in self._cells]
        if unknown:
            raise ValueError(
                f"RegionGrid: weights for unknown arm {unknown[0]!r}"
                f"{v.did_you_mean(unknown[0], self._cells)}"
            )
        if missing:
            raise ValueError(
                f"RegionGrid: no weight for {len(missing)} arm(s), e.g. {missing[0]!r}; give "
                "one weight per arm (e.g. LPSampler(grid.arms).probabilities())"
            )
        prov = provenance or Provenance()
        return tuple(
            Component(arm, (self.region(arm), *extra_factors), weights[arm], provenance=prov)
            for arm in self.arms
        )

    def distribution(
        self,
        tasks: Any,
        weights: Mapping[str, float] | None = None,
        *,
        extra_factors: Sequence[Factor] = (),
        provenance: Provenance | None = None,
        version: int = 1,
        parent: int | None = None,
        description: str = "",
    ) -> TaskDistribution:
        """A :class:`~curricula.TaskDistribution` over ``tasks`` mixing the regions.

        Args:
            tasks: Task names (uniform) or ``{task: weight}``; every region applies to all.
            weights: ``{arm: weight}``, see :meth:`components`.
            extra_factors: See :meth:`components`.
            provenance: See :meth:`components`.
            version: The distribution's version.
            parent: Its parent version.
            description: Free text.
        """
        comps = self.components(weights, extra_factors=extra_factors, provenance=provenance)
        return TaskDistribution(tasks, comps, version, parent, description)
