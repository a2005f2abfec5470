"""What limits a multi-task run on its weakest tasks: data, fitting, or the horizon?

For each run (a ``train.out`` of ``robolearn pipeline``, e.g. the arms of
``benchmarks/curriculum_mt50.py``) and each of the ``--weakest`` tasks of the first run's
held-out evaluation, this measures on the same checkpoint:

- **held-out success**: the run's own evaluation report (goal seeds ``episode_seed(1000, task, i)``);
- **training-goal success**: the checkpoint rolled out on the goals of the task's first
  ``--episodes`` demonstrations in its store (their stored goal seeds, the demos' own starts).
  A policy that fails on goals it was trained on is limited by fitting (capacity, optimisation,
  compounding error), not by how many goals it saw; one that succeeds there and fails on new
  goals is limited by data (coverage of the goal space);
- **the expert** on the held-out goals (the data's ceiling);
- **the horizon**: the step at which successful held-out episodes first succeed (median and
  max, out of 500). Successes far below 500 mean failures are not episodes that ran out of time;
- **optimisation** (``--single-task N``): for the N weakest tasks, the same policy trained on that
  task alone from the same demonstrations (``robolearn collect suite=MT1:<task> seed=0``, the
  presets' collect seed, gives the very goals of the run's first demos), checkpointed at
  ``--single-steps``,
  each checkpoint evaluated on the same training and held-out goals. An MT50 run of S steps
  spends S/50 optimiser steps' worth of windows on a task: if the single-task policy fails at
  that many steps and succeeds with more, the task is limited by optimisation steps, not by the
  data or the policy's capacity.

    python benchmarks/curriculum_limits.py --runs runs/curriculum_mt50/uniform runs/curriculum_mt50/lp_dagger \
        --reports outputs/curriculum_mt50/uniform outputs/curriculum_mt50/lp_dagger --weakest 6 --single-task 3

Writes ``benchmarks/results/curriculum_limits.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import RESULTS, machine  # noqa: E402


def report_of(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    return json.loads(Path(summary["report"]).read_text())


def heldout(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for ep in report["runs"][0]["episodes"]:
        out.setdefault(ep["task"], []).append(ep)
    return out


def store_demos(store_path: Path, n: int) -> dict[str, tuple[list[tuple[int, dict]], int, int]]:
    """Per task: (goal seed, TaskParams) of its first ``n`` expert demos, how many demos it
    has and how many relabelled policy rollouts (``source=policy``); one read of the store."""
    from robolearn.data.store import EpisodeStore

    with EpisodeStore.open(store_path, "r") as s:
        tasks, sources = s.meta("task"), s.meta("source")
        seeds, params = s.meta("seed"), s.meta("params")
    starts: dict[str, list[tuple[int, dict]]] = {}
    relabelled: dict[str, int] = {}
    for t, src, seed, par in zip(tasks, sources, seeds, params):
        t, src = str(t), str(src)
        if src == "expert":
            starts.setdefault(t, []).append((int(seed), json.loads(str(par))))
        elif src == "policy":
            relabelled[t] = relabelled.get(t, 0) + 1
    return {t: (v[:n], len(v), relabelled.get(t, 0)) for t, v in starts.items()}


def success_on(agent, task: str, starts: list[tuple[int, dict | None]],
               num_envs: int) -> float:
    """Success of ``agent`` from the given (goal seed, TaskParams) starts (one episode each,
    the evaluation protocol: stop at the first success)."""
    import sim
    from robolearn.rollout import EpisodeSpec, RolloutOptions, run_batch

    envs = [sim.make_env(task) for _ in range(min(num_envs, len(starts)))]
    wins = 0
    for lo in range(0, len(starts), len(envs)):
        batch = starts[lo:lo + len(envs)]
        specs = [EpisodeSpec(task, lo + i, seed, sim.TaskParams(**par) if par else None)
                 for i, (seed, par) in enumerate(batch)]
        for traj in run_batch(agent, envs[:len(batch)], specs, RolloutOptions()):
            wins += int(traj.success)
    for env in envs:
        env.close()
    return wins / len(starts)


def single_task_curve(task: str, demos: int, steps: list[int], workdir: Path,
                      train_starts: list, heldout_seeds: list[int], num_envs: int) -> list[dict]:
    """Collect ``demos`` expert demos of ``task`` alone (collect seed 0, the run's goals), train
    the default policy on them to ``max(steps)`` with a checkpoint at every step in ``steps``,
    and evaluate each checkpoint on the given training starts and held-out goals."""
    from robolearn.rollout import load_agent

    store, run = workdir / f"{task}.zarr", workdir / task
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    py = [sys.executable, "-m", "robolearn"]
    every = math.gcd(*steps)
    for cmd in ([*py, "collect", f"suite=MT1:{task}", f"episodes_per_task={demos}", f"out={store}",
                 "seed=0", "ray.num_workers=0", "progress=false"],
                [*py, "train", "policy=flow_matching", f"dataset={store}", f"steps={max(steps)}",
                 f"out={run}", f"checkpoint_every={every}", f"keep_checkpoints={max(steps) // every}",
                 "eval_every=0", "progress=false", "tensorboard=false",
                 # a finished (or killed) run is accepted or continued, not redone
                 *(["resume=true"] if (run / "checkpoint").exists() else [])]):
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    out = []
    for step in steps:
        agent = load_agent(str(run / "checkpoints" / f"step_{step:07d}"), "cpu")
        train_sr = success_on(agent, task, train_starts, num_envs)
        ho_sr = success_on(agent, task, [(s, None) for s in heldout_seeds], num_envs)
        out.append({"task": task, "step": step, "train": train_sr, "heldout": ho_sr})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", required=True, help="train.out of each run")
    p.add_argument("--reports", nargs="+", required=True,
                   help="run_dir of each run's pipeline (holds summary.json → the held-out report)")
    p.add_argument("--weakest", type=int, default=8, help="tasks: the first run's weakest held-out")
    p.add_argument("--episodes", type=int, default=20, help="training goals per task")
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--single-task", type=int, default=0,
                   help="also train the N weakest tasks alone (the optimisation check)")
    p.add_argument("--single-steps", type=int, nargs="+", default=[400, 1200, 4000],
                   help="single-task checkpoints evaluated (400 = an MT50 run's 20 000 / 50)")
    p.add_argument("--single-demos", type=int, default=50, help="demos per single-task run")
    p.add_argument("--workdir", default="runs/curriculum_limits", help="single-task runs and stores")
    p.add_argument("--out", default=str(RESULTS / "curriculum_limits.md"))
    args = p.parse_args()
    if len(args.runs) != len(args.reports):
        raise SystemExit("--runs and --reports must name the same number of runs")
    from robolearn.rollout import ExpertAgent, load_agent

    t0 = time.perf_counter()
    reports = [report_of(Path(r)) for r in args.reports]
    base = reports[0]["success_by_task"]
    weak = sorted(base, key=lambda t: (base[t], t))[: args.weakest]
    # The held-out goals are the same in every run (the evaluation seed); the first run's
    # training starts are what the single-task runs are evaluated on.
    heldout_seeds = {t: [int(e["seed"]) for e in eps] for t, eps in heldout(reports[0]).items()}
    first_starts: dict[str, list] = {}
    rows, lines = [], []
    for run, report in zip(args.runs, reports):
        agent = load_agent(run, "cpu")
        eps = heldout(report)
        demos = store_demos(Path(run) / "demos.zarr", args.episodes)
        for task in weak:
            ho = eps[task]
            ho_steps = [int(e["steps"]) for e in ho if e["success"]]
            starts, n_demos, n_relabelled = demos[task]
            first_starts.setdefault(task, starts)
            train_sr = success_on(agent, task, starts, args.num_envs)
            rows.append({"run": run, "task": task, "heldout": float(np.mean([e["success"] for e in ho])),
                         "n_heldout": len(ho), "train": train_sr, "n_train": len(starts),
                         "demos": n_demos, "relabelled": n_relabelled,
                         "steps_median": float(np.median(ho_steps)) if ho_steps else None,
                         "steps_max": max(ho_steps) if ho_steps else None})
            print(json.dumps(rows[-1]), flush=True)
    expert = ExpertAgent()
    expert_sr = {t: success_on(expert, t, [(s, None) for s in heldout_seeds[t]], args.num_envs)
                 for t in weak}
    curves = []
    for task in weak[: args.single_task]:
        curves += single_task_curve(task, args.single_demos, sorted(args.single_steps),
                                    Path(args.workdir), first_starts[task], heldout_seeds[task],
                                    args.num_envs)
    lines += ["# What limits the weakest MT50 tasks: data, fitting or horizon", "",
              f"- Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
              f"- Machine: {machine()}",
              f"- Command: `python benchmarks/curriculum_limits.py {' '.join(sys.argv[1:])}`",
              f"- Wall time: {(time.perf_counter() - t0) / 60:.1f} min", "",
              f"Tasks: the {len(weak)} weakest of `{args.runs[0]}` on its held-out evaluation. "
              f"Training goals: the goal seeds of each task's first {args.episodes} expert demos in the "
              "run's own store. Held-out: the run's evaluation (goal seed 1000). Expert: the scripted "
              "expert on the same held-out goals. Success step: the step of first success of the "
              "held-out successes (median / max; the horizon is 500).", "",
              "| run | task | demos (+ relabelled) | training goals | held-out | expert (held-out) | success step median / max |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        step = ("—" if r["steps_median"] is None
                else f"{r['steps_median']:.0f} / {r['steps_max']}")
        lines.append(f"| {Path(r['run']).name} | {r['task']} | {r['demos']} (+{r['relabelled']}) | "
                     f"{r['train']:.2f} "
                     f"({r['n_train']}) | {r['heldout']:.2f} ({r['n_heldout']}) | "
                     f"{expert_sr[r['task']]:.2f} | {step} |")
    for run in args.runs:
        mine = [r for r in rows if r["run"] == run]
        lines.append(f"| {Path(run).name} | **mean of these** | "
                     f"{np.mean([r['demos'] for r in mine]):.0f} | "
                     f"**{np.mean([r['train'] for r in mine]):.2f}** | "
                     f"**{np.mean([r['heldout'] for r in mine]):.2f}** | "
                     f"{np.mean([expert_sr[r['task']] for r in mine]):.2f} | |")
    if curves:
        lines += ["", f"Optimisation: each task trained alone (the default flow-matching policy, "
                  f"{args.single_demos} expert demos with collect seed 0, i.e. the goals of the run's first "
                  f"demos; batch 256, cosine schedule over {max(args.single_steps)} steps), evaluated at "
                  "these steps on the same training and held-out goals as above. An MT50 run's "
                  "20 000 steps are 400 steps' worth of windows per task.", "",
                  "| task | steps | training goals | held-out |", "|---|---|---|---|"]
        lines += [f"| {c['task']} | {c['step']} | {c['train']:.2f} | {c['heldout']:.2f} |"
                  for c in curves]
    out = Path(args.out)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
