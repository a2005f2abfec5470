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

Success on `--episodes` held-out goals (seed 1000, horizon 500), bootstrap 95% CI over
episodes. Targets: transferred within 10 points of the oracle, and above no-label BC by more
than the CI (the two intervals do not overlap).

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
    args = ap.parse_args()
    from robolearn import cli

    t0 = time.perf_counter()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    data = Path(args.data)
    stores = {side: data / "pools" / f"{task}-n{args.size}.zarr"
              for side, task in (("source", args.source), ("target", args.target))}
    out = Path(args.out or data / "runs" / f"improve-{args.source}-{args.target}")
    overrides = [f"source={args.source}", f"target={args.target}", f"out={out}",
                 f"run_dir={out}_record", "ray.num_workers=0", "improve.baselines=true",
                 f"improve.steps={args.steps}", f"eval_episodes={args.episodes}",
                 f"teacher.pairs={args.label_pairs}", f"pool.size={args.size}"]
    overrides += [f"{side}_store={p}" for side, p in stores.items() if p.exists()]
    summary = cli.run("pearl", overrides)
    runs, rewards = summary["improve"], summary["reward"]
    t = summary["transfer"]
    pools = json.loads((out / "pearl.json").read_text())["pools"]
    lines = [f"Load average (1, 5, 15 min) before: {load_before}, after: "
             + " ".join(f"{x:.2f}" for x in os.getloadavg())
             + f"; 2 shared cores. Wall time {time.perf_counter() - t0:.0f} s (phases already "
             "done in `--out` are reused).", "",
             "Pools: " + "; ".join(
                 f"{side} {p['store']}: {p['trajectories']} trajectories, success "
                 f"{p['success']:.2f}, return quartiles {p['return_quartiles']}"
                 for side, p in pools.items()) + ".", "",
             f"Labels: {summary['labels']['pairs']} scripted-teacher source labels (20% held "
             f"out for the orientation check); {t['pairs']} target pairs got a transferred "
             f"label, accuracy vs the target teacher {t['accuracy']:.3f} (confident half "
             f"{t['confident_half']:.3f}, flipped {t['flipped_accuracy']:.3f}); the reward "
             f"models train on {t['pairs_used']} pairs each. Policies: {args.steps} steps, "
             "flow matching, from scratch on the target pool.", "",
             "| policy | reward-model pairs | Spearman(learned, true) | kept mean true return | "
             "train s | success | 95% CI |", "|---|---|---|---|---|---|---|"]
    for arm in ("transferred", "oracle", "no_labels"):
        r, i = rewards.get(arm, {}), runs[arm]
        e = i["eval"]
        lines.append(f"| {arm} | {r.get('pairs', '-')} | "
                     + (f"{r['spearman']:.3f}" if r else "-")
                     + f" | {i['kept_true_return']:.0f} | {i['train_seconds']:.0f} | "
                     f"{e['success']:.3f} | [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}] |")
    tr, orc, none = (runs[a]["eval"] for a in ("transferred", "oracle", "no_labels"))
    gap = orc["success"] - tr["success"]
    lines += ["", f"- transferred vs oracle: {-gap:+.3f} ({'within' if gap <= 0.10 else 'NOT within'}"
              " 10 points)",
              f"- transferred vs no labels: {tr['success'] - none['success']:+.3f}; CIs "
              f"{'do not overlap' if tr['ci95'][0] > none['ci95'][1] else 'OVERLAP'} (transferred "
              f"low {tr['ci95'][0]:.2f} vs no-label high {none['ci95'][1]:.2f})",
              ]
    if min(e["success"] for e in (tr, orc, none)) >= 0.9:
        lines.append("- every arm succeeds on >= 90% of the held-out goals: this target task is "
                     "near its ceiling, so the comparison says little; a harder target shows more")
    lines += ["", f"Figure: `benchmarks/results/{args.name}.png` (the command's `pearl.png`)."]
    shutil.copyfile(summary["plot"], RESULTS / f"{args.name}.png")
    cmd = "python benchmarks/pearl_improve.py " + " ".join(sys.argv[1:])
    write_result(args.name, f"PEARL: {args.target} success after improvement with the learned "
                 "reward", "\n".join(lines), cmd.strip())


if __name__ == "__main__":
    main()
