"""PEARL on Meta-World: target-task success after policy improvement with the learned reward.

Runs the command itself — `robolearn pearl source=... target=... improve.baselines=true` — on
the pools of `benchmarks/pearl_transfer.py` (cached under `--data`; collected here if absent,
without policy checkpoints) and reports three flow-matching policies trained alike (same
steps, seed, batch and data; from scratch on the target pool), differing only in the
per-episode weights:

- transferred: BC on the top 30% of the target pool by the return of the reward model learned
  from labels transferred from the source task (the command's default, `improve.method=filter`);
- oracle: the same, with a reward model fitted on as many scripted-teacher labels of the target;
- no labels: BC on the whole pool.

Success on `--episodes` held-out goals (seed 1000, horizon 500) per seed (`--seeds`: labels,
reward models and policies; the pools are shared), bootstrap 95% CI over episodes; the verdict
is on the mean over seeds with the CI over every seed's episodes. Targets: transferred within
10 points of the oracle, and above no-label BC by more than the CI (the two intervals do not
overlap).

    python benchmarks/pearl_improve.py                        # push-v3 → push-wall-v3
    python benchmarks/pearl_improve.py --source window-open-v3 --target window-close-v3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from _machine import RESULTS, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="push-v3")
    ap.add_argument("--target", default="push-wall-v3")
    ap.add_argument("--size", type=int, default=140)
    ap.add_argument("--data", default="data/pearl")
    ap.add_argument("--out", default="")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--label-pairs", type=int, default=400)
    ap.add_argument("--name", default="pearl_improve")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    from robolearn import cli

    t0 = time.perf_counter()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    data = Path(args.data)
    stores = {side: data / "pools" / f"{task}-n{args.size}.zarr"
              for side, task in (("source", args.source), ("target", args.target))}
    base = Path(args.out or data / "runs" / f"improve-{args.source}-{args.target}")
    arms = ("transferred", "oracle", "no_labels")
    per_seed: list[dict] = []
    for seed in args.seeds:
        # seed 0 keeps the single-seed layout (its run is reused); the pools are the same for
        # every seed (pool.seed is fixed), the labels, reward models and policies are not
        out = base if seed == 0 else base.with_name(f"{base.name}-s{seed}")
        overrides = [f"source={args.source}", f"target={args.target}", f"out={out}",
                     f"run_dir={out}_record", "ray.num_workers=0", "improve.baselines=true",
                     f"improve.steps={args.steps}", f"eval_episodes={args.episodes}",
                     f"teacher.pairs={args.label_pairs}", f"pool.size={args.size}",
                     f"seed={seed}", f"teacher.seed={seed}", f"reward.seed={seed}"]
        overrides += [f"{side}_store={p}" for side, p in stores.items() if p.exists()]
        summary = cli.run("pearl", overrides)
        pools = json.loads((out / "pearl.json").read_text())["pools"]
        stores = {side: Path(p["store"]) for side, p in pools.items()}  # reuse them
        per_seed.append({"seed": seed, "summary": summary, "pools": pools})
    first = per_seed[0]
    pools = first["pools"]
    t = first["summary"]["transfer"]
    lines = [f"Load average (1, 5, 15 min) before: {load_before}, after: "
             + " ".join(f"{x:.2f}" for x in os.getloadavg())
             + f"; 2 shared cores. Wall time {time.perf_counter() - t0:.0f} s (phases already "
             "done in `--out` are reused).", "",
             "Pools: " + "; ".join(
                 f"{side} {p['store']}: {p['trajectories']} trajectories, success "
                 f"{p['success']:.2f}, return quartiles {p['return_quartiles']}"
                 for side, p in pools.items()) + ".", "",
             f"Labels: {first['summary']['labels']['pairs']} scripted-teacher source labels (20% "
             f"held out for the orientation check); transfer `gw.*` defaults (seed "
             f"{first['seed']}: {t['pairs']} target pairs got a transferred label, accuracy vs "
             f"the target teacher {t['accuracy']:.3f}, confident half {t['confident_half']:.3f}, "
             f"flipped {t['flipped_accuracy']:.3f}; the reward models train on "
             f"{t['pairs_used']} pairs each). Policies: {args.steps} steps, flow matching, from "
             f"scratch on the target pool. Seeds {list(args.seeds)} (labels, reward models, "
             "policies; the pools are the same).", "",
             "| seed | policy | label accuracy | Spearman(learned, true) | kept mean true return | "
             "train s | success | 95% CI |", "|---|---|---|---|---|---|---|---|"]
    for run in per_seed:
        runs, rewards = run["summary"]["improve"], run["summary"]["reward"]
        acc = run["summary"]["transfer"]["accuracy"]
        for arm in arms:
            r, i = rewards.get(arm, {}), runs[arm]
            e = i["eval"]
            lines.append(f"| {run['seed']} | {arm} | "
                         + (f"{acc:.3f}" if arm == "transferred" else "-") + " | "
                         + (f"{r['spearman']:.3f}" if r else "-")
                         + f" | {i['kept_true_return']:.0f} | {i['train_seconds']:.0f} | "
                         f"{e['success']:.3f} | [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}] |")
    def mean(arm: str) -> float:
        return float(np.mean([r["summary"]["improve"][arm]["eval"]["success"] for r in per_seed]))

    def pooled_ci(arm: str) -> tuple[float, float]:
        # every seed's episodes together (same goals): a bootstrap over episodes
        succ = np.concatenate([
            np.repeat([1.0, 0.0], [round(e["success"] * e["episodes"]),
                                   e["episodes"] - round(e["success"] * e["episodes"])])
            for e in (r["summary"]["improve"][arm]["eval"] for r in per_seed)])
        rng = np.random.default_rng(0)
        boots = rng.choice(succ, (2000, succ.size)).mean(axis=1)
        return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))

    tr, orc, none = (mean(a) for a in arms)
    ci_tr, ci_none = pooled_ci("transferred"), pooled_ci("no_labels")
    gap = orc - tr
    lines += ["", f"Mean over seeds: transferred {tr:.3f} [{ci_tr[0]:.2f}, {ci_tr[1]:.2f}], "
              f"oracle {orc:.3f}, no labels {none:.3f} [{ci_none[0]:.2f}, {ci_none[1]:.2f}] "
              "(95% CIs: bootstrap over every seed's episodes).", "",
              f"- transferred vs oracle: {-gap:+.3f} ({'within' if gap <= 0.10 else 'NOT within'}"
              " 10 points)",
              f"- transferred vs no labels: {tr - none:+.3f}; CIs "
              f"{'do not overlap' if ci_tr[0] > ci_none[1] else 'OVERLAP'} (transferred "
              f"low {ci_tr[0]:.2f} vs no-label high {ci_none[1]:.2f})",
              ]
    if min(tr, orc, none) >= 0.9:
        lines.append("- every arm succeeds on >= 90% of the held-out goals: this target task is "
                     "near its ceiling, so the comparison says little; a harder target shows more")
    summary = first["summary"]
    lines += ["", f"Figure: `benchmarks/results/{args.name}.png` (the command's `pearl.png`, seed "
              f"{first['seed']})."]
    shutil.copyfile(summary["plot"], RESULTS / f"{args.name}.png")
    cmd = "python benchmarks/pearl_improve.py " + " ".join(sys.argv[1:])
    write_result(args.name, f"PEARL: {args.target} success after improvement with the learned "
                 "reward", "\n".join(lines), cmd.strip())


if __name__ == "__main__":
    main()
