"""The episode store: one on-disk format for demonstrations, policy rollouts and real-robot logs.

Layout (zarr v3 directory store, compatible in spirit with diffusion_policy's ``ReplayBuffer``)::

    demos.zarr/
      data/<key>          time-major arrays chunked along time: obs (T, Do) f32, action (T, Da) f32,
                          reward (T,) f32, success (T,) bool, plus optional extras
      meta/episode_ends   (E,) int64, cumulative end index; appending to it COMMITS an episode
      meta/<field>        per-episode: task, params (TaskParams JSON), source, seed, policy_id,
                          timestamp, info (free-form JSON)
      attrs               format, schema version, data spec, task list, robolearn version

Crash safety: an episode's rows and per-episode fields are written first and ``episode_ends``
last, and every file write of zarr's LocalStore is atomic (temp file + rename). A crash at any
moment therefore leaves at most an uncommitted tail, which :meth:`EpisodeStore.open` in append
mode truncates away ("repairs"); read mode simply ignores it.

Example:
    >>> store = EpisodeStore.create("demos.zarr", obs_dim=39, action_dim=4)
    >>> store.add_episode({"obs": obs, "action": act, "reward": rew, "success": suc},
    ...                   task="push-v3", source="expert", seed=3)
    >>> len(store), store.episode(0).task
    (1, 'push-v3')
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync as _zarr_sync

log = logging.getLogger(__name__)

FORMAT_NAME = "robolearn.episode_store"
SCHEMA_VERSION = 1
SOURCES = ("expert", "policy", "real")
#: Per-episode fields under ``meta/`` (besides ``episode_ends``) and their zarr dtypes.
META_FIELDS: dict[str, Any] = {
    "task": str,
    "params": str,
    "source": str,
    "seed": "int64",
    "policy_id": str,
    "timestamp": "float64",
    "info": str,
}
# Rows per chunk along time, and episodes per chunk of meta/ arrays. Appends rewrite the last
# (partial) chunk, so chunks are kept small enough for that to be cheap.
DEFAULT_CHUNK_LEN = 1024
META_CHUNK = 512
_LOCK_NAME = ".robolearn.lock"


class StoreError(ValueError):
    """Raised for a path that is not a usable episode store, or data it refuses."""


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """Per-step shape (without the time axis) and dtype of one ``data/<key>`` array."""

    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KeySpec:
        return cls(shape=tuple(int(s) for s in d["shape"]), dtype=str(d["dtype"]))


def default_spec(obs_dim: int, action_dim: int) -> dict[str, KeySpec]:
    """The standard keys every store has: obs, action, reward, success."""
    for name, value in (("obs_dim", obs_dim), ("action_dim", action_dim)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"Got {name}={value!r}, expected a positive integer")
    return {
        "obs": KeySpec((int(obs_dim),), "float32"),
        "action": KeySpec((int(action_dim),), "float32"),
        "reward": KeySpec((), "float32"),
        "success": KeySpec((), "bool"),
    }


@dataclasses.dataclass
class Episode:
    """One committed episode: its time-major arrays and per-episode metadata."""

    index: int
    data: dict[str, np.ndarray]
    task: str
    params: dict[str, Any]
    source: str
    seed: int | None
    policy_id: str
    timestamp: float
    info: dict[str, Any]

    def __len__(self) -> int:
        return int(next(iter(self.data.values())).shape[0])


def _json_dumps(value: Any, what: str) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"Got {what}={value[:80]!r}, which is not valid JSON") from None
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise TypeError(f"Got {what} of type {type(value).__name__}, expected a dict or TaskParams")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} is not JSON-serialisable with finite numbers: {e}") from None


def _closest(name: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(options), n=1)
    return f" Did you mean {match[0]!r}?" if match else ""


class EpisodeStore:
    """Append-only episode store on disk (zarr v3). Create with :meth:`create`, open with :meth:`open`.

    Thread-safety: one writer per store (enforced with a file lock across processes); any number
    of readers.
    """

    def __init__(self, path: Path, root: zarr.Group, mode: str, lock_fd: int | None):
        self.path = path
        self.mode = mode
        self._root = root
        self._lock_fd = lock_fd
        attrs = dict(root.attrs)
        self.spec: dict[str, KeySpec] = {
            k: KeySpec.from_dict(v) for k, v in attrs["data_spec"].items()
        }
        self._tasks: list[str] = list(attrs.get("tasks", []))
        self._data = {k: root["data"][k] for k in self.spec}
        self._meta = {k: root["meta"][k] for k in META_FIELDS}
        self._ends_arr = root["meta"]["episode_ends"]
        ends = np.asarray(self._ends_arr[:], dtype=np.int64)
        self._n_committed = _committed_prefix(ends, self._data, self._meta)
        self._ends = ends[: self._n_committed].copy()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        obs_dim: int,
        action_dim: int,
        *,
        extras: Mapping[str, tuple[tuple[int, ...], str]] | None = None,
        tasks: Iterable[str] = (),
        chunk_len: int = DEFAULT_CHUNK_LEN,
        overwrite: bool = False,
        attrs: Mapping[str, Any] | None = None,
    ) -> EpisodeStore:
        """Create an empty store at ``path`` and return it open in append mode.

        Args:
            path: directory to create (conventionally ending in ``.zarr``).
            obs_dim: Do, the observation size. action_dim: Da, the action size.
            extras: optional additional per-step keys, ``{"ee_pos": ((3,), "float32")}``.
            tasks: task names known up front (more are added as episodes arrive).
            chunk_len: rows per chunk along time.
            overwrite: replace an existing store at ``path`` (never a foreign directory).
            attrs: extra user attributes stored under ``attrs["user"]``.
        """
        path = Path(path)
        spec = default_spec(obs_dim, action_dim)
        for key, (shape, dtype) in (extras or {}).items():
            if key in spec or key in META_FIELDS:
                raise ValueError(f"extras key {key!r} clashes with a standard key")
            spec[key] = KeySpec(tuple(int(s) for s in shape), str(np.dtype(dtype)))
        if chunk_len < 1:
            raise ValueError(f"Got chunk_len={chunk_len}, expected >= 1")
        if path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{path} already exists; open it with EpisodeStore.open({str(path)!r}, "
                    f"mode='a') to append, or pass overwrite=True to replace it"
                )
            if any(path.iterdir()) and not _looks_like_store(path):
                raise StoreError(
                    f"refusing to overwrite {path}: it is not an episode store (no robolearn "
                    "attributes in zarr.json); remove it yourself if that is intended"
                )
        # Built under a temporary name and renamed into place when complete, so a crash while
        # creating never leaves a half-made store at `path` (only a stale temp dir, removed here).
        for stale in path.parent.glob(f".{path.name}.creating-*"):
            shutil.rmtree(stale, ignore_errors=True)
        final, path = path, path.parent / f".{path.name}.creating-{os.getpid()}"
        root = zarr.open_group(str(path), mode="w")
        data = root.create_group("data")
        for key, ks in spec.items():
            data.create_array(
                key, shape=(0, *ks.shape), dtype=ks.dtype, chunks=(chunk_len, *ks.shape)
            )
        meta = root.create_group("meta")
        meta.create_array("episode_ends", shape=(0,), dtype="int64", chunks=(META_CHUNK,))
        for key, dtype in META_FIELDS.items():
            meta.create_array(key, shape=(0,), dtype=dtype, chunks=(META_CHUNK,))
        root.attrs.update(
            {
                "format": FORMAT_NAME,
                "schema_version": SCHEMA_VERSION,
                "data_spec": {k: v.to_dict() for k, v in spec.items()},
                "tasks": list(dict.fromkeys(tasks)),
                "robolearn_version": _robolearn_version(),
                "created": time.time(),
                "user": dict(attrs or {}),
            }
        )
        if final.exists():  # overwrite=True, checked above
            shutil.rmtree(final)
        os.rename(path, final)
        log.info("created episode store %s", final)
        return cls.open(final, mode="a")

    @classmethod
    def open(
        cls, path: str | os.PathLike, mode: str = "r", *, lock_timeout: float = 0.0
    ) -> EpisodeStore:
        """Open an existing store.

        Args:
            path: the store directory.
            mode: ``"r"`` (read-only; an uncommitted tail is ignored) or ``"a"`` (append; an
                uncommitted tail left by a crash is removed, and the store is locked against
                other writers).
            lock_timeout: seconds to wait for another writer to finish (append mode only).
        """
        if mode not in ("r", "a"):
            raise ValueError(f"Got mode={mode!r}, expected 'r' or 'a'")
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"no episode store at {path}; create one with EpisodeStore.create() or "
                "`robolearn collect out=...`"
            )
        if not path.is_dir():
            raise StoreError(f"{path} is a file, not an episode store directory")
        lock_fd = _acquire_lock(path, lock_timeout) if mode == "a" else None
        try:
            root = _open_root(path, mode)
            store = cls(path, root, mode, lock_fd)
        except BaseException:
            _release_lock(lock_fd)
            raise
        if mode == "a":
            store._repair()
        return store

    def close(self) -> None:
        """Release the writer lock (append mode). The store stays valid on disk."""
        _release_lock(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; close() is the API
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self._n_committed

    def __repr__(self) -> str:
        return (
            f"EpisodeStore({str(self.path)!r}, mode={self.mode!r}, episodes={len(self)}, "
            f"steps={self.num_steps}, tasks={len(self.tasks)})"
        )

    @property
    def num_steps(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def episode_ends(self) -> np.ndarray:
        """(E,) int64 cumulative end index of each committed episode (a copy)."""
        return self._ends.copy()

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self._ends, prepend=0)

    @property
    def tasks(self) -> list[str]:
        """Task names in first-seen order; a task's index here is its policy task id."""
        return list(self._tasks)

    @property
    def obs_dim(self) -> int:
        return self.spec["obs"].shape[0]

    @property
    def action_dim(self) -> int:
        return self.spec["action"].shape[0]

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root.attrs)

    def meta(self, field: str) -> np.ndarray:
        """(E,) array of one per-episode field (``task``, ``seed``, ``source``, ...)."""
        if field not in META_FIELDS:
            raise KeyError(f"unknown meta field {field!r}.{_closest(field, META_FIELDS)}")
        return np.asarray(self._meta[field][: self._n_committed])

    def task_ids(self) -> np.ndarray:
        """(E,) int64 index of each episode's task in :attr:`tasks`."""
        lookup = {t: i for i, t in enumerate(self._tasks)}
        return np.array([lookup[t] for t in self.meta("task")], dtype=np.int64)

    def episode(self, i: int) -> Episode:
        """Read committed episode ``i`` (negative indices count from the end)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"episode index {i} out of range for a store with {n} episodes")
        i %= n
        start = int(self._ends[i - 1]) if i > 0 else 0
        end = int(self._ends[i])
        data = {k: np.asarray(a[start:end]) for k, a in self._data.items()}
        m = {k: self._meta[k][i] for k in META_FIELDS}
        seed = int(m["seed"])
        return Episode(
            index=i,
            data=data,
            task=str(m["task"]),
            params=json.loads(str(m["params"])),
            source=str(m["source"]),
            seed=None if seed < 0 else seed,
            policy_id=str(m["policy_id"]),
            timestamp=float(m["timestamp"]),
            info=json.loads(str(m["info"])),
        )

    def load(self, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Read whole committed arrays into memory, one bulk read per key."""
        keys = list(self.spec) if keys is None else list(keys)
        out = {}
        for k in keys:
            if k not in self.spec:
                raise KeyError(f"unknown data key {k!r}.{_closest(k, self.spec)}")
            out[k] = np.asarray(self._data[k][: self.num_steps])
        return out

    # ------------------------------------------------------------------ writing
    def validate_episode(self, steps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check one episode's arrays against the spec; return them cast to the stored dtypes.

        Raises ``StoreError`` naming the key, what was given and what was expected.
        """
        if not isinstance(steps, Mapping):
            raise StoreError(f"Got steps of type {type(steps).__name__}, expected a dict of arrays")
        missing = [k for k in self.spec if k not in steps]
        unknown = [k for k in steps if k not in self.spec]
        if unknown:
            hint = _closest(unknown[0], self.spec)
            raise StoreError(
                f"episode has unknown key(s) {unknown}; the store's keys are {list(self.spec)}."
                f"{hint} Declare new per-step keys with EpisodeStore.create(..., extras=...)"
            )
        if missing:
            raise StoreError(f"episode is missing key(s) {missing}; expected {list(self.spec)}")
        out: dict[str, np.ndarray] = {}
        length = None
        for key, ks in self.spec.items():
            arr = np.asarray(steps[key])
            expected = ("T", *ks.shape)
            if arr.ndim != 1 + len(ks.shape) or tuple(arr.shape[1:]) != ks.shape:
                raise StoreError(f"Got {key}.shape={arr.shape}, expected {expected}")
            if length is None:
                length = arr.shape[0]
            elif arr.shape[0] != length:
                raise StoreError(
                    f"Got {key}.shape[0]={arr.shape[0]} but the episode's other keys have "
                    f"T={length}; every key needs one row per step"
                )
            want = np.dtype(ks.dtype)
            if want.kind == "b":
                if arr.dtype.kind != "b":
                    raise StoreError(f"Got {key}.dtype={arr.dtype}, expected bool")
            elif want.kind == "f":
                if arr.dtype.kind not in "fiu":
                    raise StoreError(f"Got {key}.dtype={arr.dtype}, expected a float array")
                if not np.isfinite(arr).all():
                    bad = np.argwhere(~np.isfinite(arr))[0]
                    raise StoreError(
                        f"{key} has a non-finite value {arr[tuple(bad)]} at index "
                        f"{tuple(int(b) for b in bad)}; the store keeps finite data only"
                    )
            elif arr.dtype.kind not in "iub":
                raise StoreError(f"Got {key}.dtype={arr.dtype}, expected {want}")
            out[key] = np.ascontiguousarray(arr, dtype=want)
        if not length:
            raise StoreError("Got an episode with T=0 steps, expected at least 1")
        return out

    def add_episode(
        self,
        steps: Mapping[str, np.ndarray],
        *,
        task: str,
        source: str = "expert",
        params: Any = None,
        seed: int | None = None,
        policy_id: str = "",
        info: Mapping[str, Any] | None = None,
        timestamp: float | None = None,
    ) -> int:
        """Validate and append one episode; returns its index.

        Rows and per-episode fields are written first and ``meta/episode_ends`` last, so a
        crash at any point leaves the previously committed episodes intact. Invalid input raises
        before anything is written.

        Args:
            steps: ``{key: (T, ...) array}`` for every key of :attr:`spec`.
            task: task name (e.g. ``"push-v3"``); new names extend :attr:`tasks`.
            source: one of ``"expert"``, ``"policy"``, ``"real"``.
            params: the episode's TaskParams (object with ``to_dict`` or a dict), stored as JSON.
            seed: the episode's goal/reset seed, if any.
            policy_id: which policy produced it (checkpoint path or name), if any.
            info: free-form JSON-serialisable extras.
        """
        self._check_writable()
        clean = self.validate_episode(steps)
        meta_values = episode_meta(
            task=task, source=source, params=params, seed=seed, policy_id=policy_id,
            info=info, timestamp=timestamp,
        )
        return self._commit(clean, meta_values)

    def _commit(self, clean: Mapping[str, np.ndarray], meta_values: Mapping[str, Any]) -> int:
        """Write one validated episode (metadata from :func:`episode_meta`), then commit it."""
        return self._commit_many([(clean, meta_values)])[0]

    def _commit_many(
        self, episodes: list[tuple[Mapping[str, np.ndarray], Mapping[str, Any]]]
    ) -> list[int]:
        """Write validated episodes' rows and metadata, then commit them all at once.

        One zarr write per array for the whole batch (a group commit): the background writer
        uses it when episodes queue up, so it catches up instead of falling behind.
        """
        self._check_writable()
        new_tasks = [m["task"] for _, m in episodes if m["task"] not in self._tasks]
        if new_tasks:
            self._tasks.extend(dict.fromkeys(new_tasks))
            self._root.attrs["tasks"] = list(self._tasks)
        n_ep = self._n_committed
        start = self.num_steps
        lengths = [len(next(iter(c.values()))) for c, _ in episodes]
        new_ends = start + np.cumsum(lengths, dtype=np.int64)
        rows = {k: np.concatenate([c[k] for c, _ in episodes]) for k in self.spec}
        meta = {
            k: np.array([m[k] for _, m in episodes], dtype=self._meta[k].dtype) for k in META_FIELDS
        }

        async def write_rows() -> None:
            jobs = [_append_rows(self._data[k]._async_array, start, rows[k]) for k in rows]
            jobs += [_append_rows(self._meta[k]._async_array, n_ep, meta[k]) for k in meta]
            await asyncio.gather(*jobs)

        _zarr_sync(write_rows())
        # The commit: episode_ends grows by one entry per episode, written last.
        _zarr_sync(_append_rows(self._ends_arr._async_array, n_ep, new_ends))
        self._ends = np.concatenate([self._ends, new_ends])
        self._n_committed += len(episodes)
        return list(range(n_ep, n_ep + len(episodes)))

    # ------------------------------------------------------------------ internals
    def _check_writable(self) -> None:
        if self.mode != "a":
            raise StoreError(
                f"{self.path} is open read-only; use EpisodeStore.open(path, mode='a') to append"
            )
        if self._lock_fd is None:
            raise StoreError(f"{self.path} was closed; open it again to append")

    def _repair(self) -> None:
        """Drop anything written after the last committed episode (a crash leftover)."""
        n = self._n_committed
        end = self.num_steps
        repaired = []
        if self._ends_arr.shape[0] != n:
            self._ends_arr.resize((n,))
            repaired.append("meta/episode_ends")
        for k, a in self._meta.items():
            if a.shape[0] != n:
                a.resize((n,))
                repaired.append(f"meta/{k}")
        for k, a in self._data.items():
            if a.shape[0] != end:
                a.resize((end, *a.shape[1:]))
                repaired.append(f"data/{k}")
        for stray in self.path.rglob("*.partial"):
            stray.unlink(missing_ok=True)
            repaired.append(str(stray.relative_to(self.path)))
        if repaired:
            log.warning(
                "repaired %s: removed an uncommitted tail after episode %d (%s)",
                self.path, n, ", ".join(repaired),
            )


def episode_meta(
    *,
    task: str,
    source: str = "expert",
    params: Any = None,
    seed: int | None = None,
    policy_id: str = "",
    info: Mapping[str, Any] | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """Validate one episode's metadata and return the values stored under ``meta/``."""
    if not isinstance(task, str) or not task:
        raise StoreError(f"Got task={task!r}, expected a non-empty task name")
    if source not in SOURCES:
        raise StoreError(f"Got source={source!r}, expected one of {SOURCES}")
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise StoreError(f"Got seed={seed!r}, expected a non-negative int or None")
    return {
        "task": task,
        "params": _json_dumps(params, "params"),
        "source": source,
        "seed": -1 if seed is None else int(seed),
        "policy_id": str(policy_id),
        "timestamp": time.time() if timestamp is None else float(timestamp),
        "info": _json_dumps(info, "info"),
    }


async def _append_rows(arr: Any, start: int, rows: np.ndarray) -> None:
    """Write ``rows`` at ``start`` along axis 0, growing the array to fit."""
    stop = start + rows.shape[0]
    if arr.shape[0] != stop:
        await arr.resize((stop, *arr.shape[1:]))
    await arr.setitem(slice(start, stop), rows)


def _committed_prefix(ends: np.ndarray, data: Mapping[str, Any], meta: Mapping[str, Any]) -> int:
    """Number of episodes whose commit is complete and consistent with the other arrays.

    A crash can leave ``episode_ends`` one element longer with a fill value (resized, chunk not
    yet written), or rows/meta longer than the last commit; both are an uncommitted tail.
    """
    n_rows = min(a.shape[0] for a in data.values())
    n_meta = min(a.shape[0] for a in meta.values())
    n = 0
    prev = 0
    for e in ends:
        if e <= prev or e > n_rows or n >= n_meta:
            break
        prev = int(e)
        n += 1
    return n


def _looks_like_store(path: Path) -> bool:
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("attributes", {}).get("format") == FORMAT_NAME


def _open_root(path: Path, mode: str) -> zarr.Group:
    zjson = path / "zarr.json"
    if not zjson.exists():
        hint = ""
        if (path / ".zgroup").exists() or (path / ".zarray").exists():
            hint = " It looks like a zarr v2 store; robolearn stores are zarr v3."
        raise StoreError(
            f"{path} is not an episode store: no zarr.json found.{hint} Create one with "
            "EpisodeStore.create() or `robolearn collect out=...`"
        )
    try:
        attrs = json.loads(zjson.read_text()).get("attributes", {})
    except (OSError, ValueError) as e:
        raise StoreError(f"{path} is corrupt: {zjson} is not valid JSON ({e})") from None
    if attrs.get("format") != FORMAT_NAME:
        raise StoreError(
            f"{path} is a zarr group but not a robolearn episode store "
            f"(attrs format={attrs.get('format')!r}, expected {FORMAT_NAME!r})"
        )
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema_version={version!r}; this robolearn reads version "
            f"{SCHEMA_VERSION}. Upgrade robolearn or re-export the dataset"
        )
    try:
        root = zarr.open_group(str(path), mode="r+" if mode == "a" else "r")
        spec = attrs["data_spec"]
        for key in ("obs", "action"):
            if key not in spec:
                raise KeyError(f"data_spec lacks {key!r}")
        for key in spec:
            root["data"][key]  # noqa: B018 - existence check
        for key in ("episode_ends", *META_FIELDS):
            root["meta"][key]  # noqa: B018
    except (KeyError, ValueError, OSError) as e:
        raise StoreError(
            f"{path} is corrupt or incomplete: {e!s}. It cannot be opened; restore it from a "
            "copy or re-collect"
        ) from None
    return root


def _acquire_lock(path: Path, timeout: float) -> int:
    fd = os.open(path / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise StoreError(
                    f"{path} is open for writing by another process (pid {holder}); one writer "
                    "at a time. Wait for it to finish or stop it"
                ) from None
            time.sleep(0.05)


def _release_lock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _robolearn_version() -> str:
    try:
        from importlib.metadata import version

        return version("robolearn")
    except Exception:  # not installed (running from a checkout)
        return "unknown"
