"""kill -9 at random moments loses at most the episode in flight; a re-run resumes.

A real subprocess appends deterministic episodes and is SIGKILLed at random times, either
alone (its background writer then drains what it was handed) or together with its writer
(the whole process group: the store's repair-on-open removes the torn tail).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from robolearn.data import EpisodeStore
from tests.support import ROOT, make_episode

TARGET = 60


def _start(path, mode):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.robolearn.data.crash_worker", str(path), str(TARGET), mode],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )


def _wait_started(proc, timeout=60.0):
    line = proc.stdout.readline().decode()
    assert line.startswith("start"), (line, proc.stderr.read().decode()[-2000:])
    return int(line.split()[1])


def _check_prefix(path, n_before):
    """Every committed episode is exactly what was written; nothing committed was lost."""
    deadline = time.monotonic() + 30
    while True:  # an orphaned writer may still be draining: wait for its lock to go
        try:
            EpisodeStore.open(path, mode="a").close()
            break
        except Exception:
            assert time.monotonic() < deadline, "writer never released the store"
            time.sleep(0.1)
    with EpisodeStore.open(path) as r:
        n = len(r)
        assert n >= n_before, f"committed episodes were lost: {n} < {n_before}"
        for i in range(n):
            ep = r.episode(i)
            ref = make_episode(i, length=200)
            for k in ref:
                np.testing.assert_array_equal(ep.data[k], ref[k], err_msg=f"episode {i} key {k}")
            assert ep.seed == i and ep.task == f"t{i % 3}"
        return n


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode,kill_group",
    [("background", False), ("background", True), ("inline", False)],
    ids=["kill-collector", "kill-collector-and-writer", "inline-writer"],
)
def test_kill_minus_9_at_random_points_then_resume(tmp_path, mode, kill_group):
    rng = np.random.default_rng(1234)
    path = tmp_path / "crash.zarr"
    committed = 0
    kills = 0
    for _ in range(6):
        proc = _start(path, mode)
        _wait_started(proc)
        time.sleep(float(rng.uniform(0.05, 0.5)))
        if proc.poll() is None:
            if kill_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        committed = _check_prefix(path, committed)
        if committed >= TARGET:
            break
    assert kills >= 3, "the worker finished before it could be killed: make episodes longer"
    proc = _start(path, mode)
    _wait_started(proc)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert _check_prefix(path, committed) == TARGET
