"""Check an episode store, and copy what is recoverable out of a damaged one.

:class:`~robolearn.data.EpisodeStore` refuses a store it cannot trust (end entries that do not
increase or read as the fill value, ends beyond the data, missing or undecodable chunk files)
instead of guessing, because guessing is how committed episodes get deleted.
These two functions are the way out, and neither ever writes to the store it reads:

- :func:`check_store` reads every array chunk by chunk and reports what is consistent, what is
  not (naming entries and chunk files) and which episodes are recoverable.
- :func:`recover_store` copies every recoverable episode into a NEW store (built under a
  temporary name, renamed when complete), in order, with its metadata.

An episode is recoverable when both its boundaries are trusted (see
:func:`~robolearn.data.store.trusted_episodes`: the entry lies strictly between its neighbours
and within the data), every chunk holding its rows exists and decodes, its data is finite and
its metadata is readable. On a consistent store that is every committed episode, so
``recover_store`` is also a plain copy (and turns a schema-1 store into a schema-2 one).

Example:
    >>> report = check_store("demos.zarr")
    >>> print(report.summary())
    >>> if not report.ok:
    ...     recover_store("demos.zarr", "demos-recovered.zarr")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm.auto import tqdm

from robolearn.data.store import (
    _V1_DENSE,
    COMMIT_ATTR,
    INCOMPLETE_KEY,
    META_FIELDS,
    SOURCES,
    KeySpec,
    StoreError,
    _first_nonfinite,
    _open_root,
    analyse_commits,
    build_store,
    chunk_files,
    episode_meta,
    trusted_episodes,
)

log = logging.getLogger(__name__)
_BLOCK_CHUNKS = 32  # chunks per read while scanning (one bad chunk: re-read one by one)
_LIST_LIMIT = 20  # chunk files / rows listed per kind in a report


@dataclasses.dataclass
class StoreReport:
    """What :func:`check_store` found.

    Attributes:
        path: the store checked.
        schema_version: its schema version.
        ok: no problem: every committed episode reads back, as written.
        entries: entries of ``meta/episode_ends``.
        committed: the consistent prefix: what a reader sees when ``ok``.
        crash_tail: entries after it that an interrupted commit left (not an error; ignored by
            readers, trimmed by the next append).
        steps: rows of the committed episodes.
        rows: length of each ``data/<key>`` array.
        recoverable: indices of the episodes :func:`recover_store` copies.
        incomplete: committed episodes recorded with ``complete=False``.
        problems: what is wrong, one sentence each, naming entries / chunk files / rows.
        notes: facts that are not errors (a crash tail, absent schema-1 chunks read as zeros).
        missing_chunks, damaged_chunks: chunk files (relative to the store) absent where data
            must be, or undecodable (first few).
        nonfinite: ``"data/obs row 17 (episode 2)"`` for the first few non-finite rows.
        unknown_tasks: tasks of episodes that ``attrs["tasks"]`` does not list.
    """

    path: str
    schema_version: int
    ok: bool
    entries: int
    committed: int
    crash_tail: int
    steps: int
    rows: dict[str, int]
    recoverable: list[int]
    incomplete: list[int]
    problems: list[str]
    notes: list[str]
    missing_chunks: list[str]
    damaged_chunks: list[str]
    nonfinite: list[str]
    unknown_tasks: list[str]

    @property
    def unrecoverable(self) -> int:
        """Episodes (entries, less an uncommitted crash tail) that cannot be recovered."""
        return max(0, self.entries - self.crash_tail - len(self.recoverable))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for ``robolearn store check --json`` and reports)."""
        d = dataclasses.asdict(self)
        d["unrecoverable"] = self.unrecoverable
        return d

    def summary(self) -> str:
        """A few lines for people: verdict, counts, problems, notes."""
        verdict = "OK" if self.ok else "CORRUPT"
        lines = [
            f"{self.path}: {verdict} (schema {self.schema_version})",
            (f"  episodes: {self.committed} committed" if self.ok else
             f"  episodes: {self.entries} entries, a consistent prefix of {self.committed}")
            + (f" (+{self.crash_tail} uncommitted crash tail)" if self.crash_tail else "")
            + f", {self.steps} steps, {len(self.incomplete)} incomplete",
            f"  recoverable: {len(self.recoverable)} episode(s); unrecoverable: "
            f"{self.unrecoverable}",
        ]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        if not self.ok and self.recoverable:
            lines.append(
                f"  fix: copy the recoverable episodes to a new store with "
                f"recover_store({self.path!r}, NEW_PATH) (`robolearn store recover {self.path} "
                "NEW_PATH`); this store is left as it is"
            )
        return "\n".join(lines)


