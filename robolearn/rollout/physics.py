"""The physics of episodes: a fixed TaskParams point, a box of them, or (curricula) a task
distribution; drawn per episode from its goal seed, so physics is reproducible like goals.

The command configs (``params.<field>`` for a point, ``randomize.<field>`` for a box) are
derived from ``sim.TaskParams``'s fields, so a new TaskParams field appears everywhere at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

import sim


class Physics(Protocol):
    """Where an episode's TaskParams (and optionally its initial condition) come from.

    ``draw(task, seed)`` must be a pure function of its arguments: it is called with the
    episode's goal seed, so the physics of an episode is reproducible like its goal.
    """

    def draw(self, task: str, seed: int) -> tuple[Any, tuple[float, ...] | None]:
        """``(sim.TaskParams, rand_vec or None)`` of the episode with goal seed ``seed``."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for reports (``{"mode": ..., ...}``)."""


@dataclass(frozen=True)
class FixedPhysics:
    """Every episode under one TaskParams point (the stock one by default)."""

    params: Any = None

    def draw(self, task: str, seed: int) -> tuple[Any, None]:
        return (self.params if self.params is not None else sim.TaskParams()), None

    def describe(self) -> dict[str, Any]:
        p = self.params if self.params is not None else sim.TaskParams()
        return {"mode": "default" if p.is_default() else "fixed", "params": p.to_dict()}


@dataclass(frozen=True)
class RangePhysics:
    """TaskParams drawn uniformly from a ``sim.ParamRanges`` box, seeded by the goal seed (as
    ``robolearn collect randomize.*`` has always drawn them)."""

    ranges: Any

    def draw(self, task: str, seed: int) -> tuple[Any, None]:
        return self.ranges.sample(np.random.default_rng(seed)), None

    def describe(self) -> dict[str, Any]:
        return {"mode": "randomized", "ranges": {k: list(v) for k, v in
                                                 self.ranges.to_dict().items()}}


@dataclass(frozen=True)
class DistributionPhysics:
    """TaskParams and initial conditions drawn from a ``curricula.TaskDistribution``, given the
    episode's task and seeded by its goal seed (the distribution's task weights are not used:
    the command decides which tasks run; their components and factors are)."""

    distribution: Any
    source: str = ""

    def draw(self, task: str, seed: int) -> tuple[Any, tuple[float, ...] | None]:
        sample = self.distribution.sample(np.random.default_rng(seed), task=task)
        return sample.params, sample.rand_vec

    def describe(self) -> dict[str, Any]:
        d = self.distribution
        return {"mode": "distribution", "source": self.source, "version": d.version,
                "parent": d.parent, "fingerprint": d.fingerprint()}

    def check_tasks(self, tasks: Any) -> None:
        """Refuses, naming them, tasks the distribution has no component for."""
        missing = [t for t in tasks if t not in self.distribution.task_names]
        if missing:
            raise ValueError(
                f"distribution {self.source or '(given)'} does not cover task(s) {missing}; it "
                f"covers {list(self.distribution.task_names)}. Add them to its 'tasks' (with a "
                "component that applies to them) or run a suite of its tasks"
            )


def load_distribution(path: str) -> DistributionPhysics:
    """The physics of a ``distribution=`` file (a ``curricula`` task distribution, JSON)."""
    from curricula import TaskDistribution

    return DistributionPhysics(TaskDistribution.load(path), source=str(path))


def physics_from_ranges(ranges: Any) -> Physics:
    """A fixed point when the box is a single point, else uniform draws from it."""
    d = ranges.to_dict()
    if all(lo == hi for lo, hi in d.values()):
        return FixedPhysics(sim.TaskParams(**{k: lo for k, (lo, _) in d.items()}))
    return RangePhysics(ranges)


def describe_briefly(described: dict[str, Any]) -> str:
    """A one-line form of ``Physics.describe()`` for messages: only what differs from stock."""
    mode = described.get("mode", "default")
    if mode == "default":
        return "stock"
    if mode == "fixed":
        stock = sim.TaskParams().to_dict()
        return ", ".join(f"{k}={v}" for k, v in described["params"].items() if stock.get(k) != v)
    if mode == "randomized":
        return ", ".join(f"{k}~{lo}..{hi}" for k, (lo, hi) in described["ranges"].items()
                         if lo != hi)
    if mode == "distribution":
        return (f"distribution {described.get('source')} (version {described.get('version')}, "
                f"{str(described.get('fingerprint'))[:12]})")
    return str(described.get("source", mode))


