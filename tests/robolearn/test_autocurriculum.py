"""The automatic curriculum of the pipeline: budget split and allocation, the loop end to end on
two tasks with tiny budgets, and kill -9 mid-round then resume to the same allocations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from robolearn import cli
from robolearn.autocurriculum import allocate, allocation_shares, split_budget
from robolearn.errors import ConfigError
from tests.support import ROOT

TASKS = "MT:reach-v3+drawer-close-v3"


def test_budgets_split_exactly_and_allocations_honour_shares_and_floor():
    assert split_budget(10, 3) == [4, 3, 3] and sum(split_budget(2500, 7)) == 2500
    alloc = allocate(100, {"a": 0.7, "b": 0.2, "c": 0.1}, floor=0.1)
    assert sum(alloc.values()) == 100 and alloc["a"] > alloc["b"] > alloc["c"] >= 10
    assert allocate(7, {"a": 1.0, "b": 0.0}, floor=0.0) == {"a": 7, "b": 0}
    assert allocate(0, {"a": 1.0}, floor=0.2) == {"a": 0}


def test_lp_shares_mix_progress_and_need():
    from curricula import LPSampler

    lp = LPSampler(["a", "b"], window=2, epsilon=0.0, floor=0.0)
    lp.update_many({"a": 0.1, "b": 0.9})
    lp.update_many({"a": 0.6, "b": 0.9})  # a progresses, b is flat
    shares = allocation_shares("lp", lp, {"a": 0.6, "b": 0.9}, need_weight=0.5)
    assert shares["a"] > 0.8 and abs(sum(shares.values()) - 1) < 1e-9
    uniform = allocation_shares("uniform", lp, {"a": 0.6, "b": 0.9}, need_weight=0.5)
    assert uniform == {"a": 0.5, "b": 0.5}


def test_bad_curriculum_options_are_refused():
    with pytest.raises(ConfigError, match="unknown curriculum.mode 'lpp'. Did you mean 'lp'"):
        cli.compose("pipeline", ["curriculum.mode=lpp"])
    with pytest.raises(ConfigError, match="curriculum.window=3, expected an even"):
        cli.compose("pipeline", ["curriculum.window=3"])


def _argv(out, tmp_path, mode="lp"):
    return ["pipeline", "--preset", "debug", f"curriculum.mode={mode}",
            f"collect.suite={TASKS}", "collect.episodes_per_task=8", "curriculum.rounds=3",
            "curriculum.probe_episodes=2", "train.steps=30", "train.checkpoint_every=5",
            "evaluate.horizon=60", "ray.num_workers=0", "train.progress=false",
            f"train.out={out}", f"run_dir={tmp_path}/p-{out.name}"]


@pytest.mark.slow
def test_the_curriculum_runs_end_to_end_and_resumes_after_kill_9(tmp_path):
    ref = tmp_path / "ref"
    summary = cli.run(_argv(ref, tmp_path)[0], _argv(ref, tmp_path)[3:], preset="debug")
    state = json.loads((ref / "curriculum.json").read_text())
    assert [r["train_until"] for r in state["rounds"]] == [10, 20, 30]
    assert summary["budget"]["demo_episodes"] == 16 and summary["budget"]["train_steps"] == 30
    assert summary["budget"]["probe_episodes"] == 2 * 2 * 3
    assert all(sum(r["allocation"].values()) in (6, 5) for r in state["rounds"][1:])
    for name in ("curriculum.png", "distributions/round_2.json", "checkpoint"):
        assert (ref / name).exists(), name

    # the same job, SIGKILLed at random moments until it finishes, ends with the same record
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "robolearn", *_argv(out, tmp_path)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    kills = 0
    for delay in (6.0, 9.0, 12.0):
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(60)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert kills >= 1, "the job finished before it could be killed"
    got = json.loads((out / "curriculum.json").read_text())
    for a, b in zip(state["rounds"], got["rounds"], strict=True):
        for key in ("allocation", "demo_targets", "probe", "train_task_weights"):
            assert a[key] == b[key], key


def test_a_plain_training_run_is_not_taken_over_by_a_curriculum(tmp_path):
    from robolearn.autocurriculum import STATE, _State
    from robolearn.errors import ReuseError

    (tmp_path / "checkpoint").mkdir()  # a finished `robolearn train` run lives here
    with pytest.raises(ReuseError, match="not a curriculum run"):
        _State(tmp_path / STATE, {"curriculum": {}})
    state = _State(tmp_path / "other" / STATE, {"a": 1}) if (tmp_path / "other").mkdir() is None \
        else None
    state.rounds.append({"round": 0})
    state.save()
    with pytest.raises(ReuseError, match="other settings \\(a\\)"):
        _State(tmp_path / "other" / STATE, {"a": 2})
