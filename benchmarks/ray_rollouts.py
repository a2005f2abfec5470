"""Rollout throughput on Ray actors vs one process: `robolearn collect` and `robolearn evaluate`.

Both sides run the same command code on the same seeds (the Ray side gives the same episodes,
tests/robolearn/test_rollouts.py); only ``ray.num_workers`` differs: 0 (this process) vs N actors.
Throughput is env steps per second of rollouts; the local Ray instance's start-up (once per
command) is measured apart, and the end-to-end ratio including it is reported too. Rounds
alternate (here, Ray, here, Ray, ...) so machine drift hits both alike.

    python benchmarks/ray_rollouts.py --suite MT10 --episodes-per-task 10 --workers 2 \
        [--checkpoint runs/mt10_flow_matching]

Target (issue #4): ratio >= 1.7 with 2 workers on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import rss_mb, write_result  # noqa: E402


def startup_cost() -> dict[str, float]:
    """Seconds and memory of starting the local Ray instance the commands start."""
    import psutil

    from robolearn.cluster import RayConfig, ray_session

    before = {p.pid for p in psutil.process_iter()}
    me = psutil.Process()
    rss0 = me.memory_info().rss
    t0 = time.perf_counter()
    with ray_session(RayConfig()) as ray:
        secs = time.perf_counter() - t0
        new = [p.pid for p in psutil.process_iter() if p.pid not in before]
        out = {"start_s": secs, "driver_rss_added_mb": (me.memory_info().rss - rss0) / 2**20,
               "ray_processes": len(new), "ray_processes_rss_mb": rss_mb(new)}
        ray.cluster_resources()
    return out


def run_collect(suite: str, episodes: int, workers: int, out: Path) -> dict:
    from robolearn.cli import compose
    from robolearn.collect import collect

    cfg = compose("collect", [f"suite={suite}", f"episodes_per_task={episodes}", f"out={out}",
                              "overwrite=true", f"ray.num_workers={workers}"])
    t0 = time.perf_counter()
    s = collect(cfg, progress=False)
    return {"env_steps": s.env_steps, "rollout_s": s.seconds, "startup_s": s.startup_seconds,
            "total_s": time.perf_counter() - t0}


def run_evaluate(checkpoint: str, suite: str, episodes: int, workers: int, out: Path) -> dict:
    from robolearn.cli import compose
    from robolearn.evaluate import run_evaluate as evaluate

    cfg = compose("evaluate", [f"checkpoint={checkpoint}", f"suite={suite}",
                               f"episodes_per_task={episodes}", f"ray.num_workers={workers}",
                               f"out={out}"])
    t0 = time.perf_counter()
    report = evaluate(cfg, out)
    run = report["runs"][0]
    total = time.perf_counter() - t0
    return {"env_steps": run["env_steps"], "rollout_s": run["seconds"],
            "startup_s": total - run["seconds"], "total_s": total,
            "mean_success": report["mean_success"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="MT10")
    ap.add_argument("--episodes-per-task", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--checkpoint", default="expert",
                    help="what evaluate rolls out: a run dir, or `expert` (default)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    tmp = Path(tempfile.mkdtemp(prefix="ray_rollouts_"))
    rows = {("collect", 0): [], ("collect", args.workers): [],
            ("evaluate", 0): [], ("evaluate", args.workers): []}
    try:
        startup = startup_cost()
        for r in range(args.rounds):
            for w in (0, args.workers):
                rows[("collect", w)].append(run_collect(
                    args.suite, args.episodes_per_task, w, tmp / f"c{w}_{r}.zarr"))
                rows[("evaluate", w)].append(run_evaluate(
                    args.checkpoint, args.suite, args.episodes_per_task, w, tmp / f"e{w}_{r}"))
                print(r, w, rows[("collect", w)][-1], rows[("evaluate", w)][-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def rate(key: tuple, field: str) -> float:
        runs = rows[key]
        return sum(x["env_steps"] for x in runs) / sum(x[field] for x in runs)

    lines = [
        f"Suite {args.suite}, {args.episodes_per_task} episodes per task, {args.rounds} rounds "
        f"alternating; evaluate rolls out `{args.checkpoint}`. Ray side: {args.workers} rollout "
        "actors on a local instance started by the command itself.",
        "",
        "| command | in this process (steps/s) | Ray rollouts (steps/s) | ratio | "
        "ratio incl. Ray start-up |",
        "|---|---|---|---|---|",
    ]
    for cmd in ("collect", "evaluate"):
        here, ray_ = rate((cmd, 0), "rollout_s"), rate((cmd, args.workers), "rollout_s")
        here_t, ray_t = rate((cmd, 0), "total_s"), rate((cmd, args.workers), "total_s")
        lines.append(f"| {cmd} | {here:.0f} | {ray_:.0f} | **{ray_ / here:.2f}** | "
                     f"{ray_t / here_t:.2f} |")
    succ = {w: [round(x["mean_success"], 4) for x in rows[("evaluate", w)]]
            for w in (0, args.workers)}
    lines += [
        "",
        f"Evaluation mean success, per round: here {succ[0]}, Ray {succ[args.workers]} "
        "(identical by construction).",
        "",
        f"Start-up of the local Ray instance (once per command): {startup['start_s']:.1f} s; "
        f"driver RSS +{startup['driver_rss_added_mb']:.0f} MB; {startup['ray_processes']} Ray "
        f"processes, {startup['ray_processes_rss_mb']:.0f} MB RSS together. Each command also "
        "starts its actors (imports + envs) once: "
        + ", ".join(f"{cmd} {sum(x['startup_s'] for x in rows[(cmd, args.workers)]) / args.rounds:.1f} s"
                    for cmd in ("collect", "evaluate"))
        + " per command incl. the instance.",
        f"Load average at the end: {os.getloadavg()[0]:.2f}.",
    ]
    write_result("ray_rollouts", "Rollouts on Ray actors vs one process", "\n".join(lines),
                 "python benchmarks/ray_rollouts.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
