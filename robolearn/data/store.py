"""The episode store: one on-disk format for demonstrations, policy rollouts and real-robot logs.

Layout (zarr v3 directory store, compatible in spirit with diffusion_policy's ``ReplayBuffer``)::

    demos.zarr/
      data/<key>          time-major arrays chunked along time: obs (T, Do) f32, action (T, Da) f32,
                          reward (T,) f32, success (T,) bool, plus optional extras
      meta/episode_ends   (E,) int64, cumulative end index; appending to it COMMITS an episode.
                          Its attributes hold the record of the last commit {"from", "to"}.
      meta/<field>        per-episode: task, params (TaskParams JSON), source, seed, policy_id,
                          timestamp, info (free-form JSON; ``info["incomplete"]`` marks an
                          incomplete episode, see :meth:`EpisodeStore.complete_episodes`)
      attrs               format, schema version, data spec, task list, robolearn version

Crash safety. :meth:`EpisodeStore.add_episode` writes an episode's rows and per-episode fields
first (growing those arrays), then the new end entries into ``meta/episode_ends`` chunks past
its stored shape (invisible to readers), and last the array's metadata: its new shape together
with the commit record ``{from, to}``, in ONE metadata write. That write is the commit. Every
file write of zarr's LocalStore is atomic (temp file + rename), so a ``kill -9`` at any moment
leaves the committed episodes as they were plus, at most, data and per-episode arrays longer
than the commit. Opening the store ignores those rows (read mode) or trims them (append mode);
nothing else is ever trimmed. (Stores written before schema 2 grew the shape first; a crash
there could leave one trailing end entry reading as 0, which is trimmed the same way.)

Corruption. Anything a crash cannot leave (end entries that do not increase or read as the
fill value, a shape that disagrees with the commit record, ends beyond the data, a missing or
undecodable chunk in the committed range, non-finite data) makes the store refuse to open, or
the read fail, with a :class:`StoreError` naming the entries, rows or chunk files; nothing is
changed. :func:`robolearn.data.check_store` reports what is consistent and
:func:`robolearn.data.recover_store` copies every recoverable episode into a new store, never
touching the source.

Schema versions: 2 (written now) stores every chunk of the committed range, so a missing chunk
file is always an error. Version 1 stores (written before) let zarr omit chunks that held only
fill values, so a missing data chunk there reads as zeros, as it always did; they are read and
appended to as version 1.

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
import errno
import glob
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.array import AsyncArray
from zarr.core.sync import sync as _zarr_sync

from robolearn.data import locks
from robolearn.errors import RobolearnError

log = logging.getLogger(__name__)

FORMAT_NAME = "robolearn.episode_store"
SCHEMA_VERSION = 2
#: Schema versions this robolearn reads and appends to.
READABLE_SCHEMA_VERSIONS = (1, 2)
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
#: Attribute of ``meta/episode_ends`` recording the last commit: {"from", "to"} entries.
COMMIT_ATTR = "robolearn_commit"
#: Key of ``info`` marking an episode that did not run to its end (e.g. a deploy fault).
INCOMPLETE_KEY = "incomplete"
# Schema 1 let zarr omit chunks equal to the fill value. Fields whose values can never equal it
# (non-empty names and JSON, strictly increasing ends) must still have every chunk there.
_V1_DENSE = {"meta/episode_ends", "meta/task", "meta/params", "meta/source", "meta/info"}
# zarr omits a chunk holding only fill values unless told otherwise; a store that may omit
# chunks cannot tell a deleted chunk from zeros, so every chunk is written.
_DENSE = {"write_empty_chunks": True}
_FINITE_BLOCK = 1 << 20  # elements per block of the finiteness check (no big temporaries)


class StoreError(RobolearnError, ValueError):
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


def make_spec(
    obs_dim: int, action_dim: int, extras: Mapping[str, tuple[tuple[int, ...], str]] | None = None
) -> dict[str, KeySpec]:
    """The full data spec of a store: :func:`default_spec` plus declared ``extras``."""
    spec = default_spec(obs_dim, action_dim)
    for key, (shape, dtype) in (extras or {}).items():
        if key in spec or key in META_FIELDS:
            raise ValueError(f"extras key {key!r} clashes with a standard key")
        spec[key] = KeySpec(tuple(int(s) for s in shape), str(np.dtype(dtype)))
    return spec


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

    @property
    def complete(self) -> bool:
        """False for an episode recorded with ``complete=False`` (it stopped early)."""
        return not self.info.get(INCOMPLETE_KEY, False)


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


def _recover_hint(path: Path) -> str:
    p = str(path)
    return (
        f"Nothing was changed. See what is consistent with robolearn.data.check_store({p!r}) "
        f"(`robolearn store check {p}`), and copy every recoverable episode to a new store with "
        f"robolearn.data.recover_store({p!r}, NEW_PATH) (`robolearn store recover {p} NEW_PATH`);"
        " neither modifies the original"
    )


# ---------------------------------------------------------------------- commit analysis
@dataclasses.dataclass
class CommitState:
    """What ``meta/episode_ends`` commits, checked against the arrays it points into.

    Attributes:
        entries: E, the length of ``meta/episode_ends``.
        committed: episodes committed (the consistent prefix of the entries).
        tail: entries after ``committed`` that a crash of an older (schema-1) writer left (the
            fill value); ignored by readers, trimmed on the next append.
        problems: why the store is corrupt, one sentence each (empty: it is consistent).
    """

    entries: int
    committed: int
    tail: int
    problems: list[str]


def _rows(values: np.ndarray, limit: int = 5) -> str:
    idx = [int(i) for i in values[:limit]]
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(map(str, idx)) + more


def analyse_commits(
    ends: np.ndarray,
    record: Any,
    *,
    rows: Mapping[str, int],
    meta_lengths: Mapping[str, int],
    schema_version: int,
    missing_end_chunks: Iterable[str] = (),
) -> CommitState:
    """Decide which entries of ``meta/episode_ends`` are committed, and whether that is sound.

    What a crash can leave (see the module docstring): data and per-episode arrays longer than
    the commit, never a visible end entry that was not committed: the shape of
    ``meta/episode_ends`` and its commit record are written together, after its entries. So the
    entries must all be strictly increasing and the record must name the current shape. The
    exception is a schema-1 store whose last commit was made by an older robolearn (no current
    record): that writer grew the shape first, and a crash left one trailing 0, which is a tail;
    anything else is reported, not guessed.

    Args:
        ends: (E,) the entries as read (a missing chunk reads as zeros).
        record: the commit record attribute (or None).
        rows: length of each ``data/<key>`` array.
        meta_lengths: length of each ``meta/<field>`` array.
        schema_version: the store's schema version.
        missing_end_chunks: chunk files of ``meta/episode_ends`` that do not exist (for the
            messages).
    """
    ends = np.asarray(ends, dtype=np.int64)
    n_entries = len(ends)
    prev = np.concatenate([[0], ends[:-1]])
    breaks = np.flatnonzero(ends <= prev)
    b = int(breaks[0]) if len(breaks) else n_entries
    problems: list[str] = []
    rec = record if _valid_record(record) else None
    rec_current = rec is not None and rec["to"] == n_entries
    if schema_version >= 2 and n_entries and not rec_current:
        problems.append(
            "meta/episode_ends has no commit record" if rec is None else
            f"meta/episode_ends has {n_entries} entries but its commit record says the last "
            f"commit wrote entries {rec['from']}..{rec['to'] - 1}: entries were added or removed "
            "outside robolearn"
        )
    tail = 0
    missing = list(missing_end_chunks)
    where = f" (chunk file(s) {', '.join(missing[:4])} missing)" if missing else ""
    if b < n_entries:
        zeros = not ends[b:].any()
        legacy_crash = schema_version == 1 and not rec_current and zeros and n_entries - b == 1
        if legacy_crash:
            tail = n_entries - b
        elif zeros:
            why = (
                f"they were committed (the commit record says {rec['to']} entries are) and are "
                "lost"
                if rec_current else
                "an older robolearn's crash leaves at most one such entry, so this may be a crash "
                "or lost entries, and robolearn does not guess"
            )
            problems.append(
                f"meta/episode_ends[{b}:{n_entries}] ({_plural(n_entries - b, 'entry', 'entries')}"
                f"{f' after episode {b - 1}' if b else ', from the first episode on'}) read as "
                f"the fill value 0{where}; {why}"
            )
        else:
            bad = breaks
            first = int(bad[0])
            detail = f"episode_ends[{first}]={int(ends[first])}" + (
                f" after episode_ends[{first - 1}]={int(ends[first - 1])}" if first else "")
            problems.append(
                f"meta/episode_ends is not strictly increasing at entries {_rows(bad)} "
                f"({detail}){where}: episode boundaries were changed outside robolearn"
            )
    n = b
    if n:
        last = int(ends[n - 1])
        for key, length in rows.items():
            if last > length:
                j = int(np.flatnonzero(ends[:n] > length)[0])
                problems.append(
                    f"episode_ends[{j}]={int(ends[j])} is beyond the end of {key} ({length} "
                    f"rows): episodes {j}..{n - 1} point at rows that do not exist"
                )
        for field, length in meta_lengths.items():
            if length < n:
                problems.append(
                    f"{field} has {length} entries but {n} episodes are committed: episodes "
                    f"{length}..{n - 1} have no {field.split('/')[-1]}"
                )
    return CommitState(entries=n_entries, committed=n, tail=tail, problems=problems)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _valid_record(record: Any) -> bool:
    return (
        isinstance(record, Mapping)
        and isinstance(record.get("from"), int)
        and isinstance(record.get("to"), int)
    )


def trusted_episodes(ends: np.ndarray, rows: int) -> np.ndarray:
    """(E,) bool: episodes whose both boundaries are locally consistent.

    An entry is trusted when it lies in ``(0, rows]`` and strictly between its neighbours (a
    next entry equal to the fill value 0 counts as unwritten, not as a contradiction); an
    episode is trusted when its end and its start (the previous entry, or 0) are. A single
    altered entry makes it and its neighbours' episodes untrusted, never a wrong boundary
    trusted, unless the altered value still lies strictly between its neighbours (that cannot
    be detected from the entries alone).
    """
    ends = np.asarray(ends, dtype=np.int64)
    if not len(ends):
        return np.zeros(0, bool)
    prev = np.concatenate([[0], ends[:-1]])
    nxt = np.concatenate([ends[1:], [np.iinfo(np.int64).max]])
    ok = (ends > 0) & (ends <= rows) & (ends > prev) & ((ends < nxt) | (nxt == 0))
    start_ok = np.concatenate([[True], ok[:-1]])
    return ok & start_ok


# ---------------------------------------------------------------------- chunk files
def chunk_files(arr: zarr.Array, start: int, stop: int) -> list[tuple[int, int, str]]:
    """``(row_start, row_stop, chunk key)`` of the chunks holding rows ``[start, stop)``."""
    if stop <= start:
        return []
    size, n = int(arr.chunks[0]), int(arr.shape[0])
    # our arrays have one chunk across the other axes; the general grid costs nothing extra
    rest = list(np.ndindex(*[-(-int(s) // int(c)) or 1
                             for s, c in zip(arr.shape[1:], arr.chunks[1:], strict=True)]))
    encode = arr.metadata.encode_chunk_key
    return [(c * size, min((c + 1) * size, n), encode((c, *r)))
            for c in range(start // size, -(-stop // size)) for r in rest]


def missing_chunks(root_path: Path, name: str, arr: zarr.Array, start: int, stop: int
                   ) -> list[tuple[int, int, str]]:
    """The chunks of rows ``[start, stop)`` of array ``name`` whose file does not exist."""
    base = f"{root_path}/{name}/"
    isfile = os.path.isfile
    return [(a, b, f"{name}/{key}") for a, b, key in chunk_files(arr, start, stop)
            if not isfile(base + key)]


def _first_nonfinite(a: np.ndarray) -> int | None:
    """Row of the first non-finite value of a float array, or None (blockwise: no big temps)."""
    if a.dtype.kind not in "fc" or a.size == 0:
        return None
    per_row = max(1, int(np.prod(a.shape[1:])))
    step = max(1, _FINITE_BLOCK // per_row)
    for i in range(0, a.shape[0], step):
        block = a[i : i + step]
        if not np.isfinite(block).all():
            bad = ~np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
            return i + int(np.flatnonzero(bad)[0])
    return None


class EpisodeStore:
    """Append-only episode store on disk (zarr v3). Create with :meth:`create`, open with :meth:`open`.

    Thread-safety: one writer per store (enforced with a file lock across processes); any number
    of readers. A command that plans and then writes (collect, deploy, import) holds the store
    for its whole run with :func:`claim_store`.
    """

    def __init__(self, path: Path, root: zarr.Group, mode: str, lock_fd: int | None):
        self.path = path
        self.mode = mode
        self._root = root
        self._lock_fd = lock_fd
        attrs = dict(root.attrs)
        self.schema_version = int(attrs["schema_version"])
        self.spec: dict[str, KeySpec] = {
            k: KeySpec.from_dict(v) for k, v in attrs["data_spec"].items()
        }
        self._tasks: list[str] = list(attrs.get("tasks", []))
        # meta/episode_ends first: every other array is written before it (see _commit_many), so
        # arrays opened after it are at least as long as what its entries point at, even while
        # another process appends.
        self._ends_arr = root["meta"]["episode_ends"].with_config(_DENSE)
        self._arrays: dict[str, zarr.Array] = {"meta/episode_ends": self._ends_arr}
        ends = self._read_raw("meta/episode_ends", 0, self._ends_arr.shape[0])
        self._data = {k: root["data"][k].with_config(_DENSE) for k in self.spec}
        self._meta = {k: root["meta"][k].with_config(_DENSE) for k in META_FIELDS}
        self._arrays.update({f"data/{k}": a for k, a in self._data.items()})
        self._arrays.update({f"meta/{k}": a for k, a in self._meta.items()})
        state = analyse_commits(
            ends, self._ends_arr.attrs.get(COMMIT_ATTR),
            rows={f"data/{k}": a.shape[0] for k, a in self._data.items()},
            meta_lengths={f"meta/{k}": a.shape[0] for k, a in self._meta.items()},
            schema_version=self.schema_version,
            missing_end_chunks=[f for *_, f in missing_chunks(
                path, "meta/episode_ends", self._ends_arr, 0, len(ends))],
        )
        if state.problems:
            raise StoreError(
                f"{path} is corrupt: " + "; ".join(state.problems) + ". " + _recover_hint(path))
        self._n_committed = state.committed
        self._tail = state.tail
        self._ends = ends[: self._n_committed].astype(np.int64)
        self._verified: dict[str, int] = {}  # name -> leading chunks known to exist
        self._warned: set[str] = set()
        self._meta_cache: dict[str, np.ndarray] = {}
        self._complete: np.ndarray | None = None
        missing = [
            f for name in self._arrays if name.startswith("meta/") and self._dense(name)
            for *_, f in self._check_chunks(name, 0, self._n_committed, raise_=False)
        ]
        if missing:
            raise StoreError(
                f"{path} is corrupt: chunk file(s) {', '.join(missing[:6])} of committed "
                "episodes are missing (zarr would read them as fill values). " + _recover_hint(path)
            )

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
        lock_timeout: float = 0.0,
    ) -> EpisodeStore:
        """Create an empty store at ``path`` and return it open in append mode.

        The store is built under a temporary name next to ``path`` and renamed into place, so
        ``path`` never holds a half-made store. When another process creates the same path at
        the same time, exactly one wins; the other raises ``FileExistsError``.

        Args:
            path: directory to create (conventionally ending in ``.zarr``).
            obs_dim: Do, the observation size. action_dim: Da, the action size.
            extras: optional additional per-step keys, ``{"ee_pos": ((3,), "float32")}``.
            tasks: task names known up front (more are added as episodes arrive).
            chunk_len: rows per chunk along time.
            overwrite: replace an existing store at ``path`` (never a foreign directory, never a
                store that another process is writing or has claimed).
            attrs: extra user attributes stored under ``attrs["user"]``.
            lock_timeout: seconds to wait for a writer of the store being overwritten.
        """
        path = Path(path)
        spec = make_spec(obs_dim, action_dim, extras)
        if chunk_len < 1:
            raise ValueError(f"Got chunk_len={chunk_len}, expected >= 1")
        _check_target(path, overwrite)
        _check_claim(path, None, "create")
        _remove_stale_temps(path)
        tmp = _temp_sibling(path, "creating")
        try:
            _init_layout(tmp, spec, tasks, chunk_len, attrs)
            _publish(tmp, path, overwrite=overwrite, lock_timeout=lock_timeout)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("created episode store %s", path)
        return cls.open(path, mode="a")

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        mode: str = "r",
        *,
        lock_timeout: float = 0.0,
        claim_token: str | None = None,
    ) -> EpisodeStore:
        """Open an existing store.

        Args:
            path: the store directory.
            mode: ``"r"`` (read-only; an uncommitted crash tail is ignored) or ``"a"`` (append;
                an uncommitted crash tail is removed, and the store is locked against other
                writers).
            lock_timeout: seconds to wait for another writer to finish (append mode only).
            claim_token: the token of the :func:`claim_store` that owns the store, for a process
                the owner hands it to (its :class:`~robolearn.data.writer.EpisodeWriter`). The
                owning process itself needs none. A store claimed by another command is refused.

        Raises:
            StoreError: not an episode store, corrupt (naming what is wrong; nothing is changed),
                or locked/claimed by another process.
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
        lock_fd = None
        if mode == "a":
            _open_root(path, "r")  # a clear error for a foreign directory, before any lock file
            lock_fd, holder = locks.try_writer_lock(path, lock_timeout)
            if lock_fd is None:
                raise StoreError(
                    f"{path} is open for writing by another process (pid {holder}); one writer "
                    "at a time. Wait for it to finish or stop it"
                )
        try:
            if mode == "a":
                _check_claim(path, claim_token, "append to")
            root = _open_root(path, mode)
            store = cls(path, root, mode, None)
        except BaseException:
            locks.release_writer_lock(lock_fd)
            raise
        # The store owns the lock from here on (and its close/__del__ releases it); a store
        # that failed to build must not, or the fd would be closed twice.
        store._lock_fd = lock_fd
        if mode == "a":
            try:
                store._check_data_chunks()  # before anything is changed
                store._repair()
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        """Release the writer lock (append mode). The store stays valid on disk."""
        locks.release_writer_lock(self._lock_fd)
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

    def update_user_attrs(self, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into ``attrs["user"]`` (append mode: the writer owns the store).

        For what a command wants to remember about a store, e.g. how it was collected."""
        self._check_writable()
        user = dict(self._root.attrs.get("user", {}))
        user.update(json.loads(json.dumps(dict(values))))
        self._root.attrs["user"] = user

    def meta(self, field: str) -> np.ndarray:
        """(E,) array of one per-episode field (``task``, ``seed``, ``source``, ...)."""
        if field not in META_FIELDS:
            raise KeyError(f"unknown meta field {field!r}.{_closest(field, META_FIELDS)}")
        return self._meta_column(field).copy()

    def task_ids(self) -> np.ndarray:
        """(E,) int64 index of each episode's task in :attr:`tasks`."""
        lookup = {t: i for i, t in enumerate(self._tasks)}
        names = self._meta_column("task")
        ids = np.fromiter((lookup.get(str(t), -1) for t in names), np.int64, len(names))
        if (ids < 0).any():
            i = int(np.flatnonzero(ids < 0)[0])
            unknown = sorted({str(t) for t in names[ids < 0]})
            raise StoreError(
                f"{self.path}: episode {i} has task {str(names[i])!r}, which the store's task "
                f"list (attrs['tasks'] = {self._tasks}) does not name (unknown task(s): "
                f"{unknown}); a task's index in that list is its policy task id, so robolearn "
                "will not guess one. The attributes were changed outside robolearn: restore "
                "zarr.json, or copy the episodes to a new store with recover_store"
            )
        return ids

    def complete_episodes(self) -> np.ndarray:
        """(E',) int64 indices of the complete episodes: what training should read.

        An episode recorded with ``add_episode(..., complete=False)`` (a deploy that faulted
        mid-episode) keeps its steps in the store but is left out here, and so by default by
        :class:`~robolearn.data.SequenceSampler` and the robomimic export.
        """
        return np.flatnonzero(self._complete_mask()).astype(np.int64)

    def incomplete_episodes(self) -> np.ndarray:
        """(E'',) int64 indices of the episodes recorded with ``complete=False``."""
        return np.flatnonzero(~self._complete_mask()).astype(np.int64)

    def episode(self, i: int, *, check_finite: bool = True) -> Episode:
        """Read committed episode ``i`` (negative indices count from the end).

        Raises:
            StoreError: a chunk of the episode is missing or damaged, or (``check_finite``) its
                data holds NaN/Inf.
        """
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"episode index {i} out of range for a store with {n} episodes")
        i %= n
        start = int(self._ends[i - 1]) if i > 0 else 0
        end = int(self._ends[i])
        data = {k: self._read(f"data/{k}", start, end) for k in self._data}
        if check_finite:
            for k, a in data.items():
                self._raise_nonfinite(k, a, start)
        m = {k: self._meta_column(k)[i] for k in META_FIELDS}
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

    def load(
        self, keys: Iterable[str] | None = None, *, check_finite: bool = True
    ) -> dict[str, np.ndarray]:
        """Read whole committed arrays into memory, one bulk read per key.

        Every chunk of the committed range is checked to exist before the read (one ``stat``
        per chunk), a damaged chunk raises instead of a codec traceback, and with
        ``check_finite`` (the default; about 0.25 ns per value) a NaN/Inf raises naming the
        key, episode and row.

        Raises:
            StoreError: as above; the message names the store, key, rows and chunk file.
        """
        keys = list(self.spec) if keys is None else list(keys)
        out = {}
        for k in keys:
            if k not in self.spec:
                raise KeyError(f"unknown data key {k!r}.{_closest(k, self.spec)}")
            out[k] = self._read(f"data/{k}", 0, self.num_steps)
            if check_finite:
                self._raise_nonfinite(k, out[k], 0)
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
        complete: bool = True,
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
            info: free-form JSON-serialisable extras (the key ``"incomplete"`` is reserved).
            complete: False for an episode that stopped before its end (e.g. a deploy fault):
                its steps are kept, marked ``info["incomplete"] = True``, and training readers
                skip it (:meth:`complete_episodes`).
        """
        self._check_writable()
        clean = self.validate_episode(steps)
        meta_values = episode_meta(
            task=task, source=source, params=params, seed=seed, policy_id=policy_id,
            info=info, timestamp=timestamp, complete=complete,
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
        # The commit, last: episode_ends grows by one entry per episode.
        _zarr_sync(_commit_ends(self._ends_arr._async_array, n_ep, new_ends))
        self._ends = np.concatenate([self._ends, new_ends])
        self._n_committed += len(episodes)
        self._meta_cache.clear()
        self._complete = None
        return list(range(n_ep, n_ep + len(episodes)))

    # ------------------------------------------------------------------ internals
    def _check_writable(self) -> None:
        if self.mode != "a":
            raise StoreError(
                f"{self.path} is open read-only; use EpisodeStore.open(path, mode='a') to append"
            )
        if self._lock_fd is None:
            raise StoreError(f"{self.path} was closed; open it again to append")

    def _dense(self, name: str) -> bool:
        """Must every chunk of the committed range of array ``name`` exist?"""
        return self.schema_version >= 2 or name in _V1_DENSE

    def _episodes_of(self, name: str, start: int, stop: int) -> str:
        if name.startswith("meta/"):
            return f"episodes {start}..{stop - 1}"
        first = int(np.searchsorted(self._ends, start, side="right"))
        last = int(np.searchsorted(self._ends, max(start, stop - 1), side="right"))
        return f"episode {first}" if first == last else f"episodes {first}..{last}"

    def _check_chunks(self, name: str, start: int, stop: int, raise_: bool = True
                      ) -> list[tuple[int, int, str]]:
        """Check that the chunk files of rows ``[start, stop)`` of ``name`` exist.

        A missing chunk reads as the fill value in zarr; in a dense store that is lost data.
        Chunks once seen are remembered (a committed chunk is never removed by robolearn).
        """
        arr = self._arrays[name]
        size = int(arr.chunks[0])
        known = self._verified.get(name, 0)
        lo = max(start, known * size)
        if lo >= stop:
            return []
        gone = missing_chunks(self.path, name, arr, lo, stop)
        if not gone and start <= known * size:
            self._verified[name] = max(known, -(-stop // size))
        if gone and raise_:
            a, b, file = gone[0]
            a, b = max(a, start), min(b, stop)
            fill = arr.metadata.fill_value
            fill = fill.item() if hasattr(fill, "item") else fill
            raise StoreError(
                f"{self.path}: {name} rows {a}..{b - 1} ({self._episodes_of(name, a, b)}) are "
                f"stored in chunk file {self.path / file}, which is missing"
                + (f" (and {len(gone) - 1} more chunk files)" if len(gone) > 1 else "")
                + f"; zarr would read it as the fill value {fill!r}, so robolearn refuses. "
                + _recover_hint(self.path)
            )
        return gone

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of array ``name``: never fill values for a missing chunk."""
        if stop <= start:
            return self._read_raw(name, start, stop)
        if self._dense(name):
            self._check_chunks(name, start, stop)
        elif name in ("data/obs", "data/action") and name not in self._warned:
            self._warned.add(name)  # once per key and open
            gone = missing_chunks(self.path, name, self._arrays[name], start, stop)
            if gone:
                log.warning(
                    "%s (schema 1) has no chunk file for %s rows %s; they read as zeros. "
                    "Schema-1 stores omitted all-zero chunks, so this is either all-zero data "
                    "or a deleted chunk (check_store / recover_store tell more)",
                    self.path, name, ", ".join(f"{a}..{b - 1}" for a, b, _ in gone[:4]),
                )
        return self._read_raw(name, start, stop)

    def _read_raw(self, name: str, start: int, stop: int) -> np.ndarray:
        arr = self._arrays[name]
        try:
            return np.asarray(arr[start:stop])
        except Exception as e:  # a codec error of a damaged chunk file: find and name it
            bad = []
            for a, b, key in chunk_files(arr, start, stop):
                try:
                    arr[a:b]
                except Exception:  # noqa: BLE001 - any failure marks the chunk damaged
                    bad.append(f"{self.path / name / key} (rows {a}..{b - 1})")
            where = ", ".join(bad[:4]) or "(could not tell which chunk)"
            raise StoreError(
                f"{self.path}: cannot read {name} rows {start}..{stop - 1}: chunk file {where} is "
                f"damaged ({type(e).__name__}: {e}). " + _recover_hint(self.path)
            ) from None

    def _raise_nonfinite(self, key: str, a: np.ndarray, offset: int) -> None:
        row = _first_nonfinite(a)
        if row is None:
            return
        row += offset
        ep = int(np.searchsorted(self._ends, row, side="right"))
        step = row - (int(self._ends[ep - 1]) if ep else 0)
        value = a[row - offset].reshape(-1)
        value = value[~np.isfinite(value)][0]
        raise StoreError(
            f"{self.path}: data/{key} holds a non-finite value ({value}) at row {row} (episode "
            f"{ep}, step {step}); the store writes finite data only, so the file was changed "
            "outside robolearn or damaged. Copy the other episodes to a new store with "
            "recover_store (it leaves out episodes with non-finite data), or pass "
            "check_finite=False to read it anyway"
        )

    def _meta_column(self, field: str) -> np.ndarray:
        col = self._meta_cache.get(field)
        if col is None:
            col = self._read(f"meta/{field}", 0, self._n_committed)
            self._meta_cache[field] = col
        return col

    def _complete_mask(self) -> np.ndarray:
        if self._complete is None:
            mask = np.ones(self._n_committed, bool)
            marker = f'"{INCOMPLETE_KEY}": true'
            for i, s in enumerate(self._meta_column("info")):
                s = str(s)
                # info is always canonical JSON (json.dumps in episode_meta): a cheap substring
                # test first, then a parse to make sure the key is at the top level
                if marker in s and json.loads(s).get(INCOMPLETE_KEY) is True:
                    mask[i] = False
            self._complete = mask
        return self._complete

    def _check_data_chunks(self) -> None:
        """Append mode: the committed data must be intact before anything is added.

        Reading checks this lazily, but an append must not go ahead over a missing chunk: the
        append's own write into the last chunk would recreate it with fill values (zeros), and
        the loss could no longer be told from data. First a directory lookup per chunk, then a
        read of every committed value (damaged chunks, non-finite values).
        """
        end = self.num_steps
        missing = [
            f for name in self._arrays if name.startswith("data/") and self._dense(name)
            for *_, f in self._check_chunks(name, 0, end, raise_=False)
        ]
        if missing:
            raise StoreError(
                f"{self.path} is corrupt: data chunk file(s) {', '.join(missing[:6])}"
                + (f" (and {len(missing) - 6} more)" if len(missing) > 6 else "")
                + " of committed episodes are missing (zarr would read them as zeros); refusing "
                "to append, nothing was changed. " + _recover_hint(self.path)
            )
        # Then every committed value: a damaged chunk or a non-finite value is a store changed
        # outside robolearn; appending to it would bury the damage under new episodes (and
        # the append rewrites the last chunk). Blockwise reads, once per append-mode open.
        for name in self._arrays:
            if not name.startswith("data/"):
                continue
            key = name[len("data/"):]
            per_row = max(1, int(np.prod(self._arrays[name].shape[1:])))
            step = max(1, _FINITE_BLOCK // per_row)
            try:
                for lo in range(0, end, step):
                    block = self._read(name, lo, min(end, lo + step))
                    self._raise_nonfinite(key, block, lo)
            except StoreError as e:
                raise StoreError(f"refusing to append to {self.path}, nothing was changed: {e}"
                                 ) from None
        try:
            self.task_ids()  # every episode's task is in the task list
        except StoreError as e:
            raise StoreError(f"refusing to append to {self.path}, nothing was changed: {e}"
                             ) from None

    def _repair(self) -> None:
        """Drop what a crash left after the last commit (see :func:`analyse_commits`)."""
        n = self._n_committed
        end = self.num_steps
        repaired = []
        ends_arr = self._ends_arr
        if ends_arr.shape[0] != n:  # only a schema-1 crash tail (see analyse_commits)
            old = ends_arr.shape[0]
            _zarr_sync(_set_shape_and_record(ends_arr._async_array, (n,), {"from": n, "to": n}))
            size = int(ends_arr.chunks[0])
            for c in range(-(-n // size), -(-old // size)):  # chunks wholly past the new end
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path / "meta/episode_ends" / ends_arr.metadata.encode_chunk_key((c,)))
            repaired.append(f"{old - n} uncommitted meta/episode_ends entries")
        for k, a in self._meta.items():
            if a.shape[0] != n:
                repaired.append(f"{a.shape[0] - n} meta/{k} entries")
                a.resize((n,))
        for k, a in self._data.items():
            if a.shape[0] != end:
                repaired.append(f"{a.shape[0] - end} data/{k} rows")
                a.resize((end, *a.shape[1:]))
        for stray in self.path.rglob("*.partial"):  # temp files of interrupted atomic writes
            stray.unlink(missing_ok=True)
            repaired.append(str(stray.relative_to(self.path)))
        if repaired:
            log.warning(
                "repaired %s: removed what an interrupted commit left after episode %d "
                "(committed episodes are untouched): %s", self.path, n - 1, ", ".join(repaired),
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
    complete: bool = True,
) -> dict[str, Any]:
    """Validate one episode's metadata and return the values stored under ``meta/``."""
    if not isinstance(task, str) or not task:
        raise StoreError(f"Got task={task!r}, expected a non-empty task name")
    if source not in SOURCES:
        raise StoreError(f"Got source={source!r}, expected one of {SOURCES}")
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise StoreError(f"Got seed={seed!r}, expected a non-negative int or None")
    if not isinstance(complete, (bool, np.bool_)):
        raise StoreError(f"Got complete={complete!r}, expected True or False")
    info_json = _json_dumps(info, "info")
    info_dict = json.loads(info_json)
    flag = info_dict.get(INCOMPLETE_KEY)
    if flag is not None and flag is not (not complete):
        raise StoreError(
            f"Got info[{INCOMPLETE_KEY!r}]={flag!r} with complete={bool(complete)}; the key is "
            "reserved for the complete flag: pass complete=False for an incomplete episode and "
            "leave it out of info"
        )
    if not complete:
        info_dict[INCOMPLETE_KEY] = True
        info_json = json.dumps(info_dict, sort_keys=True, allow_nan=False)
    return {
        "task": task,
        "params": _json_dumps(params, "params"),
        "source": source,
        "seed": -1 if seed is None else int(seed),
        "policy_id": str(policy_id),
        "timestamp": time.time() if timestamp is None else float(timestamp),
        "info": info_json,
    }


# ---------------------------------------------------------------------- ownership
@dataclasses.dataclass
class StoreClaim:
    """A store owned by this process for one command (see :func:`claim_store`).

    Attributes:
        path: the store.
        token: handed to the owner's own writer process so it may append (done for you by
            ``EpisodeWriter(path, claim=claim)`` and by ``EpisodeWriter(path)`` in the owning
            process).
        created: whether the claim created the store (a fresh or overwritten store).
    """

    path: Path
    token: str
    created: bool

    def open(self, mode: str = "a", *, lock_timeout: float = 60.0) -> EpisodeStore:
        """Open the claimed store (default: append, for planning or writing in this process).

        ``lock_timeout`` covers a writer still draining after an earlier, killed command.
        """
        return EpisodeStore.open(self.path, mode, lock_timeout=lock_timeout,
                                 claim_token=self.token)


@contextlib.contextmanager
def claim_store(
    path: str | os.PathLike,
    *,
    create: Mapping[str, Any] | None = None,
    timeout: float = 0.0,
    lock_timeout: float = 60.0,
    missing_ok: bool = False,
) -> Iterator[StoreClaim]:
    """Own the store at ``path`` for the duration of a command: create-or-open, exclusively.

    While the block runs, no other process can claim the store, append to it
    (``EpisodeStore.open(mode="a")``), create or overwrite it; this process and the writer
    process it hands the store to (``EpisodeWriter(path, claim=claim)``, or ``EpisodeWriter(path)``
    created in this process) can. Readers are never blocked. The claim is an ``flock`` on
    ``<parent>/.<name>.owner``: released when the block ends or the process dies.

    Args:
        path: the store.
        create: ``EpisodeStore.create`` keyword arguments (``obs_dim``, ``action_dim``,
            ``extras``, ``tasks``, ``chunk_len``, ``attrs``, ``overwrite``) to create the store
            when it does not exist (or replace it when ``overwrite`` is true). An existing store
            must then have the same obs_dim, action_dim and extras. ``None``: the store must
            exist.
        timeout: seconds to wait for another command that owns the store; 0 refuses at once.
        lock_timeout: seconds to wait for a writer process of an earlier command that is still
            draining (used when overwriting).
        missing_ok: with ``create=None``, claim a path where no store exists yet, for a block
            that makes it itself (an import with :func:`build_store`).

    Raises:
        StoreError: another process owns the store (the message names its pid and command), or
            the existing store does not match ``create``.
        FileNotFoundError: no store at ``path``, ``create`` is None and not ``missing_ok``.

    Example (a command that plans, then writes from a background process)::

        with claim_store(out, create={"obs_dim": 39, "action_dim": 4, "tasks": tasks}) as claim:
            with claim.open("a") as store:          # plan from what is committed
                todo = plan(store)
            with EpisodeWriter(out, claim=claim) as writer:  # its process may append; others not
                for steps, meta in run(todo):
                    writer.add_episode(steps, **meta)
    """
    path = Path(path)
    if locks.held_here(path) is not None:
        raise StoreError(f"{path} is already claimed by this process; claim it once per command")
    if create is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir() and not missing_ok:
        raise FileNotFoundError(f"no episode store at {path} (no directory {path.parent})")
    try:
        got = locks.acquire_owner(path, timeout)
    except OSError as e:
        raise StoreError(
            f"cannot claim {path}: the owner lock file {locks.owner_lock_path(path)} cannot be "
            f"created ({e.strerror}); the store's directory must be writable to append to it"
        ) from None
    if not isinstance(got, locks.OwnerLock):
        raise StoreError(
            f"{path} is in use by another command: {locks.describe_owner(got)}. One command at "
            "a time owns a store (two collects on one out= would both record the missing "
            "episodes). Wait for it to finish (or pass a timeout), stop it, or use another path"
        )
    try:
        created = False
        if create is not None and (create.get("overwrite") or not path.exists()):
            kwargs = dict(create)
            kwargs.setdefault("lock_timeout", lock_timeout)
            EpisodeStore.create(path, **kwargs).close()
            created = True
        elif not path.exists():
            if missing_ok:
                yield StoreClaim(path=path, token=got.token, created=False)
                return
            raise FileNotFoundError(
                f"no episode store at {path}; pass create={{...}} to create it, or create it "
                "with EpisodeStore.create()")
        else:
            with EpisodeStore.open(path, "r") as existing:
                if create is not None:
                    _check_same_spec(existing, create)
        yield StoreClaim(path=path, token=got.token, created=created)
    finally:
        got.release()


def _check_same_spec(store: EpisodeStore, create: Mapping[str, Any]) -> None:
    want = make_spec(create["obs_dim"], create["action_dim"], create.get("extras"))
    if want != store.spec:
        diff = sorted(
            f"{k}: store {store.spec[k].to_dict() if k in store.spec else 'absent'} vs asked "
            f"{want[k].to_dict() if k in want else 'absent'}"
            for k in set(want) | set(store.spec) if want.get(k) != store.spec.get(k)
        )
        raise StoreError(
            f"{store.path} exists with other per-step keys than asked for ({'; '.join(diff)}); "
            "use another path, or overwrite=True to replace it"
        )


@contextlib.contextmanager
def build_store(
    path: str | os.PathLike,
    obs_dim: int,
    action_dim: int,
    *,
    overwrite: bool = False,
    lock_timeout: float = 0.0,
    **create_kwargs: Any,
) -> Iterator[EpisodeStore]:
    """Create and fill a new store that appears at ``path`` only if the block succeeds.

    The store is built under a temporary name next to ``path`` (``.<name>.building-<pid>-*``)
    and renamed into place when the block ends without an exception; on an exception it is
    removed, and a killed process's leftover is removed by the next create of that path. Used
    by imports and :func:`~robolearn.data.recover_store`.

    Args:
        path, obs_dim, action_dim, **create_kwargs: as for :meth:`EpisodeStore.create`.
        overwrite: replace an existing store at ``path`` when done (checked before and after).
        lock_timeout: seconds to wait for a writer of the store being replaced.
    """
    path = Path(path)
    make_spec(obs_dim, action_dim, create_kwargs.get("extras"))
    _check_target(path, overwrite)
    _check_claim(path, None, "create")
    _remove_stale_temps(path)
    tmp = _temp_sibling(path, "building")
    try:
        store = EpisodeStore.create(tmp, obs_dim, action_dim, **create_kwargs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        yield store
        store.close()
        _publish(tmp, path, overwrite=overwrite, lock_timeout=lock_timeout)
    except BaseException:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    store.path = path


def _check_claim(path: Path, token: str | None, doing: str) -> None:
    if locks.held_here(path) is not None:
        return
    info = locks.owner_info(path)
    if info is None or (token is not None and info.get("token") == token):
        return
    raise StoreError(
        f"cannot {doing} {path}: it is owned by another command, {locks.describe_owner(info)}. "
        "Wait for it to finish or stop it (a command owns a store with claim_store)"
    )


# ---------------------------------------------------------------------- internals
async def _append_rows(arr: Any, start: int, rows: np.ndarray) -> None:
    """Write ``rows`` at ``start`` along axis 0, growing the array to fit."""
    stop = start + rows.shape[0]
    if arr.shape[0] != stop:
        await arr.resize((stop, *arr.shape[1:]))
    await arr.setitem(slice(start, stop), rows)


async def _set_shape_and_record(arr: Any, shape: tuple[int, ...], record: dict[str, Any]) -> None:
    """Set an array's shape and its commit record in ONE metadata write (atomic on disk).

    Unlike ``resize`` it never deletes chunks: the caller removes any past a shrunken end.
    (Used by the repair of a schema-1 crash tail.)
    """
    attrs = {**arr.metadata.attributes, COMMIT_ATTR: record}
    new = arr.metadata.update_shape(shape).update_attributes(attrs)
    await arr._save_metadata(new)
    object.__setattr__(arr, "metadata", new)


async def _commit_ends(arr: Any, start: int, new_ends: np.ndarray) -> None:
    """Append end entries: the commit. See the module docstring for why in this order.

    The entries go into chunks past the stored shape through a view of the array with the
    new shape that is never saved, so readers cannot see them (nor any stale value a chunk
    held past the old end); then shape and commit record are saved in one atomic write.
    """
    stop = start + len(new_ends)
    attrs = {**arr.metadata.attributes, COMMIT_ATTR: {"from": start, "to": stop}}
    grown = arr.metadata.update_shape((stop,)).update_attributes(attrs)
    ahead = AsyncArray(metadata=grown, store_path=arr.store_path, config=arr.config)
    await ahead.setitem(slice(start, stop), new_ends)
    await arr._save_metadata(grown)  # the commit
    object.__setattr__(arr, "metadata", grown)


def _init_layout(path: Path, spec: Mapping[str, KeySpec], tasks: Iterable[str], chunk_len: int,
                 attrs: Mapping[str, Any] | None) -> None:
    root = zarr.open_group(str(path), mode="w")
    data = root.create_group("data")
    for key, ks in spec.items():
        data.create_array(key, shape=(0, *ks.shape), dtype=ks.dtype, chunks=(chunk_len, *ks.shape))
    meta = root.create_group("meta")
    ends = meta.create_array("episode_ends", shape=(0,), dtype="int64", chunks=(META_CHUNK,))
    ends.attrs[COMMIT_ATTR] = {"from": 0, "to": 0}
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


def _check_target(path: Path, overwrite: bool) -> None:
    """May a new store be put at ``path``?"""
    if not path.exists():
        return
    if not overwrite:
        raise FileExistsError(
            f"{path} already exists; open it with EpisodeStore.open({str(path)!r}, "
            f"mode='a') to append, or pass overwrite=True to replace it"
        )
    if not path.is_dir():
        raise StoreError(f"refusing to overwrite {path}: it is a file, not an episode store")
    if any(path.iterdir()) and not _looks_like_store(path):
        raise StoreError(
            f"refusing to overwrite {path}: it is not an episode store (no robolearn "
            "attributes in zarr.json); remove it yourself if that is intended"
        )


def _temp_sibling(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove_stale_temps(path: Path) -> None:
    """Remove temp dirs of ``path`` left by processes that died (never a live one's)."""
    for kind in ("creating", "building", "replaced"):
        for stale in path.parent.glob(f".{glob.escape(path.name)}.{kind}-*"):
            pid = stale.name.rsplit(f".{kind}-", 1)[-1].split("-", 1)[0]
            if pid.isdigit() and not locks.pid_alive(int(pid)):
                log.info("removing %s, left by process %s that no longer runs", stale, pid)
                shutil.rmtree(stale, ignore_errors=True)


def _publish(tmp: Path, final: Path, *, overwrite: bool, lock_timeout: float) -> None:
    """Move a finished store from ``tmp`` to ``final`` (replacing a store there if allowed)."""
    if not final.exists():
        try:
            os.rename(tmp, final)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
        if not overwrite:
            raise FileExistsError(
                f"{final} was created by another process while this one was creating it; open "
                f"it with EpisodeStore.open({str(final)!r}, mode='a'), or claim it with "
                "claim_store() so that one command at a time creates and fills it"
            ) from None
    elif not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True to replace it")
    _check_target(final, overwrite=True)
    _check_claim(final, None, "overwrite")
    fd, holder = locks.try_writer_lock(final, lock_timeout) if final.is_dir() else (None, "")
    if fd is None and final.is_dir():
        raise StoreError(
            f"refusing to overwrite {final}: it is open for writing by another process (pid "
            f"{holder}). Wait for it to finish or stop it"
        )
    old = _temp_sibling(final, "replaced")
    try:
        os.rename(final, old)
        os.rename(tmp, final)
    finally:
        locks.release_writer_lock(fd)
    shutil.rmtree(old, ignore_errors=True)


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
    if version not in READABLE_SCHEMA_VERSIONS:
        raise StoreError(
            f"{path} has schema_version={version!r}; this robolearn reads versions "
            f"{list(READABLE_SCHEMA_VERSIONS)}. Upgrade robolearn or re-export the dataset"
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


def _robolearn_version() -> str:
    try:
        from importlib.metadata import version

        return version("robolearn")
    except Exception:  # not installed (running from a checkout)
        return "unknown"
