"""What the success probe during training costs, as a fraction of the training time.

Trains the flow-matching policy on MT10 demos as the main job does (`robolearn pipeline`'s
training settings: 6000 steps, warm-up 300, validation every 500, checkpoints every 2000) with
the probe at its defaults (``eval_every=2000``, ``eval_episodes=2``: 20 held-out goals of MT10
per probe, in this process), and reports the probes' share of the wall time and what each probe
found. Then, on the final weights, it times one probe per size in ``--sizes`` (episodes per
task), to show what other sizes would cost at the same rate.

    python benchmarks/eval_overhead.py --dataset data/mt10_demos.zarr

Reported (the default probe size is chosen from it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--sizes", default="2,5,10", help="probe sizes timed on the final weights")
    ap.add_argument("--out", default="", help="run directory (default: a temp dir, removed)")
    args = ap.parse_args()

    from robolearn.cli import compose
    from robolearn.train import Trainer, train
    from robolearn.train.probe import SuccessProbe, probe_suite

    out = Path(args.out or tempfile.mkdtemp(prefix="eval-overhead-"))
    try:
        cfg = compose("train", [f"dataset={args.dataset}", f"out={out}", f"steps={args.steps}",
                                "warmup_steps=300", "val_every=500", "checkpoint_every=2000",
                                "log_every=100", f"eval_every={args.eval_every}",
                                f"eval_episodes={args.episodes}", "progress=false",
                                "overwrite=true"])
        res = train(cfg)
        probes = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        probes = [m for m in probes if "eval/success" in m]
        train_s = res.seconds - res.eval_seconds
        rows = ["| step | eval/success | probe (s) |", "|---|---|---|"]
        rows += [f"| {m['step']} | {m['eval/success']:.2f} | {m['eval/seconds']:.1f} |"
                 for m in probes]
        # Other probe sizes on the final weights (the trainer restored from the checkpoint).
        trainer = Trainer(cfg, out)
        from robolearn.checkpoint import resolve_checkpoint

        trainer.restore(resolve_checkpoint(out))
        sizes = ["| episodes per task | episodes | probe (s) | eval/success | probes at "
                 f"eval_every={args.eval_every} as a share of {args.steps} steps |",
                 "|---|---|---|---|---|"]
        n_probes = args.steps // args.eval_every
        for k in (int(x) for x in args.sizes.split(",")):
            cfg.eval_episodes = k
            trainer.probe = SuccessProbe(cfg, trainer.store.tasks,
                                         probe_suite(cfg, trainer.store.attrs), cfg.dataset, out)
            p = trainer.run_probe()
            share = n_probes * p.seconds / (train_s + n_probes * p.seconds)
            sizes.append(f"| {k} | {p.episodes} | {p.seconds:.1f} | {p.success:.2f} | "
                         f"{share:.1%} |")
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        body = (
            f"Load average at the end (1/5/15 min): {load}. Dataset: {args.dataset}. "
            f"Flow matching (default config), {args.steps} steps as "
            f"`robolearn pipeline` trains, probe every {args.eval_every} steps with "
            f"{args.episodes} episodes per task (held-out goals, eval_seed 500, in this "
            f"process).\n\n"
            f"- Wall time {res.seconds:.1f} s: training {train_s:.1f} s "
            f"({res.steps_per_s:.1f} steps/s), probes {res.eval_seconds:.1f} s — "
            f"**{res.eval_seconds / res.seconds:.1%} of the wall time** "
            f"({res.eval_seconds / train_s:.1%} on top of training).\n\n"
            + "\n".join(rows) + "\n\nOne probe per size on the final weights:\n\n"
            + "\n".join(sizes))
        write_result("eval_overhead", "Success probe during training: its cost", body,
                     "python benchmarks/eval_overhead.py " + " ".join(sys.argv[1:]))
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
