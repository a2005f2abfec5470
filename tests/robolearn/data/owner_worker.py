"""Subprocess for the ownership tests: one command that claims, plans, or creates a store.

Usage:
    python -m tests.robolearn.data.owner_worker hold STORE          claim, print, wait for stdin
    python -m tests.robolearn.data.owner_worker append STORE        open in append mode once
    python -m tests.robolearn.data.owner_worker collect STORE N T   claim (wait T s), top up to N
    python -m tests.robolearn.data.owner_worker create STORE GO     create once GO exists

Each prints one line: ``ok ...`` or ``refused <message>``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from robolearn.data import EpisodeStore, EpisodeWriter, StoreError, claim_store
from tests.support import ACTION_DIM, OBS_DIM, make_episode

SPEC = {"obs_dim": OBS_DIM, "action_dim": ACTION_DIM}


def main() -> None:
    what, path = sys.argv[1], Path(sys.argv[2])
    try:
        if what == "hold":
            with claim_store(path, create=SPEC):
                print("ok claimed", flush=True)
                sys.stdin.read()
        elif what == "append":
            EpisodeStore.open(path, mode="a").close()
            print("ok appended", flush=True)
        elif what == "collect":
            target, timeout = int(sys.argv[3]), float(sys.argv[4])
            with claim_store(path, create=SPEC, timeout=timeout) as claim:
                with claim.open("a") as store:  # plan from what is committed
                    start = len(store)
                time.sleep(0.3)  # planning takes a while: another command must not slip in
                with EpisodeWriter(path, claim=claim) as writer:  # its process, by the claim
                    for i in range(start, target):
                        writer.add_episode(make_episode(i, length=10), task="t", seed=i)
            print(f"ok collected {target - start}", flush=True)
        elif what == "create":
            go = Path(sys.argv[3])
            while not go.exists():
                time.sleep(0.001)
            EpisodeStore.create(path, OBS_DIM, ACTION_DIM).close()
            print("ok created", flush=True)
    except (StoreError, FileExistsError) as e:
        print(f"refused {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
