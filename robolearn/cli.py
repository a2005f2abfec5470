"""``robolearn <command> [key=value ...]``: the command line.

Every command is one row of :data:`COMMANDS` (its help line, its config and its handler). A run
goes through hydra: the command's structured config (robolearn/config.py) is composed with the
overrides, turned into the command's typed dataclass (validated once, in ``__post_init__``),
and handed to the handler. ``-m`` sweeps (``robolearn train -m policy=flow_matching,regression``)
run each job in its own output directory; ``hydra.*`` overrides are hydra's own (and work).

Every run directory gets ``config.yaml`` (resolved; secrets such as ``remote.token``
redacted), ``overrides.yaml`` (what was given on the command line), ``log.txt`` and
``summary.json``; ``robolearn <command> --config <run>/config.yaml [key=value ...]`` runs a saved
config again. A training run's own record (``config.yaml``, ``launches.jsonl`` in ``out``) is
written by the trainer once the run is accepted, so a refused command never rewrites it.

Errors a user can fix (:class:`~robolearn.errors.RobolearnError` and bad-input builtins) are
printed in one paragraph, without a traceback, with the exit code of their kind.
"""

from __future__ import annotations

import os

# OpenMP's default spin-waiting makes 2-thread torch ~10x slower on a busy 2-core machine; set
# before torch is imported (it reads the variable once). An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib  # noqa: E402
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robolearn.errors import ConfigError, RobolearnError, did_you_mean, unknown

log = logging.getLogger("robolearn")


@dataclass(frozen=True)
class Command:
    """One command: its help line and its handler ``module:function`` (``handler(cfg, run_dir)
    -> summary dict``); ``None`` for commands with their own flags (serve-robot)."""

    help: str
    handler: str | None


COMMANDS: dict[str, Command] = {
    "pipeline": Command("the main job: collect → train → evaluate (scripts/run.sh runs it)",
                        "robolearn.pipeline:run_pipeline"),
    "collect": Command("scripted-expert demonstrations into an episode store",
                       "robolearn.collect:run_collect"),
    "train": Command("train a policy (flow_matching | regression | diffusion) on an episode store",
                     "robolearn.cli:run_train"),
    "evaluate": Command("success rates of a checkpoint (or `expert`) on a suite, under any "
                        "physics: report, plot, videos", "robolearn.evaluate.report:run_evaluate"),
    "align": Command("preference-align a flow-matching policy on GRAPE-scored rollouts (sft | tpo)",
                     "robolearn.align.loop:run_align"),
    "pearl": Command("transfer preference labels to another task (PEARL: Gromov–Wasserstein), "
                     "learn its reward, improve a policy", "robolearn.align.pearl:run_pearl"),
    "finetune": Command("residual RL (RLlib PPO) on top of a frozen policy, driven by a "
                        "learning-progress curriculum", "robolearn.rl.finetune:run_finetune"),
    "deploy": Command("run a checkpoint on a robot (twin | remote) at its rate, safely; record "
                      "episodes", "robolearn.deploy.runner:run_deploy"),
    "curriculum": Command("the real-grounded sim-to-real loop: deploy on the robot, identify its "
                          "physics, update the task distribution, retrain; in cycles",
                          "robolearn.sim2real.loop:run_sim2real"),
    "serve-robot": Command("serve a robot backend over the network (next to the arm); --help for "
                           "flags", None),
    "export": Command("an episode store to robomimic HDF5, LeRobot v3.0 or diffusion_policy zarr",
                      "robolearn.datasets:run_export"),
    "import": Command("a robomimic, LeRobot v3.0 or diffusion_policy dataset into an episode store",
                      "robolearn.datasets:run_import"),
    "store": Command("check an episode store, or recover what a damaged one holds into a new one",
                     "robolearn.datasets:run_store"),
}
"""The one table of commands."""

