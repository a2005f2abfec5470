"""The main job end to end, in-process, on the debug preset: collect 2 tasks → train →
checkpoint → resume → evaluate → report files."""

from __future__ import annotations

import json

import pytest

from robolearn import cli


@pytest.mark.slow
def test_pipeline_debug_end_to_end_with_resume(tmp_path):
    common = [
        "collect.suite=MT:reach-v3+drawer-close-v3", "collect.episodes_per_task=3",
        f"collect.out={tmp_path}/demos.zarr", f"train.out={tmp_path}/run",
        "train.progress=false",
    ]
    first = cli.run("pipeline", [*common, f"run_dir={tmp_path}/p1"], preset="debug")
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
