"""Subprocess for the crash tests: appends deterministic episodes until a target count.

Usage: python -m tests.robolearn.data.crash_worker STORE TARGET {background|inline}
Episode i is make_episode(i) with seed=i, so any committed prefix can be checked exactly. Each
episode first burns ~40 ms of CPU, standing in for simulating it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from robolearn.data import EpisodeStore, EpisodeWriter
from tests.support import ACTION_DIM, OBS_DIM, make_episode


def main() -> None:
    path, target, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if not path.exists():
        EpisodeStore.create(path, OBS_DIM, ACTION_DIM).close()
    with EpisodeWriter(path, background=mode == "background", lock_timeout=30) as w:
        with EpisodeStore.open(path) as r:  # after the writer took the lock (and repaired)
            start = len(r)
        print(f"start {start}", flush=True)
        for i in range(start, target):
            busy_until = time.perf_counter() + 0.04
            while time.perf_counter() < busy_until:
                pass
            w.add_episode(make_episode(i, length=200), task=f"t{i % 3}", seed=i)


if __name__ == "__main__":
    main()
