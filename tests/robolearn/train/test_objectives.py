"""The trainer takes an objective: BC by default, per-episode weights from the sampler, frozen
extra modules, the objective recorded in the checkpoint; a resume must ask for the same run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from robolearn.cli import compose
from robolearn.errors import ReuseError
from robolearn.train import BehaviourCloning, Trainer, prepare_run_dir, train
from robolearn.train.objectives import frozen
from tests.support import SMALL_POLICY


def _cfg(dataset, out, *extra):
    return compose("train", [f"dataset={dataset}", f"out={out}", "steps=6", "batch_size=8",
                             "val_every=3", "checkpoint_every=3", "log_every=3", "warmup_steps=2",
                             "tensorboard=false", "progress=false", *SMALL_POLICY, *extra])


class AnchoredBC:
    """BC plus a pull towards a frozen copy of the initial policy (a stand-in for the
    reference-policy objectives of preference alignment)."""

    name = "anchored_bc"

    def __init__(self, reference: nn.Module):
        self.reference = frozen(reference)
        self.calls = 0

    def __call__(self, policy, batch):
        self.calls += 1
        loss, info = policy.compute_loss(batch)
        anchor = sum(((p - q) ** 2).sum() for p, q in zip(policy.parameters(),
                                                          self.reference.parameters()))
        return loss + 0.1 * anchor, {**info, "anchor": float(anchor.detach())}

    def modules(self):
        return {"reference": self.reference}

    def describe(self):
        return {"name": self.name, "weight": 0.1}


def test_the_default_objective_is_bc_and_is_recorded(dataset, tmp_path):
    result = train(_cfg(dataset, tmp_path / "run"))
    config = json.loads((result.checkpoint / "config.json").read_text())
    assert config["objective"] == {"name": "bc"} and config["dataset_episodes"] == 12
    assert (tmp_path / "run" / "config.yaml").exists()
    launches = (tmp_path / "run" / "launches.jsonl").read_text().splitlines()
    assert len(launches) == 1 and json.loads(launches[0])["resumed_from_step"] is None


def test_an_objective_with_a_frozen_reference(dataset, tmp_path):
    import copy

    cfg = _cfg(dataset, tmp_path / "run")
    run_dir, _ = prepare_run_dir(cfg)
    probe = Trainer(cfg, run_dir)  # the initial policy, to copy as the reference
    objective = AnchoredBC(copy.deepcopy(probe.policy))
    before = [p.detach().clone() for p in objective.reference.parameters()]
    trainer = Trainer(cfg, run_dir, objective=objective)
    assert all(id(p) not in {id(q) for g in trainer.optimizer.param_groups for q in g["params"]}
               for p in objective.reference.parameters())
    result = trainer.run()
    assert objective.calls == 6
    assert all(torch.equal(a, b) for a, b in zip(before, objective.reference.parameters()))
    config = json.loads((result.checkpoint / "config.json").read_text())
    assert config["objective"] == {"name": "anchored_bc", "weight": 0.1}
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("train/anchor" in m for m in lines)


def test_task_weights_steer_what_is_sampled(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path / "run", "+weights.task={task-0:1.0,task-1:0.0,task-2:3.0}")
    trainer = Trainer(cfg, prepare_run_dir(cfg)[0])
    tasks = np.concatenate([trainer.sampler.sample(64, trainer.rng)["task"] for _ in range(20)])
    counts = np.bincount(tasks, minlength=3)
    assert counts[1] == 0 and counts[2] > counts[0] > 0  # never task-1; task-2 three times as often


def test_loss_weights_reach_the_objective(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path / "run", "+weights.task={task-0:2.0}", "weights.mode=loss")
    trainer = Trainer(cfg, prepare_run_dir(cfg)[0])
    batch = trainer.sampler.sample(16, trainer.rng)
    assert batch["weight"].shape == (16,)
    seen = {}

    class Spy(BehaviourCloning):
        def __call__(self, policy, batch):
            seen["weight"] = batch.get("weight")
            return super().__call__(policy, batch)

    trainer.objective = Spy()
    trainer.run(until_step=1)
    assert seen["weight"] is not None


def test_unknown_objective_and_bad_weights_are_refused(dataset, tmp_path):
    from robolearn.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown objective 'bcc'. Did you mean 'bc'"):
        _cfg(dataset, tmp_path / "run", "objective=bcc")
    with pytest.raises(ConfigError, match="weights.task for \\['task-9'\\]"):
        cfg = _cfg(dataset, tmp_path / "run", "+weights.task={task-9:1.0}")
        Trainer(cfg, prepare_run_dir(cfg)[0])


def test_resuming_with_other_options_is_refused_and_the_record_is_untouched(dataset, tmp_path):
    run = tmp_path / "run"
    cfg = _cfg(dataset, run)
    Trainer(cfg, prepare_run_dir(cfg)[0]).run(until_step=3)
    train(cfg)  # the same command resumes (and records the launch)
    record = (run / "config.yaml").read_text()
    with pytest.raises(ReuseError, match="other settings .*lr: run 0.001, asked 0.0003"):
        train(_cfg(dataset, run, "lr=0.0003", "steps=9"))
    assert (run / "config.yaml").read_text() == record
    assert len((run / "launches.jsonl").read_text().splitlines()) == 1
    more = train(_cfg(dataset, run, "steps=9"))  # more steps of the same run: accepted
    assert more.steps == 9 and more.resumed_from == 6
