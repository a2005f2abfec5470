"""End to end: the main job's collect and evaluate, and MT50 evaluation, fast step vs Meta-World's.

Issue #17's end-to-end figure. Each job is one ``robolearn`` command run twice, identical but
for ``fast=true`` / ``fast=false``; the two sides alternate (fast, Meta-World, fast, ...) over
``--rounds`` rounds so machine drift hits both alike, and each side counts with its fastest
round. The times are the commands' own (``summary.json``: the collection or rollout seconds,
Ray start-up excluded), plus the whole command's wall time (start-up, model loading and
writing included). The fast step is bit-identical, so both sides must report the same
success per task and the same env-step count: the script checks that and says so.

    python benchmarks/sim_step_e2e.py --mt10 runs/mt10_flow_matching --mt50 runs/mt50_flow_matching
    python benchmarks/sim_step_e2e.py --mt10 runs/mt10_flow_matching --jobs evaluate_mt10 --no-write

Jobs: ``collect_mt10`` (the main job's collection: 50 expert demos per MT10 task into a fresh
store), ``evaluate_mt10`` (the main job's evaluation: 50 held-out goals per task),
``evaluate_mt50`` (MT50's: 20 held-out goals per task, the MT50 preset's checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402


def job_args(job: str, args: argparse.Namespace, tmp: Path) -> list[str]:
    if job == "collect_mt10":
        return ["collect", "suite=MT10", "episodes_per_task=50", "seed=0",
                f"out={tmp / 'demos.zarr'}", "overwrite=true"]
    if job == "evaluate_mt10":
        return ["evaluate", f"checkpoint={args.mt10}", "suite=MT10", "episodes_per_task=50",
                "seed=1000", f"out={tmp / 'report'}"]
    if job == "evaluate_mt50":
        return ["evaluate", f"checkpoint={args.mt50}", "suite=MT50", "episodes_per_task=20",
                "seed=1000", f"out={tmp / 'report'}"]
    raise ValueError(f"unknown job {job!r}")


def run_once(job: str, fast: bool, args: argparse.Namespace) -> dict:
    """One command; returns its own seconds, env steps, wall time and success by task."""
    tmp = Path(tempfile.mkdtemp(prefix=f"e2e_{job}_"))
    try:
        run_dir = tmp / "run"
        cmd = [sys.executable, "-m", "robolearn", *job_args(job, args, tmp),
               f"fast={'true' if fast else 'false'}", f"run_dir={run_dir}"]
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n"
                             f"{proc.stderr[-3000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
        if job.startswith("collect"):
            return dict(seconds=summary["seconds"], env_steps=summary["env_steps"], wall=wall,
                        success=None, cmd=cmd)
        run = summary["runs"][0]
        return dict(seconds=run["seconds"], env_steps=run["env_steps"], wall=wall,
                    success=summary["success_by_task"], cmd=cmd)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mt10", default="runs/mt10_flow_matching", help="the main job's checkpoint")
    ap.add_argument("--mt50", default="runs/mt50_flow_matching",
                    help="the MT50 preset's checkpoint (robolearn pipeline --preset mt50)")
    ap.add_argument("--jobs", nargs="+", default=["collect_mt10", "evaluate_mt10", "evaluate_mt50"],
                    choices=["collect_mt10", "evaluate_mt10", "evaluate_mt50"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print, do not write results/")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    rows, checks = [], []
    for job in args.jobs:
        results: dict[bool, list[dict]] = {True: [], False: []}
        for r in range(args.rounds):
            for fast in (True, False) if r % 2 == 0 else (False, True):
                res = run_once(job, fast, args)
                results[fast].append(res)
                print(f"{job} round {r} fast={fast}: {res['seconds']:.1f} s "
                      f"({res['env_steps']} env steps), wall {res['wall']:.1f} s", flush=True)
        best = {f: min(results[f], key=lambda x: x["seconds"]) for f in results}
        wall = {f: min(x["wall"] for x in results[f]) for f in results}
        slow, fast = best[False], best[True]
        rows.append(
            f"| {job} | {slow['env_steps']} | {slow['seconds']:.1f} | {fast['seconds']:.1f} | "
            f"**{slow['seconds'] / fast['seconds']:.2f}x** | {slow['env_steps'] / slow['seconds']:.0f}"
            f" | {fast['env_steps'] / fast['seconds']:.0f} | {wall[False]:.1f} | {wall[True]:.1f} | "
            f"{wall[False] / wall[True]:.2f}x |")
        steps_same = len({x["env_steps"] for side in results.values() for x in side}) == 1
        succ = [x["success"] for side in results.values() for x in side]
        succ_same = all(s == succ[0] for s in succ)
        mean = "" if succ[0] is None else (
            f", mean success {sum(succ[0].values()) / len(succ[0]):.3f}")
        checks.append(f"- {job}: env steps identical on every run: {'yes' if steps_same else 'NO'}"
                      + ("" if succ[0] is None else
                         f"; success per task identical: {'yes' if succ_same else 'NO'}") + mean
                      + f". Command (fast side): `robolearn {' '.join(fast['cmd'][3:])}`")
    total = time.perf_counter() - t_start
    body = "\n".join([
        f"Each job run {args.rounds}x per side, the sides alternating; each side's fastest round "
        f"counted. \"seconds\" are the command's own (collection / rollouts, from its "
        f"summary.json: Ray start-up excluded); \"wall\" is the whole command (interpreter and "
        f"Ray start-up, model loading, writing). Load average {load0:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end (2 CPUs); {total / 60:.1f} min in all.",
        "",
        "| job | env steps | Meta-World (s) | fast (s) | speed-up | Meta-World steps/s | "
        "fast steps/s | wall, Meta-World (s) | wall, fast (s) | wall speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Same results on both sides (the fast step is bit-identical):",
        *checks,
    ])
    command = "python benchmarks/sim_step_e2e.py " + " ".join(sys.argv[1:])
    if args.no_write:
        print(body)
    else:
        write_result("sim_step_e2e", "End to end: collect and evaluate, fast step vs Meta-World's",
                     body, command)


if __name__ == "__main__":
    main()
