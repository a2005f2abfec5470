"""Joining an existing Ray cluster: a real head started with `ray start --head` on loopback
(token authentication on), small jobs run against its address, then it is stopped. Plus the
errors a user meets: nobody at the address, a wrong token, another Ray version."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from robolearn import cli
from robolearn.data import EpisodeStore

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "OMP_WAIT_POLICY": "PASSIVE", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def head():
    """`ray start --head` on 127.0.0.1 with token authentication, stopped at the end."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray_bin, "get-auth-token", "--generate"], env=_env(), check=True,
                   stdout=subprocess.DEVNULL)  # the shared token in ~/.ray/auth_token
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rlray_", dir="/tmp")  # short: Ray's unix sockets live here
    log = open(Path(temp) / "head.log", "w")
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}",
         "--disable-usage-stats", "--block"],
        # one-machine cluster: Ray then binds every port to 127.0.0.1
        env=_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while "Ray runtime started" not in (Path(temp) / "head.log").read_text():
        assert proc.poll() is None, (Path(temp) / "head.log").read_text()
        assert time.monotonic() < deadline, "ray start --head did not come up in 90 s"
        time.sleep(0.5)
    yield {"address": f"127.0.0.1:{port}", "port": port, "proc": proc, "temp": temp}
    proc.terminate()  # `ray start --block` stops the head's processes on SIGTERM
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    log.close()
    left = [p for p in psutil.process_iter(["cmdline"])
            if any(temp in part for part in (p.info["cmdline"] or []))]
    for p in left:  # whatever the head's processes left behind (a slow worker), by its temp dir
        p.kill()
    psutil.wait_procs(left, timeout=10)
    shutil.rmtree(temp, ignore_errors=True)


def _robolearn(args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "robolearn", *args], env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def test_head_listens_on_loopback_only(head):
    gcs = [c for c in psutil.net_connections("tcp")
           if c.status == psutil.CONN_LISTEN and c.laddr.port == head["port"]]
    assert gcs and all(c.laddr.ip in ("127.0.0.1", "::ffff:127.0.0.1") for c in gcs), gcs


def test_collect_and_train_against_the_cluster_address(head, tmp_path):
    store = tmp_path / "demos.zarr"
    res = _robolearn(["collect", "suite=MT:reach-v3+drawer-close-v3", "episodes_per_task=2",
                      f"out={store}", f"ray.address={head['address']}", "ray.num_workers=2",
                      f"run_dir={tmp_path}/collect"])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "collect" / "summary.json").read_text())
    assert summary["ray_workers"] == 2 and summary["episodes"] == 4
    with EpisodeStore.open(store) as s:
        assert len(s) == 4

    run = tmp_path / "run"
    res = _robolearn(["train", "trainer=ray", f"ray.address={head['address']}",
                      "ray.num_workers=1", f"dataset={store}", f"out={run}", "steps=12",
                      "batch_size=16", "warmup_steps=2", "val_every=6", "checkpoint_every=6",
                      "log_every=3", "tensorboard=false", "progress=false"])
    assert res.returncode == 0, res.stderr[-3000:]
    import robolearn

    policy = robolearn.load_policy(run, device="cpu")
    assert policy.act(__import__("numpy").zeros(39, "float32"), task="reach-v3").shape == (4,)
    assert json.loads((run / "checkpoint" / "config.json").read_text())["step"] == 12


def test_a_wrong_token_is_refused_with_the_fix(head, tmp_path):
    res = _robolearn(["collect", "suite=MT1:reach-v3", "episodes_per_task=1",
                      f"out={tmp_path}/x.zarr", f"ray.address={head['address']}",
                      f"run_dir={tmp_path}/r"], env=_env(RAY_AUTH_TOKEN="not-the-token"))
    assert res.returncode == 1, res.stderr[-3000:]
    assert "cannot join the Ray cluster" in res.stderr and "token" in res.stderr


def test_another_ray_version_is_named(head, tmp_path):
    # This process claims another Ray version; the real cluster's real check refuses it.
    code = (
        "import ray, sys\n"
        "ray.__version__ = '2.0.0'\n"
        "from robolearn import cli\n"
        f"sys.exit(cli.main(['collect', 'suite=MT1:reach-v3', 'episodes_per_task=1', "
        f"'out={tmp_path}/v.zarr', 'ray.address={head['address']}', "
        f"'run_dir={tmp_path}/v']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-3000:]
    err = " ".join(res.stderr.split())
    assert "runs another Ray or Python version" in err and "Ray: 2.0.0" in err
    assert "pip install 'ray[train]==" in err


def test_nobody_at_the_address_fails_fast_with_the_fix(tmp_path, capsys):
    port = _free_port()  # closed
    t0 = time.monotonic()
    code = cli.main(["collect", "suite=MT1:reach-v3", "episodes_per_task=1",
                     f"out={tmp_path}/x.zarr", f"ray.address=127.0.0.1:{port}",
                     f"run_dir={tmp_path}/r"])
    assert code == 1 and time.monotonic() - t0 < 60
    err = capsys.readouterr().err
    assert f"no Ray cluster answers at ray.address=127.0.0.1:{port}" in err
    assert f"ray start --head --port={port}" in err
    for bad, what in (("localhost", "expected HOST:PORT"), ("ray://h:10001", "Ray Client")):
        assert cli.main(["collect", "suite=MT1:reach-v3", f"out={tmp_path}/y.zarr",
                         f"ray.address={bad}", f"run_dir={tmp_path}/r2"]) == 1
        assert what in capsys.readouterr().err
