"""The examples in curricula's docstrings run as written."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    ["curricula", "curricula.distribution", "curricula.factors", "curricula.progress",
     "curricula.regions"],
)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
