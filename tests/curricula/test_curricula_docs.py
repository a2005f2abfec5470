"""The examples in curricula's docstrings run as written."""

import importlib

import pytest

from tests.support import run_doctests


@pytest.mark.parametrize(
    "module",
    ["curricula", "curricula.distribution", "curricula.factors", "curricula.progress",
     "curricula.regions"],
)
def test_docstring_examples(module):
    result = run_doctests(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