USAGE = """usage: robolearn <command> [--preset NAME] [--cfg] [-m] [--config FILE] [key=value ...]

Commands:
{commands}

Options:
  --help, -h      this text; `robolearn <command> --help` shows a command's config
  --cfg           print the composed config and exit
  --preset NAME   start from a named preset of the command (listed by its --help)
  -m, --multirun  sweep: key=a,b runs one job per value, each in its own output directory
  --config FILE   start from a saved config.yaml (a run directory's), then the overrides

Overrides use hydra's grammar, e.g.
  robolearn pipeline                                   # the main job on its default config
  robolearn pipeline collect.suite=MT50 train.steps=40000 evaluate.episodes_per_task=20
  robolearn collect suite=MT10 episodes_per_task=50 out=demos.zarr
  robolearn collect randomize.friction_scale=[0.8,1.2] expert_noise_std=0.1
  robolearn export dataset=demos.zarr format=robomimic out=demos.hdf5
  robolearn import src=demos.hdf5 out=demos.zarr
  robolearn export dataset=demos.zarr format=lerobot out=demos_lerobot
  robolearn store check demos.zarr                     # what is consistent, what is not
  robolearn store recover demos.zarr fixed.zarr        # copy what can be recovered
  robolearn train dataset=demos.zarr policy=flow_matching steps=20000 out=runs/mt10_fm
  robolearn train -m policy=flow_matching,regression dataset=demos.zarr   # a sweep
  robolearn train out=runs/mt10_fm resume=true
  robolearn train --config runs/mt10_fm/config.yaml steps=30000            # run it again
  robolearn evaluate checkpoint=runs/mt10_fm suite=MT10 episodes_per_task=50 seed=1000
  robolearn evaluate checkpoint=runs/mt10_fm params.actuator_gain_scale=0.6  # a reality gap
  robolearn evaluate checkpoint=runs/mt10_fm randomize.friction_scale=[0.5,1.5]
  robolearn evaluate checkpoints=[runs/a,runs/b,runs/c] video=true
  robolearn evaluate checkpoint=expert suite=MT50
  robolearn evaluate checkpoint=robomimic:<run>/models/model_epoch_60.pth   # in .venv-robomimic
  robolearn collect ray.num_workers=0 ...              # in this process (default: Ray actors)
  robolearn evaluate checkpoint=runs/mt10_fm ray.address=HEAD:6379 ray.num_workers=32
  robolearn train trainer=ray ray.num_workers=2 dataset=demos.zarr out=runs/mt10_fm
  robolearn deploy checkpoint=runs/mt10_flow_matching robot=twin task=push-v3 episodes=10
  robolearn serve-robot --backend twin --task push-v3 --port 5555      # token: $ROBOLEARN_ROBOT_TOKEN
  robolearn deploy checkpoint=runs/mt10_flow_matching robot=remote remote.port=5555 task=push-v3
"""

# Keys renamed in this release: the old name still works, with a warning, for one release.
DEPRECATED: dict[str, dict[str, str]] = {
    "collect": {"action_noise_std": "expert_noise_std"},
    "pipeline": {"collect.action_noise_std": "collect.expert_noise_std"},
    "deploy": {"policy": "checkpoint"},
}
# Config keys whose values never reach a run record (config.yaml, overrides.yaml, summary.json).
SECRET_KEYS = ("token",)
REDACTED = "<redacted>"
# Required keys a command validates itself (evaluate: `checkpoint` or `checkpoints`).
CHECKED_LATER: dict[str, set[str]] = {"evaluate": {"checkpoint"}}


class CLIError(ConfigError):
    """A user error of the command line itself (unknown command, option or preset)."""


def _usage() -> str:
    width = max(map(len, COMMANDS))
    commands = "\n".join(f"  {name.ljust(width)}  {c.help}" for name, c in COMMANDS.items())
    return USAGE.format(commands=commands)


# ------------------------------------------------------------------------- overrides
def _split(override: str) -> tuple[str, str | None]:
    if "=" not in override:
        return override, None
    key, value = override.split("=", 1)
    return key, value


def _rename_deprecated(command: str, overrides: Sequence[str]) -> list[str]:
    out = []
    for ov in overrides:
        key, value = _split(ov)
        prefix = key[: len(key) - len(key.lstrip("+~"))]
        bare = key.lstrip("+~")
        new = DEPRECATED.get(command, {}).get(bare)
        if new is not None and value is not None:
            log.warning("%s: %s= is deprecated; use %s= (it will be removed in the next "
                        "release)", command, bare, new)
            out.append(f"{prefix}{new}={value}")
        else:
            out.append(ov)
    return out


def _check_command(command: str) -> None:
    if command not in COMMANDS or COMMANDS[command].handler is None:
        names = [c for c, v in COMMANDS.items() if v.handler is not None]
        raise CLIError(unknown("command", command, list(COMMANDS) if command not in COMMANDS
                               else names))


