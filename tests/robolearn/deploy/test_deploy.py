"""The deployment runner under faults: bad policy outputs, a stalled policy, a dead link, and
kill -9 of the runner while it records. Real twin, real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hardware import SafeRobot, SafetyConfig, TwinRobot
from robolearn import cli
from robolearn.data import EpisodeStore
from robolearn.deploy import DeployFault, run_deploy
from tests.hardware.conftest import TOKEN, python_process, read_until


class ScriptedPolicy:
    """Stands in for load_policy(...): replays a list of outputs (then a small valid action)."""

    obs_dim, action_dim, tasks, path = 39, 4, ["reach-v3"], "scripted"

    def __init__(self, outputs=(), stall_at=None, stall_s=0.0, on_step=None):
        self.outputs, self.stall_at, self.stall_s, self.on_step = list(outputs), stall_at, stall_s, on_step
        self.calls = 0

    def task_id(self, task):
        if task not in self.tasks:
            raise ValueError(f"unknown task {task!r}")
        return 0

    def reset(self):
        pass

    def act(self, obs, task):
        self.calls += 1
        if self.on_step is not None:
            self.on_step(self.calls)
        if self.stall_at is not None and self.calls == self.stall_at:
            time.sleep(self.stall_s)  # the stall under test
        if self.outputs:
            return self.outputs.pop(0)
        return np.array([0.05, 0.0, 0.0, -1.0], np.float32)


def _cfg(tmp_path, *extra):
    return cli.compose("deploy", ["checkpoint=scripted", "task=reach-v3", f"out={tmp_path}/real.zarr",
                                  "episodes=2", "max_steps=30", *extra])


def _twin_robot(**safety):
    twin = TwinRobot("reach-v3", seed=None, realtime=False)
    return twin, SafeRobot(twin, SafetyConfig.for_metaworld(**safety))


def test_bad_policy_outputs_never_reach_the_robot(tmp_path):
    bad = [np.full(4, np.nan), np.array([np.inf, 0, 0, 0]), np.full(4, 1e6), np.zeros(5),
           "left", None, np.array([-1e9, 1e9, np.nan, 0.0])]
    policy = ScriptedPolicy(outputs=bad * 3)
    twin, robot = _twin_robot(watchdog_timeout_s=5.0)
    summary = run_deploy(_cfg(tmp_path, "rate_hz=1000"), tmp_path, policy=policy, robot=robot,
                         progress=False)
    executed = np.array(twin.executed_actions)
    assert len(executed) == 60 and np.isfinite(executed).all()
    assert (np.abs(executed) <= 1.0).all()
    steps = np.abs(np.diff(executed[:, 3]))  # the gripper obeys the rate limit at all times
    assert (steps <= 0.5 + 1e-6).all()
    k = summary["interventions"]
    assert k["nonfinite"] >= 6 and k["bad_shape"] >= 9 and k["clamped"] >= 3
    with EpisodeStore.open(tmp_path / "real.zarr") as store:
        assert len(store) == 2 and store.episode(0).source == "real"
        ep = store.episode(0)
        # only the huge-but-finite request (index 2) is usable: it is clamped, not rejected
        assert ep.data["policy_ok"][:7].tolist() == [False, False, True, False, False, False, False]
        assert ep.data["policy_ok"][21:].all()
        assert ep.data["interventions"][:7].sum() >= 7
        np.testing.assert_array_equal(ep.data["action"], executed[:30])


def test_progress_config_key_drops_the_bar_not_the_episodes(tmp_path, capsys):
    for i, extra in enumerate(([], ["progress=false"])):
        _, robot = _twin_robot(watchdog_timeout_s=5.0)
        cfg = _cfg(tmp_path, "rate_hz=1000", f"out={tmp_path}/real{i}.zarr", *extra)
        summary = run_deploy(cfg, tmp_path, policy=ScriptedPolicy(), robot=robot)
        err = capsys.readouterr().err
        assert ("deploy reach-v3 on twin" in err) is (not extra)
        assert summary["episodes"] == 2


def test_stalled_policy_trips_the_watchdog_within_its_deadline(tmp_path):
    timeout = 0.1
    policy = ScriptedPolicy(stall_at=40, stall_s=0.6)  # episode 2, step 10
    twin, robot = _twin_robot(watchdog_timeout_s=timeout)
    sent_times = []
    original = twin.send_action

    def send(a):
        sent_times.append(time.monotonic())
        return original(a)

    twin.send_action = send
    with pytest.raises(DeployFault, match="WatchdogTripped"):
        run_deploy(_cfg(tmp_path, "rate_hz=200"), tmp_path, policy=policy, robot=robot,
                   progress=False)
    assert robot.interventions["watchdog"] == 1
    last_command = max(t for t in sent_times)
    first_stop_after = min(t for t in twin.stop_times if t > last_command)
    assert first_stop_after - last_command <= timeout + 0.1  # + thread scheduling slack
    with EpisodeStore.open(tmp_path / "real.zarr") as store:
        # the episode before the fault is intact; the faulted one keeps its steps, marked
        # incomplete (training readers skip it)
        assert list(store.complete_episodes()) == [0] and len(store.episode(0)) == 30
        assert list(store.incomplete_episodes()) == [1]
        partial = store.episode(1)
        assert partial.info["incomplete"] is True and 0 < len(partial) < 30


def test_unreachable_robot_exits_nonzero(tmp_path, capsys):
    code = cli.main(["deploy", "checkpoint=scripted", "robot=remote", "remote.port=1",
                     f"out={tmp_path}/x.zarr", f"run_dir={tmp_path}/run"])
    assert code != 0
    err = capsys.readouterr().err
    assert "no checkpoint" in err or "link" in err.lower()


@pytest.mark.slow
def test_server_killed_mid_run_stops_and_keeps_recorded_episodes(tmp_path):
    proc = python_process("-m", "hardware.server", "--backend", "twin", "--task", "reach-v3",
                          "--port", "0", "--token", TOKEN, "--no-realtime")
    try:
        line = read_until(proc, "hardware.server listening on tcp://", timeout_s=30)
        port = int(re.search(r"tcp://127\.0\.0\.1:(\d+)", line).group(1))

        def kill_server(call):
            if call == 45:  # in the second episode
                os.kill(proc.pid, signal.SIGKILL)

        cfg = _cfg(tmp_path, "robot=remote", f"remote.port={port}", f"remote.token={TOKEN}",
                   "remote.timeout_s=0.5", "rate_hz=500", "episodes=3")
        t0 = time.monotonic()
        with pytest.raises(DeployFault, match="RobotLinkError"):
            run_deploy(cfg, tmp_path, policy=ScriptedPolicy(on_step=kill_server), progress=False)
        assert time.monotonic() - t0 < 20
    finally:
        proc.kill()
        proc.wait(10)
    with EpisodeStore.open(tmp_path / "real.zarr") as store:
        assert list(store.complete_episodes()) == [0] and len(store.episode(0)) == 30
        assert store.episode(0).seed is None  # a remote robot's goal is not ours to know
        # the steps of the episode the dead link cut short are kept for the post-mortem
        assert list(store.incomplete_episodes()) == [1]
        assert 0 < len(store.episode(1)) <= 15


@pytest.mark.slow
def test_kill_minus_9_of_the_runner_keeps_committed_episodes(tmp_path):
    run = tmp_path / "policy"
    cli.run("pipeline", [f"collect.out={tmp_path}/demos.zarr", f"train.out={run}",
                         "train.progress=false", "evaluate.episodes_per_task=1", "ray.num_workers=0",
                         f"run_dir={tmp_path}/p"], preset="debug")
    out = tmp_path / "real.zarr"
    cmd = [sys.executable, "-m", "robolearn", "deploy", f"checkpoint={run}", "task=reach-v3",
           "episodes=50", "max_steps=40", f"out={out}", f"run_dir={tmp_path}/d"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until a few episodes are committed
        try:
            with EpisodeStore.open(out) as s:
                if len(s) >= 2:
                    break
        except Exception:
            pass
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with EpisodeStore.open(out, mode="a") as store:  # repairs any torn tail
        n = len(store)
        assert n >= 2
        # on a loaded machine the watchdog may stop the run before the kill: its cut-short
        # episode is kept, marked incomplete (a fault's record, never trained on)
        complete = set(store.complete_episodes().tolist())
        assert len(complete) >= min(2, n) - 1
        for i in range(n):
            ep = store.episode(i)
            assert ep.source == "real"
            if i in complete:  # full horizon, or ended on success
                assert len(ep) == 40 or ep.data["success"][-1]
            else:
                assert ep.info["incomplete"] is True and i == n - 1
            assert np.isfinite(ep.data["obs"]).all()


def test_a_refused_robot_link_leaves_no_new_store_and_keeps_an_existing_one(tmp_path):
    from robolearn.errors import RobotRefused

    proc = python_process("-m", "hardware.server", "--backend", "twin", "--task", "reach-v3",
                          "--port", "0", "--token", TOKEN, "--no-realtime")
    try:
        line = read_until(proc, "hardware.server listening on tcp://", timeout_s=30)
        port = int(re.search(r"tcp://127\.0\.0\.1:(\d+)", line).group(1))
        cfg = _cfg(tmp_path, "robot=remote", f"remote.port={port}", "remote.token=wrong-token",
                   "episodes=1")
        with pytest.raises(RobotRefused, match="refused this client"):
            run_deploy(cfg, tmp_path, policy=ScriptedPolicy(), progress=False)
        assert not (tmp_path / "real.zarr").exists()  # nothing ran: nothing created
        # a store that was there before stays, episodes and all
        ok = _cfg(tmp_path, "robot=remote", f"remote.port={port}", f"remote.token={TOKEN}",
                  "episodes=1")
        run_deploy(ok, tmp_path, policy=ScriptedPolicy(), progress=False)
        with pytest.raises(RobotRefused):
            run_deploy(cfg, tmp_path, policy=ScriptedPolicy(), progress=False)
        with EpisodeStore.open(tmp_path / "real.zarr") as store:
            assert len(store) == 1
    finally:
        proc.kill()
        proc.wait(10)
