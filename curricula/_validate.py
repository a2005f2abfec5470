"""Small JSON-schema-like checks shared by the curricula documents.

Every check raises :class:`CurriculumError` carrying the JSON path of the offending value
(``components[1].factors[0].ranges.friction_scale``), so a refusal of a whole document names
the exact field. Constructors raise with a path relative to their own object; the code that
parses a document prefixes it with :func:`at` as it descends.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

PathPart = str | int


class CurriculumError(ValueError):
    """An invalid task distribution, component, factor or sampler state.

    Raised for a document that breaks the format (an unknown or missing field, a value out of
    range, weights that do not sum to a positive number, ...) and for the same mistakes made
    through the Python constructors. The message names the object, the JSON path of the field,
    the value, what was expected and, for an unknown name, the closest valid one.

    Attributes:
        problem: What is wrong, without the location.
        path: The JSON path of the field, as a tuple of keys (str) and list indices (int).
        root: What the path is relative to: a class name (``"Box"``), ``"task distribution"``
            for a document, or a file path.
    """

    def __init__(self, problem: str, path: Sequence[PathPart] = (), root: str | None = None):
        self.problem = problem
        self.path = tuple(path)
        self.root = root
        super().__init__(problem)

    @property
    def where(self) -> str:
        """The path in JSON notation, e.g. ``components[0].weight`` (empty at the top)."""
        out = ""
        for part in self.path:
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                out += f".{part}" if out else part
        return out

    def __str__(self) -> str:
        head = ": ".join(p for p in (self.root, self.where) if p)
        return f"{head}: {self.problem}" if head else self.problem

    def _copy(self, path: Sequence[PathPart], root: str | None) -> CurriculumError:
        new = type(self)(self.problem, path, root)
        new.__cause__ = self.__cause__
        return new


class CurriculumTypeError(CurriculumError, TypeError):
    """A :class:`CurriculumError` about a value of the wrong type (also a ``TypeError``)."""


@contextmanager
def at(*parts: PathPart) -> Iterator[None]:
    """Prefixes the path of any :class:`CurriculumError` raised inside with ``parts``.

    The root is cleared: the object that owns the longer path sets it (see :func:`root`).
    """
    try:
        yield
    except CurriculumError as err:
        raise err._copy((*parts, *err.path), None) from err.__cause__


@contextmanager
def root(name: str, *, replace: bool = False) -> Iterator[None]:
    """Sets the root of a :class:`CurriculumError` raised inside.

    Args:
        name: The root, e.g. a class name or a file path.
        replace: Replace a root already set (a file path over ``"task distribution"``);
            by default the innermost root wins.
    """
    try:
        yield
    except CurriculumError as err:
        if err.root is not None and not replace:
            raise
        raise err._copy(err.path, name) from err.__cause__


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (case-insensitive), or ``""``."""
    if not isinstance(value, str):
        return ""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    hits = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[hits[0]]!r}?" if hits else ""


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def obj(value: Any, what: str = "a JSON object") -> Mapping[str, Any]:
    """Checks that ``value`` is a mapping with string keys."""
    if not isinstance(value, Mapping):
        raise CurriculumTypeError(f"expected {what}, got {type_name(value)} {value!r:.80}")
    for key in value:
        if not isinstance(key, str):
            raise CurriculumTypeError(f"keys must be strings, got {type_name(key)} {key!r}")
    return value


def keys(
    value: Any, required: Sequence[str], optional: Sequence[str] = (), what: str = "object"
) -> Mapping[str, Any]:
    """Checks an object's keys: every required one present, none unknown.

    An unknown key is reported with the closest allowed key and the list of allowed keys.
    """
    value = obj(value)
    allowed = (*required, *optional)
    for key in value:
        if key not in allowed:
            raise CurriculumError(
                f"unknown {what} field {key!r}{did_you_mean(key, allowed)} "
                f"Allowed fields: {', '.join(allowed)}"
            )
    for key in required:
        if key not in value:
            raise CurriculumError(
                f"missing required {what} field {key!r} (required: {', '.join(required)})"
            )
    return value


def string(value: Any, *, non_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise CurriculumTypeError(f"expected a string, got {type_name(value)} {value!r:.80}")
    if non_empty and not value:
        raise CurriculumError("expected a non-empty string, got ''")
    return value


def number(
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    what: str = "a number",
) -> float:
    """A finite real number (ints accepted, bools refused) in ``[low, high]``, as ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CurriculumTypeError(f"expected {what}, got {type_name(value)} {value!r:.80}")
    out = float(value)
    if not math.isfinite(out):
        raise CurriculumError(f"{value!r} is not finite; expected {what}")
    if low is not None and (out < low or (low_open and out == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise CurriculumError(f"{value!r} is out of range; expected {what} {bound}")
    if high is not None and out > high:
        raise CurriculumError(f"{value!r} is out of range; expected {what} <= {high}")
    return out


def integer(value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """An integer (bools and floats refused) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CurriculumTypeError(f"expected an integer, got {type_name(value)} {value!r:.80}")
    out = int(value)
    if (low is not None and out < low) or (high is not None and out > high):
        span = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise CurriculumError(f"{value!r} is out of range; expected an integer in {span}")
    return out


def seq(value: Any, *, what: str = "a list", min_len: int = 0) -> Sequence[Any]:
    """A list or tuple (strings refused) with at least ``min_len`` entries."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise CurriculumTypeError(f"expected {what}, got {type_name(value)} {value!r:.80}")
    if len(value) < min_len:
        raise CurriculumError(f"expected {what} with at least {min_len} entries, got {len(value)}")
    return value


def weights(value: Any, *, n: int | None = None) -> tuple[float, ...]:
    """Mixture weights: finite numbers >= 0 whose sum is positive (not normalised here)."""
    items = seq(value, what="a list of weights", min_len=1)
    if n is not None and len(items) != n:
        raise CurriculumError(f"expected {n} weights (one per entry), got {len(items)}")
    out = []
    for i, w in enumerate(items):
        with at(i):
            out.append(number(w, low=0.0, what="a weight"))
    if not sum(out) > 0.0:
        raise CurriculumError(
            f"weights {list(out)!r:.120} sum to {sum(out)}; expected a positive sum "
            "(at least one weight > 0)"
        )
    return tuple(out)


def json_value(value: Any) -> Any:
    """Checks a free-form JSON value (diagnostics) and returns a deep copy of it.

    Allowed: null, bool, int, finite float, str, lists of these, objects with string keys.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return number(value, what="a finite number (JSON has no NaN or Infinity)")
    if isinstance(value, Mapping):
        out = {}
        for key, item in obj(value).items():
            with at(key):
                out[key] = json_value(item)
        return out
    if isinstance(value, (list, tuple)):
        out_list = []
        for i, item in enumerate(value):
            with at(i):
                out_list.append(json_value(item))
        return out_list
    raise CurriculumTypeError(
        f"expected a JSON value (null, bool, number, string, list, object), got "
        f"{type_name(value)} {value!r:.80}"
    )