@dataclasses.dataclass
class RecoverReport:
    """What :func:`recover_store` copied.

    Attributes:
        src, dst: the source store (unchanged) and the new store.
        copied: source indices of the copied episodes; episode ``i`` of ``dst`` is
            ``copied[i]`` of ``src``.
        skipped: source episode index -> why it was not copied (every entry not copied, less an
            uncommitted crash tail).
        check: the source's :class:`StoreReport`.
    """

    src: str
    dst: str
    copied: list[int]
    skipped: dict[int, str]
    check: StoreReport

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "copied": self.copied,
                "skipped": {str(k): v for k, v in self.skipped.items()},
                "check": self.check.to_dict()}

    def summary(self) -> str:
        lines = [f"recovered {len(self.copied)} episode(s) from {self.src} into {self.dst}"
                 f" ({len(self.skipped)} not recoverable; {self.src} is unchanged)"]
        for i, why in list(self.skipped.items())[:_LIST_LIMIT]:
            lines.append(f"  episode {i}: {why}")
        if len(self.skipped) > _LIST_LIMIT:
            lines.append(f"  ... and {len(self.skipped) - _LIST_LIMIT} more")
        return "\n".join(lines)


# ---------------------------------------------------------------------- scanning
@dataclasses.dataclass
class _Scan:
    """Chunk-level facts of one array: rows that cannot be trusted, and the values if kept."""

    bad_rows: np.ndarray  # (len,) bool: in a missing (dense) or damaged chunk, or non-finite
    missing: list[tuple[int, str]]  # (first row, chunk file)
    damaged: list[str]
    absent_sparse: list[str]  # schema-1 chunks absent where zarr may have omitted fill values
    nonfinite_rows: list[int]
    values: np.ndarray | None


def _blocks(arr: zarr.Array, stop: int) -> Iterator[tuple[int, int, list[tuple[int, int, str]]]]:
    files = chunk_files(arr, 0, stop)
    for i in range(0, len(files), _BLOCK_CHUNKS):
        part = files[i : i + _BLOCK_CHUNKS]
        yield part[0][0], min(part[-1][1], stop), part


def _scan(root_path: Path, name: str, arr: zarr.Array, *, dense: bool, deep: bool,
          keep: bool) -> _Scan:
    n = int(arr.shape[0])
    bad = np.zeros(n, bool)
    missing, damaged, absent, nonfinite = [], [], [], []
    values = None
    if keep:
        values = np.empty((n, *arr.shape[1:]), dtype=object if arr.dtype.kind in "OTU" else
                          arr.dtype)
    base = root_path / name
    for a, b, part in _blocks(arr, n):
        gone = [(ca, cb, key) for ca, cb, key in part if not os.path.isfile(base / key)]
        for ca, cb, key in gone:
            if dense:
                missing.append((ca, f"{name}/{key}"))
                bad[ca:cb] = True
            else:
                absent.append(f"{name}/{key}")
        if not (deep or keep):
            continue
        try:
            block = np.asarray(arr[a:b])
            pieces = [(a, b, block)]
        except Exception:  # noqa: BLE001 - a damaged chunk: find which, one by one
            pieces = []
            for ca, cb, key in part:
                try:
                    pieces.append((ca, cb, np.asarray(arr[ca:cb])))
                except Exception:  # noqa: BLE001
                    damaged.append(f"{name}/{key}")
                    bad[ca:cb] = True
        for pa, pb, vals in pieces:
            if keep:
                values[pa:pb] = vals
            if deep and vals.dtype.kind == "f":
                off = 0
                while (row := _first_nonfinite(vals[off:])) is not None:
                    nonfinite.append(pa + off + row)
                    bad[pa + off + row] = True
                    off += row + 1
    return _Scan(bad, missing, damaged, absent, nonfinite, values)


