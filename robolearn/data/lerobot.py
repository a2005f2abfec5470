"""LeRobot dataset v3.0 export and import, written against pyarrow (LeRobot is not needed).

The layout (LeRobot's ``codebase_version: "v3.0"``; state only, so no videos)::

    <out>/
      meta/info.json                           codebase_version, fps, features, totals, paths
      meta/tasks.parquet                       the task strings (pandas index) -> task_index
      meta/episodes/chunk-000/file-000.parquet one row per episode: its frame range, data file,
                                               per-episode stats (and our metadata, robolearn/*)
      meta/stats.json                          per feature: min, max, mean, std, count, q01..q99
      data/chunk-000/file-000.parquet          one row per frame (more files past 100 MB)

Features written: ``observation.state`` (our ``obs``), ``action``, ``next.reward``,
``next.success``, ``next.done`` (true on an episode's last frame), every extra per-step key
under its own name, and LeRobot's own ``timestamp`` (frame_index / fps), ``frame_index``,
``episode_index``, ``index`` and ``task_index``. A task's ``task_index`` is its index in the
store's task list, and the task string is our task name (``push-v3``). Only complete episodes
are exported (renumbered from 0; ``robolearn/store_index`` is the store's index); what the
store records per episode (task, params, source, seed, policy id, timestamp, info) goes into
``robolearn/*`` columns of the episodes table and the store's spec, task list and attributes
into ``info.json["robolearn"]``, which is how the import round-trips exactly.

Import reads any v3.0 dataset: ``obs_keys`` (default ``observation.state``) are concatenated
into ``obs``; ``action``, ``next.reward`` and ``next.success`` map to ours when present; every
other feature is listed as not imported, with the reason (images and videos: the store holds
state arrays; LeRobot's Meta-World data has a 4-d ``observation.state``, hand xyz + gripper,
which is said too). Both directions build under a temporary name and rename on success.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robolearn.data.exports import check_dir_target, partial_path, publish_dir, remove_stale
from robolearn.data.store import META_FIELDS, EpisodeStore, StoreError, build_store

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
EXPORT_FORMAT = "robolearn.lerobot_export"
EXPORT_VERSION = 1
DEFAULT_FPS = 80  # Meta-World: frame_skip 5 x 2.5 ms timestep = 12.5 ms per control step
CHUNKS_SIZE = 1000  # files per chunk directory (LeRobot's default)
DATA_FILE_MB = 100  # a data file is closed when it would grow past this (LeRobot's default)
INFO = "meta/info.json"
TASKS = "meta/tasks.parquet"
STATS = "meta/stats.json"
EPISODES_DIR = "meta/episodes"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
# LeRobot's per-frame bookkeeping features (every dataset has them).
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
# Our standard keys and the LeRobot feature each becomes.
OBS, ACTION, REWARD, SUCCESS, DONE = (
    "observation.state", "action", "next.reward", "next.success", "next.done")
_META_COLS = ("task", "params", "source", "seed", "policy_id", "timestamp", "info")


def _pa():
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


# ============================================================================== export
def export_lerobot(
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fps: int = DEFAULT_FPS,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the complete committed episodes of ``dataset`` as a LeRobot v3.0 dataset at ``out``.

    Args:
        dataset: the episode store.
        out: the dataset directory to create (LeRobot's ``root``).
        fps: frames per second, for LeRobot's ``timestamp`` (Meta-World's control rate: 80).
        overwrite: replace a directory an earlier export wrote (never any other directory).
        progress: a progress bar over episodes.

    Returns:
        ``{"episodes", "frames", "files", "out", "skipped_incomplete"}``.
    """
    pa, pq = _pa()
    out = Path(out)
    if not isinstance(fps, (int, np.integer)) or not 1 <= fps <= 10_000:
        raise ValueError(f"Got fps={fps!r}, expected an integer in 1..10000 (Meta-World: 80)")
    check_dir_target(out, overwrite, _written_by_us, "a LeRobot dataset written by robolearn's "
                      "export (no 'robolearn' entry in meta/info.json)")
    store = EpisodeStore.open(dataset, mode="r")
    episodes = store.complete_episodes()
    skipped = len(store) - len(episodes)
    if len(episodes) == 0:
        raise StoreError(f"{dataset} has no complete committed episodes to export"
                         + (f" ({skipped} incomplete ones are never exported)" if skipped else ""))
    arrays = store.load()
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    lengths = (ends - starts)[episodes]
    task_ids = store.task_ids()[episodes]
    meta = {k: store.meta(k)[episodes] for k in META_FIELDS}
    extras = [k for k in store.spec if k not in ("obs", "action", "reward", "success")]
    for k in extras:
        if "/" in k or k in (OBS, ACTION, REWARD, SUCCESS, DONE, *INDEX_FEATURES):
            raise StoreError(f"{dataset}: extra key {k!r} cannot be a LeRobot feature name "
                             "(no '/', not one of LeRobot's own names)")
    rows = np.concatenate([np.arange(starts[i], ends[i]) for i in episodes])
    n = len(rows)
    ep_index = np.repeat(np.arange(len(episodes), dtype=np.int64), lengths)
    frame_index = np.concatenate([np.arange(L, dtype=np.int64) for L in lengths])
    done = np.zeros(n, bool)
    done[np.cumsum(lengths) - 1] = True
    columns: dict[str, np.ndarray] = {
        OBS: arrays["obs"][rows],
        ACTION: arrays["action"][rows],
        REWARD: arrays["reward"][rows],
        SUCCESS: arrays["success"][rows],
        DONE: done,
        **{k: arrays[k][rows] for k in extras},
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": ep_index,
        "index": np.arange(n, dtype=np.int64),
        "task_index": np.repeat(task_ids.astype(np.int64), lengths),
    }
    features = {name: _feature(col) for name, col in columns.items()}
    names = {OBS: [f"obs_{i}" for i in range(store.obs_dim)]}
    for name, ft in features.items():
        ft["names"] = names.get(name)

    remove_stale(out)
    tmp = partial_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # Frames into data files of at most DATA_FILE_MB (uncompressed), whole episodes each.
        row_bytes = sum(c.nbytes for c in columns.values()) / max(n, 1)
        per_file = max(1, int(DATA_FILE_MB * 2**20 // max(row_bytes, 1)))
        file_of_ep, files = _assign_files(lengths, per_file)
        ep_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        bar = tqdm(total=len(episodes), desc="export lerobot", unit="ep", disable=not progress)
        for f, (first, last) in enumerate(files):
            lo, hi = int(ep_starts[first]), int(ep_starts[last] + lengths[last])
            table = pa.table({k: _arrow(v[lo:hi]) for k, v in columns.items()})
            path = tmp / DATA_PATH.format(**_chunk_file(f))
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="snappy")
            bar.update(last - first + 1)
        bar.close()
        # Per-episode table: frame ranges, data files, stats and our metadata.
        chunk_file = [_chunk_file(int(f)) for f in file_of_ep]
        ep_cols: dict[str, Any] = {
            "episode_index": pa.array(np.arange(len(episodes), dtype=np.int64)),
            "tasks": pa.array([[store.tasks[t]] for t in task_ids], pa.list_(pa.string())),
            "length": pa.array(lengths.astype(np.int64)),
            "data/chunk_index": pa.array([c["chunk_index"] for c in chunk_file], pa.int64()),
            "data/file_index": pa.array([c["file_index"] for c in chunk_file], pa.int64()),
            "dataset_from_index": pa.array(ep_starts.astype(np.int64)),
            "dataset_to_index": pa.array((ep_starts + lengths).astype(np.int64)),
            "meta/episodes/chunk_index": pa.array(np.zeros(len(episodes), np.int64)),
            "meta/episodes/file_index": pa.array(np.zeros(len(episodes), np.int64)),
        }
        for name, col in columns.items():
            for stat, values in _episode_stats(col, ep_starts).items():
                ep_cols[f"stats/{name}/{stat}"] = values
        ep_cols["robolearn/store_index"] = pa.array(episodes.astype(np.int64))
        for k in _META_COLS:
            v = meta[k]
            ep_cols[f"robolearn/{k}"] = pa.array(
                v.astype(np.int64) if k == "seed" else v.astype(np.float64) if k == "timestamp"
                else [str(x) for x in v])
        path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(ep_cols), path, compression="snappy")
        _write_tasks(tmp / TASKS, store.tasks)
        stats = {name: _stats(col) for name, col in columns.items()}
        (tmp / STATS).write_text(json.dumps(stats, indent=2))
        user = store.attrs.get("user", {})
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": "metaworld" if "suite" in user else None,
            "total_episodes": int(len(episodes)),
            "total_frames": int(n),
            "total_tasks": len(store.tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILE_MB,
            "video_files_size_in_mb": 200,
            "fps": int(fps),
            "splits": {"train": f"0:{len(episodes)}"},
            "data_path": DATA_PATH,
            "video_path": None,
            "features": features,
            "robolearn": {
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "tasks": store.tasks,
                "data_spec": {k: v.to_dict() for k, v in store.spec.items()},
                "extras": extras,
                "user_attrs": user,
                "source_store": str(Path(dataset).resolve()),
                "skipped_incomplete": int(skipped),
            },
        }
        (tmp / INFO).write_text(json.dumps(info, indent=4))
        check_dir_target(out, overwrite, _written_by_us, "")  # it may have appeared meanwhile
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if skipped:
        log.info("export %s: skipped %d incomplete episode(s)", dataset, skipped)
    return {"episodes": int(len(episodes)), "frames": int(n), "files": len(files),
            "out": str(out), "skipped_incomplete": int(skipped)}


