"""The examples in sim's docstrings run as written."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["sim", "sim.tasks", "sim.params", "sim.env", "sim.experts"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0
