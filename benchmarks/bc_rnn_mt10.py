"""The robomimic BC-RNN peer baseline on MT10: trained by robomimic's code, scored by ours.

1. ``robolearn.baselines.bc_rnn.train_bc_rnn``: our MT10 demonstrations → robomimic HDF5 →
   ``python -m robomimic.scripts.train`` (robomimic 0.3.0, its low-dim BC-RNN settings:
   LSTM 2 x 400, sequences of 10, GMM 5 modes, Adam 1e-4, batch 100), one process, CPU.
2. ``robolearn.evaluate.evaluate_agent`` on the checkpoint of the last epoch: MT10, held-out
   goals (evaluation seed 1000; the demonstrations were collected with seed 0, and the
   (task, goal seed) pairs are checked against the store), Meta-World protocol (success at
   any step within 500).

Writes ``benchmarks/results/bc_rnn_mt10.md`` (machine, load, commands, epochs, wall times,
final train/valid losses, the per-task success table) and ``<out>/report.json``.

Run inside the robomimic venv (``bash scripts/setup_robomimic.sh``), from the repository root:
    .venv-robomimic/bin/python benchmarks/bc_rnn_mt10.py --dataset data/mt10_demos.zarr
    .venv-robomimic/bin/python benchmarks/bc_rnn_mt10.py --checkpoint <model.pth>  # eval only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see robolearn/cli.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import RESULTS, machine, write_result  # noqa: E402
from robolearn.baselines.bc_rnn import RobomimicAgent, train_bc_rnn  # noqa: E402
from robolearn.evaluate import check_heldout_seeds, eval_seeds, evaluate_agent  # noqa: E402

log = logging.getLogger("benchmarks.bc_rnn_mt10")
_EPOCH_LOG = re.compile(r"^(Train|Validation) Epoch (\d+)\n(\{.*?\n\})", re.M | re.S)


def epoch_losses(robomimic_log: Path) -> dict[str, dict[int, float]]:
    """``{"Train": {epoch: loss}, "Validation": {epoch: loss}}`` from robomimic's output."""
    out: dict[str, dict[int, float]] = {"Train": {}, "Validation": {}}
    for m in _EPOCH_LOG.finditer(robomimic_log.read_text()):
        out[m[1]][int(m[2])] = float(json.loads(m[3])["Loss"])
    return out