def _feature(col: np.ndarray) -> dict[str, Any]:
    """A LeRobot feature entry for a per-frame column (T, ...): dtype and per-frame shape."""
    shape = list(col.shape[1:]) or [1]
    return {"dtype": str(col.dtype), "shape": shape}


def _arrow(col: np.ndarray):
    """A column (T, ...) as the arrow type LeRobot's reader casts to: scalars, fixed-size lists
    for vectors, nested lists for 2-d and more (``datasets.ArrayND``)."""
    pa, _ = _pa()
    if col.ndim == 1:
        return pa.array(col)
    if col.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(col.reshape(-1)), col.shape[1])
    arr = pa.array(col.reshape(-1))
    for size in reversed(col.shape[1:]):
        offsets = np.arange(0, len(arr) + 1, size, dtype=np.int32)
        arr = pa.ListArray.from_arrays(pa.array(offsets), arr)
    return arr


def _assign_files(lengths: np.ndarray, per_file: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Episodes into files of about ``per_file`` frames (an episode is never split)."""
    file_of = np.zeros(len(lengths), np.int64)
    files: list[tuple[int, int]] = []
    first, count = 0, 0
    for i, L in enumerate(lengths):
        if count and count + L > per_file:
            files.append((first, i - 1))
            first, count = i, 0
        file_of[i] = len(files)
        count += int(L)
    files.append((first, len(lengths) - 1))
    return file_of, files


def _chunk_file(f: int) -> dict[str, int]:
    return {"chunk_index": f // CHUNKS_SIZE, "file_index": f % CHUNKS_SIZE}


def _stats(col: np.ndarray) -> dict[str, Any]:
    """Dataset-level stats of one feature, LeRobot's keys (per dimension; bools as LeRobot)."""
    x = col.reshape(len(col), -1) if col.ndim > 1 else col.reshape(-1, 1)
    f = x.astype(np.float64)
    shape = col.shape[1:] or (1,)
    out = {
        "min": x.min(axis=0), "max": x.max(axis=0), "mean": f.mean(axis=0),
        "std": f.std(axis=0), "count": np.array([len(col)]),
    }
    for q, v in zip(QUANTILES, np.quantile(f, QUANTILES, axis=0)):
        out[f"q{int(round(q * 100)):02d}"] = v
    return {k: (v.reshape(shape) if k != "count" else v).tolist() for k, v in out.items()}


def _episode_stats(col: np.ndarray, starts: np.ndarray) -> dict[str, Any]:
    """Per-episode min/max/mean/std/count of one feature, as list columns (vectorised)."""
    pa, _ = _pa()
    x = col.reshape(len(col), -1) if col.ndim > 1 else col.reshape(-1, 1)
    counts = np.diff(np.concatenate([starts, [len(col)]]))
    if x.dtype.kind == "b":
        mn = np.logical_and.reduceat(x, starts, axis=0)
        mx = np.logical_or.reduceat(x, starts, axis=0)
    else:
        mn = np.minimum.reduceat(x, starts, axis=0).astype(np.float64)
        mx = np.maximum.reduceat(x, starts, axis=0).astype(np.float64)
    f = x.astype(np.float64)
    mean = np.add.reduceat(f, starts, axis=0) / counts[:, None]
    var = np.add.reduceat(f * f, starts, axis=0) / counts[:, None] - mean**2
    std = np.sqrt(np.maximum(var, 0.0))

    def lists(v: np.ndarray, typ: Any) -> Any:
        return pa.ListArray.from_arrays(
            pa.array(np.arange(0, v.size + 1, v.shape[1], dtype=np.int32)),
            pa.array(v.reshape(-1), typ))

    return {"min": lists(mn, pa.bool_() if x.dtype.kind == "b" else pa.float64()),
            "max": lists(mx, pa.bool_() if x.dtype.kind == "b" else pa.float64()),
            "mean": lists(mean, pa.float64()), "std": lists(std, pa.float64()),
            "count": lists(counts.reshape(-1, 1).astype(np.int64), pa.int64())}


def _write_tasks(path: Path, tasks: list[str]) -> None:
    """``meta/tasks.parquet`` as pandas writes it (LeRobot reads it with ``pd.read_parquet``
    and looks tasks up by the index): column ``task_index``, the task strings as the index."""
    pa, pq = _pa()
    index = "__index_level_0__"
    pandas_meta = {
        "index_columns": [index],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": None, "field_name": index, "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = pa.table({"task_index": pa.array(np.arange(len(tasks), dtype=np.int64)),
                      index: pa.array(list(tasks), pa.string())})
    table = table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


# ============================================================================== import
def import_lerobot(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    obs_keys: list[str] | None = None,
    task: str | None = None,
    source: str = "expert",
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Create an episode store at ``out`` from a LeRobot v3.0 dataset directory ``src``.

    A dataset our export wrote comes back exactly (arrays, tasks, per-episode metadata, store
    attributes). For others: ``obs_keys`` are concatenated into ``obs``, ``action`` is the
    action, ``next.reward`` / ``next.success`` the reward and success (zeros when absent), the
    task is the episode's task string (or ``task``), and every other feature is listed in the
    result's ``not_imported`` with the reason. The store is built under a temporary name and
    appears only when every episode was imported.

    Args:
        obs_keys: features concatenated (in order) into ``obs``; default ``observation.state``.
        task: one task name for every episode, instead of the dataset's task strings.
        source: ``source`` of episodes that do not record one.
        overwrite: replace an existing store at ``out`` (never a foreign directory).

    Returns:
        ``{"episodes", "steps", "out", "not_imported": {feature: reason}, "notes": [...]}``.

    Raises:
        StoreError: not a LeRobot v3.0 dataset, or a damaged/truncated one (naming the file).
    """
    pa, pq = _pa()
    src, out = Path(src), Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=true to replace it")
    info = _read_info(src)
    features = info["features"]
    ours = info.get("robolearn")
    if ours is not None and (not isinstance(ours, dict) or ours.get("format") != EXPORT_FORMAT):
        raise StoreError(f"{src / INFO}: its 'robolearn' entry is not one robolearn's export "
                         "wrote; remove it to import the dataset as a foreign one")
    keys = list(obs_keys) if obs_keys else [OBS]
    for k in keys:
        if k not in features:
            cands = [n for n, f in features.items() if f.get("dtype") not in ("image", "video")
                     and n not in INDEX_FEATURES]
            raise StoreError(f"{src}: feature {k!r} not found; its features: {cands}. Pass "
                             "obs_keys=[...] naming the ones to concatenate into obs")
        if features[k].get("dtype") in ("image", "video", "string"):
            raise StoreError(f"{src}: feature {k!r} is {features[k]['dtype']}, not a state "
                             "array; the episode store's obs is a vector of numbers")
    if ACTION not in features:
        raise StoreError(f"{src}: no 'action' feature; robolearn stores need one")
    extras = list(ours["extras"]) if ours is not None and obs_keys is None else []
    spec = ours.get("data_spec", {}) if ours is not None else {}
    used = {*keys, ACTION, REWARD, SUCCESS, DONE, *INDEX_FEATURES, *extras}
    not_imported = {n: _why_not(n, f) for n, f in features.items() if n not in used}
    notes = _notes(info, keys, features)
    tasks = _read_tasks(src)
    eps = _read_episodes(src)
    n_ep = len(eps["episode_index"])
    if n_ep != info.get("total_episodes", n_ep):
        raise StoreError(f"{src}: meta/episodes lists {n_ep} episodes but info.json says "
                         f"total_episodes={info['total_episodes']}: the dataset is incomplete")
    if n_ep == 0:
        raise StoreError(f"{src} has no episodes")
    obs_dim = sum(_width(features[k]) for k in keys)
    action_dim = _width(features[ACTION])
    extra_spec = {k: (tuple(spec[k]["shape"]), spec[k]["dtype"]) for k in extras}
    store_tasks = list(ours["tasks"]) if ours is not None and task is None else (
        [task] if task else list(tasks))
    attrs = dict(ours.get("user_attrs", {})) if ours is not None else {}
    attrs.update({"imported_from": str(src), "imported_format": "lerobot"})
    columns = [*keys, ACTION, *([REWARD] if REWARD in features else []),
               *([SUCCESS] if SUCCESS in features else []), *extras,
               "episode_index", "frame_index", "index", "task_index"]
    steps_total = 0
    with build_store(out, obs_dim, action_dim, extras=extra_spec or None, tasks=store_tasks,
                     overwrite=overwrite, attrs=attrs) as store:
        batch: list[tuple[dict[str, np.ndarray], dict[str, Any]]] = []
        for path, indices in tqdm(_episodes_by_file(src, info, eps), desc="import lerobot",
                                  unit="file", disable=not progress):
            table = _read_data(path, columns, src)
            data = {c: _numpy(table.column(c), path, c) for c in columns}
            index = data["index"]
            for j in indices:
                steps, meta = _episode(src, path, eps, j, data, index, keys, extras, spec,
                                       tasks, task, source, ours is not None)
                batch.append((steps, meta))
                steps_total += len(steps["obs"])
                if len(batch) >= 64:
                    _commit(store, batch, src, out)
        _commit(store, batch, src, out)
    result = {"episodes": int(n_ep), "steps": int(steps_total), "out": str(out),
              "not_imported": not_imported, "notes": notes}
    for name, why in not_imported.items():
        log.info("import %s: not imported: %s (%s)", src, name, why)
    for note in notes:
        log.warning("import %s: %s", src, note)
    return result


def _commit(store: EpisodeStore, batch: list, src: Path, out: Path) -> None:
    """Validate and commit a batch of episodes (one zarr write per array for the batch)."""
    if not batch:
        return
    from robolearn.data.store import episode_meta

    try:
        store._commit_many([(store.validate_episode(s), episode_meta(**m)) for s, m in batch])
    except (StoreError, ValueError, TypeError) as e:
        raise StoreError(f"{src} cannot be imported: {e}; nothing was written to {out}") from None
    batch.clear()


def _read_info(src: Path) -> dict[str, Any]:
    if not src.exists():
        raise FileNotFoundError(f"no such LeRobot dataset directory: {src}")
    if not src.is_dir():
        raise StoreError(f"{src} is a file; a LeRobot dataset is a directory with meta/info.json")
    path = src / INFO
    if not path.is_file():
        legacy = (src / "meta" / "episodes.jsonl").exists()
        raise StoreError(
            f"{src} is not a LeRobot dataset: {path} is missing"
            + (" (it has meta/episodes.jsonl: a LeRobot v2 dataset; convert it to v3.0 with "
               "LeRobot's lerobot/datasets/v30/convert_dataset_v21_to_v30.py)" if legacy else ""))
    try:
        info = json.loads(path.read_text())
    except ValueError as e:
        raise StoreError(f"{path} is not valid JSON ({e}): the file is damaged or truncated"
                         ) from None
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise StoreError(f"{path} has no 'features' object: not a LeRobot dataset's info.json")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise StoreError(
            f"{src} is a LeRobot dataset of codebase_version={version or None!r}; robolearn reads "
            f"v3.0. Convert a v2.x dataset with LeRobot's "
            "lerobot/datasets/v30/convert_dataset_v21_to_v30.py")
    for key in ("data_path", "total_frames"):
        if key not in info:
            raise StoreError(f"{path} lacks {key!r}: not a complete LeRobot v3.0 info.json")
    for name, ft in info["features"].items():
        if not isinstance(ft, dict) or "dtype" not in ft or "shape" not in ft:
            raise StoreError(f"{path}: feature {name!r} lacks 'dtype' or 'shape'")
    return info


def _read_table(path: Path, src: Path, what: str, columns: list[str] | None = None):
    _, pq = _pa()
    if not path.is_file():
        raise StoreError(f"{src}: {what} {path} is missing: the dataset is incomplete")
    try:
        return pq.read_table(path, columns=columns)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        raise StoreError(f"{src}: cannot read {what} {path} ({type(e).__name__}: {e}); the file "
                         "is damaged or truncated") from None


def _read_tasks(src: Path) -> list[str]:
    table = _read_table(src / TASKS, src, "the task table")
    names = table.column_names
    text = next((c for c in ("__index_level_0__", "task") if c in names), None)
    if text is None or "task_index" not in names:
        raise StoreError(f"{src / TASKS} has columns {names}; expected task_index and the task "
                         "strings (the pandas index, or a 'task' column)")
    idx = table.column("task_index").to_pylist()
    strings = [str(s) for s in table.column(text).to_pylist()]
    if sorted(idx) != list(range(len(idx))):
        raise StoreError(f"{src / TASKS}: task_index values {idx[:10]} are not 0..{len(idx) - 1}")
    tasks = [""] * len(idx)
    for i, s in zip(idx, strings):
        tasks[i] = s
    return tasks


def _read_episodes(src: Path) -> dict[str, np.ndarray | list]:
    pa, _ = _pa()
    files = sorted((src / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        raise StoreError(f"{src}: no episode table under {src / EPISODES_DIR} "
                         "(chunk-XXX/file-XXX.parquet): the dataset is incomplete")
    tables = []
    for f in files:
        t = _read_table(f, src, "the episode table")
        tables.append(t.select([c for c in t.column_names if not c.startswith("stats/")]))
    table = pa.concat_tables(tables, promote_options="default")
    need = ("episode_index", "length", "dataset_from_index", "dataset_to_index",
            "data/chunk_index", "data/file_index")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise StoreError(f"{src}: the episode table lacks {missing}: not a LeRobot v3.0 dataset")
    out: dict[str, Any] = {c: table.column(c).to_numpy() for c in need}
    order = np.argsort(out["episode_index"], kind="stable")
    out = {k: v[order] for k, v in out.items()}
    if not np.array_equal(out["episode_index"], np.arange(len(order))):
        raise StoreError(f"{src}: episode_index in the episode table is not 0..{len(order) - 1}")
    for c in table.column_names:
        if c.startswith("robolearn/") or c == "tasks":
            values = table.column(c).to_pylist()
            out[c] = [values[int(i)] for i in order]
    return out


def _episodes_by_file(src: Path, info: dict[str, Any], eps: dict[str, Any]):
    """(data file, [episode positions]) in episode order."""
    groups: list[tuple[Path, list[int]]] = []
    for j in range(len(eps["episode_index"])):
        path = src / info["data_path"].format(chunk_index=int(eps["data/chunk_index"][j]),
                                              file_index=int(eps["data/file_index"][j]))
        if groups and groups[-1][0] == path:
            groups[-1][1].append(j)
        else:
            groups.append((path, [j]))
    return groups


def _read_data(path: Path, columns: list[str], src: Path):
    table = _read_table(path, src, "data file")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise StoreError(f"{path} lacks column(s) {missing} that info.json declares")
    return table.select(columns)


def _numpy(column: Any, path: Path, name: str) -> np.ndarray:
    """An arrow column as (T, ...) numpy: scalars, fixed or variable lists (nested)."""
    pa, _ = _pa()
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    shape: list[int] = []
    while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type) or \
            pa.types.is_large_list(arr.type):
        if arr.null_count:
            raise StoreError(f"{path}: column {name!r} has missing (null) values")
        width = (arr.type.list_size if pa.types.is_fixed_size_list(arr.type)
                 else (int(arr.value_lengths()[0].as_py()) if len(arr) else 0))
        if not pa.types.is_fixed_size_list(arr.type):
            lens = arr.value_lengths().to_numpy(zero_copy_only=False)
            if len(lens) and (lens != width).any():
                raise StoreError(f"{path}: column {name!r} has rows of different lengths")
        shape.append(width)
        arr = arr.flatten()
    if arr.null_count:
        raise StoreError(f"{path}: column {name!r} has missing (null) values")
    values = arr.to_numpy(zero_copy_only=False)
    rows = len(column)
    return values.reshape(rows, *shape)


def _width(ft: dict[str, Any]) -> int:
    return int(math.prod(int(s) for s in ft["shape"]))


def _episode(src: Path, path: Path, eps: dict[str, Any], j: int, data: dict[str, np.ndarray],
             index: np.ndarray, keys: list[str], extras: list[str], spec: dict[str, Any],
             tasks: list[str], task: str | None, source: str, ours: bool
             ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    lo, hi = int(eps["dataset_from_index"][j]), int(eps["dataset_to_index"][j])
    length = int(eps["length"][j])
    a = int(np.searchsorted(index, lo))
    b = a + (hi - lo)
    if hi - lo != length or b > len(index) or not (
            len(index[a:b]) and index[a] == lo and index[b - 1] == hi - 1):
        raise StoreError(
            f"{src}: episode {j} should be frames {lo}..{hi - 1} ({length} frames) of {path}, "
            f"which holds frames {int(index[0]) if len(index) else '-'}.."
            f"{int(index[-1]) if len(index) else '-'}: the data file is truncated or does not "
            "match meta/episodes")
    if not (data["episode_index"][a:b] == j).all() or not np.array_equal(
            data["frame_index"][a:b], np.arange(b - a)):
        raise StoreError(f"{src}: frames {lo}..{hi - 1} of {path} are not episode {j}'s frames "
                         "0..T-1 in order (episode_index/frame_index disagree)")
    T = b - a
    obs = np.concatenate([data[k][a:b].reshape(T, -1) for k in keys], axis=1)
    steps = {
        "obs": obs.astype(np.float32),
        "action": data[ACTION][a:b].reshape(T, -1).astype(np.float32),
        "reward": (data[REWARD][a:b].reshape(T).astype(np.float32) if REWARD in data
                   else np.zeros(T, np.float32)),
        "success": (data[SUCCESS][a:b].reshape(T).astype(bool) if SUCCESS in data
                    else np.zeros(T, bool)),
    }
    for k in extras:
        steps[k] = data[k][a:b].reshape(T, *spec[k]["shape"])
    if ours and "robolearn/task" in eps:
        seed = int(eps["robolearn/seed"][j])
        meta = {
            "task": task or str(eps["robolearn/task"][j]),
            "params": eps["robolearn/params"][j], "source": eps["robolearn/source"][j],
            "seed": None if seed < 0 else seed, "policy_id": eps["robolearn/policy_id"][j],
            "timestamp": float(eps["robolearn/timestamp"][j]),
            "info": json.loads(eps["robolearn/info"][j]),
        }
        meta["complete"] = not meta["info"].pop("incomplete", False)
        return steps, meta
    t_idx = int(data["task_index"][a])
    if not 0 <= t_idx < len(tasks):
        raise StoreError(f"{src}: episode {j} has task_index {t_idx}, but meta/tasks.parquet "
                         f"has {len(tasks)} tasks")
    return steps, {"task": task or tasks[t_idx], "source": source,
                   "info": {"lerobot_episode": j, "lerobot_task": tasks[t_idx]}}


def _why_not(name: str, ft: dict[str, Any]) -> str:
    kind = ft.get("dtype")
    if kind in ("image", "video"):
        return (f"{kind} ({'x'.join(map(str, ft['shape']))}): the episode store holds state "
                "arrays; images and videos are not imported")
    if kind == "string":
        return "text: not a per-step array"
    return (f"{kind} {list(ft['shape'])}: not asked for; obs_keys=[...] concatenates features "
            "into obs")


def _notes(info: dict[str, Any], keys: list[str], features: dict[str, Any]) -> list[str]:
    """What a user must know about the mapping (LeRobot's Meta-World data in particular)."""
    notes = []
    if str(info.get("robot_type")) == "metaworld" and "robolearn" not in info:
        width = sum(_width(features[k]) for k in keys)
        if keys == [OBS] and width == 4:
            note = ("LeRobot's Meta-World data: observation.state is 4-d (hand xyz + gripper), "
                    "not Meta-World's 39-d observation (no object or goal positions), so a "
                    "policy trained on this store cannot be evaluated in robolearn's sim, "
                    "which feeds 39-d observations")
            env = features.get("observation.environment_state")
            if env is not None and _width(env) == 39:
                note += ("; the dataset also has observation.environment_state (39-d, "
                         "Meta-World's observation size): obs_keys=[observation.environment_state]"
                         " imports that as obs instead")
            notes.append(note)
        notes.append("task strings come from meta/tasks.parquet as they are; robolearn's sim "
                     "knows Meta-World v3 task names (push-v3): pass task=<name> for a "
                     "one-task dataset")
    return notes


# ============================================================================== shared
def _written_by_us(path: Path) -> bool:
    try:
        info = json.loads((path / INFO).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and isinstance(info.get("robolearn"), dict) and \
        info["robolearn"].get("format") == EXPORT_FORMAT
