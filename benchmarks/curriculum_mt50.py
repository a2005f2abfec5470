"""The automatic curriculum against uniform allocation, same budget: ``robolearn pipeline
curriculum.mode=...`` on MT50 (or any suite), evaluated on held-out goals.

Each arm is one ``robolearn pipeline`` run (subprocess, one after the other, so the arms do not
share the 2 cores) with the same preset and overrides; only ``curriculum.mode`` (and what
``--arm`` adds) differs. Every arm spends the same budget: ``collect.episodes_per_task × tasks``
demonstrations (or relabelled rollouts), ``train.steps`` optimiser steps and ``rounds ×
probe_episodes × tasks`` probe episodes; the table shows the counts each run recorded.

Statistics (one training seed per arm, which is what 2 cores afford): per-task success over the
``evaluate.episodes_per_task`` held-out goals (goal seeds ``episode_seed(1000, task, i)``, the
same for every arm), mean and IQM over tasks with a 95 % bootstrap CI that resamples episodes
within each task (stratified over tasks: the CI covers evaluation noise, not training-seed
noise). A task counts as *worse* when the arm's success is below uniform's by more than
2·SE of the difference, SE = sqrt(p(1-p)/n) per arm. The LP sampler's overhead per round is
measured by replaying the recorded probes through the same sampler, allocation and weights.

    python benchmarks/curriculum_mt50.py                       # MT50: uniform vs lp
    python benchmarks/curriculum_mt50.py --arms none uniform lp --preset mt50
    python benchmarks/curriculum_mt50.py --preset none --suite MT10   # the curriculum must not hurt MT10
    python benchmarks/curriculum_mt50.py --arms uniform lp lp+dagger    # lp with DAgger relabelling

An arm is ``MODE`` or ``MODE+dagger``; extra ``key=value`` arguments go to every run. A run
whose run directory (``--workdir``/ARM) holds a ``summary.json`` is reported as it ran, not re-run
(delete the directory to redo it), provided it ran with the overrides this command gives; one that
ran with others (say ``train.steps=40000`` into a 20 000-step workdir) is refused, naming them. A
killed arm continues where it stopped.
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
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import RESULTS, machine  # noqa: E402


def arm_overrides(arm: str) -> list[str]:
    mode, _, relabel = arm.partition("+")
    if mode not in ("none", "uniform", "lp") or relabel not in ("", "dagger"):
        raise SystemExit(f"unknown arm {arm!r}: expected none, uniform, lp, uniform+dagger or lp+dagger")
    return [f"curriculum.mode={mode}"] + ([f"curriculum.relabel={relabel}"] if relabel else [])


def override_mismatch(recorded: list[str], wanted: list[str]) -> list[str]:
    """How the ``key=value`` overrides a finished arm ran with differ from the ones wanted now
    (order aside; the last value of a key counts, as in hydra): one line per key, empty if none."""
    def as_dict(overrides: list[str]) -> dict[str, str]:
        return dict(o.partition("=")[::2] for o in overrides)
    have, want = as_dict(recorded), as_dict(wanted)
    return [f"{k}: ran with {have.get(k, '(not given)')}, now {want.get(k, '(not given)')}"
            for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]


def run_arm(args: argparse.Namespace, arm: str) -> dict:
    name = arm.replace("+", "_")
    run_dir = Path(args.workdir) / name
    prefix = [sys.executable, "-m", "robolearn", "pipeline",
              *(["--preset", args.preset] if args.preset != "none" else [])]
    cmd = [*prefix, *([f"collect.suite={args.suite}"] if args.suite else []),
           *arm_overrides(arm), f"train.out={args.runs}/{name}", f"run_dir={run_dir}", *args.extra]
    t0 = time.perf_counter()
    if (run_dir / "summary.json").exists():  # a finished arm: reported as it ran
        recorded = [str(o) for o in yaml.safe_load((run_dir / "overrides.yaml").read_text()) or []]
        differ = override_mismatch(recorded, cmd[len(prefix):])
        if differ:
            raise SystemExit(
                f"{run_dir} holds a finished {arm} arm run with other overrides than this command "
                f"gives ({'; '.join(differ)}): it would be reported as if it were this run. Give "
                f"this comparison its own --workdir/--runs, or delete {run_dir} to re-run the arm")
        cmd = [*prefix, *recorded]
        print(f"reusing the finished arm in {run_dir} (delete it to re-run)", flush=True)
    else:
        print("$", " ".join(cmd), flush=True)
        with open(Path(args.workdir) / f"{name}.log", "w") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed (rc {done.returncode}); see {log.name}")
    summary = json.loads((run_dir / "summary.json").read_text())
    report = json.loads(Path(summary["report"]).read_text())
    state = None
    if arm != "none":
        state = json.loads((Path(summary["run"]) / "curriculum.json").read_text())
    return {"arm": arm, "cmd": " ".join(cmd[2:]), "summary": summary, "report": report,
            "state": state, "wall_s": time.perf_counter() - t0}


def episodes_by_task(report: dict) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {}
    for ep in report["runs"][0]["episodes"]:
        out.setdefault(ep["task"], []).append(float(ep["success"]))
    return {t: np.asarray(v) for t, v in out.items()}


def bootstrap(eps: dict[str, np.ndarray], tasks: list[str]) -> dict[str, tuple[float, float]]:
    """95 % CIs of the mean and IQM over tasks, resampling episodes within each task: the
    evaluator's stratified bootstrap on the (episodes, tasks) matrix."""
    from robolearn.evaluate.stats import bootstrap_ci, iqm

    m = np.stack([eps[t] for t in tasks], axis=1)
    return {"mean": bootstrap_ci(m, lambda r: float(r.mean())),
            "iqm": bootstrap_ci(m, lambda r: iqm(r.mean(axis=0)))}


