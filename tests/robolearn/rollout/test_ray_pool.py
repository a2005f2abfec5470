"""Rollouts on Ray actors: same seeds → the same episodes and success numbers as one process;
a lost actor is replaced and its work re-run; clear errors for impossible requests.

One local Ray instance serves the module (commands reuse an initialised Ray)."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import psutil
import pytest

from robolearn import cli
from robolearn.cli import compose
from robolearn.cluster import RayConfig, ResourceError, ray_session
from robolearn.collect import collect
from robolearn.data import EpisodeStore

pytestmark = pytest.mark.slow

SUITE = "MT:reach-v3+push-v3"


@pytest.fixture(scope="module")
def ray_local():
    with ray_session(RayConfig()) as ray:
        yield ray


def _collect_cfg(out, workers, **kw):
    overrides = [f"suite={SUITE}", f"out={out}", f"ray.num_workers={workers}",
                 "episodes_per_task=3", "action_noise_std=0.3",
                 "randomize.friction_scale=[0.7,1.3]", "randomize.action_latency=[0,2]"]
    return compose("collect", overrides + [f"{k}={v}" for k, v in kw.items()])


def _assert_same_store(a_path, b_path):
    with EpisodeStore.open(a_path) as a, EpisodeStore.open(b_path) as b:
        assert len(a) == len(b) > 0
        assert np.array_equal(a.episode_ends, b.episode_ends)
        for key in ("obs", "action", "reward", "success"):
            assert np.array_equal(a.load([key])[key], b.load([key])[key]), key
        for field in ("task", "seed", "params", "info", "source"):
            assert list(a.meta(field)) == list(b.meta(field)), field


def _worker_pids():
    # only this test's own cluster (the local Ray started by this process): another Ray job on
    # the machine has RolloutWorker processes too, and killing one of those proves nothing
    pids = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if any("RolloutWorker" in part for part in p.cmdline()):
                pids.append(p.pid)
        except psutil.Error:  # gone (or a zombie) since the listing
            pass
    return pids


def test_ray_collection_equals_the_single_process_one(ray_local, tmp_path):
    # noisy expert + randomised physics: some attempts fail, so the speculative dispatch and
    # the in-order commit are both exercised
    here = collect(_collect_cfg(tmp_path / "here.zarr", 0), progress=False)
    on_ray = collect(_collect_cfg(tmp_path / "ray.zarr", 2), progress=False)
    assert here.ray_workers == 0 and on_ray.ray_workers == 2
    assert [t.attempts for t in here.tasks] == [t.attempts for t in on_ray.tasks]
    _assert_same_store(tmp_path / "here.zarr", tmp_path / "ray.zarr")


def test_a_killed_actor_is_replaced_and_the_collection_is_unchanged(ray_local, tmp_path):
    # 20 episodes: with the fast sim step, 5 were all done (or in flight) before the kill landed
    ref = tmp_path / "ref.zarr"
    collect(_collect_cfg(ref, 0, episodes_per_task=20), progress=False)
    killed = []

    def kill_one(task, attempt, success):
        if not killed and attempt >= 1:
            pids = _worker_pids()
            assert pids, "no rollout actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    out = tmp_path / "killed.zarr"
    summary = collect(_collect_cfg(out, 2, episodes_per_task=20), progress=False,
                      on_episode=kill_one)
    assert killed and summary.actors_replaced >= 1
    _assert_same_store(ref, out)


def test_ray_evaluation_equals_the_single_process_one(ray_local, tmp_path):
    demos = tmp_path / "demos.zarr"
    collect(compose("collect", [f"suite={SUITE}", f"out={demos}", "ray.num_workers=2",
                                "episodes_per_task=4"]), progress=False)
    run = tmp_path / "run"
    cli.run("train", [f"dataset={demos}", f"out={run}", "steps=30", "batch_size=32",
                      "warmup_steps=5", "val_every=30", "checkpoint_every=30",
                      "tensorboard=false", "progress=false"])
    reports = {}
    for workers in (0, 2):
        out = tmp_path / f"eval{workers}"
        reports[workers] = cli.run("evaluate", [
            f"checkpoint={run}", f"suite={SUITE}", "episodes_per_task=5", "num_envs=2",
            "horizon=80", f"ray.num_workers={workers}", f"run_dir={out}"])
    strip = [{k: v for k, v in e.items() if k != "video"}
             for e in reports[0]["runs"][0]["episodes"]]
    assert strip == [{k: v for k, v in e.items() if k != "video"}
                     for e in reports[2]["runs"][0]["episodes"]]
    assert reports[0]["success_by_task"] == reports[2]["success_by_task"]
    # the expert too, with videos written by the actors
    expert = cli.run("evaluate", ["checkpoint=expert", "suite=MT1:reach-v3",
                                  "episodes_per_task=3", "num_envs=3", "ray.num_workers=2",
                                  "video=true", "videos_per_task=1", f"run_dir={tmp_path}/ex"])
    assert expert["mean_success"] == 1.0
    videos = expert["runs"][0]["videos"]
    assert len(videos) == 1 and os.path.getsize(videos[0]) > 0
    assert json.loads((tmp_path / "ex" / "report.json").read_text())["mean_success"] == 1.0


def test_more_workers_than_the_cluster_has_is_a_clear_error(ray_local, tmp_path):
    cpus = int(ray_local.cluster_resources()["CPU"])
    with pytest.raises(ResourceError,
                       match=rf"asked for {cpus + 1} worker.*{cpus + 1} CPU.*has {cpus} CPU"):
        collect(_collect_cfg(tmp_path / "x.zarr", cpus + 1, episodes_per_task=cpus + 1),
                progress=False)
    assert cli.main(["evaluate", "checkpoint=expert", "suite=MT1:reach-v3",
                     "episodes_per_task=2", "ray.num_workers=2", "ray.cpus_per_worker=8",
                     f"run_dir={tmp_path}/e"]) == 1