def check_store(path: str | os.PathLike, *, deep: bool = True) -> StoreReport:
    """Report what is consistent in the store at ``path``, without changing anything.

    Args:
        path: the store.
        deep: decode every chunk (finding damaged chunks and non-finite values; reads the whole
            store once). ``False`` checks the entries, array lengths and chunk files only.

    Raises:
        FileNotFoundError, StoreError: ``path`` is not an episode store at all (no robolearn
            zarr.json, an unreadable schema version). Everything else is reported.
    """
    path = Path(path)
    facts = _inspect(path, deep=deep)
    return facts["report"]


def _inspect(path: Path, *, deep: bool) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"no episode store at {path}")
    if not path.is_dir():
        raise StoreError(f"{path} is a file, not an episode store directory")
    try:
        root = _open_root(path, "r")
    except StoreError as e:
        if "corrupt or incomplete" not in str(e):
            raise
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
        report = StoreReport(
            path=str(path), schema_version=int(attrs.get("schema_version", 0)), ok=False,
            entries=0, committed=0, crash_tail=0, steps=0, rows={}, recoverable=[],
            incomplete=[], problems=[str(e)], notes=[], missing_chunks=[], damaged_chunks=[],
            nonfinite=[], unknown_tasks=[])
        return {"report": report}
    attrs = dict(root.attrs)
    version = int(attrs["schema_version"])
    spec = {k: KeySpec.from_dict(v) for k, v in attrs["data_spec"].items()}
    tasks = list(attrs.get("tasks", []))
    problems: list[str] = []
    notes: list[str] = []

    def dense(name: str) -> bool:
        return version >= 2 or name in _V1_DENSE

    ends_arr = root["meta"]["episode_ends"]
    ends_scan = _scan(path, "meta/episode_ends", ends_arr, dense=True, deep=True, keep=True)
    ends = np.where(ends_scan.bad_rows, 0, ends_scan.values).astype(np.int64)
    data = {k: root["data"][k] for k in spec}
    meta = {k: root["meta"][k] for k in META_FIELDS}
    state = analyse_commits(
        ends, ends_arr.attrs.get(COMMIT_ATTR),
        rows={f"data/{k}": int(a.shape[0]) for k, a in data.items()},
        meta_lengths={f"meta/{k}": int(a.shape[0]) for k, a in meta.items()},
        schema_version=version, missing_end_chunks=[f for _, f in ends_scan.missing],
    )
    problems += state.problems
    for f in ends_scan.damaged:
        problems.append(f"chunk file {f} of meta/episode_ends cannot be decoded; its entries "
                        "are unknown")
    n = state.committed
    n_steps = int(ends[n - 1]) if n else 0
    if state.tail:
        notes.append(
            f"{state.tail} uncommitted meta/episode_ends entr{'y' if state.tail == 1 else 'ies'} "
            f"after episode {n - 1} (an interrupted commit): readers ignore them, the next append "
            "removes them with the rows they point at"
        )

    # meta columns (values kept) and data arrays (statuses only)
    meta_scans = {k: _scan(path, f"meta/{k}", a, dense=dense(f"meta/{k}"), deep=True, keep=True)
                  for k, a in meta.items()}
    data_scans = {k: _scan(path, f"data/{k}", a, dense=dense(f"data/{k}"), deep=deep,
                           keep=False) for k, a in data.items()}
    missing = [f for _, f in ends_scan.missing]
    damaged, nonfinite = list(ends_scan.damaged), []
    for name, sc in [*((f"meta/{k}", s) for k, s in meta_scans.items()),
                     *((f"data/{k}", s) for k, s in data_scans.items())]:
        limit = n if name.startswith("meta/") else n_steps
        in_range = [f for first, f in sc.missing if first < limit]
        if in_range:
            problems.append(
                f"{len(in_range)} chunk file(s) of {name} holding committed "
                f"{'episodes' if name.startswith('meta/') else 'rows'} are missing "
                f"({', '.join(in_range[:4])}{', ...' if len(in_range) > 4 else ''}); zarr would "
                "read them as fill values")
        missing += [f for _, f in sc.missing]
        if sc.damaged:
            problems.append(f"{len(sc.damaged)} chunk file(s) of {name} cannot be decoded "
                            f"({', '.join(sc.damaged[:4])})")
            damaged += sc.damaged
        if sc.absent_sparse and name in ("data/obs", "data/action"):
            notes.append(
                f"{len(sc.absent_sparse)} chunk file(s) of {name} are absent and read as zeros "
                f"({', '.join(sc.absent_sparse[:4])}); schema-1 stores omitted all-zero chunks, "
                "so this is all-zero data or a deleted chunk (it cannot be told)")
        if sc.nonfinite_rows:
            rows_ = sc.nonfinite_rows
            eps = np.searchsorted(ends[:n], rows_, side="right")
            desc = [f"{name} row {r} (episode {int(e)})" for r, e in zip(rows_, eps, strict=True)]
            problems.append(f"{name} holds non-finite values in {len(rows_)} row(s): "
                            + ", ".join(desc[:4]) + (", ..." if len(desc) > 4 else ""))
            nonfinite += desc

    # per-episode recoverability
    rows_min = min((int(a.shape[0]) for a in data.values()), default=0)
    trusted = trusted_episodes(ends, rows_min)
    bad_rows = np.zeros(rows_min, bool)
    for sc in data_scans.values():
        bad_rows |= sc.bad_rows[:rows_min]
    cs = np.concatenate([[0], np.cumsum(bad_rows)])
    starts = np.concatenate([[0], ends[:-1]])
    why: dict[int, str] = {}
    _task_values = meta_scans["task"].values if "task" in meta_scans else None
    known_tasks = None if _task_values is None else (_task_values, set(tasks))
    for j in range(state.entries):
        if not trusted[j]:
            why[j] = "its boundaries in meta/episode_ends are not consistent"
            continue
        s, e = int(starts[j]), int(ends[j])
        if cs[e] - cs[s]:
            why[j] = f"rows {s}..{e - 1} are in a missing or damaged chunk, or not finite"
            continue
        for k, sc in meta_scans.items():
            if j >= len(sc.bad_rows) or sc.bad_rows[j]:
                why[j] = f"its meta/{k} is missing or damaged"
                break
        else:
            reason = _meta_problem(meta_scans, j)
            if reason:
                why[j] = reason
            elif known_tasks is not None and j < len(known_tasks[0]) and \
                    str(known_tasks[0][j]) not in known_tasks[1]:
                # its task id is unknown: copying it would invent a task for it
                why[j] = (f"its task {str(known_tasks[0][j])!r} is not in the store's task list "
                          "(attrs['tasks'])")
    recoverable = [j for j in range(state.entries) if j not in why and trusted[j]]
    if state.tail:  # an uncommitted tail is neither recoverable nor lost
        for j in range(n, state.entries):
            why.pop(j, None)
            if j in recoverable:
                recoverable.remove(j)

    task_col = meta_scans["task"].values
    used = {str(t) for t in task_col[:n]} if task_col is not None else set()
    unknown = sorted(used - set(tasks) - {""})
    if unknown:
        problems.append(f"committed episodes name task(s) {unknown} that attrs['tasks'] does not "
                        "list, so their task ids are unknown")
    incomplete = []
    info_col = meta_scans["info"].values
    for j in range(min(n, len(info_col))):
        try:
            if json.loads(str(info_col[j])).get(INCOMPLETE_KEY) is True:
                incomplete.append(j)
        except ValueError:
            pass
    report = StoreReport(
        path=str(path), schema_version=version, ok=not problems, entries=state.entries,
        committed=n, crash_tail=state.tail, steps=n_steps,
        rows={k: int(a.shape[0]) for k, a in data.items()}, recoverable=recoverable,
        incomplete=incomplete, problems=problems, notes=notes,
        missing_chunks=missing[:_LIST_LIMIT], damaged_chunks=damaged[:_LIST_LIMIT],
        nonfinite=nonfinite[:_LIST_LIMIT], unknown_tasks=unknown,
    )
    return {"report": report, "root": root, "spec": spec, "ends": ends, "meta": meta_scans,
            "why": why, "attrs": attrs}


