"""The examples in sim's docstrings run as written."""

import importlib

import pytest

from tests.support import run_doctests


@pytest.mark.parametrize("module", ["sim", "sim.tasks", "sim.params", "sim.env", "sim.experts"])
def test_docstring_examples(module):
    result = run_doctests(importlib.import_module(module))
    assert result.failed == 0
