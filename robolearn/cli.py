"""``robolearn <command> [key=value ...]``: the command line.

Configs are hydra structured configs (robolearn/config.py) composed with hydra's override
grammar. Every run writes its resolved config, log and summary into its own run directory.
"""

from __future__ import annotations

import os

# OpenMP's default spin-waiting makes 2-thread torch ~10x slower on a busy 2-core machine; set
# before torch is imported (it reads the variable once). An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import difflib  # noqa: E402
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from robolearn.config import CONFIGS, PRESETS, register_configs

log = logging.getLogger("robolearn")

COMMANDS: dict[str, str] = {
    "pipeline": "the main job: collect → train → evaluate (scripts/run.sh runs it)",
    "collect": "scripted-expert demonstrations into an episode store",
    "export": "an episode store to robomimic HDF5",
    "import": "a robomimic HDF5 file into an episode store",
    "train": "train a policy (flow_matching | regression | diffusion) on an episode store",
    "evaluate": "success rates of a checkpoint (or `expert`) on a suite: report, plot, videos",
    "deploy": "run a checkpoint on a robot (twin | remote) at its rate, safely; record episodes",
    "serve-robot": "serve a robot backend over the network (next to the arm); --help for flags",
}

USAGE = """usage: robolearn <command> [--preset NAME] [--cfg] [key=value ...]

Commands:
{commands}

Options:
  --help, -h      this text; `robolearn <command> --help` shows a command's config
  --cfg           print the composed config and exit
  --preset NAME   start from a named preset of the command ({presets})

Overrides use hydra's grammar, e.g.
  robolearn pipeline                                   # the main job on its default config
  robolearn pipeline collect.suite=MT50 train.steps=40000 evaluate.episodes_per_task=20
  robolearn collect suite=MT10 episodes_per_task=50 out=demos.zarr
  robolearn collect randomize.friction_scale=[0.8,1.2] action_noise_std=0.1
  robolearn export dataset=demos.zarr format=robomimic out=demos.hdf5
  robolearn import src=demos.hdf5 out=demos.zarr
  robolearn train dataset=demos.zarr policy=flow_matching steps=20000 out=runs/mt10_fm
  robolearn train out=runs/mt10_fm resume=true
  robolearn evaluate checkpoint=runs/mt10_fm suite=MT10 episodes_per_task=50 seed=1000
  robolearn evaluate checkpoints=[runs/a,runs/b,runs/c] video=true
  robolearn evaluate checkpoint=expert suite=MT50
  robolearn evaluate checkpoint=robomimic:<run>/models/model_epoch_60.pth   # in .venv-robomimic
  robolearn collect ray.num_workers=0 ...              # in this process (default: Ray actors)
  robolearn evaluate checkpoint=runs/mt10_fm ray.address=HEAD:6379 ray.num_workers=32
  robolearn train trainer=ray ray.num_workers=2 dataset=demos.zarr out=runs/mt10_fm
  robolearn deploy policy=runs/mt10_flow_matching robot=twin task=push-v3 episodes=10
  robolearn serve-robot --backend twin --task push-v3 --port 5555 --token $TOKEN
  robolearn deploy policy=runs/mt10_flow_matching robot=remote remote.port=5555 task=push-v3
"""


# Required keys a command validates itself (evaluate: `checkpoint` or `checkpoints`).
CHECKED_LATER: dict[str, set[str]] = {"evaluate": {"checkpoint"}}

# Config keys whose name is also a config group; for these commands they take plain values.
PLAIN_VALUE_KEYS: dict[str, tuple[str, ...]] = {"deploy": ("policy",)}


class CLIError(Exception):
    """A user error the CLI reports in one paragraph, without a traceback."""


def _usage() -> str:
    width = max(map(len, COMMANDS))
    commands = "\n".join(f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items())
    presets = ", ".join(sorted(PRESETS)) or "none"
    return USAGE.format(commands=commands, presets=presets)


