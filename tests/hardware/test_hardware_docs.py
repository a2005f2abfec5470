"""The examples in hardware's docstrings run as written; the command line refuses unsafe binds."""

import doctest
import importlib

import pytest

from hardware.server import main

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "module",
    ["hardware", "hardware.robot", "hardware.safety", "hardware.twin", "hardware.wire",
     "hardware.server", "hardware.remote"],
)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0


def test_importing_hardware_does_not_load_mujoco_or_zmq():
    import subprocess
    import sys

    code = ("import sys, hardware; "
            "print(sorted(m for m in ('sim', 'mujoco', 'zmq') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.strip() == "[]"


def test_command_line_refuses_a_public_bind_without_token(monkeypatch, capsys):
    monkeypatch.delenv("ROBOLEARN_ROBOT_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--host", "0.0.0.0", "--port", "0"])
    assert exit_.value.code == 2
    assert "without a token" in capsys.readouterr().err


def test_command_line_names_the_closest_backend(capsys):
    with pytest.raises(SystemExit):
        main(["--backend", "twins"])
    assert "did you mean 'twin'" in capsys.readouterr().err
