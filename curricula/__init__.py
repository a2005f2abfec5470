"""curricula: task distributions and learning-progress curricula (see ../shared/DESIGN.md).

A library: it imports ``sim`` (task names, ``TaskParams`` and their limits) and numpy, never
``robolearn``, ``policies`` or ``hardware``.

- :class:`TaskDistribution` (:mod:`curricula.distribution`; factors in
  :mod:`curricula.factors`): a versioned, JSON-serialisable distribution over
  ``(task, TaskParams, initial condition)`` made of weighted components, each a product of
  factors (:class:`Box`, :class:`LogNormal`, :class:`Discrete`, :class:`EmpiricalParams`,
  :class:`EmpiricalInit`) with its :class:`Provenance`.
- :class:`LPSampler` (:mod:`curricula.progress`): absolute-learning-progress allocation of a
  budget over arms (tasks or parameter regions), with epsilon-exploration and a floor.
- :class:`RegionGrid` (:mod:`curricula.regions`): splits a parameter box into region arms
  that map to components of a distribution.

Example:
    >>> import numpy as np
    >>> from curricula import LPSampler, TaskDistribution
    >>> from sim import ParamRanges
    >>> dist = TaskDistribution.from_param_ranges(["reach-v3", "push-v3"], ParamRanges())
    >>> lp = LPSampler(dist.task_names, seed=0)
    >>> for score in (0.1, 0.3, 0.5):
    ...     lp.update("push-v3", score)
    >>> lp.update("reach-v3", 0.9); lp.update("reach-v3", 0.9)
    >>> nxt = dist.child(tasks=lp.probabilities())      # more weight where progress is
    >>> nxt.task_probabilities()["push-v3"] > 0.5
    True
"""

from curricula._validate import CurriculumError, CurriculumTypeError
from curricula.distribution import (
    FORMAT,
    PROVENANCE_SOURCES,
    SCHEMA_VERSION,
    Component,
    Provenance,
    TaskDistribution,
    TaskSample,
)
from curricula.factors import (
    FACTOR_KINDS,
    Box,
    Discrete,
    EmpiricalInit,
    EmpiricalParams,
    Factor,
    LogNormal,
    factor_from_dict,
)
from curricula.progress import LPSampler, absolute_learning_progress
from curricula.regions import RegionGrid

__all__ = [
    "FACTOR_KINDS",
    "FORMAT",
    "PROVENANCE_SOURCES",
    "SCHEMA_VERSION",
    "Box",
    "Component",
    "Discrete",
    "CurriculumError",
    "CurriculumTypeError",
    "EmpiricalInit",
    "EmpiricalParams",
    "Factor",
    "LPSampler",
    "LogNormal",
    "Provenance",
    "RegionGrid",
    "TaskDistribution",
    "TaskSample",
    "absolute_learning_progress",
    "factor_from_dict",
]
