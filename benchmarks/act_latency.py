"""Per-step cost of `load_policy(...).act` with action-chunk execution, on 1 CPU thread.

Runs a policy closed-loop style (one observation per call, one action back) and reports the
mean and p50/p99 per `act` call; every `action_exec_horizon`-th call predicts a new chunk.
Also the chunk latency of flow matching at K=1..10 through the same runner.

    python benchmarks/act_latency.py --checkpoint runs/mt10_flow_matching

Target (issue #3): mean per-step cost of act <= 1 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--ks", default="5,10",
                    help="flow-matching K values to measure act with (the checkpoint's K is ignored)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import robolearn

    runner = robolearn.load_policy(args.checkpoint, device="cpu")
    task = runner.tasks[0]
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(args.steps, runner.obs_dim)).astype(np.float32)
    rows, means = [], []
    has_k = hasattr(runner.config, "num_inference_steps")
    for k in ([int(x) for x in args.ks.split(",")] if has_k else [None]):
        if k is not None:
            runner.policy.config.num_inference_steps = k
        runner.reset()
        for i in range(50):
            runner.act(obs[i], task=task)
        runner.reset()
        times = np.empty(args.steps)
        for i in range(args.steps):
            t0 = time.perf_counter()
            runner.act(obs[i], task=task)
            times[i] = time.perf_counter() - t0
        ms = times * 1e3
        means.append(ms.mean())
        rows.append(f"| act (K={k if k is not None else '-'}, exec {runner.exec_horizon}/"
                    f"{runner.config.action_horizon}) | {ms.mean():.3f} | "
                    f"{np.percentile(ms, 50):.3f} | {np.percentile(ms, 99):.3f} |")
    chunk_rows = []
    if hasattr(runner.policy, "config") and hasattr(runner.config, "num_inference_steps"):
        hist = obs[:runner.obs_horizon][None]
        for k in (1, 2, 5, 10):
            runner.policy.config.num_inference_steps = k
            for _ in range(5):
                runner.predict_chunk(hist, task)
            t = []
            for _ in range(100):
                t0 = time.perf_counter()
                runner.predict_chunk(hist, task)
                t.append(time.perf_counter() - t0)
            chunk_rows.append(f"| {k} | {1e3 * np.median(t):.3f} | {1e3 * np.percentile(t, 99):.3f} |")
    load = os.getloadavg()
    body = (f"Checkpoint {args.checkpoint} (tasks: {len(runner.tasks)}), torch threads 1, batch 1, "
            f"{args.steps} consecutive act calls; load average {load[0]:.2f}.\n\n"
            "| call | mean ms | p50 ms | p99 ms |\n|---|---|---|---|\n" + "\n".join(rows) +
            "\n\nChunk prediction through the runner:\n\n| K (Euler steps) | median ms | p99 ms |\n"
            "|---|---|---|\n" + "\n".join(chunk_rows) +
            "\n\nTarget: mean act <= 1 ms — " + ", ".join(
                f"{r.split('|')[1].strip()}: {'met' if m <= 1.0 else 'NOT met'}"
                for r, m in zip(rows, means)) + ".")
    write_result("act_latency", "Per-step cost of act with chunk execution", body,
                 "python benchmarks/act_latency.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
