"""Demonstration collection: determinism, resume, and kill -9 of a real `robolearn collect`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from omegaconf import OmegaConf

from robolearn.cli import compose
from robolearn.collect import collect, episode_seed
from robolearn.data import EpisodeStore
from robolearn.errors import ConfigError, ReuseError


def _cfg(out, **kw):
    overrides = [f"out={out}", "background_writer=false", "ray.num_workers=0"] + [
        f"{k}={v}" for k, v in kw.items()]
    return compose("collect", overrides, preset="debug")


def _assert_same_episodes(a_path, b_path, n=None):
    with EpisodeStore.open(a_path) as a, EpisodeStore.open(b_path) as b:
        n = len(a) if n is None else n
        assert len(b) >= n
        for i in range(n):
            ea, eb = a.episode(i), b.episode(i)
            for k in ea.data:
                np.testing.assert_array_equal(ea.data[k], eb.data[k], err_msg=f"ep {i} {k}")
            assert (ea.task, ea.seed, ea.params, ea.info) == (eb.task, eb.seed, eb.params, eb.info)
        return len(a)


def test_episode_seeds_are_a_function_of_seed_task_attempt():
    assert episode_seed(0, "push-v3", 3) == episode_seed(0, "push-v3", 3)
    seeds = {episode_seed(s, t, a) for s in (0, 1) for t in ("push-v3", "reach-v3") for a in range(20)}
    assert len(seeds) == 80


@pytest.mark.slow
def test_collection_is_reproducible_and_resumes_exactly(tmp_path):
    full, part = tmp_path / "full.zarr", tmp_path / "part.zarr"
    collect(_cfg(full, episodes_per_task=4), progress=False)
    collect(_cfg(part, episodes_per_task=2), progress=False)
    summary = collect(_cfg(part, episodes_per_task=4), progress=False)
    assert summary.resumed_episodes == 2 and summary.episodes == 4
    assert _assert_same_episodes(full, part) == 4


@pytest.mark.slow
def test_failed_attempts_are_counted_not_kept(tmp_path):
    # a weak arm (gain 0.1: a tenth of the motion per action) cannot reach in 500 steps
    cfg = _cfg(tmp_path / "x.zarr", episodes_per_task=1, max_attempts_per_task=2)
    cfg.randomize.actuator_gain_scale = [0.1, 0.1]
    summary = collect(cfg, progress=False)
    t = summary.tasks[0]
    assert (t.attempts, t.successes, t.kept, t.success_rate) == (2, 0, 0, 0.0)
    with EpisodeStore.open(tmp_path / "x.zarr") as r:
        assert len(r) == 0


def _committed(path) -> int:
    """Episodes committed so far, read without the writer lock (readers never block it)."""
    try:
        with EpisodeStore.open(path) as r:
            return len(r)
    except Exception:  # not created yet, or its creation not finished
        return 0


@pytest.mark.slow
def test_kill_minus_9_of_robolearn_collect_then_rerun(tmp_path):
    """SIGKILL the real command at random moments (alone, or with its writer process).

    The first kill lands at a random time during start-up; later ones are timed by progress
    (a random number of new committed episodes plus a random delay), so a faster or slower
    machine still kills mid-collection rather than after it finished.
    """
    # enough episodes that collection outlasts five kills on a fast machine (the lean sim step
    # collects ~35 reach episodes a second on one core): each round consumes at most a few
    n = 160
    ref = tmp_path / "ref.zarr"
    collect(_cfg(ref, episodes_per_task=n), progress=False)
    out = tmp_path / "crash.zarr"
    cmd = [sys.executable, "-m", "robolearn", "collect", "--preset", "debug", f"out={out}",
           f"episodes_per_task={n}", f"run_dir={tmp_path}/runs", "ray.num_workers=0"]
    rng = np.random.default_rng(7)
    kills, mid_run_kills, committed = 0, 0, 0
    for round_ in range(5):
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        if round_ == 0:
            time.sleep(float(rng.uniform(0.3, 2.0)))
        else:
            target = committed + int(rng.integers(1, 4))
            deadline = time.monotonic() + 120
            while proc.poll() is None and _committed(out) < target:
                assert time.monotonic() < deadline, "collection made no progress"
                time.sleep(0.02)
            time.sleep(float(rng.uniform(0.0, 0.15)))
        if proc.poll() is not None:
            break
        (os.killpg if round_ % 2 else os.kill)(proc.pid, signal.SIGKILL)
        kills += 1
        proc.wait()
        if not out.exists():
            continue
        deadline = time.monotonic() + 30
        while True:  # an orphaned writer may still be committing what it was handed
            try:
                EpisodeStore.open(out, mode="a").close()
                break
            except Exception:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with EpisodeStore.open(out) as r:
            assert len(r) >= committed, "a committed episode was lost"
            committed = len(r)
        mid_run_kills += committed < n
        if committed:
            _assert_same_episodes(out, ref, committed)
    assert kills >= 3 and mid_run_kills >= 2, "collection finished before it could be killed"
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _assert_same_episodes(ref, out) == n
    with EpisodeStore.open(out) as r:
        assert len(r) == n


def test_config_round_trips_through_yaml(tmp_path):
    cfg = _cfg(tmp_path / "x.zarr")
    again = OmegaConf.create(OmegaConf.to_yaml(cfg))
    assert again == cfg


def test_expert_sees_state_labels_from_the_clean_state_keeps_the_noisy_observation(tmp_path):
    def first_step(name, noise, sees):
        cfg = _cfg(tmp_path / f"{name}.zarr", episodes_per_task=1, expert_sees=sees)
        cfg.randomize.obs_noise_std = [noise, noise]
        collect(cfg, progress=False)
        with EpisodeStore.open(tmp_path / f"{name}.zarr") as r:
            ep = r.episode(0)
            return ep.data["obs"][0], ep.data["action"][0]

    obs_a, act_a = first_step("state05", 0.05, "state")
    obs_b, act_b = first_step("state02", 0.02, "state")
    obs_c, act_c = first_step("obs05", 0.05, "observation")
    # the stored observation is the noisy one the policy sees, whatever the expert reads
    np.testing.assert_array_equal(obs_a, obs_c)
    assert not np.allclose(obs_a, obs_b)
    # on the state the expert's action does not depend on the observation noise; on the
    # observation it does
    np.testing.assert_allclose(act_a, act_b, atol=1e-6)
    assert not np.allclose(act_a, act_c, atol=1e-3)

    # a store keeps what its expert saw: resuming with the other setting is refused
    cfg = _cfg(tmp_path / "state05.zarr", episodes_per_task=2, expert_sees="observation")
    cfg.randomize.obs_noise_std = [0.05, 0.05]
    with pytest.raises(ReuseError, match="expert_sees: store 'state', asked 'observation'"):
        collect(cfg, progress=False)
    with pytest.raises(ConfigError, match="expert_sees='stat'.*Did you mean 'state'"):
        collect(_cfg(tmp_path / "x.zarr", expert_sees="stat"), progress=False)
