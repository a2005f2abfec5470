"""Export and import throughput (episodes/s) of every interop format on MT10 demos.

For each format (robomimic HDF5, LeRobot v3.0, diffusion_policy zarr v2): export the store's
complete episodes, import the result back into a new store (our export comes back exactly;
checked on the first round), ``--rounds`` times; the median time of each direction, in episodes
per second and MB written. Files go to a temporary directory on the same disk as the dataset
unless ``--workdir`` says otherwise.

    python benchmarks/interop_throughput.py --dataset data/mt10_demos.zarr

Reported (no target).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402


def size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def same(a_path: Path, b_path: Path) -> None:
    from robolearn.data import EpisodeStore

    with EpisodeStore.open(a_path) as a, EpisodeStore.open(b_path) as b:
        keep = a.complete_episodes()
        assert len(b) == len(keep) and a.tasks == b.tasks
        la, lb = a.load(), b.load()
        ends_a = a.episode_ends
        rows = np.concatenate([np.arange(ends_a[i] - a.episode_lengths[i], ends_a[i])
                               for i in keep])
        for k in ("obs", "action", "reward", "success"):
            np.testing.assert_array_equal(la[k][rows], lb[k])
        assert list(a.meta("seed")[keep]) == list(b.meta("seed"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="an episode store (MT10 demos)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", default="robomimic,lerobot,diffusion_policy")
    ap.add_argument("--workdir", default="", help="where the exports go (default: a temp dir)")
    args = ap.parse_args()

    from robolearn.data import EpisodeStore
    from robolearn.data.diffusion_policy import export_diffusion_policy, import_diffusion_policy
    from robolearn.data.lerobot import export_lerobot, import_lerobot
    from robolearn.data.robomimic import export_robomimic, import_robomimic

    fns = {
        "robomimic": (lambda s, o: export_robomimic(s, o), lambda s, o: import_robomimic(s, o),
                      "demos.hdf5"),
        "lerobot": (lambda s, o: export_lerobot(s, o), lambda s, o: import_lerobot(s, o),
                    "demos_lerobot"),
        "diffusion_policy": (lambda s, o: export_diffusion_policy(s, o),
                             lambda s, o: import_diffusion_policy(s, o), "demos_dp.zarr"),
    }
    src = Path(args.dataset)
    with EpisodeStore.open(src) as store:
        n_eps = len(store.complete_episodes())
        n_steps = store.num_steps
        tasks = len(store.tasks)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="interop-", dir=src.parent))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for fmt in args.formats.split(","):
            export, imp, name = fns[fmt]
            t_exp, t_imp = [], []
            for r in range(args.rounds):
                out, back = work / f"{r}-{name}", work / f"{r}-{fmt}-back.zarr"
                t0 = time.perf_counter()
                export(src, out)
                t_exp.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                imp(out, back)
                t_imp.append(time.perf_counter() - t0)
                if r == 0:
                    same(src, back)
                    mb = size_mb(out)
                print(f"{fmt} round {r}: export {t_exp[-1]:.2f} s, import {t_imp[-1]:.2f} s",
                      flush=True)
                shutil.rmtree(back, ignore_errors=True)
                if out.is_dir():
                    shutil.rmtree(out)
                else:
                    out.unlink()
            e, i = float(np.median(t_exp)), float(np.median(t_imp))
            rows.append((fmt, e, n_eps / e, i, n_eps / i, mb))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    table = ["| format | export (s) | export (episodes/s) | import (s) | import (episodes/s) "
             "| size (MB) |", "|---|---|---|---|---|---|"]
    table += [f"| {f} | {e:.2f} | **{er:.0f}** | {i:.2f} | **{ir:.0f}** | {mb:.1f} |"
              for f, e, er, i, ir, mb in rows]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    body = (f"Load average at the end (1/5/15 min): {load}. Dataset: {src} ({n_eps} complete "
            f"episodes of {tasks} tasks, {n_steps} steps). "
            f"Median of {args.rounds} rounds; each import is of that round's export and "
            "reproduces the store exactly (checked on round 0). Export includes reading the "
            "store; import includes writing and committing the new store.\n\n"
            + "\n".join(table))
    write_result("interop_throughput", "Export/import throughput per format (MT10 demos)", body,
                 "python benchmarks/interop_throughput.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
