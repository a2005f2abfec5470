"""The robolearn command line: help, config errors, collect/export/import end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from robolearn import cli
from robolearn.data import EpisodeStore


def test_console_script_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "robolearn", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in cli.COMMANDS:
        assert command in out


def test_command_help_shows_the_config(capsys):
    assert cli.main(["collect", "--help"]) == 0
    out = capsys.readouterr().out
    assert "episodes_per_task" in out and "suite" in out


def test_typo_in_an_override_gets_hydras_error_and_a_suggestion(capsys):
    assert cli.main(["collect", "episodes_per_tsk=3"]) == 2
    err = capsys.readouterr().err
    assert "episodes_per_tsk" in err and "did you mean 'episodes_per_task'" in err


def test_wrong_type_is_refused(capsys):
    assert cli.main(["collect", "episodes_per_task=many"]) == 2
    assert "episodes_per_task" in capsys.readouterr().err


def test_unknown_command_and_preset(capsys):
    assert cli.main(["colect"]) == 2
    assert "Did you mean 'collect'" in capsys.readouterr().err
    assert cli.main(["collect", "--preset", "debugg"]) == 2
    assert "Did you mean 'debug'" in capsys.readouterr().err


def test_unknown_task_suggests_the_closest(tmp_path, capsys):
    code = cli.main(["collect", "suite=MT1:psh-v3", f"out={tmp_path}/x.zarr",
                     f"run_dir={tmp_path}/run"])
    assert code == 1
    assert "push-v3" in capsys.readouterr().err


def test_cfg_prints_the_composed_config(capsys):
    assert cli.main(["collect", "--cfg", "suite=MT50"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["suite"] == "MT50" and cfg["randomize"]["friction_scale"] == [1.0, 1.0]


@pytest.mark.slow
def test_collect_export_import_end_to_end(tmp_path):
    store = tmp_path / "demos.zarr"
    summary = cli.run(
        "collect",
        [f"out={store}", f"run_dir={tmp_path}/run", "episodes_per_task=2",
         "randomize.friction_scale=[0.8,1.2]", "background_writer=false", "ray.num_workers=0"],
        preset="debug",
    )
    assert summary["episodes"] == 2
    assert summary["tasks"]["reach-v3"]["expert_success_rate"] == 1.0
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["out"] == str(store)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["episodes"] == 2
    with EpisodeStore.open(store) as r:
        assert len(r) == 2 and r.tasks == ["reach-v3"]
        ep = r.episode(0)
        assert ep.source == "expert" and ep.data["success"][-1]
        assert 0.8 <= ep.params["friction_scale"] <= 1.2

    # re-running resumes: nothing left to do
    again = cli.run("collect", [f"out={store}", f"run_dir={tmp_path}/run2",
                                "episodes_per_task=2"], preset="debug")
    assert again["resumed_episodes"] == 2 and again["env_steps"] == 0

    h5 = tmp_path / "demos.hdf5"
    cli.run("export", [f"dataset={store}", "format=robomimic", f"out={h5}",
                       f"run_dir={tmp_path}/run3"])
    back = tmp_path / "back.zarr"
    cli.run("import", [f"src={h5}", f"out={back}", f"run_dir={tmp_path}/run4"])
    with EpisodeStore.open(back) as r:
        assert len(r) == 2


def test_missing_required_options_are_named(capsys):
    assert cli.main(["export", "format=robomimic"]) == 2
    err = capsys.readouterr().err
    assert "missing required option(s) dataset, out" in err
    cfg = cli.compose("evaluate", ["checkpoints=[a,b]"])  # evaluate checks checkpoint(s) itself
    assert list(cfg.checkpoints) == ["a", "b"]
