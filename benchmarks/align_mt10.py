"""GRAPE-style alignment on MT10: TPO vs its baselines on the same rollouts and compute.

For each (preset, seed) the base checkpoint is aligned with ``robolearn align`` by every method —
``tpo`` (L_TPO + λ_sft·L_SFT + λ_bc·L_BC), ``sft`` (chosen-only fine-tuning, β = 0), ``dpo`` (the
TPO term alone) and ``bc`` (continued BC on the demos, same steps) — with the same rollout goals
(``seed``), the same number of iterations, groups, rollouts and optimiser steps. Every run is
evaluated on the same held-out goals (``eval_seed=1000``); the table reports per method the
mean over seeds of held-out success and of the preset's metrics, with a bootstrap 95% CI over
seeds, against the base checkpoint.

    python benchmarks/align_mt10.py --checkpoint runs/mt10_flow_matching --presets smooth \\
        --seeds 0 1 2 --methods tpo sft dpo bc --iterations 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

METRICS = ("success", "steps_to_success", "jerk", "chunk_jump", "contact_steps", "peak_force")


def run(args: argparse.Namespace, method: str, preset: str, seed: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "robolearn", "align", f"checkpoint={args.checkpoint}",
           f"suite={args.suite}", f"method={method}", f"preset={preset}", f"seed={seed}",
           f"out={out}", f"iterations={args.iterations}", f"groups_per_task={args.groups}",
           f"rollouts_per_group={args.rollouts}", f"steps_per_iteration={args.steps}",
           f"eval_episodes={args.eval_episodes}", f"run_dir={out}/cmd",
           *(["robust_eval=true"] if preset == "robust" else []), *args.extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    state = json.loads((out / "align.json").read_text())
    last = state["iterations"][-1]
    return {"base": state["base_eval"], "eval": last["eval"], "pairs": last["pairs"],
            "seconds": round(time.perf_counter() - t0, 1), "times": last.get("seconds", {})}


def ci(values: list[float], rng: np.random.Generator) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"),) * 2
    boots = [np.mean(rng.choice(values, len(values))) for _ in range(2000)]
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--suite", default="MT10")
    p.add_argument("--presets", nargs="+", default=["smooth"])
    p.add_argument("--methods", nargs="+", default=["tpo", "sft", "dpo", "bc"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--rollouts", type=int, default=8)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--workdir", default="runs/align_bench")
    p.add_argument("--out", default="benchmarks/results/align_mt10.md")
    p.add_argument("extra", nargs="*", help="further `robolearn align` overrides")
    args = p.parse_args()
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    results: dict = {}
    for preset in args.presets:
        for seed in args.seeds:
            for method in args.methods:
                out = Path(args.workdir) / f"{preset}-{method}-s{seed}"
                results[(preset, method, seed)] = run(args, method, preset, seed, out)
                print(preset, method, seed, results[(preset, method, seed)]["eval"]["nominal"]
                      ["success"], flush=True)
    rng = np.random.default_rng(0)
    lines = [f"# GRAPE-style alignment on {args.suite}: TPO vs baselines", "",
             f"- Date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
             f"- Machine: {machine()}",
             f"- Command: `python benchmarks/align_mt10.py {' '.join(sys.argv[1:])}`",
             f"- Load average {load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
             f"{(time.perf_counter() - t_start) / 60:.1f} min in all.", "",
             f"Per run: {args.iterations} iteration(s), {args.groups} groups per task × "
             f"{args.rollouts} rollouts, {args.steps} optimiser steps per iteration; held-out "
             f"evaluation on {args.eval_episodes} goals per task (seed 1000). Mean over seeds "
             f"{args.seeds} with a bootstrap 95% CI over seeds; `base` is the checkpoint "
             "aligned.", ""]
    for preset in args.presets:
        base = results[(preset, args.methods[0], args.seeds[0])]["base"]
        lines += [f"## preset `{preset}`", "",
                  "| method | " + " | ".join(METRICS) + " | pairs | s per run |",
                  "|---|" + "---|" * (len(METRICS) + 2)]
        lines.append("| base | " + " | ".join(_fmt(base["nominal"].get(m)) for m in METRICS)
                     + " | | |")
        for method in args.methods:
            rows = [results[(preset, method, s)] for s in args.seeds]
            cells = []
            for m in METRICS:
                vals = [r["eval"]["nominal"].get(m) for r in rows]
                vals = [v for v in vals if v is not None]
                if not vals:
                    cells.append("-")
                    continue
                lo, hi = ci(vals, rng)
                cells.append(f"{np.mean(vals):.3f} [{lo:.3f}, {hi:.3f}]")
            lines.append(f"| {method} | " + " | ".join(cells)
                         + f" | {np.mean([r['pairs'] for r in rows]):.0f} | "
                         f"{np.mean([r['seconds'] for r in rows]):.0f} |")
        gaps = [k for k in base if k != "nominal"]
        if gaps:
            lines += ["", "| method | " + " | ".join(f"success {g}" for g in gaps) + " |",
                      "|---|" + "---|" * len(gaps),
                      "| base | " + " | ".join(_fmt(base[g]["success"]) for g in gaps) + " |"]
            for method in args.methods:
                rows = [results[(preset, method, s)] for s in args.seeds]
                lines.append(f"| {method} | " + " | ".join(
                    _fmt(float(np.mean([r["eval"][g]["success"] for r in rows]))) for g in gaps)
                    + " |")
        lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
