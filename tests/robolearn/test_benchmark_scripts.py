"""The benchmark scripts' own logic that decides what a results file reports (run by hand, so a
mistake there would only show as a wrong figure)."""

from __future__ import annotations

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return mod


def test_override_mismatch_names_each_differing_key():
    cur = _load("curriculum_mt50")
    same = ["curriculum.mode=lp", "train.steps=40000", "run_dir=w/lp"]
    assert cur.override_mismatch(same, list(reversed(same))) == []
    differ = cur.override_mismatch(same, ["curriculum.mode=lp", "run_dir=w/lp", "train.seed=1"])
    assert differ == ["train.seed: ran with (not given), now 1",
                      "train.steps: ran with 40000, now (not given)"]
    # the last value of a repeated key is the one that counts
    assert cur.override_mismatch(["a=1", "a=2"], ["a=2"]) == []


def test_a_finished_arm_with_other_overrides_is_refused_not_reported(tmp_path: Path):
    cur = _load("curriculum_mt50")
    work = tmp_path / "work"
    arm_dir = work / "uniform"
    arm_dir.mkdir(parents=True)
    (arm_dir / "summary.json").write_text("{}")
    ran = ["curriculum.mode=uniform", f"train.out={tmp_path}/runs/uniform", f"run_dir={arm_dir}",
           "train.steps=20000"]
    (arm_dir / "overrides.yaml").write_text(yaml.safe_dump(ran))
    args = Namespace(workdir=str(work), runs=f"{tmp_path}/runs", preset="mt50", suite="",
                     extra=["train.steps=40000"])
    with pytest.raises(SystemExit, match=r"train\.steps: ran with 20000, now 40000") as err:
        cur.run_arm(args, "uniform")
    assert "own --workdir" in str(err.value) and str(arm_dir) in str(err.value)
    assert (arm_dir / "summary.json").exists()  # nothing deleted


def test_a_finished_arm_with_the_same_overrides_is_reused_as_it_ran(tmp_path: Path):
    cur = _load("curriculum_mt50")
    work, runs = tmp_path / "work", tmp_path / "runs"
    arm_dir, run = work / "lp", runs / "lp" / "run0"
    arm_dir.mkdir(parents=True)
    run.mkdir(parents=True)
    (run / "curriculum.json").write_text('{"rounds": []}')
    (tmp_path / "report.json").write_text('{"tasks": ["reach-v3"]}')
    (arm_dir / "summary.json").write_text(
        f'{{"report": "{tmp_path / "report.json"}", "run": "{run}"}}')
    ran = ["curriculum.mode=lp", f"train.out={runs}/lp", f"run_dir={arm_dir}", "train.steps=40000"]
    (arm_dir / "overrides.yaml").write_text(yaml.safe_dump(ran))
    args = Namespace(workdir=str(work), runs=str(runs), preset="mt50", suite="",
                     extra=["train.steps=40000"])
    arm = cur.run_arm(args, "lp")
    assert arm["report"] == {"tasks": ["reach-v3"]} and arm["state"] == {"rounds": []}
    assert arm["cmd"].endswith(" ".join(ran))
