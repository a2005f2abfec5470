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
- :func:`fit_sysid` (:mod:`curricula.sysid`): system identification of ``TaskParams`` from
  recorded robot episodes (plain arrays), with per-field uncertainty; the result becomes a
  component (``Provenance(source="real", ...)``). :func:`ingest_initial_conditions`
  (:mod:`curricula.ingest`): each episode's first observation as the task's ``rand_vec``
  (an :class:`EmpiricalInit`). :func:`update_distribution`: the loop's ``p_{k+1}``, a fit
  mixed into the previous version with a given share per task.

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
from curricula.ingest import (
    InitialConditions,
    RandVecMap,
    check_episodes,
    ingest_initial_conditions,
    rand_vec_map,
)
from curricula.progress import LPSampler, absolute_learning_progress
from curricula.regions import RegionGrid
from curricula.sysid import (
    DEFAULT_PRIOR,
    REPLAY_FIELDS,
    Estimate,
    HandFit,
    ReplayFit,
    SysIdResult,
    estimate_obs_noise,
    fit_hand,
    fit_replay,
    fit_sysid,
    replay_log_likelihood,
    simulate_episodes,
    update_distribution,
)

__all__ = [
    "DEFAULT_PRIOR",
    "FACTOR_KINDS",
    "FORMAT",
    "PROVENANCE_SOURCES",
    "REPLAY_FIELDS",
    "SCHEMA_VERSION",
    "Box",
    "Component",
    "Discrete",
    "CurriculumError",
    "CurriculumTypeError",
    "EmpiricalInit",
    "EmpiricalParams",
    "Estimate",
    "Factor",
    "HandFit",
    "InitialConditions",
    "LPSampler",
    "LogNormal",
    "Provenance",
    "RandVecMap",
    "RegionGrid",
    "ReplayFit",
    "SysIdResult",
    "TaskDistribution",
    "TaskSample",
    "absolute_learning_progress",
    "check_episodes",
    "estimate_obs_noise",
    "factor_from_dict",
    "fit_hand",
    "fit_replay",
    "fit_sysid",
    "ingest_initial_conditions",
    "rand_vec_map",
    "replay_log_likelihood",
    "simulate_episodes",
    "update_distribution",
]
