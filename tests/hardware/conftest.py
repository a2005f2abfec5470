"""Fixtures for the hardware tests: twins, in-process servers on free loopback ports, and
subprocess helpers with bounded waits."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardware import RobotServer, TwinRobot

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token"


@pytest.fixture
def twin():
    """A connected, as-fast-as-possible twin of reach-v3; disconnected afterwards."""
    robot = TwinRobot("reach-v3", seed=0)
    robot.connect()
    yield robot
    robot.disconnect()


@pytest.fixture
def served_twin():
    """(server, twin): an in-process server on a free 127.0.0.1 port with a 0.3 s link
    timeout, serving a fresh twin."""
    robot = TwinRobot("reach-v3", seed=0)
    server = RobotServer(robot, port=0, token=TOKEN, link_timeout_s=0.3)
    server.start_in_thread()
    yield server, robot
    server.close()


def python_process(*args: str) -> subprocess.Popen:
    """``python *args`` from the repository root, stdout (with stderr) piped, unbuffered."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def read_until(proc: subprocess.Popen, marker: str, timeout_s: float) -> str:
    """Reads ``proc``'s output until a line contains ``marker``; returns that line. Fails after
    ``timeout_s`` or when the process exits first. Reads the raw fd (no hidden buffering)."""
    deadline = time.monotonic() + timeout_s
    fd = proc.stdout.fileno()
    text = ""
    while True:
        for line in text.split("\n")[:-1]:  # complete lines only
            if marker in line:
                return line
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {marker!r} within {timeout_s} s; output: {text}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"process exited ({proc.wait(5)}) before {marker!r}: {text}")
            text += chunk.decode(errors="replace")


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL and reap (bounded)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def wait_for(predicate, timeout_s: float, interval_s: float = 0.005) -> float:
    """Polls ``predicate`` until true; returns the time.monotonic() it became true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)
    return time.monotonic()
