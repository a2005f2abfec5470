"""robomimic HDF5 export and import.

robomimic's layout (https://robomimic.github.io/docs/datasets/overview.html)::

    data                    attrs: total (steps), env_args (JSON)
    data/demo_<i>           attrs: num_samples, + our per-episode metadata
      obs/<key>  next_obs/<key>  actions (T, Da)  rewards (T,)  dones (T,)
    mask/train, mask/valid  demo names (a split robomimic's ``filter_by_attribute`` reads)

Our observation vector is exported as the low-dim key ``state`` and the task as a one-hot
``task_onehot`` (so robomimic's multi-task BC sees which task it is on); extra per-step keys go
under ``obs/`` too. Import reverses this (or concatenates given ``obs_keys`` for foreign files).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from robolearn.data.sampler import split_episodes
from robolearn.data.store import EpisodeStore, StoreError

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
    """Write the committed episodes of ``dataset`` to a robomimic HDF5 file at ``out``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=true to replace it")
    store = EpisodeStore.open(dataset, mode="r")
    if len(store) == 0:
        raise StoreError(f"{dataset} has no committed episodes to export")
    tasks = store.tasks
    task_ids = store.task_ids()
    train, valid = split_episodes(task_ids, val_fraction, seed)
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    arrays = store.load()
    extras = [k for k in store.spec if k not in _STD_KEYS]
    tmp = out.with_name(out.name + ".partial")
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = int(store.num_steps)
        data.attrs["env_args"] = json.dumps(
            {"env_name": store.attrs.get("user", {}).get("suite", "robolearn"), "type": 4,
             "env_kwargs": {"tasks": tasks, "source": "robolearn"}}
        )
        data.attrs["robolearn_tasks"] = json.dumps(tasks)
        names = []
        for i in tqdm(range(len(store)), desc="export", disable=not progress):
            s, e = int(starts[i]), int(ends[i])
            name = f"demo_{i}"
            names.append(name)
            g = data.create_group(name)
            T = e - s
            g.attrs["num_samples"] = T
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
            ep_meta = {k: store.meta(k)[i] for k in ("task", "params", "source", "seed",
                                                     "policy_id", "timestamp", "info")}
            for k, v in ep_meta.items():
                g.attrs[k] = v.item() if hasattr(v, "item") else str(v)
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array([names[i] for i in train], dtype="S"))
        mask.create_dataset("valid", data=np.array([names[i] for i in valid], dtype="S"))
    os.replace(tmp, out)
    log.info("exported %d episodes to %s", len(store), out)
    return {"episodes": len(store), "steps": store.num_steps, "out": str(out),
            "train": len(train), "valid": len(valid)}


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

    Args:
        obs_keys: low-dim ``obs/`` keys concatenated (in order) into our ``obs``. Default: the
            ``state`` key of files we exported.
        task: task name for files whose demos carry no ``task`` attribute.
    """
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"no such HDF5 file: {src}")
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
        action_dim = int(first["actions"].shape[1])
        tasks = json.loads(f["data"].attrs.get("robolearn_tasks", "[]"))
        store = EpisodeStore.create(
            out, obs_dim, action_dim, extras=extras or None, tasks=tasks, overwrite=overwrite,
            attrs={"imported_from": str(src)},
        )
        steps_total = 0
        with store:
            for name in demos:
                g = f["data"][name]
                obs = np.concatenate(
                    [np.asarray(g["obs"][k]).reshape(len(g["actions"]), -1) for k in keys], axis=1
                )
                T = obs.shape[0]
                success = (
                    np.asarray(g["success"], dtype=bool) if "success" in g
                    else np.zeros(T, bool)
                )
                if "success" not in g and "dones" in g:
                    success = np.asarray(g["dones"]).astype(bool)
                steps = {
                    "obs": obs,
                    "action": np.asarray(g["actions"]),
                    "reward": np.asarray(g["rewards"]) if "rewards" in g else np.zeros(T),
                    "success": success,
                }
                for k in extras:
                    steps[k] = np.asarray(g["obs"][k])
                a = g.attrs
                ep_task = str(a["task"]) if "task" in a else task
                if not ep_task:
                    raise StoreError(
                        f"{src}/{name} records no task; pass task=<name> to import it"
                    )
                seed = int(a["seed"]) if "seed" in a else -1
                store.add_episode(
                    steps,
                    task=ep_task,
                    source=str(a["source"]) if "source" in a else source,
                    params=str(a["params"]) if "params" in a else None,
                    seed=None if seed < 0 else seed,
                    policy_id=str(a.get("policy_id", "")),
                    info=str(a["info"]) if "info" in a else {"robomimic_demo": name},
                    timestamp=float(a["timestamp"]) if "timestamp" in a else None,
                )
                steps_total += T
    return {"episodes": len(demos), "steps": steps_total, "out": str(out)}
