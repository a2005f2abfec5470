"""One writer for an episode store, running in its own process.

A zarr commit costs tens of milliseconds here, about as long as a scripted Meta-World episode
takes to simulate. The writer groups what arrives within a quarter of a second into one
commit, so the cost is paid per batch, not per episode. :class:`EpisodeWriter` validates each
episode in the caller (so bad data raises at the call site and nothing is written) and hands
it over a pipe to a writer process that commits it with :meth:`EpisodeStore.add_episode`,
while the caller goes on simulating.

Crash semantics: an episode handed to the writer is committed even if the caller is then
killed (``kill -9`` included): the writer sees the pipe close, commits every complete message
it received and exits. Only the episode still being simulated (in flight) is lost. If the
writer itself dies mid-commit, the store's repair-on-open removes the uncommitted tail (the
batch in flight; never a committed episode).

Ownership: a writer created in a process that holds :func:`~robolearn.data.claim_store` on the
store (or given ``claim=``) hands the claim's token to its process, which may then append while
every other process is refused.

Wire format on the pipe (no pickle): ``u32 header length | JSON header | raw array bytes``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.data import locks
from robolearn.data.store import EpisodeStore, StoreClaim, StoreError, episode_meta

log = logging.getLogger(__name__)
_HEADER = struct.Struct("<I")


def encode_episode(steps: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    """Serialise validated arrays + metadata to one message (no pickle)."""
    arrays = []
    blobs = []
    for key, arr in steps.items():
        arr = np.ascontiguousarray(arr)
        arrays.append([key, arr.dtype.str, list(arr.shape)])
        blobs.append(arr.tobytes())
    header = json.dumps({"meta": dict(meta), "arrays": arrays}).encode()
    return b"".join([_HEADER.pack(len(header)), header, *blobs])


def decode_episode(msg: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`encode_episode`."""
    (n,) = _HEADER.unpack_from(msg, 0)
    header = json.loads(msg[_HEADER.size : _HEADER.size + n])
    offset = _HEADER.size + n
    steps = {}
    for key, dtype, shape in header["arrays"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape))
        steps[key] = np.frombuffer(msg, dtype=dt, count=count, offset=offset).reshape(shape)
        offset += count * dt.itemsize
    return steps, header["meta"]


