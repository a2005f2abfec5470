"""Training throughput: the trainer's real sampler vs the same loop on in-memory tensors.

Both loops run the same model, optimiser and EMA; the reference draws its batches by indexing
windows pre-cut into torch tensors (no sampler, no numpy→torch copy). Rounds alternate.

    python benchmarks/train_throughput.py --dataset data/mt10_demos.zarr

Target (issue #3): ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="data/mt10_demos.zarr")
    ap.add_argument("--policy", default="flow_matching")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    from robolearn.cli import compose
    from robolearn.devices import to_device
    from robolearn.train import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="robolearn-bench-")
    atexit.register(shutil.rmtree, tmp, True)
    cfg = compose("train", [f"dataset={args.dataset}", f"policy={args.policy}", f"out={tmp}",
                            "tensorboard=false", "progress=false"])
    t = Trainer(cfg, Path(cfg.out))
    B = cfg.batch_size
    full = t.sampler.window(np.arange(len(t.sampler)))
    mem = {k: torch.from_numpy(np.ascontiguousarray(full[k])) for k in ("obs", "action", "task")}
    gen = torch.Generator().manual_seed(0)

    def step(batch):
        loss, _ = t.policy.compute_loss(batch)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(t.policy.parameters(), cfg.grad_clip)
        t.optimizer.step()
        t.scheduler.step()
        t.ema.update()

    def real():
        step(to_device(t.sampler.sample(B, t.rng), t.device))

    def reference():
        idx = torch.randint(0, len(mem["obs"]), (B,), generator=gen)
        step({k: v[idx] for k, v in mem.items()})

    def rate(fn):
        for _ in range(5):
            fn()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        return args.steps / (time.perf_counter() - t0)

    rows = []
    for r in range(args.rounds):
        ref, ours = rate(reference), rate(real)
        rows.append((r, ref, ours))
        print(f"round {r}: in-memory {ref:.1f} steps/s, sampler {ours:.1f} steps/s", flush=True)
    ref_m = float(np.median([x[1] for x in rows]))
    our_m = float(np.median([x[2] for x in rows]))
    table = ["| round | in-memory tensors (steps/s) | trainer's sampler (steps/s) | ratio |",
             "|---|---|---|---|"]
    table += [f"| {r} | {a:.1f} | {b:.1f} | {b / a:.3f} |" for r, a, b in rows]
    table.append(f"| median | {ref_m:.1f} | {our_m:.1f} | **{our_m / ref_m:.3f}** |")
    load = os.getloadavg()
    body = (f"Policy {args.policy} (default config: 3×512 residual MLP), batch {B}, "
            f"{args.steps} optimiser steps per measurement, torch threads "
            f"{torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
            f"load average at the end {load[0]:.2f}/{load[1]:.2f}.\n\n" + "\n".join(table) +
            f"\n\nTarget: ratio >= 0.9 — {'met' if our_m / ref_m >= 0.9 else 'NOT met'}.")
    write_result("train_throughput", "Training throughput: real sampler vs in-memory tensors",
                 body, "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
