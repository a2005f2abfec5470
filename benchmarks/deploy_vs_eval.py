"""Deployment through the twin (no reality gap) vs the evaluation suite, same goals.

For each task, `robolearn deploy` runs the checkpoint on `TwinRobot` through the safety layer
(as fast as possible, so the run is quick; pacing does not change a simulated outcome) with the
same goal seeds the evaluator uses; the success rates should agree within noise.

    python benchmarks/deploy_vs_eval.py --checkpoint runs/mt10_flow_matching --episodes 20
    python benchmarks/deploy_vs_eval.py --checkpoint runs/align_mt10 --name deploy_vs_eval_aligned
"""

from __future__ import annotations

import argparse
import atexit
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--tasks", default="reach-v3,push-v3,pick-place-v3,peg-insert-side-v3")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--name", default="deploy_vs_eval", help="results/<name>.md")
    args = ap.parse_args()
    from robolearn.cli import compose
    from robolearn.deploy import run_deploy
    from robolearn.evaluate import evaluate_agent
    from robolearn.runtime import load_policy
    from sim import get_suite

    tmp = Path(tempfile.mkdtemp(prefix="robolearn-bench-"))
    atexit.register(shutil.rmtree, tmp, True)
    rows = []
    for task in args.tasks.split(","):
        runner = load_policy(args.checkpoint, device="cpu")
        ev = evaluate_agent(runner, get_suite(f"MT1:{task}"), episodes_per_task=args.episodes,
                            seed=args.seed, num_envs=1, progress=False)
        deployed = {}
        for label, safety in (("default safety", []),
                              ("relaxed safety", ["safety.max_delta=2.0", "safety.workspace=false"])):
            cfg = compose("deploy", [f"checkpoint={args.checkpoint}", f"task={task}",
                                     f"episodes={args.episodes}", f"seed={args.seed}",
                                     "twin.realtime=false", "device=cpu",
                                     f"out={tmp}/{task}-{len(deployed)}.zarr", *safety])
            deployed[label] = run_deploy(cfg, tmp, progress=False)
        p_e = ev.mean_success
        p_d = deployed["default safety"]["success_rate"]
        p_r = deployed["relaxed safety"]["success_rate"]
        n = args.episodes
        se = math.sqrt(max(p_e * (1 - p_e), 1.0 / n) / n + max(p_d * (1 - p_d), 1.0 / n) / n)
        rows.append((task, p_e, p_d, se, deployed["default safety"]["interventions"], p_r))
        print(f"{task}: evaluate {p_e:.2f}, deploy {p_d:.2f}, relaxed {p_r:.2f}", flush=True)
    lines = ["| task | evaluate | deploy (twin, no gap) | difference | 2·SE | deploy, relaxed "
             "safety | interventions in deploy (default safety) |",
             "|---|---|---|---|---|---|---|"]
    for task, a, b, se, iv, r in rows:
        active = {k: v for k, v in iv.items() if v}
        lines.append(f"| {task} | {a:.2f} | {b:.2f} | {b - a:+.2f} | {2 * se:.2f} | {r:.2f} | "
                     f"{active or '-'} |")
    ma = sum(r[1] for r in rows) / len(rows)
    mb = sum(r[2] for r in rows) / len(rows)
    mr = sum(r[5] for r in rows) / len(rows)
    within = all(abs(r[2] - r[1]) <= 2 * r[3] for r in rows)
    body = (f"Checkpoint {args.checkpoint}; {args.episodes} episodes per task with goal seeds "
            f"episode_seed({args.seed}, task, i) on both sides; evaluation with num_envs=1 (same "
            "batch size as deployment). Flow-matching noise is drawn per runner, so the two "
            "sides are not bit-identical.\n\n" + "\n".join(lines) +
            f"\n\nMean: evaluate {ma:.3f}, deploy {mb:.3f} (relaxed safety: max_delta 2, no "
            f"workspace box: {mr:.3f}). Every task within 2·SE (default safety): "
            f"{'yes' if within else 'NO'}.")
    write_result(args.name, "Deployment through the twin vs the evaluation suite", body,
                 "python benchmarks/deploy_vs_eval.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