def _param_doc(name: str) -> str:
    import inspect
    import re

    doc = inspect.getdoc(sim.TaskParams) or ""
    m = re.search(rf"^\s*{name}: (.*?)(?:\n\s*\w+: |\Z)", doc, flags=re.S | re.M)
    return " ".join(m.group(1).split()) if m else name


def _point_fields() -> list[tuple[str, type, Any]]:
    defaults = sim.TaskParams()
    out = []
    for f in dataclasses.fields(sim.TaskParams):
        typ = int if isinstance(getattr(defaults, f.name), int) else float
        out.append((f.name, typ, field(default=getattr(defaults, f.name),
                                       metadata={"help": _param_doc(f.name)})))
    return out


def _range_fields() -> list[tuple[str, type, Any]]:
    defaults = sim.TaskParams()
    out = []
    for f in dataclasses.fields(sim.TaskParams):
        value = getattr(defaults, f.name)
        typ = list[int] if isinstance(value, int) else list[float]
        out.append((f.name, typ, field(default_factory=lambda v=value: [v, v], metadata={
            "help": f"uniform [low, high] of {f.name}; low == high: fixed"})))
    return out


ParamsConfig = dataclasses.make_dataclass(
    "ParamsConfig", _point_fields(), namespace={
        "__doc__": "One TaskParams point (``params.<field>=value``); the defaults are stock "
                   "Meta-World. Fields are those of sim.TaskParams."})
RandomizationConfig = dataclasses.make_dataclass(
    "RandomizationConfig", _range_fields(), namespace={
        "__doc__": "Uniform ranges [low, high] per TaskParams field (``randomize.<field>=[lo,hi]``); "
                   "low == high means fixed (the default: stock Meta-World)."})
ParamsConfig.__module__ = RandomizationConfig.__module__ = __name__


def params_from_config(cfg: Any) -> sim.TaskParams:
    """``params.*`` (a ParamsConfig, dict or DictConfig) → ``sim.TaskParams`` (validated)."""
    values = {k: _get(cfg, k) for k in sim.TaskParams.field_names()}
    return sim.TaskParams(**values)


def ranges_from_config(cfg: Any) -> sim.ParamRanges:
    """``randomize.*`` (lists [low, high]) → ``sim.ParamRanges`` (validated)."""
    d = {}
    for k in sim.ParamRanges.field_names():
        v = list(_get(cfg, k))
        if len(v) != 2:
            raise ValueError(f"Got randomize.{k}={v}, expected [low, high]")
        cast = int if isinstance(sim.TaskParams().to_dict()[k], int) else float
        d[k] = (cast(v[0]), cast(v[1]))
    return sim.ParamRanges.from_dict(d)


def physics_from_config(params: Any = None, randomize: Any = None,
                        distribution: str = "") -> Physics:
    """The physics of a command's ``params.*`` point, ``randomize.*`` box or ``distribution=``
    file (one of them)."""
    point = params_from_config(params) if params is not None else sim.TaskParams()
    box = ranges_from_config(randomize) if randomize is not None else sim.ParamRanges()
    ranged = physics_from_ranges(box)
    if distribution:
        if not point.is_default() or not (isinstance(ranged, FixedPhysics)
                                          and ranged.params.is_default()):
            raise ValueError(
                f"Got distribution={distribution} together with params.* or randomize.*; give "
                "one of them (the distribution file holds the whole task distribution)"
            )
        return load_distribution(distribution)
    if not point.is_default():
        if not (isinstance(ranged, FixedPhysics) and ranged.params.is_default()):
            raise ValueError(
                "Got both params.* (a fixed TaskParams point) and randomize.* (a box); give "
                "one of them: params.friction_scale=0.8 or randomize.friction_scale=[0.6,1.0]"
            )
        return FixedPhysics(point)
    return ranged


def _get(cfg: Any, key: str) -> Any:
    if isinstance(cfg, dict):
        return cfg[key]
    return getattr(cfg, key)
