"""``robolearn train trainer=ray``: the local trainer's run and format on Ray Train; a killed
worker and a killed driver both end in a run resumed from its last checkpoint with exactly
``steps`` optimiser steps; clear errors for impossible requests.

One local Ray instance serves the in-process tests of this module (``ray_session`` reuses an
initialised Ray); the driver-kill test runs the command in a subprocess with its own instance.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

import robolearn
from robolearn.cli import compose
from robolearn.cluster import RayTrainConfig, ResourceError, ray_session
from robolearn.train import train
from robolearn.train.ray import experiment_name
from tests.support import ACTION_DIM, OBS_DIM, SMALL_POLICY
from tests.support import ROOT as REPO

BASE = ["batch_size=16", "warmup_steps=2", "tensorboard=false", "progress=false",
        "num_threads=1", *SMALL_POLICY]


@pytest.fixture(scope="module")
def ray_local():
    from omegaconf import OmegaConf

    with ray_session(OmegaConf.structured(RayTrainConfig())) as ray:
        yield ray


def _cfg(dataset, out, *extra):
    return compose("train", [f"dataset={dataset}", f"out={out}", *BASE, *extra])


def _state(run):
    ckpt = Path(run) / "checkpoint"
    return (load_file(str(ckpt / "model.safetensors")),
            load_file(str(ckpt / "training_state" / "state.safetensors")))


def _assert_same_weights(run_a, run_b):
    (wa, sa), (wb, sb) = _state(run_a), _state(run_b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), f"inference weight {k} differs"
    for k in sa:
        if k.startswith(("model.", "ema.", "optim.")):
            assert (sa[k] == sb[k]).all(), f"training state {k} differs"


def _metric_lines(run, key="train/loss"):
    lines = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return [(x["step"], x[key]) for x in lines if key in x]


def _attempts(run):
    path = Path(run) / "workers.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _registered_steps(run):
    """Checkpoint steps Ray Train has registered (its checkpoint manager's snapshot)."""
    run = Path(run)
    snap = run / "ray" / experiment_name(run) / "checkpoint_manager_snapshot.json"
    try:
        state = json.loads(snap.read_text())
    except (OSError, ValueError):
        return []
    return [int(r["metrics"]["step"]) for r in state["checkpoint_results"]]


def _optimizer_steps(run):
    _, state = _state(run)
    steps = {int(v.item()) for k, v in state.items() if k.startswith("optim.") and
             k.endswith(".step")}
    assert len(steps) == 1
    return steps.pop()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_worker_after_a_checkpoint(out, rank, killed):
    """Starts a thread that SIGKILLs training worker ``rank`` of ``out``'s first attempt as soon
    as Ray Train has registered a checkpoint; fills ``killed`` with its ``pid`` and that ``step``."""

    def kill():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            attempts, registered = _attempts(out), _registered_steps(out)
            if attempts and registered:
                killed["step"] = max(registered)
                killed["pid"] = attempts[0]["workers"][rank]["pid"]
                os.kill(killed["pid"], signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    return killer


# ---------------------------------------------------------------------------- no Ray needed
def test_unknown_trainer_and_bad_worker_counts_fail_before_ray_starts(dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown trainer 'rya'. Did you mean 'ray'"):
        train(_cfg(dataset, tmp_path / "a", "trainer=rya", "steps=4"))
    with pytest.raises(ValueError, match="ray.num_workers=0 .*use trainer=local"):
        train(_cfg(dataset, tmp_path / "a", "trainer=ray", "ray.num_workers=0", "steps=4"))
    with pytest.raises(ValueError, match="device=cpu and ray.use_gpu=true: drop one"):
        train(_cfg(dataset, tmp_path / "a", "trainer=ray", "device=cpu", "ray.use_gpu=true"))
    with pytest.raises(FileNotFoundError, match="no episode store"):
        train(_cfg(tmp_path / "missing.zarr", tmp_path / "a", "trainer=ray", "steps=4"))
    assert not (tmp_path / "a" / "checkpoints").exists()


def test_finished_run_is_refused_or_accepted_before_ray_starts(dataset, tmp_path):
    done = train(_cfg(dataset, tmp_path / "run", "steps=4", "checkpoint_every=4"))
    with pytest.raises(FileExistsError, match="finished run .*overwrite=true"):
        train(_cfg(dataset, tmp_path / "run", "trainer=ray", "steps=4"))
    same = train(_cfg(dataset, tmp_path / "run", "trainer=ray", "steps=4", "resume=true"))
    assert same.steps == 4 and same.checkpoint == done.checkpoint.resolve()
    assert not (tmp_path / "run" / "workers.jsonl").exists()


def test_scaling_defaults_follow_the_cluster():
    from omegaconf import OmegaConf

    from robolearn.train.ray import resolve_scaling

    def scale(nodes, device="auto", **ray):
        return resolve_scaling(OmegaConf.structured(RayTrainConfig(**ray)), nodes, device)

    cpu_box = [{"CPU": 2.0}]
    assert scale(cpu_box) == scale(cpu_box, device="cpu")
    s = scale(cpu_box)
    assert (s.workers, s.cpus, s.use_gpu, s.threads) == (1, 2.0, False, 2)
    s = scale(cpu_box, num_workers=2)
    assert (s.workers, s.cpus) == (2, 1.0)
    gpu_nodes = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 2.0}]
    s = scale(gpu_nodes)
    assert (s.workers, s.cpus, s.use_gpu, s.gpus) == (4, 8.0, True, 1.0)
    assert not scale(gpu_nodes, device="cpu").use_gpu
    assert scale(cpu_box, device="cuda").use_gpu  # the resource check then says: no GPU
    # 3 workers on 2 x 8 CPUs: 5 CPUs each would not fit on the nodes, 4 do
    s = scale([{"CPU": 8.0}, {"CPU": 8.0}], num_workers=3)
    assert s.cpus == 4.0


def test_final_checkpoint_is_copied_from_ray_storage_when_the_run_dir_lacks_it(dataset,
                                                                               tmp_path):
    """Multi-node without a shared `out`: rank 0 wrote the run directory on another machine;
    the command copies the final checkpoint from Ray's storage into its own `out`."""
    from ray.train import Checkpoint

    from robolearn.train.ray import _materialise

    done = train(_cfg(dataset, tmp_path / "elsewhere", "steps=4", "checkpoint_every=4"))
    here = tmp_path / "here"
    here.mkdir()
    _materialise(Checkpoint.from_directory(str(done.checkpoint)), here)
    assert (here / "checkpoint").resolve() == (here / "checkpoints" / "step_0000004").resolve()
    _assert_same_weights(tmp_path / "elsewhere", here)
    assert robolearn.load_policy(here, device="cpu").tasks == ["task-0", "task-1", "task-2"]


# ---------------------------------------------------------------------------- on Ray
@pytest.mark.slow
def test_one_worker_run_equals_the_local_run(ray_local, dataset, tmp_path):
    local = train(_cfg(dataset, tmp_path / "local", "steps=12", "checkpoint_every=6",
                       "log_every=3", "val_every=4"))
    on_ray = train(_cfg(dataset, tmp_path / "ray", "trainer=ray", "steps=12",
                        "checkpoint_every=6", "log_every=3", "val_every=4"))
    assert on_ray.steps == local.steps == 12 and on_ray.restarts == 0
    assert on_ray.checkpoint == (tmp_path / "ray" / "checkpoints" / "step_0000012").resolve()
    # the same files, the same checkpoint config (but the trainer's own options), same weights
    files = sorted(p.relative_to(local.checkpoint) for p in local.checkpoint.rglob("*"))
    assert files == sorted(p.relative_to(on_ray.checkpoint) for p in on_ray.checkpoint.rglob("*"))
    ca = json.loads((local.checkpoint / "config.json").read_text())
    cb = json.loads((on_ray.checkpoint / "config.json").read_text())
    ta, tb = ca.pop("train"), cb.pop("train")
    assert ca == cb
    assert tb["trainer"] == "ray" and ta["trainer"] == "local"
    for key in ("trainer", "out", "dataset"):
        ta.pop(key), tb.pop(key)
    assert ta == tb
    _assert_same_weights(tmp_path / "local", tmp_path / "ray")
    assert _metric_lines(tmp_path / "local") == _metric_lines(tmp_path / "ray")
    assert sorted(p.name for p in (tmp_path / "ray" / "checkpoints").iterdir()) == [
        "step_0000006", "step_0000012"]
    # rank 0 reported each checkpoint to Ray Train, which keeps its copy
    assert _registered_steps(tmp_path / "ray") == [6, 12]
    (attempt,) = _attempts(tmp_path / "ray")
    assert attempt["restored_from_step"] is None and attempt["world_size"] == 1
    assert attempt["workers"][0]["pid"] != os.getpid()
    runner = robolearn.load_policy(tmp_path / "ray", device="cpu")
    a = runner.act(np.zeros(OBS_DIM, np.float32), task="task-1")
    assert a.shape == (ACTION_DIM,) and np.isfinite(a).all()

    # a finished run is refused; overwrite=true starts over, not from Ray's old checkpoints
    with pytest.raises(FileExistsError, match="finished run .*overwrite=true"):
        train(_cfg(dataset, tmp_path / "ray", "trainer=ray", "steps=12"))
    again = train(_cfg(dataset, tmp_path / "ray", "trainer=ray", "overwrite=true", "steps=8",
                       "checkpoint_every=4"))
    assert again.steps == 8 and again.resumed_from is None
    (attempt,) = _attempts(tmp_path / "ray")
    assert attempt["restored_from_step"] is None
    assert _registered_steps(tmp_path / "ray") == [4, 8]


@pytest.mark.slow
def test_killed_worker_is_restarted_from_its_last_checkpoint(ray_local, dataset, tmp_path):
    steps = 600
    opts = [f"steps={steps}", "checkpoint_every=50", "log_every=25", "val_every=200"]
    out = tmp_path / "ray"
    killed: dict[str, int] = {}

    killer = _kill_worker_after_a_checkpoint(out, 0, killed)
    result = train(_cfg(dataset, out, "trainer=ray", "ray.max_failures=1", *opts))
    killer.join(timeout=5)
    assert "pid" in killed, "the run finished before the worker could be killed"
    assert killed["step"] < steps

    first, second = _attempts(out)
    assert first["workers"][0]["pid"] == killed["pid"] and first["restored_from_step"] is None
    assert second["workers"][0]["pid"] != killed["pid"]
    assert second["restored_from"] == "ray"
    assert killed["step"] <= second["restored_from_step"] < steps
    assert second["restored_from_step"] % 50 == 0
    assert result.restarts == 1 and result.steps == steps
    # exactly `steps` optimiser steps in total: the optimiser's own count, the last checkpoint,
    # and one metrics line per log step (the lines past the restored step were rewritten)
    assert _optimizer_steps(out) == steps
    assert json.loads((out / "checkpoint" / "config.json").read_text())["step"] == steps
    assert [s for s, _ in _metric_lines(out)] == list(range(25, steps + 1, 25))
    # and the very same run as one uninterrupted (local: the 1-worker run equals it, above)
    train(_cfg(dataset, tmp_path / "local", *opts))
    _assert_same_weights(tmp_path / "local", out)
    assert _metric_lines(tmp_path / "local") == _metric_lines(out)


@pytest.mark.slow
def test_two_workers_ddp_survive_losing_rank_1_bit_exactly(ray_local, dataset, tmp_path):
    """DDP: 2 workers, each its own data stream; rank 1 is killed after a checkpoint, the group
    restarts from it (each rank its own RNG streams back) and ends where an uninterrupted
    2-worker run ends."""
    if ray_local.cluster_resources()["CPU"] < 2:
        pytest.skip("needs 2 CPUs in the local Ray instance")
    steps = 300
    opts = ["trainer=ray", "ray.num_workers=2", f"steps={steps}", "checkpoint_every=50",
            "log_every=25", "val_every=100"]
    whole = train(_cfg(dataset, tmp_path / "whole", *opts))
    assert whole.steps == steps
    (attempt,) = _attempts(tmp_path / "whole")
    assert attempt["world_size"] == 2 and len({w["pid"] for w in attempt["workers"]}) == 2
    meta = json.loads((tmp_path / "whole" / "checkpoint" / "training_state" / "state.json")
                      .read_text())
    assert meta["world_size"] == 2 and list(meta["rng_numpy_ranks"]) == ["1"]
    assert meta["rng_numpy_ranks"]["1"] != meta["rng_numpy"]
    # the global batch is 2 x 16 windows: not the 1-worker run
    single = train(_cfg(dataset, tmp_path / "single", *opts[2:]))
    assert single.final_train_loss != whole.final_train_loss

    out = tmp_path / "killed"
    killed: dict[str, int] = {}

    killer = _kill_worker_after_a_checkpoint(out, 1, killed)
    result = train(_cfg(dataset, out, *opts))
    killer.join(timeout=5)
    assert "pid" in killed, "the run finished before the worker could be killed"
    first, second = _attempts(out)
    assert second["restored_from"] == "ray" and killed["step"] <= second["restored_from_step"]
    assert result.restarts == 1 and _optimizer_steps(out) == steps
    _assert_same_weights(tmp_path / "whole", out)
    assert _metric_lines(tmp_path / "whole") == _metric_lines(out)


@pytest.mark.slow
def test_resources_the_cluster_lacks_fail_fast_with_what_exists(ray_local, dataset, tmp_path):
    cpus = ray_local.cluster_resources()["CPU"]
    many = int(cpus) + 1
    with pytest.raises(ResourceError, match=rf"asked for {many} worker\(s\) .* but the "
                                                rf"cluster has {cpus:g} CPU, 0 GPU"):
        train(_cfg(dataset, tmp_path / "a", "trainer=ray", f"ray.num_workers={many}",
                   "ray.cpus_per_worker=1", "steps=4"))
    with pytest.raises(ResourceError, match=r"1 worker\(s\) × \(64 CPU, 0 GPU\) = 64 CPU"):
        train(_cfg(dataset, tmp_path / "a", "trainer=ray", "ray.cpus_per_worker=64", "steps=4"))
    if not ray_local.cluster_resources().get("GPU"):
        with pytest.raises(ResourceError, match="1 GPU, but the cluster has .* 0 GPU"):
            train(_cfg(dataset, tmp_path / "a", "trainer=ray", "ray.use_gpu=true", "steps=4"))
    assert not (tmp_path / "a" / "checkpoints").exists()


@pytest.mark.slow
def test_killed_driver_resumes_when_the_command_is_run_again(dataset, tmp_path):
    """`robolearn train trainer=ray` as a user runs it: SIGKILL the command after a
    checkpoint (its local Ray instance goes with it), run it again → it resumes there."""
    out = tmp_path / "run"
    steps = 400
    argv = [sys.executable, "-m", "robolearn", "train", "trainer=ray", f"dataset={dataset}",
            f"out={out}", f"steps={steps}", "checkpoint_every=50", "log_every=25",
            "val_every=200", *BASE]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}

    def run(*extra, **kw):
        return subprocess.run(argv + list(extra), cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300, **kw)

    driver = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (_attempts(out) and _registered_steps(out)) and driver.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.02)
        assert driver.poll() is None, "the command finished before it could be killed"
        worker = _attempts(out)[0]["workers"][0]["pid"]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        # its Ray instance, training worker included, goes down with it
        deadline = time.monotonic() + 60
        while _alive(worker):
            assert time.monotonic() < deadline, "the training worker outlived its driver"
            time.sleep(0.2)
    finally:
        try:  # whatever the command started and left behind (its own session only)
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed_at = json.loads((out / "checkpoint" / "config.json").read_text())["step"]
    assert 0 < killed_at < steps

    resumed = run()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first, second = _attempts(out)
    assert second["restored_from_step"] == killed_at and first["restored_from_step"] is None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == steps and summary["resumed_from"] == killed_at
    assert _optimizer_steps(out) == steps
    assert [s for s, _ in _metric_lines(out)] == list(range(25, steps + 1, 25))

    refused = run()
    assert refused.returncode == 1
    assert "finished run" in refused.stderr and "overwrite=true" in refused.stderr
    assert len(_attempts(out)) == 2  # refused before any Ray worker started
