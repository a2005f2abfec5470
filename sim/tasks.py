"""Meta-World v3 task names and benchmark suites.

Task names are spelled exactly as Meta-World spells them (``"push-v3"``). The suite lists come
from ``metaworld.env_dict`` so they cannot drift from the installed Meta-World.

Example:
    >>> from sim import get_suite, resolve_task
    >>> resolve_task("push-v3")
    'push-v3'
    >>> suite = get_suite("ML10")
    >>> len(suite.train_tasks), len(suite.test_tasks)
    (10, 5)
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from metaworld import env_dict as _mw_env_dict

logger = logging.getLogger(__name__)

ALL_TASKS: tuple[str, ...] = tuple(_mw_env_dict.ALL_V3_ENVIRONMENTS)
"""The 50 Meta-World v3 task names, in ``metaworld.env_dict.ALL_V3_ENVIRONMENTS`` order."""

SUITE_NAMES: tuple[str, ...] = ("MT1:<task>", "MT10", "MT50", "ML10", "ML45")
"""The accepted suite name forms; ``<task>`` is any name in :data:`ALL_TASKS`."""

_TASK_SET = frozenset(ALL_TASKS)

# name -> (train tasks, test tasks, goal observable). MT suites train and test on the same
# tasks with the goal in the observation; ML suites hold out test tasks and hide the goal,
# as Meta-World does for meta-learning.
_FIXED_SUITES: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "MT10": (tuple(_mw_env_dict.MT10_V3), tuple(_mw_env_dict.MT10_V3), True),
    "MT50": (tuple(_mw_env_dict.MT50_V3), tuple(_mw_env_dict.MT50_V3), True),
    "ML10": (
        tuple(_mw_env_dict.ML10_V3["train"]),
        tuple(_mw_env_dict.ML10_V3["test"]),
        False,
    ),
    "ML45": (
        tuple(_mw_env_dict.ML45_V3["train"]),
        tuple(_mw_env_dict.ML45_V3["test"]),
        False,
    ),
}
_CUSTOM_PREFIX = "MT:"
_MT1_PREFIX = "MT1:"


def close_matches(value: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Returns up to ``n`` entries of ``choices`` that look like ``value`` (case-insensitive).

    Args:
        value: The misspelt name.
        choices: The valid names.
        n: The most matches to return.

    Returns:
        The matches, best first, spelt as in ``choices``.
    """
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    hits = difflib.get_close_matches(value.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[h] for h in hits]


def _did_you_mean(matches: list[str]) -> str:
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


def resolve_task(name: str) -> str:
    """Checks a Meta-World v3 task name.

    Args:
        name: A task name exactly as Meta-World spells it, e.g. ``"push-v3"``.

    Returns:
        ``name`` unchanged.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is not one of :data:`ALL_TASKS`; the message lists close matches
            and every available task.
    """
    if not isinstance(name, str):
        raise TypeError(f"task must be a str such as 'push-v3', got {type(name).__name__} {name!r}")
    if name in _TASK_SET:
        return name
    hint = _did_you_mean(close_matches(name, ALL_TASKS))
    raise ValueError(f"unknown task {name!r}{hint} Available: {', '.join(ALL_TASKS)}")


@dataclass(frozen=True)
class Suite:
    """A set of Meta-World tasks with its train/test split.

    Attributes:
        name: The suite name, e.g. ``"MT10"`` or ``"MT1:push-v3"``.
        train_tasks: Tasks to train on, in Meta-World's order.
        test_tasks: Tasks to evaluate on. For MT suites the same as ``train_tasks``; for ML
            suites the held-out tasks.
        goal_observable: Whether the goal position is part of the observation (True for MT
            suites, False for ML suites, where Meta-World hides it).

    Example:
        >>> suite = get_suite("MT10")
        >>> suite.tasks[:2]
        ('reach-v3', 'push-v3')
    """

    name: str
    train_tasks: tuple[str, ...]
    test_tasks: tuple[str, ...]
    goal_observable: bool

    def __post_init__(self) -> None:
        for field_name in ("train_tasks", "test_tasks"):
            tasks = getattr(self, field_name)
            if not isinstance(tasks, tuple):
                raise TypeError(
                    f"Suite.{field_name} must be a tuple of task names, got {type(tasks).__name__}"
                )
            for task in tasks:
                resolve_task(task)
        if not isinstance(self.goal_observable, bool):
            raise TypeError(f"Suite.goal_observable must be a bool, got {self.goal_observable!r}")

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task in the suite: train tasks, then test-only tasks, without repeats."""
        return tuple(dict.fromkeys(self.train_tasks + self.test_tasks))


def get_suite(name: str) -> Suite:
    """Looks up a benchmark suite by name.

    Args:
        name: One of ``"MT1:<task>"`` (e.g. ``"MT1:push-v3"``), ``"MT10"``, ``"MT50"``,
            ``"ML10"``, ``"ML45"``, or ``"MT:<task>+<task>+..."`` (a multi-task suite of your
            own, goal observable like MT10; ``,`` also separates, but needs quoting in hydra
            overrides).

    Returns:
        The :class:`Suite`.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: Unknown suite name (the message lists close matches and the accepted
            forms), or an ``MT1:`` name with an unknown task.
    """
    if not isinstance(name, str):
        raise TypeError(f"suite name must be a str such as 'MT10', got {type(name).__name__}")
    if name in _FIXED_SUITES:
        train, test, goal_observable = _FIXED_SUITES[name]
        return Suite(name, train, test, goal_observable)
    if name.startswith(_MT1_PREFIX):
        task = resolve_task(name[len(_MT1_PREFIX) :])
        return Suite(name, (task,), (task,), True)
    if name.startswith(_CUSTOM_PREFIX):
        parts = name[len(_CUSTOM_PREFIX) :].replace(",", "+").split("+")
        tasks = tuple(resolve_task(t.strip()) for t in parts)
        if len(set(tasks)) != len(tasks) or not tasks:
            raise ValueError(f"suite {name!r} lists a task twice; list each task once")
        return Suite(name, tasks, tasks, True)
    if name in _TASK_SET:
        matches = [_MT1_PREFIX + name]
    else:
        matches = close_matches(name, [*_FIXED_SUITES, *(_MT1_PREFIX + t for t in ALL_TASKS)])
    raise ValueError(
        f"unknown suite {name!r}{_did_you_mean(matches)} "
        f"Available: {', '.join(SUITE_NAMES)} (<task> is a Meta-World v3 task such as 'push-v3')"
    )