def _writer_main(path: str, conn: Any, lock_timeout: float, claim_token: str | None = None,
                 max_batch: int = 64, linger_s: float = 0.25) -> None:
    # Ctrl-C reaches the whole process group; the writer must finish what it was handed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        store = EpisodeStore.open(path, mode="a", lock_timeout=lock_timeout,
                                  claim_token=claim_token)
    except Exception as e:  # report to the parent, which raises it
        conn.send_bytes(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        return
    conn.send_bytes(json.dumps({"ready": len(store)}).encode())
    try:
        while True:
            try:
                msg = conn.recv_bytes()
            except (EOFError, OSError):
                log.warning("episode writer: the collector went away; %d episodes committed", len(store))
                return
            if not msg:  # close sentinel
                conn.send_bytes(json.dumps({"closed": len(store)}).encode())
                return
            batch = [decode_episode(msg)]
            closing = False
            # Group commit: take what else arrives within `linger_s` (bounded), write it at once.
            # A commit costs ~40 ms of CPU whatever its size; lingering makes that a cost per
            # batch rather than per episode, which matters when the collector's actors want
            # every core. Crash semantics are unchanged: what was received is committed.
            deadline = time.monotonic() + linger_s
            while len(batch) < max_batch and conn.poll(max(0.0, deadline - time.monotonic())):
                try:
                    more = conn.recv_bytes()
                except (EOFError, OSError):
                    break
                if not more:
                    closing = True
                    break
                batch.append(decode_episode(more))
            try:  # validated by the sender; re-checked here, it costs little
                indices = store._commit_many(
                    [(store.validate_episode(steps), meta) for steps, meta in batch]
                )
            except Exception as e:
                conn.send_bytes(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
                return
            try:
                for index in indices:
                    conn.send_bytes(json.dumps({"committed": index}).encode())
                if closing:
                    conn.send_bytes(json.dumps({"closed": len(store)}).encode())
                    return
            except (BrokenPipeError, OSError):
                pass  # parent gone: keep committing what is already in the pipe
    finally:
        store.close()


class EpisodeWriter:
    """Commit episodes to a store from a background process (or in-process).

    Args:
        path: an existing store (create it first with :meth:`EpisodeStore.create`).
        background: run the writer in its own process (default); ``False`` commits inline.
        lock_timeout: seconds to wait for a previous writer (e.g. one still draining after its
            collector was killed) to release the store.
        wait_ready: wait until the writer process has opened the store (else its start-up
            overlaps the caller's first episodes, and an error shows at the first add/close).
        claim: the :class:`~robolearn.data.StoreClaim` that owns the store; by default the one
            this process holds on ``path``, if any. Its token lets the writer process append.

    Example:
        >>> with EpisodeWriter("demos.zarr") as writer:
        ...     writer.add_episode(steps, task="push-v3", source="expert", seed=7)
        >>> writer.committed
        1
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        background: bool = True,
        lock_timeout: float = 60.0,
        wait_ready: bool = True,
        claim: StoreClaim | None = None,
    ):
        self.path = Path(path)
        held = locks.held_here(self.path)
        token = claim.token if claim is not None else (held.token if held else None)
        self.background = background
        self._pending = 0
        self._closed = False
        self._ready = False
        if not background:
            self._store = EpisodeStore.open(self.path, mode="a", lock_timeout=lock_timeout,
                                            claim_token=token)
            self.committed = len(self._store)
            self.spec_store = self._store
            return
        self.spec_store = EpisodeStore.open(self.path, mode="r")
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(
            target=_writer_main,
            args=(str(self.path), child, lock_timeout, token),
            name="robolearn-episode-writer",
        )
        self._proc.start()
        child.close()
        self.committed = len(self.spec_store)
        if wait_ready:  # else the writer's start-up overlaps the caller's first episodes
            self._handle(self._recv())

    # -------------------------------------------------------------- API
    def add_episode(self, steps: Mapping[str, np.ndarray], **meta: Any) -> None:
        """Validate one episode here and hand it to the writer (see EpisodeStore.add_episode).

        ``meta`` takes the keywords of :meth:`EpisodeStore.add_episode`, ``complete`` included.
        """
        if self._closed:
            raise StoreError(f"the writer for {self.path} is closed")
        if not self.background:
            self._store.add_episode(steps, **meta)
            self.committed += 1
            return
        clean = self.spec_store.validate_episode(steps)
        values = episode_meta(**meta)
        self._drain(block=False)
        try:
            self._conn.send_bytes(encode_episode(clean, values))
        except (BrokenPipeError, OSError):
            self._raise_dead()
        self._pending += 1

    def close(self) -> int:
        """Wait until every episode handed over is committed; returns the store's episode count."""
        if self._closed:
            return self.committed
        self._closed = True
        if not self.background:
            self._store.close()
            return self.committed
        try:
            self._conn.send_bytes(b"")
            while True:
                reply = self._recv()
                if "closed" in reply:
                    self.committed = int(reply["closed"])
                    break
                self._handle(reply)
        finally:
            self._proc.join(timeout=60)
            self._conn.close()
        return self.committed

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- internals
    def _recv(self) -> dict[str, Any]:
        try:
            return json.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            self._raise_dead()
            raise AssertionError("unreachable") from None

    def _drain(self, block: bool) -> None:
        while (self._pending or not self._ready) and (block or self._conn.poll()):
            self._handle(self._recv())

    def _handle(self, reply: dict[str, Any]) -> None:
        if "error" in reply:
            self._closed = True
            self._proc.join(timeout=10)
            raise StoreError(f"the episode writer for {self.path} failed: {reply['error']}")
        if "ready" in reply:
            self._ready = True
            self.committed = int(reply["ready"])
            return
        self._pending -= 1
        self.committed = int(reply["committed"]) + 1

    def _raise_dead(self) -> None:
        self._closed = True
        self._proc.join(timeout=10)
        raise StoreError(
            f"the episode writer process for {self.path} died (exit code {self._proc.exitcode}); "
            f"episodes up to #{self.committed} are committed, re-open the store to continue"
        )
