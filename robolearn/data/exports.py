"""What every exporter does around its format: refuse a target it must not replace, build the
export under a temporary name next to it, publish it with a rename, and sweep the temporaries
that killed exports left behind (never a live one's: the name carries the writer's pid)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from robolearn.data import locks
from robolearn.data.store import StoreError


def check_dir_target(out: Path, overwrite: bool, ours: Callable[[Path], bool], what: str,
                     kind: str = "an export directory") -> None:
    """May an export directory be put at ``out``? Only when nothing is there, or when
    ``overwrite`` and ``ours(out)`` (``what`` names what ours would be, for the refusal)."""
    if not out.exists() and not out.is_symlink():
        if not out.parent.is_dir():
            raise FileNotFoundError(f"cannot export to {out}: no directory {out.parent}")
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=true to replace it")
    if not out.is_dir():
        raise StoreError(f"refusing to overwrite {out}: it is a file, not {kind}")
    if any(out.iterdir()) and not ours(out):
        raise StoreError(f"refusing to overwrite {out}: it is not {what}; "
                         "remove it yourself if that is intended")


def publish_dir(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``, replacing an earlier export there."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def partial_path(out: Path) -> Path:
    """The temporary name an export of ``out`` is built under (this process's)."""
    return out.with_name(f".{out.name}.partial-{os.getpid()}")


def remove_stale(out: Path) -> None:
    """Temporaries of ``out`` (files or directories) left by exports that were killed."""
    for kind in ("partial", "replaced"):
        for stale in out.parent.glob(f".{glob.escape(out.name)}.{kind}-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not locks.pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