def sampler_overhead_ms(state: dict, tasks: list[str]) -> float:
    """Milliseconds per round of the curriculum's bookkeeping (LP update, shares, allocation,
    training weights), replayed on the run's own probes."""
    from curricula import LPSampler
    from robolearn.autocurriculum import (
        CurriculumConfig,
        _train_weights,
        allocate,
        allocation_shares,
    )

    settings = state["settings"]
    cur = CurriculumConfig(**settings["curriculum"])
    times = []
    for _ in range(20):
        sampler = LPSampler(tasks, window=cur.window, epsilon=cur.epsilon,
                            floor=cur.floor or None, seed=settings["collect_seed"])
        for rec in state["rounds"]:
            t0 = time.perf_counter()
            shares = allocation_shares(cur.mode, sampler, rec["probe"], cur.need_weight)
            allocate(1000, shares, sampler.floor)
            _train_weights(shares, cur, len(tasks))
            sampler.update_many(rec["probe"])
            sampler.state_dict()
            times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def plot(arms: list[dict], tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = arms[0]["per_task"]
    order = sorted(tasks, key=lambda t: (base[t], t))
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(tasks) + 2), 4.5))
    width = 0.8 / len(arms)
    for i, a in enumerate(arms):
        ax.bar(np.arange(len(order)) + (i - (len(arms) - 1) / 2) * width,
               [a["per_task"][t] for t in order], width, label=f"{a['arm']} ({a['mean']:.3f})")
    ax.set_xticks(range(len(order)), [t.removesuffix("-v3") for t in order], rotation=90, fontsize=6)
    ax.set_ylabel("held-out success")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("per-task success, same budget (sorted by the first arm)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", default=["uniform", "lp"],
                   help="none | uniform | lp | uniform+dagger | lp+dagger; the first is the baseline")
    p.add_argument("--preset", default="mt50", help="pipeline preset, or none")
    p.add_argument("--suite", default="", help="collect.suite (default: the preset's)")
    p.add_argument("--workdir", default="", help="run_dir of arm A: WORKDIR/A (outputs/curriculum_<tag>)")
    p.add_argument("--runs", default="", help="train.out of arm A: RUNS/A (runs/curriculum_<tag>)")
    p.add_argument("--out", default="", help="results file (benchmarks/results/curriculum_<tag>.md)")
    p.add_argument("extra", nargs="*", help="further `robolearn pipeline` overrides (every arm)")
    args = p.parse_args()
    from robolearn.evaluate import stats
    # tag: the suite (or the preset) in lower case, e.g. mt50, mt10
    tag = "".join(c if c.isalnum() else "_" for c in (args.suite or args.preset).lower())
    args.workdir = args.workdir or f"outputs/curriculum_{tag}"
    args.runs = args.runs or f"runs/curriculum_{tag}"
    args.out = args.out or str(RESULTS / f"curriculum_{tag}.md")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    arms = [run_arm(args, arm) for arm in args.arms]
    tasks = arms[0]["report"]["tasks"]
    for a in arms:
        if a["report"]["tasks"] != tasks:
            raise SystemExit("the arms were evaluated on different tasks")
        eps = episodes_by_task(a["report"])
        a["eps"] = eps
        a["per_task"] = {t: float(eps[t].mean()) for t in tasks}
        per = np.array([a["per_task"][t] for t in tasks])
        a["mean"], a["iqm"] = float(per.mean()), stats.iqm(per)
        a["ci"] = bootstrap(eps, tasks)
        a["n"] = {t: eps[t].size for t in tasks}
        if a["state"] is not None:
            a["overhead_ms"] = sampler_overhead_ms(a["state"], tasks)
    base = arms[0]
    weakest = sorted(tasks, key=lambda t: (base["per_task"][t], t))[:5]

    lines = [f"# Curriculum vs uniform, same budget ({base['report']['suite']})", "",
             f"- Date: {started} (finished {time.strftime('%H:%M:%S %Z')})",
             f"- Machine: {machine()}; load average at start {load0[0]:.2f}",
             f"- Command: `python benchmarks/curriculum_mt50.py {' '.join(sys.argv[1:])}`".rstrip(),
             "- Arms (one `robolearn pipeline` run each, one training seed):"]
    lines += [f"  - {a['arm']}: `{a['cmd']}`" for a in arms]
    ep = base["report"]["episodes_per_task"]
    lines += [f"- Evaluation: {ep} held-out goals per task, goal seeds "
              f"`episode_seed({base['report']['eval_seed']}, task, i)`, the same for every arm. "
              "CIs: 95 % bootstrap over episodes within each task (evaluation noise only; one "
              "training seed per arm).", "",
              "| arm | mean | 95 % CI | IQM | 95 % CI | weakest 5 of the baseline | tasks worse "
              "than baseline by > 2·SE | demos | relabelled | training steps | probe episodes | "
              "wall time | LP bookkeeping per round |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in arms:
        worse = []
        for t in tasks:
            pa, pb, n, m = a["per_task"][t], base["per_task"][t], a["n"][t], base["n"][t]
            se = np.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / m)
            if pb - pa > 2 * max(se, 1e-12):
                worse.append(f"{t.removesuffix('-v3')} {pb:.2f}→{pa:.2f}")
        b = a["summary"].get("budget", {})
        secs = a["summary"].get("seconds", {})
        wall = secs.get("total", a["wall_s"]) if isinstance(secs, dict) else a["wall_s"]
        lines.append(
            f"| {a['arm']} | {a['mean']:.3f} | [{a['ci']['mean'][0]:.3f}, {a['ci']['mean'][1]:.3f}]"
            f" | {a['iqm']:.3f} | [{a['ci']['iqm'][0]:.3f}, {a['ci']['iqm'][1]:.3f}] | "
            f"{np.mean([a['per_task'][t] for t in weakest]):.3f} | "
            f"{'—' if a is base else ', '.join(worse) or 'none'} | "
            f"{b.get('demo_episodes', '')} | {b.get('relabelled_episodes', '')} | "
            f"{b.get('train_steps', '')} | {b.get('probe_episodes', '')} | {wall / 60:.1f} min | "
            + (f"{a['overhead_ms']:.2f} ms" if "overhead_ms" in a else "—") + " |")
    lines += ["", f"Weakest five of the baseline ({base['arm']}): "
              + ", ".join(t.removesuffix("-v3") for t in weakest) + ".", "",
              "Per task (held-out success; demos collected for the task in parentheses):", "",
              "| task | " + " | ".join(a["arm"] for a in arms) + " |",
              "|---|" + "---|" * len(arms)]
    for t in sorted(tasks, key=lambda t: (base["per_task"][t], t)):
        cells = []
        for a in arms:
            n = ""
            if a["state"] is not None:
                n = f" ({sum(r['allocation'][t] for r in a['state']['rounds'])})"
            cells.append(f"{a['per_task'][t]:.2f}{n}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    for a in arms:
        if a["state"] is None:
            continue
        lines += ["", f"Rounds of {a['arm']} (mean probe success on the probe goals; demos "
                  "allocated that round; the five tasks that got most):", "",
                  "| round | probe success | demos | most demos to |", "|---|---|---|---|"]
        for r in a["state"]["rounds"]:
            top = sorted(r["allocation"], key=lambda t: -r["allocation"][t])[:5]
            lines.append(f"| {r['round']} | {np.mean(list(r['probe'].values())):.3f} | "
                         f"{sum(r['allocation'].values())} | "
                         + ", ".join(f"{t.removesuffix('-v3')} {r['allocation'][t]}" for t in top)
                         + " |")
    out = Path(args.out)
    png = out.with_suffix(".png")
    plot(arms, tasks, png)
    lines += ["", f"![per-task success]({png.name})", ""]
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()