def _meta_problem(scans: dict[str, _Scan], j: int) -> str | None:
    task = str(scans["task"].values[j])
    if not task:
        return "its meta/task is empty"
    if str(scans["source"].values[j]) not in SOURCES:
        return f"its meta/source {str(scans['source'].values[j])!r} is not one of {SOURCES}"
    for k in ("params", "info"):
        try:
            json.loads(str(scans[k].values[j]))
        except ValueError:
            return f"its meta/{k} is not valid JSON"
    return None


def recover_store(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> RecoverReport:
    """Copy every recoverable episode of ``src`` into a new store at ``dst``; ``src`` is never
    modified, locked or deleted.

    The new store has the source's data spec, task list (so task ids stay the same), chunk
    length and user attributes, plus ``attrs["user"]["recovered_from"]`` (source path, time and
    the copied source indices as ``[start, stop)`` runs). Episodes keep their order, metadata
    and complete flag. ``dst`` appears only when the copy is complete.

    Args:
        src: the store to recover from (opened read-only, even when it is corrupt).
        dst: the new store; must not exist unless ``overwrite`` (never ``src`` itself).
        overwrite: replace an existing store at ``dst``.
        progress: show a progress bar.

    Returns:
        A :class:`RecoverReport` (``copied``, ``skipped`` with reasons, the source's check).
    """
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise StoreError(f"Got dst={dst}, which is the source store {src} or inside it; recover "
                         "into a new path (the source is never modified)")
    facts = _inspect(src, deep=True)
    report: StoreReport = facts["report"]
    if "root" not in facts:
        raise StoreError(f"{src} cannot be recovered: {report.problems[0]}")
    root, spec, ends = facts["root"], facts["spec"], facts["ends"]
    meta_scans: dict[str, _Scan] = facts["meta"]
    attrs = facts["attrs"]
    starts = np.concatenate([[0], ends[:-1]])
    data = {k: root["data"][k] for k in spec}
    chunk_len = int(data["obs"].chunks[0])
    extras = {k: (ks.shape, ks.dtype) for k, ks in spec.items()
              if k not in ("obs", "action", "reward", "success")}
    copied: list[int] = []
    skipped = {int(k): v for k, v in facts["why"].items()}
    user = dict(attrs.get("user", {}))
    user["recovered_from"] = {"path": str(src.resolve()), "time": time.time(),
                              "episodes": _runs(report.recoverable)}
    with build_store(dst, spec["obs"].shape[0], spec["action"].shape[0], extras=extras or None,
                     tasks=attrs.get("tasks", []), chunk_len=chunk_len, attrs=user,
                     overwrite=overwrite) as out:
        batch: list[tuple[dict[str, np.ndarray], dict[str, Any]]] = []
        for j in tqdm(report.recoverable, desc="recover", disable=not progress):
            s, e = int(starts[j]), int(ends[j])
            try:
                steps = out.validate_episode({k: np.asarray(a[s:e]) for k, a in data.items()})
                m = {k: meta_scans[k].values[j] for k in META_FIELDS}
                info = json.loads(str(m["info"]))
                complete = info.pop(INCOMPLETE_KEY, False) is not True
                seed = int(m["seed"])
                values = episode_meta(
                    task=str(m["task"]), source=str(m["source"]), params=str(m["params"]),
                    seed=None if seed < 0 else seed, policy_id=str(m["policy_id"]), info=info,
                    timestamp=float(m["timestamp"]), complete=complete,
                )
            except (StoreError, ValueError, TypeError) as err:  # re-checked: never copy bad data
                skipped[j] = f"refused on copy: {err}"
                continue
            batch.append((steps, values))
            copied.append(j)
            if len(batch) >= 256:
                out._commit_many(batch)
                batch = []
        if batch:
            out._commit_many(batch)
        if copied != report.recoverable:
            out._root.attrs["user"] = {**user, "recovered_from": {
                **user["recovered_from"], "episodes": _runs(copied)}}
    log.info("recovered %d of %d episode(s) from %s into %s", len(copied), report.entries, src,
             dst)
    return RecoverReport(src=str(src), dst=str(dst), copied=copied,
                         skipped=dict(sorted(skipped.items())), check=report)


def _runs(indices: list[int]) -> list[list[int]]:
    """[0, 1, 2, 5, 6] -> [[0, 3], [5, 7]] (half-open runs)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return runs
