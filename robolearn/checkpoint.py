"""Checkpoints on disk: safetensors + JSON, never pickle.

A run directory written by the trainer::

    runs/<name>/
      checkpoint -> checkpoints/step_000500     symlink to the newest checkpoint
      checkpoints/step_000500/
        model.safetensors                        inference weights (EMA when enabled) + normalisers
        config.json                              format, policy config, task list, provenance
        training_state/                          what resume needs, kept apart from the weights
          state.safetensors                      live weights, EMA shadow, optimiser tensors, torch RNG
          state.json                             step, optimiser structure, scheduler, numpy RNG

Each checkpoint directory is written under a temporary name and renamed into place, and the
``checkpoint`` link is swapped atomically, so a crash mid-save leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from robolearn.errors import CheckpointError

FORMAT = "robolearn.policy"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE_DIR = "training_state"
LATEST = "checkpoint"


def _contiguous(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    training_tensors: Mapping[str, torch.Tensor] | None = None,
    training_json: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step_<step>`` atomically, point ``checkpoint`` at it, prune old ones."""
    ckpts = run_dir / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    final = ckpts / f"step_{step:07d}"
    tmp = ckpts / f".tmp_step_{step:07d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_contiguous(weights), str(tmp / WEIGHTS))
    (tmp / CONFIG).write_text(
        json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "step": step, **config}, indent=2)
    )
    if training_tensors is not None:
        (tmp / STATE_DIR).mkdir()
        save_file(_contiguous(training_tensors), str(tmp / STATE_DIR / "state.safetensors"))
        (tmp / STATE_DIR / "state.json").write_text(json.dumps(training_json or {}))
    install_checkpoint(run_dir, tmp, final)
    for old in sorted(p for p in ckpts.iterdir() if p.name.startswith("step_"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in ckpts.glob(".tmp_step_*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def install_checkpoint(run_dir: Path, tmp: Path, final: Path) -> None:
    """Rename the fully written checkpoint directory ``tmp`` to ``final`` (under
    ``run_dir/checkpoints``) and swap the run's ``checkpoint`` link to it atomically."""
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    link_tmp = run_dir / f".{LATEST}.tmp{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(final.relative_to(run_dir), link_tmp)
    os.replace(link_tmp, run_dir / LATEST)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory from a checkpoint dir, a run dir, or the run's ``checkpoint`` link."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"no checkpoint at {p}: expected a run directory written by `robolearn train` "
            f"(with a '{LATEST}' link) or a checkpoint directory with {WEIGHTS} and {CONFIG}"
        )
    if (p / LATEST).exists() and not (p / CONFIG).exists():
        p = p / LATEST
    if not p.is_dir():
        raise CheckpointError(f"{p} is a file; expected a checkpoint directory")
    missing = [n for n in (WEIGHTS, CONFIG) if not (p / n).is_file()]
    if missing:
        raise CheckpointError(
            f"{p} is not a robolearn checkpoint: missing {', '.join(missing)}. Point to a run "
            f"directory or to one of its checkpoints/step_* directories"
        )
    return p.resolve()


def read_config(ckpt: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((ckpt / CONFIG).read_text())
    except ValueError as e:
        raise CheckpointError(f"{ckpt / CONFIG} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{ckpt / CONFIG} must hold a JSON object, got {type(cfg).__name__}")
    if cfg.get("format") != FORMAT:
        raise CheckpointError(
            f"{ckpt} is not a robolearn policy checkpoint (format={cfg.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    if cfg.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{ckpt} has checkpoint version {cfg.get('version')!r}; this robolearn reads "
            f"version {FORMAT_VERSION}"
        )
    for key in ("policy", "tasks"):
        if key not in cfg:
            raise CheckpointError(f"{ckpt / CONFIG} lacks the {key!r} entry")
    tasks, policy = cfg["tasks"], cfg["policy"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(x, str) for x in tasks):
        raise CheckpointError(f"{ckpt / CONFIG}: 'tasks' must be a non-empty list of task names, "
                              f"got {str(tasks)[:80]}")
    if not isinstance(policy, dict):
        raise CheckpointError(f"{ckpt / CONFIG}: 'policy' must be an object, got "
                              f"{type(policy).__name__}")
    if policy.get("num_tasks", len(tasks)) != len(tasks):
        raise CheckpointError(
            f"{ckpt / CONFIG} is inconsistent: policy.num_tasks={policy.get('num_tasks')} but it "
            f"lists {len(tasks)} tasks; the checkpoint was edited or is corrupt"
        )
    for key in ("obs_dim", "action_dim"):
        if key in cfg and key in policy and cfg[key] != policy[key]:
            raise CheckpointError(f"{ckpt / CONFIG} is inconsistent: {key}={cfg[key]} but "
                                  f"policy.{key}={policy[key]}")
    return cfg


def weight_shapes(ckpt: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes in the weights file, read from its header (nothing is allocated)."""
    try:
        with safe_open(str(ckpt / WEIGHTS), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{ckpt / WEIGHTS} cannot be read as safetensors: {e}") from None


def read_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The weights; refuses a file with non-finite values (a diverged run, a corrupt copy)."""
    try:
        weights = load_file(str(ckpt / WEIGHTS))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{ckpt / WEIGHTS} cannot be read as safetensors: {e}") from None
    bad = [k for k, v in weights.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{ckpt / WEIGHTS} has non-finite (NaN/Inf) values in {len(bad)} of {len(weights)} "
            f"tensors ({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}): the run diverged or "
            "the file is corrupt. Use an earlier checkpoint (checkpoints/step_*) or retrain"
        )
    return weights


def read_training_state(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = ckpt / STATE_DIR
    if not (state / "state.safetensors").is_file():
        raise CheckpointError(f"{ckpt} has no {STATE_DIR}/ to resume from")
    return load_file(str(state / "state.safetensors")), json.loads((state / "state.json").read_text())


# ---------------------------------------------------------------- optimiser state without pickle
def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser's state_dict into tensors (safetensors) and JSON (structure, scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars,
                     "param_ids": [str(p) for p in sd["state"]]}


def optimizer_from_flat(
    opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if not key.startswith("optim."):
            continue
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    for pid, st in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
