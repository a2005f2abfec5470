"""robomimic HDF5 export and import.

robomimic's layout (https://robomimic.github.io/docs/datasets/overview.html)::

    data                    attrs: total (steps), env_args (JSON)
    data/demo_<i>           attrs: num_samples, + our per-episode metadata
      obs/<key>  next_obs/<key>  actions (T, Da)  rewards (T,)  dones (T,)
    mask/train, mask/valid  demo names (a split robomimic's ``filter_by_attribute`` reads)

Our observation vector is exported as the low-dim key ``state`` and the task as a one-hot
``task_onehot`` (so robomimic's multi-task BC sees which task it is on); extra per-step keys go
under ``obs/`` too. Import reverses this (or concatenates given ``obs_keys`` for foreign files).

Both directions write under a temporary name and rename on success: a failed or killed run
leaves no partial store or file at ``out`` (a killed run's hidden leftover is removed by the
next run). Export writes the complete episodes only (incomplete ones, recorded with
``complete=False``, are skipped and counted). Import accepts 1-D actions ``(T,)`` as ``(T, 1)``
(a scalar action per step, e.g. a gripper command), the same way 1-D obs keys become one column.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from robolearn.data.exports import partial_path, remove_stale
from robolearn.data.sampler import split_episodes
from robolearn.data.store import EpisodeStore, StoreError, build_store

log = logging.getLogger(__name__)

STATE_KEY = "state"
TASK_KEY = "task_onehot"
_STD_KEYS = ("obs", "action", "reward", "success")


def export_robomimic(
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the complete committed episodes of ``dataset`` to a robomimic HDF5 file at ``out``.

    Incomplete episodes (``complete=False``) are left out; the result's ``skipped_incomplete``
    counts them. Demos are numbered ``demo_0..`` in store order; each records its store index in
    the attribute ``robolearn_episode``. The file is written next to ``out`` under a temporary
    name and renamed when complete. ``overwrite`` replaces only a file this exporter wrote.
    """
    out = Path(out)
    _check_export_target(out, overwrite)
    store = EpisodeStore.open(dataset, mode="r")
    if len(store) == 0:
        raise StoreError(f"{dataset} has no committed episodes to export")
    episodes = store.complete_episodes()
    skipped = len(store) - len(episodes)
    if len(episodes) == 0:
        raise StoreError(
            f"{dataset} has {len(store)} committed episodes but none is complete (all were "
            "recorded with complete=False); nothing to export"
        )
    tasks = store.tasks
    task_ids = store.task_ids()
    train, valid = split_episodes(task_ids, val_fraction, seed, episodes=episodes)
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    arrays = store.load()
    extras = [k for k in store.spec if k not in _STD_KEYS]
    meta_cols = {k: store.meta(k) for k in ("task", "params", "source", "seed", "policy_id",
                                            "timestamp", "info")}
    remove_stale(out)
    tmp = partial_path(out)
    names = {}
    total = 0
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            data.attrs["env_args"] = json.dumps(
                {"env_name": store.attrs.get("user", {}).get("suite", "robolearn"), "type": 4,
                 "env_kwargs": {"tasks": tasks, "source": "robolearn"}}
            )
            data.attrs["robolearn_tasks"] = json.dumps(tasks)
            for j, i in enumerate(tqdm(episodes, desc="export", disable=not progress)):
                i = int(i)
                s, e = int(starts[i]), int(ends[i])
                name = f"demo_{j}"
                names[i] = name
                g = data.create_group(name)
                T = e - s
                total += T
                g.attrs["num_samples"] = T
                g.attrs["robolearn_episode"] = i
                onehot = np.zeros((T, len(tasks)), np.float32)
                onehot[:, task_ids[i]] = 1.0
                obs = {STATE_KEY: arrays["obs"][s:e], TASK_KEY: onehot}
                for k in extras:
                    obs[k] = arrays[k][s:e]
                nxt = {k: np.concatenate([v[1:], v[-1:]]) for k, v in obs.items()}
                for grp, values in (("obs", obs), ("next_obs", nxt)):
                    og = g.create_group(grp)
                    for k, v in values.items():
                        og.create_dataset(k, data=v)
                g.create_dataset("actions", data=arrays["action"][s:e])
                g.create_dataset("rewards", data=arrays["reward"][s:e].astype(np.float64))
                dones = np.zeros(T, np.int64)
                dones[-1] = 1
                g.create_dataset("dones", data=dones)
                g.create_dataset("success", data=arrays["success"][s:e])
                for k, col in meta_cols.items():
                    v = col[i]
                    g.attrs[k] = v.item() if hasattr(v, "item") else str(v)
            data.attrs["total"] = int(total)
            mask = f.create_group("mask")
            mask.create_dataset("train", data=np.array([names[i] for i in train], dtype="S"))
            mask.create_dataset("valid", data=np.array([names[i] for i in valid], dtype="S"))
        _check_export_target(out, overwrite)  # it may have appeared meanwhile
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if skipped:
        log.info("export %s: skipped %d incomplete episode(s)", dataset, skipped)
    log.info("exported %d episodes to %s", len(episodes), out)
    return {"episodes": len(episodes), "steps": int(total), "out": str(out),
            "train": len(train), "valid": len(valid), "skipped_incomplete": skipped}


