"""File locks of the episode store: the per-process writer lock and the per-command owner lock.

Two locks, because one command runs two writers in turn: ``robolearn collect`` opens the store
in its main process to plan the missing work, then hands it to a background
:class:`~robolearn.data.writer.EpisodeWriter` process that commits. A single lock held for the
whole command would deadlock the two; a lock taken per process would let a second command
slip in between planning and writing (and write every episode twice).

- The **writer lock** (``<store>/.robolearn.lock``, ``flock``) is held by whichever process has
  the store open in append mode: one at a time.
- The **owner lock** (``<parent>/.<store name>.owner``, ``flock``) is held for a whole command
  by :func:`robolearn.data.claim_store`. It lives next to the store so it can be taken before
  the store exists (a claim may create it). It records the owner's pid, command line and a
  random token; a process that shows the token (the owner's own writer process) or runs in the
  owning process may open the store for appending, every other process is refused.

``flock`` locks belong to an open file and go away when the process dies (``kill -9``
included), so a crash never leaves a store locked; the files themselves are only hints.
This module raises nothing of its own: it reports who holds what, and the store turns that
into an error for people.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

WRITER_LOCK_NAME = ".robolearn.lock"
# A probe (owner_info) holds the owner lock for microseconds; a claimer that finds it busy keeps
# trying at least this long before it reports the store as claimed.
_PROBE_GRACE_S = 0.25
_POLL_S = 0.02

#: Owner locks held by this process: resolved store path -> OwnerLock.
_HELD: dict[str, OwnerLock] = {}


def owner_lock_path(store_path: str | os.PathLike) -> Path:
    """The owner lock file of a store: ``<parent>/.<name>.owner`` (of the resolved path)."""
    p = Path(store_path).resolve()
    return p.parent / f".{p.name}.owner"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


# ---------------------------------------------------------------------- writer lock
def try_writer_lock(store_path: Path, timeout: float) -> tuple[int | None, str]:
    """Take the writer lock of an existing store, waiting up to ``timeout`` seconds.

    Returns ``(fd, "")`` on success, ``(None, holder_pid)`` when another process holds it.
    """
    fd = os.open(store_path / WRITER_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                return None, holder
            time.sleep(0.05)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd, ""


def release_writer_lock(fd: int | None) -> None:
    """Release a lock taken with :func:`try_writer_lock` (``None``: nothing to do)."""
    if fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


# ---------------------------------------------------------------------- owner lock
class OwnerLock:
    """An owner lock held by this process (see :func:`acquire_owner`)."""

    def __init__(self, store_path: Path, lock_path: Path, fd: int, info: dict[str, Any]):
        self.store_path = store_path
        self.lock_path = lock_path
        self.info = info
        self._fd: int | None = fd

    @property
    def token(self) -> str:
        return str(self.info["token"])

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the store up. Idempotent."""
        if self._fd is None:
            return
        _HELD.pop(str(self.store_path), None)
        # Unlink while still holding the lock: a waiter that then locks the unlinked file sees
        # that the path no longer names its file and starts over (see acquire_owner).
        with contextlib.suppress(OSError):
            if os.stat(self.lock_path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.lock_path)
        release_writer_lock(self._fd)
        self._fd = None


def acquire_owner(store_path: str | os.PathLike, timeout: float) -> OwnerLock | dict[str, Any]:
    """Take the owner lock of ``store_path`` (which need not exist yet; its parent must).

    Waits up to ``timeout`` seconds (at least a short grace period, see ``_PROBE_GRACE_S``).
    Returns the :class:`OwnerLock`, or the holder's recorded info (``pid``, ``command``,
    ``since``, ...) when another process holds it. Re-entrant claims of one process are
    refused by the caller (the holder's info names this process).
    """
    store = Path(store_path).resolve()
    lock_path = owner_lock_path(store)
    deadline = time.monotonic() + max(_PROBE_GRACE_S, timeout)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_info(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                return holder
            time.sleep(_POLL_S)
            continue
        try:  # the holder may have unlinked the file between our open and our lock
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            release_writer_lock(fd)
            continue
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "token": secrets.token_hex(16),
            "command": " ".join(sys.argv)[:500],
            "since": time.time(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        lock = OwnerLock(store, lock_path, fd, info)
        _HELD[str(store)] = lock
        return lock


def held_here(store_path: str | os.PathLike) -> OwnerLock | None:
    """The owner lock of ``store_path`` if this process holds it."""
    lock = _HELD.get(str(Path(store_path).resolve()))
    return lock if lock is not None and lock.held else None


def owner_info(store_path: str | os.PathLike) -> dict[str, Any] | None:
    """Who owns ``store_path`` right now: the holder's info, or ``None`` when nobody does.

    Probes with a shared lock for a moment (never blocks, never creates the file).
    """
    lock_path = owner_lock_path(store_path)
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except (FileNotFoundError, PermissionError):  # no claim, or one this user cannot see
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_info(fd: int) -> dict[str, Any]:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode(errors="replace") or "{}")
    except ValueError:
        info = {}
    return info if isinstance(info, dict) else {}


def describe_owner(info: dict[str, Any]) -> str:
    """``pid 123 (robolearn collect ...) since 12:00:01`` for messages."""
    since = info.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
    command = f" ({info['command']})" if info.get("command") else ""
    return f"pid {info.get('pid', '?')}{command}{when}"
