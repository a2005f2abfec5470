"""The trainer: exact resume, checkpoints, refusals; load_policy on what it writes."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from safetensors.torch import load_file

import robolearn
from robolearn.checkpoint import CheckpointError
from robolearn.cli import compose
from robolearn.errors import ReuseError
from robolearn.train import train
from tests.support import ACTION_DIM, OBS_DIM, SMALL_POLICY


def _cfg(dataset, out, *extra, policy="flow_matching"):
    return compose("train", [f"dataset={dataset}", f"out={out}", f"policy={policy}",
                             "steps=12", "batch_size=16", "val_every=4", "checkpoint_every=6",
                             "log_every=3", "warmup_steps=2", "tensorboard=false",
                             "progress=false", "num_threads=1", *SMALL_POLICY, *extra])


def _weights(run):
    ckpt = run / "checkpoint"
    return load_file(str(ckpt / "model.safetensors")), load_file(
        str(ckpt / "training_state" / "state.safetensors"))


@pytest.mark.parametrize("policy", ["flow_matching", "regression", "diffusion"])
def test_resume_gives_the_same_weights_as_one_go(dataset, tmp_path, policy):
    one = train(_cfg(dataset, tmp_path / "one", policy=policy))
    assert one.steps == 12
    # the same run interrupted right after its step-6 checkpoint, then resumed
    from robolearn.train import Trainer, prepare_run_dir

    first = _cfg(dataset, tmp_path / "two", policy=policy)
    Trainer(first, prepare_run_dir(first)[0]).run(until_step=6)
    resumed = _cfg(dataset, tmp_path / "two", "resume=true", policy=policy)
    result = train(resumed)
    assert result.steps == 12
    (wa, sa), (wb, sb) = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert wa.keys() == wb.keys() and sa.keys() == sb.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), f"inference weight {k} differs after resume"
    for k in sa:
        if k.startswith(("model.", "ema.", "optim.")):
            assert (sa[k] == sb[k]).all(), f"training state {k} differs after resume"


def test_checkpoint_contents_and_metrics(dataset, tmp_path):
    res = train(_cfg(dataset, tmp_path / "run"))
    cfg = json.loads((res.checkpoint / "config.json").read_text())
    assert cfg["format"] == "robolearn.policy" and cfg["step"] == 12
    assert cfg["tasks"] == ["task-0", "task-1", "task-2"]
    assert cfg["policy"]["policy"] == "flow_matching" and cfg["policy"]["obs_dim"] == OBS_DIM
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val/loss" in x for x in lines) and any("train/loss" in x for x in lines)
    assert all(np.isfinite(x.get("train/loss", 0.0)) for x in lines)
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["step_0000006", "step_0000012"]


def test_rerunning_resumes_an_unfinished_run_and_refuses_a_finished_one(dataset, tmp_path):
    from robolearn.train import Trainer, prepare_run_dir

    # a run that stopped after its step-6 checkpoint (a crash, a killed job) ...
    first = _cfg(dataset, tmp_path / "run")
    Trainer(first, prepare_run_dir(first)[0]).run(until_step=6)
    # ... continues when the same command runs again (no resume=true needed) ...
    result = train(_cfg(dataset, tmp_path / "run"))
    assert result.steps == 12 and result.resumed_from == 6
    train(_cfg(dataset, tmp_path / "one"))
    (wa, _), (wb, _) = _weights(tmp_path / "one"), _weights(tmp_path / "run")
    assert all((wa[k] == wb[k]).all() for k in wa)
    steps = [x["step"] for x in map(json.loads, (tmp_path / "run" / "metrics.jsonl")
                                    .read_text().splitlines()) if "train/loss" in x]
    assert steps == [3, 6, 9, 12]
    # ... and, finished, is refused (saying how to start over or continue) ...
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="finished run .*step 12.*overwrite=true"):
        train(_cfg(dataset, tmp_path / "run"))
    # ... or, with resume=true, accepted as it is: nothing trained (the pipeline's second run)
    same = train(_cfg(dataset, tmp_path / "run", "resume=true"))
    assert same.steps == 12 and same.final_train_loss == result.final_train_loss
    assert same.final_val_loss == result.final_val_loss
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume.*drop resume=true"):
        train(_cfg(dataset, tmp_path / "empty", "resume=true"))
    with pytest.raises(ValueError, match="resume=true and overwrite=true: pass one"):
        train(_cfg(dataset, tmp_path / "run", "resume=true", "overwrite=true"))
    again = train(_cfg(dataset, tmp_path / "run", "overwrite=true", "steps=6"))
    assert again.steps == 6 and again.resumed_from is None
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_0000006"]
    # a larger steps= continues a finished run
    more = train(_cfg(dataset, tmp_path / "run", "steps=9"))
    assert more.steps == 9 and more.resumed_from == 6


def test_resuming_with_another_policy_config_names_the_fix(dataset, tmp_path):
    from robolearn.train import Trainer, prepare_run_dir

    first = _cfg(dataset, tmp_path / "run")
    Trainer(first, prepare_run_dir(first)[0]).run(until_step=6)
    with pytest.raises(ReuseError, match="other settings .*policy.task_embed_dim.*overwrite=true"):
        train(_cfg(dataset, tmp_path / "run", "policy.task_embed_dim=8"))
    with pytest.raises(ValueError, match="unknown trainer 'lcoal'. Did you mean 'local'"):
        train(_cfg(dataset, tmp_path / "run", "trainer=lcoal"))


def test_load_policy_acts_single_and_batched(dataset, tmp_path):
    train(_cfg(dataset, tmp_path / "run"))
    runner = robolearn.load_policy(tmp_path / "run", device="cpu")
    assert runner.tasks == ["task-0", "task-1", "task-2"]
    obs = np.zeros(OBS_DIM, np.float32)
    a = runner.act(obs, task="task-1")
    assert a.shape == (ACTION_DIM,) and np.isfinite(a).all()
    runner.reset()
    b = runner.act(np.zeros((3, OBS_DIM), np.float32), task="task-2")
    assert b.shape == (3, ACTION_DIM)
    with pytest.raises(ValueError, match="call reset"):
        runner.act(np.zeros((2, OBS_DIM), np.float32), task="task-2")
    runner.reset()
    with pytest.raises(ValueError, match="Did you mean 'task-1'"):
        runner.act(obs, task="tsk-1")
    with pytest.raises(ValueError, match="non-finite"):
        runner.act(np.full(OBS_DIM, np.nan, np.float32), task=0)
    with pytest.raises(ValueError, match=r"obs.shape=\(4,\)"):
        runner.act(np.zeros(4, np.float32), task=0)


def test_chunk_queue_replans_every_exec_horizon(dataset, tmp_path):
    train(_cfg(dataset, tmp_path / "run"))
    runner = robolearn.load_policy(tmp_path / "run", device="cpu")
    calls = []
    original = runner.predict_chunk
    runner.predict_chunk = lambda h, t: calls.append(1) or original(h, t)
    for _ in range(6):
        runner.act(np.zeros(OBS_DIM, np.float32), task=0)
    assert len(calls) == 3  # exec horizon 2


def test_load_policy_refuses_missing_foreign_and_pickled(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        robolearn.load_policy(tmp_path / "nope")
    (tmp_path / "foreign").mkdir()
    with pytest.raises(CheckpointError, match="missing model.safetensors, config.json"):
        robolearn.load_policy(tmp_path / "foreign")
    evil = tmp_path / "evil"
    evil.mkdir()

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (evil / "model.safetensors").write_bytes(pickle.dumps(Boom()))
    (evil / "config.json").write_text(json.dumps({"format": "robolearn.policy", "version": 1,
                                                  "policy": {"policy": "regression", "obs_dim": 5,
                                                             "action_dim": 2}, "tasks": ["t"]}))
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        robolearn.load_policy(evil)
    (evil / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a robolearn policy checkpoint"):
        robolearn.load_policy(evil)