def _config_name(command: str, preset: str | None) -> str:
    from robolearn.config import PRESETS, presets_of

    if preset is None:
        return command
    if f"{command}/{preset}" not in PRESETS:
        raise CLIError(unknown(f"preset of {command}", preset, presets_of(command)))
    return f"{command}_{preset}"


def from_saved(command: str, path: str | os.PathLike) -> list[str]:
    """The overrides that rebuild a saved ``config.yaml`` of ``command`` (a run directory's)."""
    import yaml

    from robolearn.config import CONFIGS

    p = Path(path)
    if p.is_dir():
        p = p / "config.yaml"
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise CLIError(f"--config {path}: no such file (give a run directory's config.yaml)"
                       ) from None
    except yaml.YAMLError as e:
        raise CLIError(f"--config {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise CLIError(f"--config {path} must hold a mapping of config keys")
    data.pop("defaults", None)
    fields = {f.name for f in dataclasses.fields(CONFIGS[command])}
    stray = sorted(set(data) - fields - {"policy"})
    if stray:
        raise CLIError(f"--config {path} has key(s) {stray} that `robolearn {command}` does not "
                       f"take;{did_you_mean(stray[0], fields)} Is it another command's config?")
    overrides: list[str] = []
    policy = data.pop("policy", None)
    if isinstance(policy, dict) and "name" in policy:
        overrides.append(f"policy={policy.pop('name')}")
        overrides += _flatten(policy, "policy.", new_ok=True)
    for key in list(data):
        if any(key == s or key.endswith("." + s) for s in SECRET_KEYS) and data[key] == REDACTED:
            data.pop(key)
    overrides += _flatten(data, "")
    return overrides


def _flatten(data: dict[str, Any], prefix: str, new_ok: bool = False) -> list[str]:
    out = []
    for key, value in data.items():
        full = f"{prefix}{key}"
        if value == REDACTED:
            continue
        if isinstance(value, dict) and value and not (new_ok and key == "backbone_kwargs"):
            out += _flatten(value, full + ".", new_ok=new_ok)
        else:
            out.append(f"{'++' if new_ok else ''}{full}={_hydra_value(value)}")
    return out


def _hydra_value(value: Any) -> str:
    """A Python value in hydra's override grammar (strings quoted, so nothing is re-parsed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


# ------------------------------------------------------------------------- composition
def _prepare(command: str, overrides: Sequence[str], preset: str | None,
             config: str | None) -> tuple[str, list[str]]:
    from robolearn.config import register_configs

    _check_command(command)
    name = _config_name(command, preset)
    register_configs()
    saved = from_saved(command, config) if config else []
    return name, _rename_deprecated(command, [*saved, *overrides])


def compose_dict(command: str, overrides: Sequence[str] = (), preset: str | None = None, *,
                 config: str | None = None) -> Any:
    """The composed (untyped) DictConfig of ``command``, as hydra builds it."""
    from hydra import compose as hydra_compose
    from hydra import initialize
    from hydra.errors import ConfigCompositionException, HydraException
    from omegaconf import OmegaConf

    name, overrides = _prepare(command, overrides, preset, config)
    try:
        with initialize(version_base="1.3", config_path=None):
            cfg = hydra_compose(config_name=name, overrides=list(overrides))
    except (ConfigCompositionException, HydraException) as e:
        raise CLIError(_composition_message(command, e, overrides)) from None
    missing = sorted(OmegaConf.missing_keys(cfg) - CHECKED_LATER.get(command, set()))
    if missing:
        raise CLIError(
            f"missing required option(s) {', '.join(missing)}: pass "
            + " ".join(f"{k}=..." for k in missing)
            + f" (see `robolearn {command} --help`)"
        )
    return cfg


def compose(command: str, overrides: Sequence[str] = (), preset: str | None = None, *,
            config: str | None = None) -> Any:
    """The typed, validated config of ``command`` (used by the CLI and by tests)."""
    return to_typed(command, compose_dict(command, overrides, preset, config=config))


def to_typed(command: str, cfg: Any) -> Any:
    """A composed DictConfig as the command's dataclass, validated once with these values."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from robolearn.config import CONFIGS

    if CHECKED_LATER.get(command):  # optional-in-practice fields: typed as empty
        for key in CHECKED_LATER[command]:
            if OmegaConf.is_missing(cfg, key):
                cfg[key] = ""
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        cause = e.__cause__ if isinstance(e.__cause__, RobolearnError) else None
        if cause is not None:
            raise cause from None
        raise CLIError(f"{e}{_override_hint(command, [])}") from None
    if not isinstance(obj, CONFIGS[command]):
        raise CLIError(f"the composed config of {command} is a {type(obj).__name__}")
    return obj


def _composition_message(command: str, e: Exception, overrides: Sequence[str]) -> str:
    cause = e.__cause__ or e
    msg = f"{e}\n{cause}" if cause is not e else str(e)
    return msg + _override_hint(command, overrides)


def _override_hint(command: str, overrides: Sequence[str]) -> str:
    from omegaconf import OmegaConf

    from policies import POLICIES
    from robolearn.config import CONFIGS

    keys = _config_keys(OmegaConf.structured(CONFIGS[command]))
    hints = []
    for ov in overrides:
        key, value = _split(ov)
        key = key.lstrip("+~")
        if key == "policy" and value:  # the policy group: one name, or a -m sweep's list
            for name in value.split(","):
                hint = "" if name in POLICIES else did_you_mean(name, POLICIES)
                if hint:
                    hints.append(f"'{name}' is not a policy option;{hint.replace(' Did', ' did')}")
            continue
        if key.startswith(("hydra.", "hydra/", "policy.", "policy")) or key in keys:
            continue
        hint = did_you_mean(key, keys)
        if hint:
            hints.append(f"'{key}' is not a {command} option;{hint.replace(' Did', ' did')}")
    return ("\n" + "\n".join(hints)) if hints else ""


def _config_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of ``cfg``, read unresolved: a field interpolating a missing one (the
    pipeline's ``train.out`` from ``policy``) must not break the error message it helps with."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, dict):
            keys += _config_keys(v, full + ".")
    return keys


# ------------------------------------------------------------------------- run directories
_RUN_STAMP: dict[str, str] = {}


def _stamp() -> str:
    """One time stamp per process (a sweep's jobs share it), made unique by the pid."""
    if "now" not in _RUN_STAMP:
        _RUN_STAMP["now"] = time.strftime("%Y-%m-%d_%H-%M-%S") + f"_p{os.getpid()}"
    return _RUN_STAMP["now"]


def _run_dir_resolver(command: str, *, _root_: Any) -> str:
    """hydra.run.dir: ``run_dir=`` (``out=`` for train) when given, else a new unique directory."""
    if command == "train":
        out = _root_.get("out")
        if out:
            return str(out)
        return f"runs/{_root_.policy.name}-{_stamp()}"
    given = _root_.get("run_dir")
    return str(given) if given else f"outputs/{command}/{_stamp()}"


def _sweep_dir_resolver(command: str) -> str:
    return f"{'runs' if command == 'train' else 'outputs/' + command}/multirun/{_stamp()}"


def _hydra_overrides(command: str, user: Sequence[str]) -> list[str]:
    from omegaconf import OmegaConf

    for name, fn in (("rl_run_dir", _run_dir_resolver), ("rl_sweep_dir", _sweep_dir_resolver)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=False)
    given = {_split(o)[0].lstrip("+~") for o in user}
    ours = {
        "hydra.run.dir": f"${{rl_run_dir:{command}}}",
        "hydra.sweep.dir": f"${{rl_sweep_dir:{command}}}",
        "hydra.sweep.subdir": "${hydra.job.num}",
        "hydra.output_subdir": "null",  # our own records, written once a run is accepted
        "hydra.job.chdir": "false",
    }
    out = [f"{k}={v}" for k, v in ours.items() if k not in given]
    for group in ("hydra/job_logging", "hydra/hydra_logging"):
        if group not in given:
            out.append(f"{group}=none")  # logging is configured here (setup_logging)
    return out


def redact(data: Any) -> Any:
    """``data`` with the values of secret keys (``*.token``) replaced by ``<redacted>``."""
    if isinstance(data, dict):
        return {k: (REDACTED if k in SECRET_KEYS and v else redact(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data


def redact_overrides(overrides: Sequence[str]) -> list[str]:
    out = []
    for ov in overrides:
        key, value = _split(ov)
        last = key.lstrip("+~").rsplit(".", 1)[-1]
        out.append(f"{key}={REDACTED}" if value is not None and last in SECRET_KEYS else ov)
    return out


def write_record(run_dir: Path, cfg: Any, overrides: Sequence[str]) -> None:
    """``config.yaml`` (resolved, secrets redacted) and ``overrides.yaml`` of one run."""
    import yaml
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else (
        dataclasses.asdict(cfg))
    data.pop("defaults", None)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (("config.yaml", redact(data)),
                          ("overrides.yaml", redact_overrides(overrides))):
        tmp = run_dir / f".{name}.tmp{os.getpid()}"
        tmp.write_text(yaml.safe_dump(json.loads(json.dumps(content, default=str)),
                                      sort_keys=False))
        os.replace(tmp, run_dir / name)


@contextlib.contextmanager
def job_logging(run_dir: Path | None, verbose: bool = False) -> Iterator[None]:
    """:func:`setup_logging` for one job: the root logger's handlers and level are put back
    afterwards (the job's terminal and ``log.txt`` handlers closed), so a command run
    in-process (:func:`run`: tests, scripts, notebooks) leaves the caller's logging as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []  # kept for afterwards, not closed
    setup_logging(run_dir, verbose)
    try:
        yield
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
            h.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def setup_logging(run_dir: Path | None, verbose: bool = False) -> None:
    """The terminal (rich) and ``<run_dir>/log.txt`` handlers on the root logger, replacing
    (and closing) the ones it had."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.addHandler(console)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / "log.txt", delay=True)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)
    for noisy in ("numcodecs", "zarr", "asyncio", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ------------------------------------------------------------------------- handlers
def handler(command: str) -> Callable[[Any, Path], dict[str, Any]]:
    import importlib

    module, _, name = COMMANDS[command].handler.partition(":")  # type: ignore[union-attr]
    return getattr(importlib.import_module(module), name)


def run_train(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """``robolearn train``: train (or resume), print where the checkpoint is."""
    from robolearn.train import train

    result = train(cfg, overrides=list(_CURRENT.get("overrides", [])))
    val = f"{result.final_val_loss:.4f}" if result.final_val_loss is not None else "-"
    probe = ("" if result.eval_success is None else
             f"\neval/success on the last probe: {result.eval_success:.3f} (probes took "
             f"{result.eval_seconds:.0f} s)" + (f"; best: {result.best}" if result.best else ""))
    print(
        f"trained {cfg.policy['name']} for {result.steps} steps ({result.steps_per_s:.1f} "
        f"steps/s); final loss train {result.final_train_loss:.4f}, val {val}{probe}\n"
        f"checkpoint: {result.checkpoint}\nmetrics: {result.run_dir / 'metrics.jsonl'}"
        + (f" (curves: tensorboard --logdir {result.run_dir / 'tb'})" if cfg.tensorboard else "")
    )
    return result.to_dict()


_CURRENT: dict[str, Any] = {}  # the overrides of the job being run (read by run_train)


@dataclass
class Outcome:
    """How one job ended: its summary, or the error and the exit code it maps to."""

    run_dir: Path | None
    summary: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int = 0
    exception: BaseException | None = None


def _run_job(command: str, cfg: Any, run_dir: Path, overrides: Sequence[str]) -> Outcome:
    """Types the config, runs the handler, writes the records; errors become an Outcome."""
    logs = contextlib.ExitStack()
    try:
        from omegaconf import OmegaConf

        missing = sorted(OmegaConf.missing_keys(cfg) - CHECKED_LATER.get(command, set()))
        if missing:
            raise CLIError(f"missing required option(s) {', '.join(missing)}: pass "
                           + " ".join(f"{k}=..." for k in missing)
                           + f" (see `robolearn {command} --help`)")
        typed = to_typed(command, cfg)
        if command == "train":
            typed.out = str(run_dir)  # the training run directory is the command's output
        elif hasattr(typed, "run_dir"):
            typed.run_dir = str(run_dir)
        logs.enter_context(job_logging(run_dir))
        if command != "train":  # the trainer writes its run's record once the run is accepted
            write_record(run_dir, typed, overrides)
            log.info("robolearn %s: run directory %s", command, run_dir)
        _CURRENT["overrides"] = redact_overrides(overrides)
        summary = handler(command)(typed, run_dir)
        summary = redact(summary)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return Outcome(run_dir, summary=summary)
    except KeyboardInterrupt as e:
        return Outcome(run_dir, error="interrupted; committed episodes are kept", exit_code=130,
                       exception=e)
    except Exception as e:  # noqa: BLE001 - mapped to a message and an exit code below
        code = exit_code_of(e)
        if code is None:
            raise
        return Outcome(run_dir, error=_message(e), exit_code=code, exception=e)
    finally:
        _CURRENT.clear()
        logs.close()
        # hydra made the run directory (`out` for train) for the job: a config refused before
        # anything was written leaves no empty one behind
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only succeeds when it is empty


def exit_code_of(error: BaseException) -> int | None:
    """The exit code of an error a user can act on; ``None`` for a bug (re-raised)."""
    if isinstance(error, RobolearnError):
        return error.exit_code
    if isinstance(error, (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError,
                          ImportError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return 1
    try:
        from hardware import RobotError
    except ImportError:  # pragma: no cover - hardware ships with robolearn
        return None
    return 3 if isinstance(error, RobotError) else None


def _message(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]
    return text if isinstance(error, RobolearnError) else f"error: {text}"


def run(command: str, overrides: Sequence[str] = (), preset: str | None = None, *,
        multirun: bool = False, config: str | None = None) -> Any:
    """Run one command in-process through hydra; returns its summary dict (a list of them for
    ``multirun``). A failed job raises its error (used by tests and scripts)."""
    outcomes = execute(command, overrides, preset, multirun=multirun, config=config)
    for o in outcomes:
        if o.exception is not None:
            raise o.exception
    return [o.summary for o in outcomes] if multirun else outcomes[0].summary


def execute(command: str, overrides: Sequence[str] = (), preset: str | None = None, *,
            multirun: bool = False, config: str | None = None) -> list[Outcome]:
    """Composes and runs ``command`` with hydra (one job, or a sweep with ``multirun``)."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import ConfigCompositionException, HydraException

    name, overrides = _prepare(command, overrides, preset, config)
    if multirun and command == "train":
        fixed = [o for o in overrides if _split(o)[0] == "out" and "," not in (_split(o)[1] or "")]
        if fixed:
            raise CLIError(f"train -m with a fixed {fixed[0]}: every job of the sweep would share "
                           "one run directory. Drop out= (each job gets its own) or sweep it")
    version.setbase("1.3")
    outcomes: list[Outcome] = []

    def task(cfg: Any) -> None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        job_overrides = list(HydraConfig.get().overrides.task)
        mine = [o for o in job_overrides if not _split(o)[0].startswith(("hydra.", "hydra/"))]
        outcomes.append(_run_job(command, cfg, run_dir, mine))

    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name=f"robolearn-{command}",
                                     config_search_path=create_config_search_path(None))
    all_overrides = [*_hydra_overrides(command, overrides), *overrides]
    try:
        if multirun:
            hydra.multirun(config_name=name, task_function=task, overrides=all_overrides,
                           with_log_configuration=False)
        else:
            hydra.run(config_name=name, task_function=task, overrides=all_overrides,
                      with_log_configuration=False)
    except (ConfigCompositionException, HydraException) as e:
        raise CLIError(_composition_message(command, e, overrides)) from None
    finally:
        GlobalHydra.instance().clear()
    if not outcomes:
        raise CLIError(f"robolearn {command}: hydra ran no job (check the -m sweep syntax)")
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `robolearn --help | head`: the reader went away
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "serve-robot":  # the vendor-side server keeps its own plain flags
        from hardware.server import main as serve_main

        return int(serve_main(rest) or 0)
    preset, config, show_cfg, multirun = None, None, False, False
    overrides = []
    if command == "store":  # `robolearn store check PATH`, `robolearn store recover PATH NEW`
        rest = _store_positionals(rest)
    it = iter(rest)
    try:
        for arg in it:
            if arg in ("-h", "--help"):
                _check_command(command)
                print(f"robolearn {command}: {COMMANDS[command].help}\n")
                print(describe(command))
                return 0
            if arg == "--cfg":
                show_cfg = True
            elif arg in ("-m", "--multirun"):
                multirun = True
            elif arg in ("--preset", "--config"):
                value = next(it, None)
                if value is None or value.startswith("-") or "=" in value:
                    raise CLIError(f"{arg} needs a value: {arg} NAME (e.g. --preset debug)"
                                   if arg == "--preset" else f"{arg} needs a file: --config "
                                   "<run dir>/config.yaml")
                preset, config = (value, config) if arg == "--preset" else (preset, value)
            elif arg.startswith(("--preset=", "--config=")):
                key, value = arg.split("=", 1)
                if not value:
                    raise CLIError(f"{key} needs a value")
                preset, config = (value, config) if key == "--preset" else (preset, value)
            elif arg.startswith("-"):
                print(f"robolearn: unknown option {arg!r}\n\n{_usage()}", file=sys.stderr)
                return 2
            else:
                overrides.append(arg)
        if show_cfg:
            import yaml
            from omegaconf import OmegaConf

            cfg = compose_dict(command, overrides, preset, config=config)
            data = redact(OmegaConf.to_container(cfg, resolve=True))
            print(yaml.safe_dump(data, sort_keys=False))
            return 0
        outcomes = execute(command, overrides, preset, multirun=multirun, config=config)
    except RobolearnError as e:
        print(f"robolearn {command}: {_message(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"robolearn {command}: interrupted; committed episodes are kept", file=sys.stderr)
        return 130
    for o in outcomes:
        if o.error is not None:
            where = f" [{o.run_dir}]" if multirun else ""
            print(f"robolearn {command}{where}: {o.error}", file=sys.stderr)
    if multirun:
        _print_sweep(command, outcomes)
    return max(o.exit_code for o in outcomes)


def _store_positionals(args: list[str]) -> list[str]:
    """``check PATH`` / ``recover PATH NEW`` → ``action= path= out=`` (key=value works too)."""
    args = list(args)
    words = []
    while args and "=" not in args[0] and not args[0].startswith("-"):
        words.append(args.pop(0))
    keys = ("action", "path", "out")
    if len(words) > len(keys):
        raise CLIError(f"store takes at most ACTION PATH [NEW]; got {words}")
    return [f"{k}={_hydra_value(w)}" for k, w in zip(keys, words)] + args


def _print_sweep(command: str, outcomes: list[Outcome]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"robolearn {command} -m: {len(outcomes)} job(s)")
    for col in ("job", "status", "run directory"):
        table.add_column(col)
    for k, o in enumerate(outcomes):
        status = "ok" if o.error is None else f"failed (exit {o.exit_code})"
        table.add_row(str(k), status, str(o.run_dir))
    Console().print(table)


def describe(command: str) -> str:
    """The command's config fields, defaults and notes (a field's ``metadata["help"]`` or the
    comment beside it in the source)."""
    import inspect
    import re

    from omegaconf import OmegaConf

    from robolearn.config import CONFIGS, register_configs

    register_configs()

    def notes_of(cls: type) -> dict[str, str]:
        notes: dict[str, str] = {}
        for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
            try:
                source = inspect.getsource(klass)
            except (OSError, TypeError):  # made with make_dataclass: no source
                source = ""
            for line in source.splitlines():  # subclasses' notes win
                m = re.match(r"\s*(\w+):.*?#\s*(.*)$", line)
                if m:
                    notes[m.group(1)] = m.group(2)
            for f in dataclasses.fields(klass):
                if f.metadata.get("help"):
                    notes[f.name] = str(f.metadata["help"])
        return notes

    def walk(cls: type, prefix: str) -> list[str]:
        notes = notes_of(cls)
        defaults = OmegaConf.to_container(OmegaConf.structured(cls), throw_on_missing=False)
        out = []
        for f in dataclasses.fields(cls):
            if f.name == "defaults":
                continue
            value = defaults[f.name]
            if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING and (
                    dataclasses.is_dataclass(f.default_factory())):
                out += walk(type(f.default_factory()), f"{prefix}{f.name}.")
                continue
            shown = "???" if value == "???" else json.dumps(value)
            note = f"  # {notes[f.name]}" if f.name in notes else ""
            if len(note) > 110:
                note = note[:107] + "..."
            out.append(f"  {prefix}{f.name}={shown}{note}")
        return out

    from robolearn.config import presets_of

    presets = presets_of(command)
    deprecated = DEPRECATED.get(command, {})
    tail = (f"\nPresets (--preset NAME): {', '.join(presets)}" if presets else "") + (
        "\nDeprecated (still accepted for one release): "
            + ", ".join(f"{old}= → {new}=" for old, new in deprecated.items()) if deprecated
        else "")
    return "Config (override with key=value; ??? = required):\n" + "\n".join(
        walk(CONFIGS[command], "")) + tail