def _loss_line(losses: dict[str, dict[int, float]]) -> str:
    train, valid = losses["Train"], losses["Validation"]
    if not train:
        return "not found in the log"
    epochs = sorted(train)
    picks = sorted({epochs[0], *epochs[len(epochs) // 4 :: max(1, len(epochs) // 4)],
                    epochs[-1]})
    parts = [f"epoch {e}: {train[e]:.3f}" + (f" / {valid[e]:.3f}" if e in valid else "")
             for e in picks]
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="data/mt10_demos.zarr", help="MT10 episode store")
    p.add_argument("--out", default="runs/bc_rnn_mt10", help="run directory")
    p.add_argument("--epochs", type=int, default=60, help="epochs of --steps-per-epoch steps")
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--gmm", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--train-seed", type=int, default=1)
    p.add_argument("--checkpoint", default=None, help="evaluate this .pth, skip training")
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes per task")
    p.add_argument("--seed", type=int, default=1000, help="evaluation goal seed")
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    p.add_argument("--result", default="bc_rnn_mt10", help="benchmarks/results/<name>.md")
    p.add_argument("--append", action="store_true",
                   help="add a section to the result file instead of replacing it")
    p.add_argument("--section", default="", help="the appended section's title")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = " ".join([sys.executable.replace(os.getcwd() + "/", ""),
                        *map(shlex.quote, sys.argv)])

    load_before = os.getloadavg()
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        ckpt = train_bc_rnn(
            args.dataset, args.out, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
            gmm=args.gmm, seed=args.train_seed, overwrite=args.overwrite,
        )
    train_wall = time.perf_counter() - t0
    load_after_train = os.getloadavg()

    agent = RobomimicAgent(ckpt, device="cpu")
    info = agent.train_info
    run_dir = Path(info.get("config", ckpt)).parent
    tasks = agent.tasks
    held_out = check_heldout_seeds(
        args.seed, eval_seeds(args.seed, tasks, args.episodes),
        dataset=info.get("dataset"), collect_seed=info.get("collect_seed"),
    )
    t1 = time.perf_counter()
    result = evaluate_agent(agent, "MT10", episodes_per_task=args.episodes, seed=args.seed,
                            num_envs=args.num_envs)
    eval_wall = time.perf_counter() - t1
    report = {"checkpoint": str(ckpt), "train": info, "held_out": held_out,
              "train_wall_s": train_wall, "eval_wall_s": eval_wall, **result.to_dict()}
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))

    robomimic_log = run_dir / "robomimic_train.log"
    losses = epoch_losses(robomimic_log) if robomimic_log.exists() else None
    if args.checkpoint:  # trained elsewhere: take what the run recorded
        train_wall = float(info.get("train_seconds") or "nan")
    cfg = json.loads(Path(info["config"]).read_text()) if info.get("config") else {}
    algo, train = cfg.get("algo", {}), cfg.get("train", {})
    steps = (train.get("num_epochs", 0)
             * cfg.get("experiment", {}).get("epoch_every_n_steps", 0))
    rows = ["| task | success | successes | mean steps to success |", "|---|---:|---:|---:|"]
    for task in result.tasks:
        eps = [e for e in result.episodes if e.task == task]
        hits = [e.steps for e in eps if e.success]
        mean = f"{sum(hits) / len(hits):.0f}" if hits else "—"
        rows.append(f"| {task} | {len(hits) / len(eps):.2f} | {len(hits)}/{len(eps)} | {mean} |")
    total = sum(e.success for e in result.episodes)
    rows.append(f"| **mean** | **{result.mean_success:.3f}** | {total}/{len(result.episodes)} "
                "| |")
    rnn = algo.get("rnn", {})
    wall_line = (f"Training wall time: **{train_wall / 60:.1f} min** "
                 f"({train_wall / max(steps, 1):.3f} s/step incl. start-up)")
    if args.checkpoint:
        wall_line += ", as the run recorded it."
    else:
        wall_line += (f";\n  load average (1/5/15 min) before {_load(load_before)}, after "
                      f"training {_load(load_after_train)} (the 2 cores are shared with "
                      "other jobs).")
    trained_on = info.get("trained_on") or (
        f"this machine, in `.venv-robomimic` (torch {_version('torch')}, CPU, robomimic's "
        "`torch.set_num_threads(2)`), one process")
    body = f"""- Trained by robomimic {_version('robomimic')}'s own script
  (`{info.get('command', '?')}`) on {trained_on}.
- Data: `{info.get('dataset', '?')}`: {info.get('episodes', '?')} MT10 expert episodes,
  {info.get('steps', '?')} steps, collect seed {info.get('collect_seed', '?')}; exported with
  masks train/valid = {info.get('export', {}).get('train', '?')}/{info.get('export', {}).get('valid', '?')} episodes.
- BC-RNN (robomimic's low-dim settings): LSTM {rnn.get('num_layers')} x {rnn.get('hidden_dim')},
  seq_length {train.get('seq_length')}, GMM {algo.get('gmm', {}).get('enabled')}
  ({algo.get('gmm', {}).get('num_modes')} modes), Adam lr {algo.get('optim_params', {}).get('policy', {}).get('learning_rate', {}).get('initial')},
  batch {train.get('batch_size')}, {train.get('num_epochs')} epochs x
  {cfg.get('experiment', {}).get('epoch_every_n_steps')} steps = **{steps} gradient steps**,
  seed {train.get('seed')}; checkpoint of the last epoch: `{ckpt}`.
- {wall_line}
- Loss (GMM negative log-likelihood, train / valid) {_loss_line(losses) if losses else 'n/a'}.
  robomimic computes the valid loss in eval mode, where the GMM's std is 1e-4
  (`low_noise_eval`), so it reads as a scaled squared error, not a likelihood.
- Evaluation: `robolearn.evaluate.evaluate_agent(RobomimicAgent(ckpt), "MT10",
  episodes_per_task={args.episodes}, seed={args.seed}, num_envs={args.num_envs})`, goal seeds
  `episode_seed({args.seed}, task, i)`; held-out check: {held_out['seed_overlap_check']};
  {result.env_steps} env steps in {eval_wall / 60:.1f} min.

{chr(10).join(rows)}
"""
    title = "robomimic BC-RNN on MT10 (peer baseline)"
    path = RESULTS / f"{args.result}.md"
    if args.append and path.exists():
        section = (f"\n## {args.section or 'Another run'}\n\n- Date: "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n- Machine (evaluation): "
                   f"{machine()}\n- Command: `{command}`\n\n{body.rstrip()}\n")
        path.write_text(path.read_text() + section)
        print(section)
    else:
        write_result(args.result, title, body, command)


def _version(pkg: str) -> str:
    from importlib import metadata

    return metadata.version(pkg)


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in avg)


if __name__ == "__main__":
    main()
