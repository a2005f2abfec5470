"""The examples in the policies.alignment docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "policies.alignment.tpo",
    "policies.alignment.scoring",
    "policies.alignment.pairs",
    "policies.alignment.gw",
    "policies.alignment.reward",
    "policies.alignment.teacher",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