def compose(command: str, overrides: Sequence[str] = (), preset: str | None = None) -> DictConfig:
    """The composed config of ``command`` (used by the CLI and by tests)."""
    from hydra import compose as hydra_compose
    from hydra import initialize
    from hydra.errors import ConfigCompositionException, HydraException

    if command not in CONFIGS:
        raise CLIError(_unknown("command", command, COMMANDS))
    register_configs()
    name = command
    if preset:
        key = f"{command}/{preset}"
        if key not in PRESETS:
            options = [k.split("/")[1] for k in PRESETS if k.startswith(command + "/")]
            raise CLIError(_unknown(f"preset of {command}", preset, options))
        name = f"{command}_{preset}"
    # `policy` is a config group (train, pipeline), but `robolearn deploy policy=<checkpoint>`
    # takes a path: hydra would read that as a group choice, so set it after composing.
    direct = {}
    if command in PLAIN_VALUE_KEYS:
        keys = PLAIN_VALUE_KEYS[command]
        direct = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides
                  if "=" in o and o.split("=", 1)[0] in keys}
        overrides = [o for o in overrides if "=" not in o or o.split("=", 1)[0] not in keys]
    try:
        with initialize(version_base=None, config_path=None):
            cfg = hydra_compose(config_name=name, overrides=list(overrides))
        for key, value in direct.items():
            cfg[key] = value.strip("'\"")
    except (ConfigCompositionException, HydraException) as e:
        cause = e.__cause__ or e
        msg = f"{e}\n{cause}" if cause is not e else str(e)
        raise CLIError(msg + _override_hint(command, overrides)) from None
    missing = sorted(OmegaConf.missing_keys(cfg) - CHECKED_LATER.get(command, set()))
    if missing:
        raise CLIError(
            f"missing required option(s) {', '.join(missing)}: pass "
            + " ".join(f"{k}=..." for k in missing)
            + f" (see `robolearn {command} --help`)"
        )
    return cfg


def _override_hint(command: str, overrides: Sequence[str]) -> str:
    keys = _config_keys(OmegaConf.structured(CONFIGS[command]))
    hints = []
    for ov in overrides:
        key = ov.split("=", 1)[0].lstrip("+~")
        if key not in keys:
            match = difflib.get_close_matches(key, keys, n=1)
            if match:
                hints.append(f"'{key}' is not a {command} option; did you mean '{match[0]}'?")
    return ("\n" + "\n".join(hints)) if hints else ""


def _config_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    for k in cfg:
        full = f"{prefix}{k}"
        keys.append(full)
        v = cfg[k] if not OmegaConf.is_missing(cfg, k) else None
        if isinstance(v, DictConfig):
            keys += _config_keys(v, full + ".")
    return keys