def _check_export_target(out: Path, overwrite: bool) -> None:
    if not out.exists() and not out.is_symlink():
        if not out.parent.is_dir():
            raise FileNotFoundError(f"cannot export to {out}: no directory {out.parent}")
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=true to replace it")
    if out.is_dir():
        raise StoreError(
            f"refusing to overwrite {out}: it is a directory, not an HDF5 file; choose a file "
            "path such as demos.hdf5 (or remove the directory yourself)"
        )
    if not _written_by_us(out):
        raise StoreError(
            f"refusing to overwrite {out}: it is not a robomimic file written by robolearn's "
            "export (no data.attrs['robolearn_tasks']); remove it yourself if that is intended"
        )


def _written_by_us(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "data" in f and "robolearn_tasks" in f["data"].attrs
    except (OSError, ValueError):
        return False


def _demo_sort_key(name: str) -> tuple[int, str]:
    tail = name.rsplit("_", 1)[-1]
    return (int(tail), name) if tail.isdigit() else (1 << 62, name)


def import_robomimic(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    obs_keys: list[str] | None = None,
    task: str | None = None,
    source: str = "expert",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Create an episode store at ``out`` from a robomimic HDF5 file.

    The store is built under a temporary name and appears at ``out`` only when every demo was
    imported: a failed or interrupted import leaves nothing there, so a re-run starts afresh.

    Args:
        obs_keys: low-dim ``obs/`` keys concatenated (in order) into our ``obs``. Default: the
            ``state`` key of files we exported.
        task: task name for files whose demos carry no ``task`` attribute.
        source: ``source`` for demos that do not record one.
        overwrite: replace an existing store at ``out`` (never a foreign directory).
    """
    src = Path(src)
    out = Path(out)
    if not src.exists():
        raise FileNotFoundError(f"no such HDF5 file: {src}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=true to replace it")
    try:
        f = h5py.File(src, "r")
    except OSError as e:
        raise StoreError(f"{src} is not a readable HDF5 file: {e}") from None
    with f:
        if "data" not in f:
            raise StoreError(f"{src} is not a robomimic dataset: it has no 'data' group")
        demos = sorted(f["data"].keys(), key=_demo_sort_key)
        if not demos:
            raise StoreError(f"{src} has no demos under 'data'")
        first = f["data"][demos[0]]
        keys = obs_keys or [STATE_KEY]
        for k in keys:
            if k not in first["obs"]:
                raise StoreError(
                    f"{src}: obs key {k!r} not found; available obs keys: "
                    f"{sorted(first['obs'].keys())}. Pass obs_keys=[...]"
                )
        ours = STATE_KEY in first["obs"] and "task" in first.attrs and obs_keys is None
        extras = {}
        if ours:
            for k in first["obs"]:
                if k not in (STATE_KEY, TASK_KEY):
                    ds = first["obs"][k]
                    extras[k] = (ds.shape[1:], str(ds.dtype))
        obs_dim = sum(int(np.prod(first["obs"][k].shape[1:])) for k in keys)
        action_dim = _action_dim(src, demos[0], first)
        tasks = json.loads(f["data"].attrs.get("robolearn_tasks", "[]"))
        steps_total = 0
        with build_store(
            out, obs_dim, action_dim, extras=extras or None, tasks=tasks, overwrite=overwrite,
            attrs={"imported_from": str(src)},
        ) as store:
            for name in demos:
                try:
                    steps, meta = _demo(src, name, f["data"][name], keys, extras, action_dim,
                                        task, source)
                    store.add_episode(steps, **meta)
                except (StoreError, ValueError, TypeError, KeyError) as e:
                    msg = str(e)
                    prefix = "" if msg.startswith(f"{src}/") else f"{src}/{name} cannot be imported: "
                    raise StoreError(f"{prefix}{msg}; nothing was written to {out}") from None
                steps_total += len(steps["obs"])
    return {"episodes": len(demos), "steps": steps_total, "out": str(out)}


def _demo(src: Path, name: str, g: Any, keys: list[str], extras: dict[str, Any],
          action_dim: int, task: str | None, source: str
          ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One demo's steps and ``add_episode`` metadata."""
    if _action_dim(src, name, g) != action_dim:
        raise StoreError(
            f"{src}/{name}: actions have {_action_dim(src, name, g)} columns, but the first demo "
            f"has {action_dim}; every demo needs the same action size"
        )
    actions = np.asarray(g["actions"]).reshape(len(g["actions"]), action_dim)
    T = actions.shape[0]
    parts = []
    for k in keys:
        v = np.asarray(g["obs"][k])
        if v.shape[0] != T:
            raise StoreError(f"{src}/{name}: obs/{k} has {v.shape[0]} steps but actions has {T}")
        parts.append(v.reshape(T, -1))
    obs = np.concatenate(parts, axis=1)
    success = np.asarray(g["success"], dtype=bool) if "success" in g else np.zeros(T, bool)
    if "success" not in g and "dones" in g:
        success = np.asarray(g["dones"]).astype(bool)
    steps = {
        "obs": obs,
        "action": actions,
        "reward": np.asarray(g["rewards"]) if "rewards" in g else np.zeros(T),
        "success": success,
    }
    for k in extras:
        steps[k] = np.asarray(g["obs"][k])
    a = g.attrs
    ep_task = str(a["task"]) if "task" in a else task
    if not ep_task:
        raise StoreError(f"{src}/{name} records no task; pass task=<name> to import it")
    seed = int(a["seed"]) if "seed" in a else -1
    meta = {
        "task": ep_task,
        "source": str(a["source"]) if "source" in a else source,
        "params": str(a["params"]) if "params" in a else None,
        "seed": None if seed < 0 else seed,
        "policy_id": str(a.get("policy_id", "")),
        "info": str(a["info"]) if "info" in a else {"robomimic_demo": name},
        "timestamp": float(a["timestamp"]) if "timestamp" in a else None,
    }
    return steps, meta


def _action_dim(src: Path, name: str, g: Any) -> int:
    """Columns of a demo's ``actions``: (T, Da) as is, (T,) as one column."""
    if "actions" not in g:
        raise StoreError(f"{src}/{name} has no 'actions' dataset")
    shape = g["actions"].shape
    if len(shape) == 1:
        return 1
    if len(shape) == 2 and shape[1] >= 1:
        return int(shape[1])
    raise StoreError(
        f"{src}/{name}: actions have shape {shape}, expected (T, Da) or (T,) (one action value "
        "per step)"
    )
