"""The examples in the policies docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "policies.base",
    "policies.backbones",
    "policies.flow_matching",
    "policies.regression",
    "policies.diffusion",
    "policies.ema",
    "policies.registry",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
