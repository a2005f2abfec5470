"""Training visibility: the success probe (eval/success), the best checkpoint, log.txt lines,
W&B offline runs; none of them changes what training computes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

import robolearn
from robolearn import cli
from robolearn.cli import compose
from robolearn.data import EpisodeStore
from robolearn.errors import ConfigError
from robolearn.train import train
from tests.support import SMALL_POLICY

TASK = "reach-v3"


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory):
    """Synthetic episodes of a Meta-World task (39-d obs, 4-d actions), recorded as collected
    on MT1:reach-v3 with seed 0, as `robolearn collect` records it."""
    path = tmp_path_factory.mktemp("sim") / "reach.zarr"
    with EpisodeStore.create(path, 39, 4, attrs={"suite": f"MT1:{TASK}", "collect_seed": 0}) as s:
        for i in range(4):
            rng = np.random.default_rng(i)
            T = 20
            s.add_episode({"obs": rng.normal(size=(T, 39)).astype(np.float32),
                           "action": rng.uniform(-1, 1, (T, 4)).astype(np.float32),
                           "reward": np.zeros(T, np.float32), "success": np.zeros(T, bool)},
                          task=TASK, seed=i)
    return path


def _cfg(dataset, out, *extra):
    return compose("train", [f"dataset={dataset}", f"out={out}", "steps=4", "batch_size=8",
                             "val_every=2", "checkpoint_every=2", "log_every=1",
                             "warmup_steps=1", "tensorboard=false", "progress=false",
                             "num_threads=1", "eval_episodes=1", "val_fraction=0",
                             *SMALL_POLICY, *extra])


def _metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_probe_logs_success_per_task_to_jsonl_and_tensorboard(sim_store, tmp_path):
    res = train(_cfg(sim_store, tmp_path / "run", "eval_every=2", "tensorboard=true"))
    evals = [m for m in _metrics(tmp_path / "run") if "eval/success" in m]
    assert [m["step"] for m in evals] == [2, 4]
    for m in evals:
        assert 0.0 <= m["eval/success"] <= 1.0
        assert m[f"eval/success/{TASK}"] == m["eval/success"]  # one task: mean == the task's
    assert res.eval_success == evals[-1]["eval/success"] and res.eval_seconds > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    assert {"eval/success", f"eval/success/{TASK}"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("eval/success")] == [2, 4]


def test_the_probe_does_not_change_what_training_computes(sim_store, tmp_path):
    train(_cfg(sim_store, tmp_path / "plain", "eval_every=0"))
    train(_cfg(sim_store, tmp_path / "probed", "eval_every=1", "keep_best=true"))
    a = load_file(str(tmp_path / "plain" / "checkpoint" / "training_state" / "state.safetensors"))
    b = load_file(str(tmp_path / "probed" / "checkpoint" / "training_state" / "state.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), f"{k} differs when the probe runs"
    losses = [[m["train/loss"] for m in _metrics(tmp_path / run) if "train/loss" in m]
              for run in ("plain", "probed")]
    assert losses[0] == losses[1]


def test_keep_best_keeps_the_best_probes_weights(sim_store, tmp_path):
    res = train(_cfg(sim_store, tmp_path / "run", "eval_every=1", "keep_best=true"))
    best = tmp_path / "run" / "best"
    assert res.best == str(best)
    info = json.loads((best / "best.json").read_text())
    evals = [m for m in _metrics(tmp_path / "run") if "eval/success" in m]
    top = max(m["eval/success"] for m in evals)
    assert info["success"] == top
    assert info["step"] == next(m["step"] for m in evals if m["eval/success"] == top)
    policy = robolearn.load_policy(best, device="cpu")  # a checkpoint directory
    assert policy.tasks == [TASK]
    assert policy.act(np.zeros(39, np.float32), task=TASK).shape == (4,)


def test_the_probe_refuses_goals_that_were_trained_on(sim_store, tmp_path):
    with pytest.raises(ConfigError, match="eval_seed=0"):
        train(_cfg(sim_store, tmp_path / "run", "eval_every=2", "eval_seed=0"))


def test_no_probe_for_a_store_that_records_no_suite(dataset, tmp_path, caplog):
    cfg = compose("train", [f"dataset={dataset}", f"out={tmp_path / 'run'}", "steps=2",
                            "batch_size=8", "log_every=1", "warmup_steps=1", "progress=false",
                            "tensorboard=false", "eval_every=1", *SMALL_POLICY])
    with caplog.at_level("INFO", logger="robolearn.train.trainer"):
        res = train(cfg)
    assert res.eval_success is None
    assert not any("eval/success" in m for m in _metrics(tmp_path / "run"))
    assert "eval probe off" in caplog.text


def test_progress_lines_go_to_log_txt(sim_store, tmp_path):
    train(_cfg(sim_store, tmp_path / "run", "eval_every=2", "progress=true"))
    text = (tmp_path / "run" / "log.txt").read_text()
    assert "training flow_matching on" in text
    for step in (1, 2, 3, 4):
        assert f"step {step}/4 loss " in text
    assert "step 2 eval/success" in text and "step 4 eval/success" in text


@pytest.mark.parametrize("bad, match", [
    ("eval_every=-1", "eval_every"), ("eval_episodes=0", "eval_episodes"),
    ("wandb.mode=cloud", "wandb.mode"), ("wandb.run_id=a/b", "wandb.run_id"),
    ("eval_suite=MT11", "eval_suite"),
])
def test_bad_probe_and_wandb_options_are_refused(sim_store, tmp_path, bad, match):
    with pytest.raises(ConfigError, match=match):
        train(_cfg(sim_store, tmp_path / "run", "eval_every=2", bad))


@pytest.mark.slow
def test_a_wandb_offline_run_writes_its_files_and_keeps_its_id_across_resumes(sim_store,
                                                                             tmp_path):
    pytest.importorskip("wandb", reason="needs wandb: pip install 'robolearn[wandb]'")
    run = tmp_path / "run"
    train(_cfg(sim_store, run, "eval_every=2", "wandb.enable=true", "wandb.mode=offline"))
    run_id = json.loads((run / "wandb_run.json").read_text())["id"]
    first = sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(first) == 1
    records = first[0] / f"run-{run_id}.wandb"
    assert records.stat().st_size > 0
    data = records.read_bytes()
    for key in (b"train/loss", b"train/lr", b"eval/success"):
        assert key in data, f"{key!r} not in the W&B run file"
    # more steps continue the run: the same W&B run id
    train(_cfg(sim_store, run, "steps=6", "eval_every=2", "wandb.enable=true"))
    assert json.loads((run / "wandb_run.json").read_text())["id"] == run_id
    assert len(sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))) == 2


def test_the_best_checkpoint_survives_a_resume(sim_store, tmp_path):
    from robolearn.train import Trainer, prepare_run_dir

    first = _cfg(sim_store, tmp_path / "run", "eval_every=1", "keep_best=true")
    Trainer(first, prepare_run_dir(first)[0]).run(until_step=2)
    best_first = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    res = train(_cfg(sim_store, tmp_path / "run", "eval_every=1", "keep_best=true"))
    assert res.resumed_from == 2
    evals = [m for m in _metrics(tmp_path / "run") if "eval/success" in m]
    assert [m["step"] for m in evals] == [1, 2, 3, 4]
    info = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    top = max(m["eval/success"] for m in evals)
    assert info["success"] == top >= best_first["success"]
    assert info["step"] == next(m["step"] for m in evals if m["eval/success"] == top)


@pytest.mark.parametrize("bar", ["true", "false"])
def test_through_the_cli_each_progress_line_is_in_log_txt_once(sim_store, tmp_path, bar):
    out = tmp_path / "run"
    cli.run("train", [f"dataset={sim_store}", f"out={out}", "steps=3", "batch_size=8",
                      "log_every=1", "warmup_steps=1", "tensorboard=false", f"progress={bar}",
                      "eval_every=0", "num_threads=1", *SMALL_POLICY])
    text = (out / "log.txt").read_text()
    for step in (1, 2, 3):
        assert text.count(f"step {step}/3 loss ") == 1, text
