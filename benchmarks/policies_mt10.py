"""MT10 success: flow matching vs regression vs DDPM-100, same demos, same trainer, same budget.

Each policy is trained by `robolearn train` with the same options (steps, batch, lr, EMA) on
the same episode store, then evaluated by `robolearn evaluate` on the same held-out goals.

    python benchmarks/policies_mt10.py --dataset data/mt10_demos.zarr --steps 6000 --episodes 50

Writes benchmarks/results/policies_mt10.md (the robomimic BC-RNN row comes from
benchmarks/bc_rnn_mt10.py, which needs its own venv).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="data/mt10_demos.zarr")
    ap.add_argument("--policies", default="flow_matching,regression,diffusion")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1000, help="evaluation goal seed")
    ap.add_argument("--runs", default="runs/bench_mt10")
    args = ap.parse_args()
    from robolearn.cli import compose
    from robolearn.evaluate import run_evaluate
    from robolearn.train import train

    results = {}
    for name in args.policies.split(","):
        out = Path(args.runs) / name
        tc = compose("train", [f"dataset={args.dataset}", f"policy={name}", f"out={out}",
                               f"steps={args.steps}", "warmup_steps=300", "val_every=500",
                               "checkpoint_every=2000", "progress=false", "tensorboard=false"])
        if (out / "checkpoint").exists():
            tc.resume = True
        t0 = time.perf_counter()
        trained = train(tc)
        train_s = time.perf_counter() - t0
        ec = compose("evaluate", [f"checkpoint={out}", "suite=MT10",
                                  f"episodes_per_task={args.episodes}", f"seed={args.seed}"])
        t0 = time.perf_counter()
        report = run_evaluate(ec, out / "eval")
        eval_s = time.perf_counter() - t0
        results[name] = (report, trained, train_s, eval_s)
        print(f"{name}: mean success {report['mean_success']:.3f}", flush=True)

    tasks = next(iter(results.values()))[0]["tasks"]
    names = list(results)
    lines = ["| task | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for task in tasks:
        cells = []
        for n in names:
            runs = results[n][0]["runs"]
            cells.append(f"{runs[0]['success_by_task'][task]:.2f}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{results[n][0]['mean_success']:.3f}**"
                                             for n in names) + " |")
    lines.append("| train time (s) | " + " | ".join(f"{results[n][2]:.0f}" for n in names) + " |")
    lines.append("| steps/s (last run) | " + " | ".join(f"{results[n][1].steps_per_s:.1f}"
                                                      for n in names) + " |")
    lines.append("| eval time (s) | " + " | ".join(f"{results[n][3]:.0f}" for n in names) + " |")
    load = os.getloadavg()
    body = (f"Dataset {args.dataset}; each policy trained {args.steps} steps (batch 256, lr 1e-3 "
            f"cosine, EMA 0.999, 3×512 residual MLP, To=2, Ta=16, 8 executed per chunk) and "
            f"evaluated on {args.episodes} held-out goals per task (seed {args.seed}). Load "
            f"average at the end {load[0]:.2f}/{load[1]:.2f}.\n\n" + "\n".join(lines))
    write_result("policies_mt10", "MT10: flow matching vs regression vs DDPM-100", body,
                 "python benchmarks/policies_mt10.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
