"""The main job end to end, in-process, on the debug preset: collect 2 tasks → train →
checkpoint → resume → evaluate → report files."""

from __future__ import annotations

import json

import pytest

from robolearn import cli
from robolearn.errors import ReuseError


@pytest.mark.slow
def test_pipeline_debug_end_to_end_with_resume(tmp_path, capsys):
    common = [
        "collect.suite=MT:reach-v3+drawer-close-v3", "collect.episodes_per_task=3",
        f"collect.out={tmp_path}/demos.zarr", f"train.out={tmp_path}/run", "progress=false",
    ]
    first = cli.run("pipeline", [*common, f"run_dir={tmp_path}/p1"], preset="debug")
    err = capsys.readouterr().err  # progress=false: no stage draws a bar
    assert not any(bar in err for bar in ("collect MT:", "train flow_matching", "evaluate M"))
    assert first["collect"]["episodes"] == 6
    assert first["train"]["steps"] == 20
    report = json.loads((tmp_path / "p1" / "evaluate" / "report.json").read_text())
    assert set(report["tasks"]) == {"reach-v3", "drawer-close-v3"}
    assert 0.0 <= report["mean_success"] <= 1.0
    assert (tmp_path / "p1" / "evaluate" / "success_by_task.png").stat().st_size > 0

    # a second run reuses the demos and resumes training from its checkpoint to more steps
    second = cli.run("pipeline", [*common, "train.steps=30", f"run_dir={tmp_path}/p2"],
                     preset="debug")
    assert second["collect"]["resumed_episodes"] == 6 and second["collect"]["env_steps"] == 0
    assert second["train"]["steps"] == 30
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [m["step"] for m in metrics if "train/loss" in m]
    assert steps == sorted(steps) and steps[-1] == 30  # one continuous log, no restart at 0
    assert json.loads((tmp_path / "p2" / "evaluate" / "report.json").read_text())["runs"]


def test_derived_paths_separate_other_settings_and_keep_the_defaults():
    default = cli.compose("pipeline", [])
    assert (default.collect.out, default.train.out) == ("data/mt10_demos.zarr",
                                                        "runs/mt10_flow_matching")
    assert default.train.dataset == default.collect.out
    assert default.evaluate.suite == "MT10" and default.evaluate.checkpoint == default.train.out
    other = cli.compose("pipeline", ["collect.suite=MT:reach-v3+push-v3",
                                     "collect.episodes_per_task=20"])
    assert other.collect.out.startswith("data/mt-reach-v3+push-v3_demos-")
    assert other.train.out.startswith("runs/mt-reach-v3+push-v3_flow_matching-")
    lr = cli.compose("pipeline", ["train.lr=0.0003"])
    assert lr.collect.out == default.collect.out and lr.train.out != default.train.out
    steps = cli.compose("pipeline", ["train.steps=9000"])  # more steps continue the same run
    assert steps.train.out == default.train.out
    reg = cli.compose("pipeline", ["policy=regression"])
    assert reg.train.out == "runs/mt10_regression"
    wide = cli.compose("pipeline", ["+policy.backbone_kwargs.hidden_dim=512"])
    assert wide.train.out.startswith("runs/mt10_flow_matching-")
    quiet = cli.compose("pipeline", ["progress=false"])  # every stage's bar; not a setting
    assert not (quiet.collect.progress or quiet.train.progress or quiet.evaluate.progress)
    assert (quiet.collect.out, quiet.train.out) == (default.collect.out, default.train.out)
    one = cli.compose("pipeline", ["evaluate.progress=false"])
    assert one.collect.progress and one.train.progress and not one.evaluate.progress


@pytest.mark.slow
def test_an_explicit_path_made_with_other_settings_is_refused(tmp_path):
    common = ["collect.suite=MT1:reach-v3", "collect.episodes_per_task=2",
              f"collect.out={tmp_path}/demos.zarr", f"train.out={tmp_path}/run",
              "train.progress=false", "ray.num_workers=0"]
    cli.run("pipeline", [*common, f"run_dir={tmp_path}/p1"], preset="debug")
    with pytest.raises(ReuseError,
                       match=r"other settings \(policy: run 'flow_matching', asked 'regression'"):
        cli.run("pipeline", [*common, "policy=regression", f"run_dir={tmp_path}/p2"],
                preset="debug")
    with pytest.raises(ReuseError, match="other settings .*lr: run 0.001, asked 0.0003"):
        cli.run("pipeline", [*common, "train.lr=0.0003", f"run_dir={tmp_path}/p3"],
                preset="debug")
    with pytest.raises(ReuseError, match="collected with other settings .*seed: store 0, asked 5"):
        cli.run("pipeline", [*common, "collect.seed=5", f"run_dir={tmp_path}/p4"],
                preset="debug")
