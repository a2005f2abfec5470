"""Preference labels as data: a file format, validation against the episode store, a teacher.

A label says which of two episodes of one task is preferred: ``label`` = P(a ≻ b), one of
``1`` (a is better), ``0`` (b is better) or ``0.5`` (equally good). Episodes are named by their
index in the episode store the labels are about (optionally checked by their goal seeds, so
labels for a store that was since re-collected are caught), optionally restricted to the same
window ``[start, start + length)`` of both (segment labels).

Two file formats, read by :func:`read_labels` and validated against the store:

JSON (what robolearn writes; ``format`` and ``schema_version`` required)::

    {"format": "robolearn.preference_labels", "schema_version": 1,
     "task": "window-open-v3", "store": "pools/source.zarr",
     "provenance": {"source": "human", "note": "..."},
     "pairs": [{"a": 12, "b": 40, "label": 1}, {"a": 3, "b": 7, "label": 0.5,
                "seed_a": 6123, "seed_b": 6127, "start": 0, "length": 50}]}

CSV (a header row; ``episode_a,episode_b,label`` required; ``task``, ``seed_a``, ``seed_b``,
``start``, ``length`` optional)::

    episode_a,episode_b,label
    12,40,1
    3,7,0.5

Every refusal names the file, the row, the value and what was expected: an unknown episode,
an episode of another task, a label outside {0, 0.5, 1}, a pair of an episode with itself, a
seed that does not match the store, a window outside an episode. :func:`write_labels` stores a
label set atomically with its digest (sha256 of the pairs), which the PEARL run records, so a
run and its labels can always be matched.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.errors import RobolearnError

LABELS_FORMAT = "robolearn.preference_labels"
LABELS_SCHEMA = 1
LABEL_VALUES = (0.0, 0.5, 1.0)
CSV_REQUIRED = ("episode_a", "episode_b", "label")
CSV_OPTIONAL = ("task", "seed_a", "seed_b", "start", "length")


class LabelError(RobolearnError, ValueError):
    """A label file that cannot be used with the store it names (exit code 1)."""


@dataclass
class LabelSet:
    """P labelled pairs of one task's episodes (arrays (P,), store episode indices).

    Attributes:
        task: The episodes' task.
        a, b: Store indices of each pair's two episodes.
        label: P(a ≻ b) in {0, 0.5, 1} (a file's) or [0, 1] (soft teacher labels).
        start, length: The window of both episodes the label is about (length 0: whole).
        store: The store the indices refer to (informational).
        provenance: Where the labels came from (``{"source": "teacher", ...}`` or ``human``).
        confidence: Per-pair weights (transferred labels), else None.
    """

    task: str
    a: np.ndarray
    b: np.ndarray
    label: np.ndarray
    start: np.ndarray | None = None
    length: np.ndarray | None = None
    store: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.a = np.asarray(self.a, np.int64).reshape(-1)
        self.b = np.asarray(self.b, np.int64).reshape(-1)
        self.label = np.asarray(self.label, np.float64).reshape(-1)
        n = len(self.a)
        if self.start is None:
            self.start = np.zeros(n, np.int64)
        if self.length is None:
            self.length = np.zeros(n, np.int64)
        self.start = np.asarray(self.start, np.int64).reshape(-1)
        self.length = np.asarray(self.length, np.int64).reshape(-1)
        shapes = {len(x) for x in (self.a, self.b, self.label, self.start, self.length)}
        if self.confidence is not None:
            self.confidence = np.asarray(self.confidence, np.float64).reshape(-1)
            shapes.add(len(self.confidence))
        if len(shapes) != 1:
            raise ValueError(f"LabelSet: Got arrays of lengths {sorted(shapes)}, expected (P,) "
                             "each")

    def __len__(self) -> int:
        return len(self.a)

    @property
    def segmented(self) -> bool:
        """Whether any label is about a window rather than whole episodes."""
        return bool((self.length > 0).any())

    def subset(self, keep: np.ndarray) -> LabelSet:
        """The pairs where ``keep`` (bool (P,) or indices) holds."""
        c = None if self.confidence is None else self.confidence[keep]
        return LabelSet(self.task, self.a[keep], self.b[keep], self.label[keep],
                        self.start[keep], self.length[keep], self.store, dict(self.provenance), c)

    def rows(self) -> list[dict[str, Any]]:
        """The pairs as JSON rows (``a``, ``b``, ``label`` [, ``start``, ``length``,
        ``confidence``])."""
        out = []
        for k in range(len(self)):
            row: dict[str, Any] = {"a": int(self.a[k]), "b": int(self.b[k]),
                                   "label": float(self.label[k])}
            if self.length[k] > 0:
                row |= {"start": int(self.start[k]), "length": int(self.length[k])}
            if self.confidence is not None:
                row["confidence"] = round(float(self.confidence[k]), 6)
            out.append(row)
        return out

    def digest(self) -> str:
        """sha256 of the task and the pairs: the label set's identity."""
        text = json.dumps({"task": self.task, "pairs": self.rows()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def write_labels(path: str | Path, labels: LabelSet) -> str:
    """Store ``labels`` as a JSON label file (atomically); returns its digest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = labels.digest()
    doc = {"format": LABELS_FORMAT, "schema_version": LABELS_SCHEMA, "task": labels.task,
           "store": labels.store, "digest": digest, "provenance": labels.provenance,
           "pairs": labels.rows()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    return digest


def read_labels(path: str | Path, store: Any, task: str) -> LabelSet:
    """Read a CSV or JSON label file and validate it against ``store`` (an open
    :class:`~robolearn.data.EpisodeStore`) and ``task``.

    Raises:
        LabelError: the file is missing or malformed, or names an unknown episode, an episode
            of another task, a label outside {0, 0.5, 1}, a pair of an episode with itself, a
            mismatching seed or a window outside an episode.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"labels={path}: no such file; give a CSV or JSON label file (format in "
                         "`robolearn.align.labels`) or labels=teacher")
    if path.suffix == ".json":
        rows, file_task, provenance = _read_json(path)
    elif path.suffix == ".csv":
        rows, file_task, provenance = _read_csv(path), None, {"source": "human"}
    else:
        raise LabelError(f"labels={path}: expected a .csv or .json file")
    if not rows:
        raise LabelError(f"{path}: no labelled pairs")
    if file_task is not None and file_task != task:
        raise LabelError(f"{path}: labels of task {file_task!r}, but they are used as labels "
                         f"of {task!r} (the source task); give that task's labels")
    n = len(store)
    names = store.meta("task")
    seeds = store.meta("seed")
    lengths = store.episode_lengths
    complete = set(store.complete_episodes().tolist())
    a, b, y, start, length = [], [], [], [], []
    for row in rows:
        where = f"{path} {row['where']}"
        ia, ib = row["a"], row["b"]
        for key, i in (("a", ia), ("b", ib)):
            if not 0 <= i < n:
                raise LabelError(f"{where}: episode_{key}={i} is not an episode of {store.path} "
                                 f"(it has {n} episodes, 0..{n - 1}); labels name episodes by "
                                 "their index in the store")
            if str(names[i]) != task:
                raise LabelError(f"{where}: episode_{key}={i} is an episode of "
                                 f"{str(names[i])!r}, not of the source task {task!r}")
            if i not in complete:
                raise LabelError(f"{where}: episode_{key}={i} is incomplete (a faulted "
                                 "recording); label complete episodes only")
            want = row.get(f"seed_{key}")
            if want is not None and int(seeds[i]) != want:
                raise LabelError(f"{where}: seed_{key}={want}, but episode {i} of {store.path} "
                                 f"has seed {int(seeds[i])}: the labels are for another "
                                 "collection of this store")
            if row["length"] and row["start"] + row["length"] > int(lengths[i]):
                raise LabelError(f"{where}: window start={row['start']} length={row['length']} "
                                 f"ends after episode {i} ({int(lengths[i])} steps)")
        if ia == ib:
            raise LabelError(f"{where}: a pair of episode {ia} with itself")
        if row["label"] not in LABEL_VALUES:
            raise LabelError(f"{where}: label={row['raw_label']!r}, expected one of 0 (b is "
                             "preferred), 0.5 (equal) or 1 (a is preferred)")
        a.append(ia)
        b.append(ib)
        y.append(row["label"])
        start.append(row["start"])
        length.append(row["length"])
    provenance = {**provenance, "file": str(path)}
    return LabelSet(task, np.array(a), np.array(b), np.array(y), np.array(start),
                    np.array(length), str(store.path), provenance)


def _int(value: Any, where: str, key: str, *, low: int = 0) -> int:
    if isinstance(value, bool):
        raise LabelError(f"{where}: {key}={value!r}, expected an integer")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise LabelError(f"{where}: {key}={value!r}, expected an integer") from None
    if not np.isfinite(f) or f != int(f) or f < low:
        raise LabelError(f"{where}: {key}={value!r}, expected an integer >= {low}")
    return int(f)


def _label(value: Any, where: str) -> tuple[float, Any]:
    try:
        f = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        f = float("nan")
    return f, value


def _row(raw: dict[str, Any], where: str, keys: tuple[str, str, str]) -> dict[str, Any]:
    ka, kb, ky = keys
    for k in keys:
        if raw.get(k) in (None, ""):
            raise LabelError(f"{where}: missing {k}")
    y, raw_y = _label(raw[ky], where)
    row = {"where": where, "a": _int(raw[ka], where, ka), "b": _int(raw[kb], where, kb),
           "label": y, "raw_label": raw_y, "start": 0, "length": 0}
    for key in ("seed_a", "seed_b"):
        if raw.get(key) not in (None, ""):
            row[key] = _int(raw[key], where, key)
    if raw.get("length") not in (None, "", 0, "0"):
        row["length"] = _int(raw["length"], where, "length", low=1)
        row["start"] = _int(raw.get("start") or 0, where, "start")
    return row


def _read_json(path: Path) -> tuple[list[dict[str, Any]], str | None, dict[str, Any]]:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LabelError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != LABELS_FORMAT:
        raise LabelError(f"{path}: not a label file (expected an object with \"format\": "
                         f"\"{LABELS_FORMAT}\")")
    if doc.get("schema_version") != LABELS_SCHEMA:
        raise LabelError(f"{path}: schema_version={doc.get('schema_version')!r}, this robolearn "
                         f"reads {LABELS_SCHEMA}" + ("; upgrade robolearn" if isinstance(
                             doc.get("schema_version"), int) and doc["schema_version"] >
                             LABELS_SCHEMA else ""))
    pairs = doc.get("pairs")
    if not isinstance(pairs, list):
        raise LabelError(f"{path}: \"pairs\" must be a list of {{\"a\", \"b\", \"label\"}}")
    rows = []
    for k, raw in enumerate(pairs):
        where = f"pairs[{k}]"
        if not isinstance(raw, dict):
            raise LabelError(f"{path} {where}: expected an object with a, b, label")
        rows.append(_row(raw, where, ("a", "b", "label")))
    task = doc.get("task")
    provenance = doc.get("provenance") if isinstance(doc.get("provenance"), dict) else {}
    return rows, str(task) if task is not None else None, dict(provenance)


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [h for h in CSV_REQUIRED if h not in header]
        if missing:
            raise LabelError(f"{path}: header {header} lacks {missing}; expected columns "
                             f"{', '.join(CSV_REQUIRED)} (optional: {', '.join(CSV_OPTIONAL)})")
        stray = [h for h in header if h not in CSV_REQUIRED + CSV_OPTIONAL]
        if stray:
            raise LabelError(f"{path}: unknown column(s) {stray}; the columns are "
                             f"{', '.join(CSV_REQUIRED + CSV_OPTIONAL)}")
        rows = []
        tasks = set()
        for k, raw in enumerate(reader):
            raw = {str(key).strip(): (v.strip() if isinstance(v, str) else v)
                   for key, v in raw.items()}
            where = f"row {k + 2}"  # the header is row 1
            rows.append(_row(raw, where, CSV_REQUIRED))
            if raw.get("task"):
                tasks.add(raw["task"])
                rows[-1]["task"] = raw["task"]
    if len(tasks) > 1:
        raise LabelError(f"{path}: labels of several tasks {sorted(tasks)}; one file holds one "
                         "task's labels")
    return rows


def teacher_label_set(returns: np.ndarray, episodes: np.ndarray, task: str, cfg: Any, *,
                      rewards: list[np.ndarray] | None = None, store: str = "",
                      seed: int | None = None) -> LabelSet:
    """Scripted-teacher labels on ``cfg.pairs`` random pairs of a pool
    (:func:`policies.alignment.teacher_labels`: Bradley–Terry on the true returns).

    Args:
        returns: (n,) true returns of the pool's trajectories.
        episodes: (n,) their store indices (what the label set names).
        task: The pool's task.
        cfg: A :class:`~robolearn.align.pearl_config.TeacherConfig`.
        rewards: n per-step reward arrays; needed for segment labels (``cfg.segment > 0``).
        store: The store path (recorded).
        seed: Overrides ``cfg.seed``.
    """
    import dataclasses

    from policies.alignment import sample_pairs, teacher_labels

    seed = cfg.seed if seed is None else seed
    n = len(returns)
    ia, ib = sample_pairs(n, cfg.pairs, seed=seed)
    ra, rb = np.asarray(returns, np.float64)[ia], np.asarray(returns, np.float64)[ib]
    start = np.zeros(len(ia), np.int64)
    length = np.zeros(len(ia), np.int64)
    if cfg.segment > 0:
        if rewards is None:
            raise ValueError("teacher.segment > 0 needs the per-step rewards")
        rng = np.random.default_rng([seed, 1])
        shortest = np.minimum([len(rewards[i]) for i in ia], [len(rewards[i]) for i in ib])
        length = np.minimum(cfg.segment, shortest).astype(np.int64)
        start = (rng.random(len(ia)) * (shortest - length + 1)).astype(np.int64)
        ra = np.array([rewards[i][s:s + m].sum() for i, s, m in zip(ia, start, length)])
        rb = np.array([rewards[i][s:s + m].sum() for i, s, m in zip(ib, start, length)])
    y = teacher_labels(ra, rb, mode=cfg.mode, temperature=cfg.temperature,
                       flip_rate=cfg.flip_rate, equal_margin=cfg.equal_margin, seed=seed)
    eps = np.asarray(episodes, np.int64)
    return LabelSet(task, eps[ia], eps[ib], y, start, length, store,
                    {"source": "teacher", **dataclasses.asdict(cfg), "seed": seed})
