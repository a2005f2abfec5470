"""Sampler throughput: SequenceSampler vs indexing pre-cut windows held in memory.

The reference holds every (obs history, action chunk) window pre-materialised as numpy arrays
and indexes them with the same random indices: the fastest a sampler could be. Both sides
produce the same batches (checked), 256 windows each, action horizon 16, obs horizon 2.

    python benchmarks/sampler_throughput.py --dataset data/mt10_demos.zarr

Without --dataset a synthetic store of MT10 demo size (500 episodes, ~85 steps) is made.
Target (issue #2): ratio >= 0.8.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402


def synthetic_store(path: Path, episodes: int = 500) -> Path:
    from robolearn.data import EpisodeStore

    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, 39, 4) as s:
        batch = []
        for i in range(episodes):
            T = int(rng.integers(50, 120))
            batch.append(({"obs": rng.normal(size=(T, 39)).astype(np.float32),
                           "action": rng.uniform(-1, 1, (T, 4)).astype(np.float32),
                           "reward": np.zeros(T, np.float32), "success": np.zeros(T, bool)},
                          f"task-{i % 10}"))
        for steps, task in batch:
            s.add_episode(steps, task=task)
    return path


def timed(fn, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--obs-horizon", type=int, default=2)
    ap.add_argument("--action-horizon", type=int, default=16)
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from robolearn.data import EpisodeStore, SequenceSampler

    tmp = tempfile.mkdtemp(prefix="robolearn-bench-")
    atexit.register(shutil.rmtree, tmp, True)
    path = Path(args.dataset) if args.dataset else synthetic_store(Path(tmp) / "synthetic.zarr")
    store = EpisodeStore.open(path)
    t0 = time.perf_counter()
    sampler = SequenceSampler(store, args.obs_horizon, args.action_horizon)
    build_s = time.perf_counter() - t0
    full = sampler.window(np.arange(len(sampler)))  # the in-memory reference copy
    ref_obs, ref_act, ref_task = full["obs"], full["action"], full["task"]
    B = args.batch_size

    rng_ours, rng_ref = np.random.default_rng(1), np.random.default_rng(1)

    def ours(rng=None):
        return sampler.sample(B, rng or rng_ours)

    def reference(rng=None):
        idx = (rng or rng_ref).integers(0, len(ref_obs), size=B)
        return {"obs": ref_obs[idx], "action": ref_act[idx], "task": ref_task[idx]}

    a, b = ours(np.random.default_rng(5)), reference(np.random.default_rng(5))
    for k in ("obs", "action", "task"):
        np.testing.assert_array_equal(a[k], b[k])
    rows = []
    for r in range(args.rounds):
        ref_rate = timed(reference, args.batches)
        our_rate = timed(ours, args.batches)
        rows.append((r, ref_rate, our_rate))
        print(f"round {r}: reference {ref_rate:.0f} batches/s, sampler {our_rate:.0f} batches/s",
              flush=True)
    ref_m = float(np.median([x[1] for x in rows]))
    our_m = float(np.median([x[2] for x in rows]))
    table = ["| round | in-memory windows (batches/s) | SequenceSampler (batches/s) | ratio |",
             "|---|---|---|---|"]
    table += [f"| {r} | {a:.0f} | {b:.0f} | {b / a:.3f} |" for r, a, b in rows]
    table.append(f"| median | {ref_m:.0f} | {our_m:.0f} | **{our_m / ref_m:.3f}** |")
    mem_ref = (ref_obs.nbytes + ref_act.nbytes) / 2**20
    mem_ours = sampler.nbytes / 2**20
    body = (f"Dataset: {path} ({len(store)} episodes, {store.num_steps} steps). Batch {B}, obs "
            f"horizon {args.obs_horizon}, action horizon {args.action_horizon}. Building the "
            f"sampler (one bulk read + index table) took {build_s:.2f} s. Memory: sampler "
            f"{mem_ours:.1f} MiB vs {mem_ref:.1f} MiB for pre-cut windows.\n\n" + "\n".join(table)
            + f"\n\nTarget: ratio >= 0.8 — {'met' if our_m / ref_m >= 0.8 else 'NOT met'}.")
    write_result("sampler_throughput", "Sampler throughput: SequenceSampler vs in-memory windows",
                 body, "python benchmarks/sampler_throughput.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
