"""Errors for people: one hierarchy that the command line maps to exit codes.

Every error a user can cause or fix derives from :class:`RobolearnError` and says what went
wrong, with the thing, the value, what was expected and the fix. The CLI prints the message
(no traceback) and exits with the class's ``exit_code``:

    2  ConfigError       a bad option, preset or value on the command line
    1  StoreError, CheckpointError, ClusterError, ResourceError, TrainingError, RobotRefused,
       ReuseError        the inputs or the environment are not usable as asked
    3  DeployFault       a deployment ended on a fault; the robot was stopped

Each keeps the builtin base it had before (``ValueError`` for bad input, ``RuntimeError`` for a
failed environment), so code that caught those still catches them.

:func:`did_you_mean` is the one "closest match" helper of the stack.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RobolearnError(Exception):
    """A user-facing error: the CLI prints its message and exits with ``exit_code``."""

    exit_code = 1


class ConfigError(RobolearnError, ValueError):
    """A bad command-line option, preset or config value."""

    exit_code = 2


class ReuseError(RobolearnError, ValueError):
    """An existing result (a store, a run) was made with other settings than those asked for."""


class CheckpointError(RobolearnError, ValueError):
    """A path that is not a usable robolearn checkpoint."""


class ClusterError(RobolearnError, RuntimeError):
    """The Ray cluster cannot be used: unreachable, wrong version, not installed."""


class ResourceError(RobolearnError, ValueError):
    """A request for more resources than the cluster has."""


class TrainingError(RobolearnError, RuntimeError):
    """A training run that failed for a reason other than a bad option or input."""


class RobotRefused(RobolearnError, RuntimeError):
    """The robot (server) refused this client: wrong or missing token, protocol, busy."""


class DeployFault(RobolearnError, RuntimeError):
    """A deployment ended on a fault (link loss, watchdog trip); the robot was stopped."""

    exit_code = 3


def did_you_mean(value: object, options: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`` Did you mean 'x'?`` for the closest of ``options`` to ``value``, or ``""``."""
    match = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=cutoff)
    return f" Did you mean {match[0]!r}?" if match else ""


def unknown(what: str, value: object, options: Iterable[str]) -> str:
    """The message for an unknown name: ``unknown <what> 'v'. Did you mean ...? Available: ...``."""
    options = [str(o) for o in options]
    return f"unknown {what} {str(value)!r}.{did_you_mean(value, options)} Available: " + (
        ", ".join(options) or "none")
