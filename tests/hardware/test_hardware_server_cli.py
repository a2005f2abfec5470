"""``python -m hardware.server`` (``robolearn serve-robot``): bad flags, a busy port and a failing
backend end in one paragraph naming the fix and a non-zero exit, never a traceback."""

from __future__ import annotations

import socket

import pytest

from hardware import Robot, Spec
from hardware.server import BACKENDS, main
from tests.hardware.conftest import TOKEN, python_process

pytestmark = pytest.mark.timeout(60)


def run_main(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("error:") == 1 and err.strip().count("\n") == 0, err  # one paragraph
    return exit_.value.code, err


def test_unknown_task_suggests_the_closest(capsys):
    code, err = run_main(capsys, "--task", "reach-v4", "--port", "0")
    assert code == 2
    assert "--task" in err and "'reach-v4'" in err and "did you mean 'reach-v3'" in err


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ('{"friction_scale": 0.8', "not valid JSON"),
        ("[1, 2]", "expects a JSON object"),
        ('{"frction_scale": 0.8}', "did you mean 'friction_scale'"),
        ('{"friction_scale": 99}', "out of range"),
        ('{"action_latency": "two"}', "action_latency"),
    ],
)
def test_bad_params_name_the_problem(capsys, params, says):
    code, err = run_main(capsys, "--params", params, "--port", "0")
    assert code == 2
    assert "--params" in err and says in err and "friction_scale" in err  # an example too


def test_port_in_use_names_the_port_and_the_fix(capsys):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        code, err = run_main(capsys, "--port", str(port), "--token", TOKEN, "--no-realtime")
    finally:
        holder.close()
    assert code == 1
    assert f"port {port} is already in use" in err and "--port" in err and "port 0" in err


def test_bad_log_level(capsys):
    code, err = run_main(capsys, "--log-level", "LOUD")
    assert code == 2 and "--log-level" in err


class _BrokenArm(Robot):
    observation_spec = Spec((3,))
    action_spec = Spec((4,))
    is_connected = False

    def connect(self) -> None:
        raise OSError("/dev/ttyUSB0: no such device")

    def get_observation(self):
        raise AssertionError("not connected")

    def send_action(self, action):
        raise AssertionError("not connected")

    def stop(self) -> None:
        pass

    def disconnect(self) -> None:
        pass


def test_a_backend_that_fails_to_connect(capsys, monkeypatch):
    monkeypatch.setitem(BACKENDS, "broken", lambda args: _BrokenArm())
    code, err = run_main(capsys, "--backend", "broken", "--port", "0", "--no-safety")
    assert code == 1 and "/dev/ttyUSB0: no such device" in err and "failed to connect" in err


def test_the_real_command_line_exits_without_a_traceback():
    proc = python_process("-m", "hardware.server", "--task", "reach_v3", "--port", "0")
    out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert proc.returncode == 2, text
    assert "Traceback" not in text and "did you mean 'reach-v3'" in text