def _unknown(what: str, value: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(value, list(options), n=1)
    hint = f" Did you mean '{match[0]}'?" if match else ""
    return f"unknown {what} '{value}'.{hint} Available: {', '.join(options)}"


def make_run_dir(command: str, cfg: DictConfig) -> Path:
    if command == "train":  # the training run directory is the command's own output
        from robolearn.train import default_run_dir

        if not cfg.out:
            cfg.out = str(default_run_dir(cfg))
        run_dir = Path(cfg.out)
    else:
        run_dir = Path(cfg.run_dir) if cfg.get("run_dir") else Path(
            "outputs", command, time.strftime("%Y-%m-%d_%H-%M-%S")
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir


def setup_logging(run_dir: Path | None, verbose: bool = False) -> None:
    from rich.logging import RichHandler

    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.addHandler(console)
    if run_dir is not None:
        fh = logging.FileHandler(run_dir / "log.txt")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)
    for noisy in ("numcodecs", "zarr", "asyncio", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ------------------------------------------------------------------------- commands
def cmd_collect(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    from robolearn.collect import collect

    summary = collect(cfg, progress=True)
    table = Table(title=f"robolearn collect {summary.suite} → {summary.store}")
    for col in ("task", "episodes", "attempts", "expert success", "mean length"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for t in summary.tasks:
        table.add_row(
            t.task, str(t.kept), str(t.attempts), f"{t.success_rate:.2f}", f"{t.mean_length:.1f}"
        )
    total_att = sum(t.attempts for t in summary.tasks)
    total_succ = sum(t.successes for t in summary.tasks)
    table.add_row(
        "total", str(summary.episodes), str(total_att),
        f"{total_succ / total_att:.2f}" if total_att else "-", "", style="bold",
    )
    console = Console()
    console.print(table)
    rate = summary.env_steps / summary.seconds if summary.seconds else 0.0
    console.print(
        f"{summary.episodes} episodes in {summary.store} "
        f"({summary.resumed_episodes} were already there); "
        f"{summary.env_steps} env steps this run in {summary.seconds:.1f} s ({rate:.0f} steps/s"
        + (f" on {summary.ray_workers} Ray actors" if summary.ray_workers else ", in this process")
        + f"; start-up {summary.startup_seconds:.1f} s"
        + (f"; {summary.actors_replaced} lost actor(s) replaced" if summary.actors_replaced
           else "")
        + f"). Run directory: {run_dir}"
    )
    return summary.to_dict()


def cmd_export(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from robolearn.data.robomimic import export_robomimic

    if cfg.format != "robomimic":
        raise CLIError(_unknown("export format", cfg.format, ["robomimic"]))
    info = export_robomimic(
        cfg.dataset, cfg.out, val_fraction=cfg.val_fraction, seed=cfg.seed,
        overwrite=cfg.overwrite,
    )
    print(f"exported {info['episodes']} episodes ({info['steps']} steps) to {cfg.out}")
    return info


def cmd_import(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from robolearn.data.robomimic import import_robomimic

    info = import_robomimic(
        cfg.src, cfg.out, obs_keys=list(cfg.obs_keys) or None, task=cfg.task or None,
        source=cfg.source, overwrite=cfg.overwrite,
    )
    print(f"imported {info['episodes']} episodes ({info['steps']} steps) into {cfg.out}")
    return info


def cmd_train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from robolearn.train import train

    result = train(cfg)
    val = f"{result.final_val_loss:.4f}" if result.final_val_loss is not None else "-"
    print(
        f"trained {cfg.policy.name} for {result.steps} steps ({result.steps_per_s:.1f} steps/s); "
        f"final loss train {result.final_train_loss:.4f}, val {val}\n"
        f"checkpoint: {result.checkpoint}\nmetrics: {result.run_dir / 'metrics.jsonl'}"
    )
    return result.to_dict()


def cmd_evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from robolearn.evaluate import run_evaluate

    return run_evaluate(cfg, run_dir)


def cmd_pipeline(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from robolearn.pipeline import run_pipeline

    return run_pipeline(cfg, run_dir)


def cmd_deploy(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from robolearn.deploy import run_deploy

    return run_deploy(cfg, run_dir)


HANDLERS: dict[str, Callable[[DictConfig, Path], dict[str, Any]]] = {
    "pipeline": cmd_pipeline,
    "collect": cmd_collect,
    "export": cmd_export,
    "import": cmd_import,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "deploy": cmd_deploy,
}


def run(command: str, overrides: Sequence[str] = (), preset: str | None = None) -> dict[str, Any]:
    """Run one command in-process and return its summary dict (used by tests and scripts)."""
    cfg = compose(command, overrides, preset)
    run_dir = make_run_dir(command, cfg)
    setup_logging(run_dir)
    log.info("robolearn %s: run directory %s", command, run_dir)
    summary = HANDLERS[command](cfg, run_dir)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "serve-robot":  # the vendor-side server keeps its own plain flags
        from hardware.server import main as serve_main

        serve_main(rest)
        return 0
    preset = None
    show_cfg = False
    overrides = []
    it = iter(rest)
    for arg in it:
        if arg in ("-h", "--help"):
            if command in CONFIGS:
                print(f"robolearn {command}: {COMMANDS[command]}\n")
                print(_describe(command))
                return 0
            print(_usage())
            return 0
        if arg == "--cfg":
            show_cfg = True
        elif arg == "--preset":
            preset = next(it, None)
        elif arg.startswith("--preset="):
            preset = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            print(f"robolearn: unknown option {arg!r}\n\n{_usage()}", file=sys.stderr)
            return 2
        else:
            overrides.append(arg)
    try:
        if show_cfg:
            print(OmegaConf.to_yaml(compose(command, overrides, preset)))
            return 0
        run(command, overrides, preset)
    except CLIError as e:
        print(f"robolearn {command}: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError,
            ImportError) as e:
        print(f"robolearn {command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"robolearn {command}: interrupted; committed episodes are kept", file=sys.stderr)
        return 130
    except RuntimeError as e:
        from robolearn.deploy import DeployFault
        from robolearn.raycluster import RayClusterError, RayTrainingError

        if isinstance(e, (RayClusterError, RayTrainingError)):
            print(f"robolearn {command}: error: {e}", file=sys.stderr)
            return 1
        if not isinstance(e, DeployFault):
            raise
        print(f"robolearn {command}: {e}", file=sys.stderr)
        return 3
    return 0


def _describe(command: str) -> str:
    """The command's config fields, defaults and the comment each has in config.py."""
    import dataclasses
    import inspect
    import re

    def walk(cls: type, prefix: str) -> list[str]:
        notes: dict[str, str] = {}
        for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
            for line in inspect.getsource(klass).splitlines():  # subclasses' notes win
                m = re.match(r"\s*(\w+):.*?#\s*(.*)$", line)
                if m:
                    notes[m.group(1)] = m.group(2)
        defaults = OmegaConf.to_container(OmegaConf.structured(cls), throw_on_missing=False)
        out = []
        for f in dataclasses.fields(cls):
            value = defaults[f.name]
            if isinstance(value, dict):
                out += walk(type(f.default_factory()), f"{prefix}{f.name}.")
                continue
            shown = "???" if value == "???" else json.dumps(value)
            note = f"  # {notes[f.name]}" if f.name in notes else ""
            out.append(f"  {prefix}{f.name}={shown}{note}")
        return out

    return "Config (override with key=value; ??? = required):\n" + "\n".join(
        walk(CONFIGS[command], "")
    )

