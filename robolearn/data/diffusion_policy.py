"""diffusion_policy's zarr layout: export an episode store to a zarr v2 store, and import one.

diffusion_policy's ``ReplayBuffer`` (real-stanford/diffusion_policy,
``diffusion_policy/common/replay_buffer.py``) is zarr-2 code: it cannot open our zarr v3 store,
although the layout is the same. The export writes the same arrays as zarr v2 (with zarr 3's
``zarr_format=2``), which ``ReplayBuffer.create_from_path`` / ``copy_from_path`` open::

    <out>/                    zarr v2 group; .zattrs["robolearn"]: tasks, spec, per-episode metadata
      data/obs                (T, Do) float32     data/action   (T, Da) float32
      data/reward             (T,) float32        data/success  (T,) bool
      data/task_id            (T,) int64: each step's task, an index into the attrs' task list
      data/<extra>            every extra per-step key of the store
      meta/episode_ends       (E,) int64, cumulative end index (uncompressed, as ReplayBuffer's)

Data arrays are chunked along time (about 2 MB a chunk, as ReplayBuffer's own chunking) and
compressed with its default codec (Blosc lz4). Only complete episodes are exported. Import
reverses our export exactly; a foreign diffusion_policy store needs ``obs_keys`` (unless it has
``obs`` or ``state``) and ``task``. Both directions build under a temporary name and rename on
success.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.data.exports import check_dir_target, partial_path, publish_dir, remove_stale
from robolearn.data.store import META_FIELDS, EpisodeStore, StoreError, build_store, episode_meta

log = logging.getLogger(__name__)

EXPORT_FORMAT = "robolearn.diffusion_policy_export"
EXPORT_VERSION = 1
TASK_KEY = "task_id"
CHUNK_BYTES = 2_000_000  # ReplayBuffer's target chunk size (get_optimal_chunks)
_STD = ("obs", "action", "reward", "success")


def _blosc() -> Any:
    import numcodecs

    # ReplayBuffer.resolve_compressor('default')
    return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)


def export_diffusion_policy(
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the complete committed episodes of ``dataset`` to a zarr v2 store at ``out`` that
    diffusion_policy's ``ReplayBuffer`` opens.

    Args:
        dataset: the episode store.
        out: the zarr directory to create (``demos_dp.zarr``).
        overwrite: replace a store an earlier export wrote (never any other directory).

    Returns:
        ``{"episodes", "steps", "out", "skipped_incomplete"}``.
    """
    import zarr

    out = Path(out)
    _check_target(out, overwrite)
    store = EpisodeStore.open(dataset, mode="r")
    episodes = store.complete_episodes()
    skipped = len(store) - len(episodes)
    if len(episodes) == 0:
        raise StoreError(f"{dataset} has no complete committed episodes to export"
                         + (f" ({skipped} incomplete ones are never exported)" if skipped else ""))
    if TASK_KEY in store.spec:
        raise StoreError(f"{dataset} has an extra key {TASK_KEY!r}, which the export writes "
                         "itself (each step's task index)")
    arrays = store.load()
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    lengths = (ends - starts)[episodes]
    rows = np.concatenate([np.arange(starts[i], ends[i]) for i in episodes])
    task_ids = store.task_ids()
    data = {k: arrays[k][rows] for k in store.spec}
    data[TASK_KEY] = np.repeat(task_ids[episodes].astype(np.int64), lengths)
    meta = {k: store.meta(k)[episodes] for k in META_FIELDS}
    record = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "tasks": store.tasks,
        "data_spec": {k: v.to_dict() for k, v in store.spec.items()},
        "user_attrs": store.attrs.get("user", {}),
        "source_store": str(Path(dataset).resolve()),
        "skipped_incomplete": int(skipped),
        "episodes": {
            "store_index": episodes.astype(int).tolist(),
            **{k: (meta[k].astype(np.int64).tolist() if k == "seed" else
                   meta[k].astype(np.float64).tolist() if k == "timestamp" else
                   [str(v) for v in meta[k]]) for k in META_FIELDS},
        },
    }
    remove_stale(out)
    tmp = partial_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    dense = {"write_empty_chunks": True}  # every chunk on disk: a missing one is then damage
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        group = root.create_group("data")
        for key, value in data.items():
            row_bytes = max(1, value[:1].nbytes)
            chunk = int(min(len(value), max(1, CHUNK_BYTES // row_bytes)))
            arr = group.create_array(key, shape=value.shape, dtype=value.dtype,
                                     chunks=(chunk, *value.shape[1:]), compressors=_blosc(),
                                     config=dense)
            arr[:] = value
        m = root.create_group("meta")
        ends_out = m.create_array("episode_ends", shape=(len(episodes),), dtype="int64",
                                  chunks=(max(1, len(episodes)),), compressors=None, config=dense)
        ends_out[:] = np.cumsum(lengths).astype(np.int64)
        root.attrs["robolearn"] = record
        _check_target(out, overwrite)  # it may have appeared meanwhile
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if skipped:
        log.info("export %s: skipped %d incomplete episode(s)", dataset, skipped)
    return {"episodes": int(len(episodes)), "steps": int(len(rows)), "out": str(out),
            "skipped_incomplete": int(skipped)}


def import_diffusion_policy(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    obs_keys: list[str] | None = None,
    task: str | None = None,
    source: str = "expert",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Create an episode store at ``out`` from a diffusion_policy zarr (v2) store ``src``.

    Our export comes back exactly. A foreign store: ``obs_keys`` (default ``obs``, else
    ``state``) are concatenated into ``obs``, ``action`` is the action, ``reward`` /
    ``success`` are used when present (zeros otherwise), and every episode gets ``task``
    (required: diffusion_policy stores record no task). Other data keys are listed in the
    result's ``not_imported``.

    Raises:
        StoreError: not a diffusion_policy store, or a damaged/truncated one (naming the array
            or chunk file).
    """
    src, out = Path(src), Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=true to replace it")
    root = _open_v2(src)
    record = root.attrs.get("robolearn")
    ours = isinstance(record, dict) and record.get("format") == EXPORT_FORMAT
    data = root["data"]
    names = sorted(k for k, _ in data.arrays())
    ends = _read(src, root["meta"]["episode_ends"], "meta/episode_ends", ours)
    ends = np.asarray(ends, dtype=np.int64).reshape(-1)
    if len(ends) == 0:
        raise StoreError(f"{src} has no episodes (meta/episode_ends is empty)")
    prev = np.concatenate([[0], ends[:-1]])
    bad = np.flatnonzero(ends <= prev)
    if len(bad):
        i = int(bad[0])
        raise StoreError(f"{src}: meta/episode_ends is not strictly increasing at entry {i} "
                         f"(episode_ends[{i}]={int(ends[i])} after {int(prev[i])}): the store "
                         "is damaged")
    if ours and obs_keys is None:
        keys = ["obs"]
    elif obs_keys:
        keys = list(obs_keys)
    else:
        keys = [k for k in ("obs", "state") if k in names][:1]
        if not keys:
            raise StoreError(f"{src}: no 'obs' or 'state' array under data/ (it has {names}); "
                             "pass obs_keys=[...] naming the arrays to concatenate into obs")
    for k in [*keys, "action"]:
        if k not in names:
            raise StoreError(f"{src}: no data/{k} array; its arrays: {names}"
                             + ("" if k == "action" else ". Pass obs_keys=[...]"))
    if not ours and not task:
        raise StoreError(f"{src} is a diffusion_policy store, which records no task per "
                         "episode: pass task=<name> (a Meta-World task such as push-v3)")
    spec = record.get("data_spec", {}) if ours else {}
    extras = [k for k in spec if k not in _STD] if ours and obs_keys is None else []
    wanted = [*keys, "action", *(k for k in ("reward", "success") if k in names), *extras]
    values: dict[str, np.ndarray] = {}
    for k in dict.fromkeys(wanted):
        arr = data[k]
        if arr.shape[0] < int(ends[-1]):
            raise StoreError(f"{src}: data/{k} has {arr.shape[0]} rows but meta/episode_ends "
                             f"says {int(ends[-1])}: the store is truncated")
        values[k] = _read(src, arr, f"data/{k}", ours)[: int(ends[-1])]
    not_imported = {k: "not asked for (obs_keys=[...] concatenates arrays into obs)"
                    for k in names if k not in values and k != TASK_KEY}
    n = int(ends[-1])
    obs = np.concatenate([values[k].reshape(n, -1) for k in keys], axis=1)
    action = values["action"].reshape(n, -1)
    if ours:
        tasks = list(record["tasks"]) if task is None else [task]
        attrs = dict(record.get("user_attrs", {}))
        eps = record["episodes"]
        if len(eps["task"]) != len(ends):
            raise StoreError(f"{src}: .zattrs records {len(eps['task'])} episodes but "
                             f"meta/episode_ends has {len(ends)}: the store is inconsistent")
    else:
        tasks, attrs, eps = [task], {}, None
    attrs.update({"imported_from": str(src), "imported_format": "diffusion_policy"})
    extra_spec = {k: (tuple(spec[k]["shape"]), spec[k]["dtype"]) for k in extras}
    batch = []
    with build_store(out, obs.shape[1], action.shape[1], extras=extra_spec or None, tasks=tasks,
                     overwrite=overwrite, attrs=attrs) as store:
        for i, (a, b) in enumerate(zip(prev, ends)):
            a, b = int(a), int(b)
            steps = {
                "obs": obs[a:b].astype(np.float32),
                "action": action[a:b].astype(np.float32),
                "reward": (values["reward"][a:b].reshape(-1).astype(np.float32)
                           if "reward" in values else np.zeros(b - a, np.float32)),
                "success": (values["success"][a:b].reshape(-1).astype(bool)
                            if "success" in values else np.zeros(b - a, bool)),
                **{k: values[k][a:b] for k in extras},
            }
            if eps is not None:
                seed = int(eps["seed"][i])
                info = json.loads(eps["info"][i])
                meta = dict(task=task or eps["task"][i], params=eps["params"][i],
                            source=eps["source"][i], seed=None if seed < 0 else seed,
                            policy_id=eps["policy_id"][i], timestamp=float(eps["timestamp"][i]),
                            info=info, complete=not info.pop("incomplete", False))
            else:
                meta = dict(task=task, source=source, info={"diffusion_policy_episode": i})
            batch.append((steps, meta))
            if len(batch) >= 64 or i == len(ends) - 1:
                try:
                    store._commit_many([(store.validate_episode(s), episode_meta(**m))
                                        for s, m in batch])
                except (StoreError, ValueError, TypeError) as e:
                    raise StoreError(f"{src} cannot be imported: {e}; nothing was written to "
                                     f"{out}") from None
                batch.clear()
    return {"episodes": int(len(ends)), "steps": n, "out": str(out),
            "not_imported": not_imported, "notes": []}


def _open_v2(src: Path) -> Any:
    import zarr

    if not src.exists():
        raise FileNotFoundError(f"no such zarr store: {src}")
    if not src.is_dir():
        raise StoreError(f"{src} is a file; a diffusion_policy store is a zarr directory")
    if not (src / ".zgroup").is_file():
        hint = (" It is a zarr v3 store (zarr.json): a robolearn episode store is used as it is "
                "(train dataset=...), and `robolearn export format=diffusion_policy` makes the "
                "zarr v2 copy diffusion_policy reads." if (src / "zarr.json").exists() else "")
        raise StoreError(f"{src} is not a diffusion_policy store: no .zgroup (zarr v2 group)."
                         + hint)
    try:
        root = zarr.open_group(str(src), mode="r", zarr_format=2)
        root["data"]  # noqa: B018 - existence checks
        root["meta"]["episode_ends"]  # noqa: B018
    except (KeyError, ValueError, OSError) as e:
        missing = "meta/episode_ends" if (src / "data").is_dir() else "data/"
        raise StoreError(f"{src} is not a diffusion_policy store: {missing} is missing or "
                         f"unreadable ({type(e).__name__}: {e}); ReplayBuffer needs data/<key> "
                         "arrays and meta/episode_ends") from None
    return root


def _read(src: Path, arr: Any, name: str, dense: bool) -> np.ndarray:
    """All of ``arr``. A chunk that does not decode, or a Blosc chunk shorter than its header
    says (Blosc may decode a cut one into garbage without an error), raises naming the file;
    so does a missing chunk of our own export (which writes every chunk)."""
    shape, chunks = arr.shape, arr.chunks
    n = [-(-s // c) if s else 0 for s, c in zip(shape, chunks)]
    sep = arr.metadata.dimension_separator or "."
    compressor = getattr(arr.metadata, "compressor", None)
    blosc = getattr(compressor, "codec_id", None) == "blosc"
    for idx in np.ndindex(*n):
        path = src / name / (sep.join(map(str, idx)) if idx else "0")
        if not path.is_file():
            if dense:
                raise StoreError(f"{src}: chunk file {path} of {name} is missing: the store was "
                                 "truncated or damaged (zarr would read it as zeros)")
            continue
        if blosc:
            size = path.stat().st_size
            with path.open("rb") as fh:
                header = fh.read(16)
            cbytes = struct.unpack("<I", header[12:16])[0] if len(header) == 16 else -1
            if cbytes != size:
                raise StoreError(f"{src}: chunk file {path} of {name} is truncated or damaged "
                                 f"(its Blosc header says {cbytes} bytes, the file has {size})")
    try:
        return np.asarray(arr[...])
    except Exception as e:  # noqa: BLE001 - a codec error of a damaged chunk
        raise StoreError(f"{src}: cannot read {name} ({type(e).__name__}: {e}); a chunk file "
                         "is damaged or truncated") from None


def _written_by_us(path: Path) -> bool:
    try:
        attrs = json.loads((path / ".zattrs").read_text())
    except (OSError, ValueError):
        return False
    rec = attrs.get("robolearn") if isinstance(attrs, dict) else None
    return isinstance(rec, dict) and rec.get("format") == EXPORT_FORMAT


def _check_target(out: Path, overwrite: bool) -> None:
    check_dir_target(out, overwrite, _written_by_us,
                     "a store robolearn's diffusion_policy export wrote", kind="a zarr directory")
