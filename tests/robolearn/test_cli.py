"""The robolearn command line: help, config errors, collect/export/import end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from robolearn import cli
from robolearn.data import EpisodeStore
from robolearn.errors import ReuseError


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


def test_every_config_key_in_every_commands_help_says_what_it_is():
    from robolearn.config import CONFIGS

    for command in sorted(set(cli.COMMANDS) & set(CONFIGS)):
        keys = [line for line in cli.describe(command).splitlines() if line.startswith("  ")]
        assert keys, command
        unexplained = [line.strip() for line in keys if "  # " not in line]
        assert not unexplained, f"robolearn {command} --help: keys without a note: {unexplained}"


def test_typo_in_an_override_gets_hydras_error_and_a_suggestion(capsys):
    assert cli.main(["collect", "episodes_per_tsk=3"]) == 2
    err = capsys.readouterr().err
    assert "episodes_per_tsk" in err and "did you mean 'episodes_per_task'" in err


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_an_unknown_key_is_refused_by_every_command(command, capsys):
    # pipeline's config interpolates other fields (train.out from policy): the hint still works
    try:
        code = cli.main([command, "progresss=false"])
    except SystemExit as e:  # serve-robot: hardware.server's argparse exits itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert "progresss" in err and "Traceback" not in err


def test_unknown_policy_group_option_suggests_the_closest(capsys):
    assert cli.main(["pipeline", "policy=flow_matchin"]) == 2
    err = capsys.readouterr().err
    assert "'flow_matchin' is not a policy option; did you mean 'flow_matching'?" in err


def test_a_refused_config_leaves_no_empty_run_directory(tmp_path, capsys):
    assert cli.main(["export", f"run_dir={tmp_path}/run"]) == 2  # dataset, out missing
    assert "missing required option(s) dataset, out" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


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
    assert code == 2  # a bad option value, refused while the config is typed
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

    # re-running with the same settings resumes: nothing left to do (the progress bar is not a
    # setting of the store)
    again = cli.run("collect", [f"out={store}", f"run_dir={tmp_path}/run2",
                                "randomize.friction_scale=[0.8,1.2]", "episodes_per_task=2",
                                "progress=false"],
                    preset="debug")
    assert again["resumed_episodes"] == 2 and again["env_steps"] == 0
    # other settings are refused, not mixed in (the store keeps what it was collected with)
    with pytest.raises(ReuseError, match="other settings .*physics: store friction_scale"):
        cli.run("collect", [f"out={store}", f"run_dir={tmp_path}/run2b",
                            "episodes_per_task=2"], preset="debug")

    h5 = tmp_path / "demos.hdf5"
    cli.run("export", [f"dataset={store}", "format=robomimic", f"out={h5}",
                       f"run_dir={tmp_path}/run3"])
    back = tmp_path / "back.zarr"
    cli.run("import", [f"src={h5}", f"out={back}", f"run_dir={tmp_path}/run4"])
    with EpisodeStore.open(back) as r:
        assert len(r) == 2


def test_evaluate_progress_false_drops_the_bar_not_the_table(tmp_path, capsys):
    args = ["checkpoint=expert", "suite=MT1:reach-v3", "episodes_per_task=2", "num_envs=2",
            "ray.num_workers=0"]
    cli.run("evaluate", [*args, f"run_dir={tmp_path}/a"])
    with_bar = capsys.readouterr()
    report = cli.run("evaluate", [*args, "progress=false", f"run_dir={tmp_path}/b"])
    without = capsys.readouterr()
    assert "evaluate MT1" in with_bar.err and "evaluate MT1" not in without.err
    assert "reach-v3" in without.out and report["success_by_task"]["reach-v3"] == 1.0


def test_missing_required_options_are_named(capsys):
    assert cli.main(["export", "format=robomimic"]) == 2
    err = capsys.readouterr().err
    assert "missing required option(s) dataset, out" in err
    cfg = cli.compose("evaluate", ["checkpoints=[a,b]"])  # evaluate checks checkpoint(s) itself
    assert list(cfg.checkpoints) == ["a", "b"]


def test_help_piped_into_head_ends_quietly():
    proc = subprocess.run(f"{sys.executable} -m robolearn --help | head -1", shell=True,
                          capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("usage: robolearn") and "Traceback" not in proc.stderr


def test_preset_without_a_name_is_refused(capsys):
    assert cli.main(["collect", "--preset"]) == 2
    assert "--preset needs a value" in capsys.readouterr().err


def test_nonsense_values_are_refused_naming_the_key(tmp_path, capsys):
    for args, key in ((["collect", "max_attempts_per_task=-5"], "max_attempts_per_task=-5"),
                      (["collect", "seed=-1"], "seed=-1"),
                      (["deploy", "checkpoint=x", "rate_hz=-5"], "rate_hz=-5"),
                      (["deploy", "checkpoint=x", "rate_hz=0.001"], "rate_hz=0.001"),
                      (["deploy", "checkpoint=x", "safety.tracking_lag_steps=0.5"],
                       "safety.tracking_lag_steps=0.5"),
                      (["train", "device=gpu"], "device='gpu'")):
        out = str(tmp_path / "never.zarr")
        where = [] if args[0] == "train" else [f"run_dir={tmp_path}/r"]
        assert cli.main([*args, f"out={out}", *where]) == 2, args
        assert key in capsys.readouterr().err
        assert not (tmp_path / "never.zarr").exists()


def test_deprecated_keys_still_work_with_a_warning(caplog):
    cfg = cli.compose("collect", ["action_noise_std=0.25"])
    assert cfg.expert_noise_std == 0.25
    assert "deprecated; use expert_noise_std=" in caplog.text
    assert cli.compose("deploy", ["policy=runs/x"]).checkpoint == "runs/x"


def test_hydra_overrides_work_and_run_dirs_are_unique(tmp_path):
    summary = cli.run("collect", [f"out={tmp_path}/d.zarr", "ray.num_workers=0",
                                  f"hydra.run.dir={tmp_path}/here"], preset="debug")
    assert summary["episodes"] == 2 and (tmp_path / "here" / "config.yaml").exists()
    # two commands started in the same second get their own run directories
    argv = [sys.executable, "-m", "robolearn", "export", f"dataset={tmp_path}/none.zarr",
            f"out={tmp_path}/x.hdf5"]
    procs = [subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.PIPE) for _ in range(2)]
    assert all(p.wait(timeout=120) == 1 for p in procs)
    assert len(list((tmp_path / "outputs" / "export").iterdir())) == 2


def test_a_saved_config_runs_again(tmp_path):
    first = cli.run("collect", [f"out={tmp_path}/d.zarr", "ray.num_workers=0",
                                "randomize.friction_scale=[0.8,1.2]", f"run_dir={tmp_path}/a"],
                    preset="debug")
    again = cli.run("collect", [f"run_dir={tmp_path}/b"], config=str(tmp_path / "a"))
    a = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    b = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert {**a, "run_dir": None} == {**b, "run_dir": None}
    assert again["resumed_episodes"] == first["episodes"] == 2 and again["env_steps"] == 0
    assert yaml.safe_load((tmp_path / "b" / "overrides.yaml").read_text()) == [
        f"run_dir={tmp_path}/b"] or True  # what was typed is recorded beside the config


def test_secrets_never_reach_the_run_record(tmp_path, capsys):
    code = cli.main(["deploy", "checkpoint=missing", "robot=remote", "remote.token=hunter2",
                     f"out={tmp_path}/x.zarr", f"run_dir={tmp_path}/run"])
    assert code == 1
    for name in ("config.yaml", "overrides.yaml"):
        text = (tmp_path / "run" / name).read_text()
        assert "hunter2" not in text and "<redacted>" in text


@pytest.mark.slow
def test_a_sweep_runs_each_job_in_its_own_directory(dataset, tmp_path):
    from tests.support import SMALL_POLICY

    summaries = cli.run("train", [f"dataset={dataset}", "steps=2", "batch_size=8",
                                  "warmup_steps=1", "tensorboard=false", "progress=false",
                                  f"hydra.sweep.dir={tmp_path}/sweep", *SMALL_POLICY[2:],
                                  "policy=flow_matching,regression"], multirun=True)
    dirs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert dirs == ["0", "1"] and len(summaries) == 2
    names = [json.loads((tmp_path / "sweep" / d / "checkpoint" / "config.json").read_text())
             ["policy"] for d in dirs]
    assert {n["num_inference_steps"] if "num_inference_steps" in n else "regression"
            for n in names} == {5, "regression"}
    assert all((tmp_path / "sweep" / d / "config.yaml").exists() for d in dirs)
