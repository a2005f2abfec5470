"""Ray Train with one worker vs the local trainer: optimiser steps/s, same run, same dataset.

Each round trains the same config twice, alternating: ``trainer=local`` in this process, then
``trainer=ray`` with one worker (all the machine's CPUs, the same number of torch threads) on a
local Ray instance started once for the whole benchmark. Throughput is the trainer loop's own
figure (``TrainResult.steps_per_s``: optimiser steps over the loop's wall time, including its
validation and final checkpoint; for Ray also the report of that checkpoint to Ray Train). The
fixed costs Ray adds once per command (starting the instance; the TorchTrainer's controller and
worker processes) are measured separately.

    python benchmarks/ray_train_throughput.py --dataset data/mt10_demos.zarr

No dataset yet? ``robolearn collect ray.num_workers=0 suite=MT1:reach-v3 episodes_per_task=20
out=/tmp/mt1.zarr`` makes a small one (throughput depends on the model, not the dataset size).

Target (issue #4): ratio >= 0.85.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _machine import rss_mb, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="data/mt10_demos.zarr")
    ap.add_argument("--policy", default="flow_matching")
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps per run")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.dataset).exists():
        sys.exit(f"no dataset at {args.dataset}: make one with `robolearn collect "
                 "ray.num_workers=0 suite=MT1:reach-v3 episodes_per_task=20 out=...` and pass "
                 "--dataset")
    import psutil

    from robolearn.cli import compose
    from robolearn.cluster import RayTrainConfig, ray_session
    from robolearn.train import train

    tmp = Path(tempfile.mkdtemp(prefix="robolearn-ray-bench-"))
    atexit.register(shutil.rmtree, tmp, True)
    base = [f"dataset={args.dataset}", f"policy={args.policy}", f"steps={args.steps}",
            f"checkpoint_every={args.steps}", f"val_every={args.steps}", "log_every=50",
            "tensorboard=false", "progress=false"]

    me = psutil.Process()
    rss_before = me.memory_info().rss / 2**20
    t0 = time.perf_counter()
    with ray_session(RayTrainConfig()) as ray:
        start_s = time.perf_counter() - t0
        ray_pids = [p.pid for p in me.children(recursive=True)]
        driver_mb = me.memory_info().rss / 2**20 - rss_before
        ray_mb = rss_mb(ray_pids)
        print(f"local Ray instance: {start_s:.1f} s to start; driver RSS +{driver_mb:.0f} MB, "
              f"{len(ray_pids)} Ray processes {ray_mb:.0f} MB RSS", flush=True)
        cpus = ray.cluster_resources()["CPU"]
        rows = []
        for r in range(args.rounds):
            t = time.perf_counter()
            local = train(compose("train", base + [f"out={tmp / f'local{r}'}"]))
            local_wall = time.perf_counter() - t
            t = time.perf_counter()
            on_ray = train(compose("train", base + [f"out={tmp / f'ray{r}'}", "trainer=ray",
                                                    "ray.num_workers=1"]))
            ray_wall = time.perf_counter() - t
            rows.append((r, local.steps_per_s, on_ray.steps_per_s, local_wall, ray_wall))
            print(f"round {r}: local {local.steps_per_s:.1f} steps/s, ray (1 worker) "
                  f"{on_ray.steps_per_s:.1f} steps/s; wall {local_wall:.1f} s vs "
                  f"{ray_wall:.1f} s", flush=True)
    loc_m = float(np.median([x[1] for x in rows]))
    ray_m = float(np.median([x[2] for x in rows]))
    over = float(np.median([x[4] - args.steps / x[2] for x in rows]))  # wall - loop time
    table = ["| round | local (steps/s) | Ray Train, 1 worker (steps/s) | ratio | wall local / "
             "Ray (s) |", "|---|---|---|---|---|"]
    table += [f"| {r} | {a:.1f} | {b:.1f} | {b / a:.3f} | {c:.1f} / {d:.1f} |"
              for r, a, b, c, d in rows]
    table.append(f"| median | {loc_m:.1f} | {ray_m:.1f} | **{ray_m / loc_m:.3f}** | |")
    load = os.getloadavg()
    cfg = compose("train", base)
    body = (
        f"Policy {args.policy} (default config: 3×512 residual MLP), batch {cfg.batch_size} "
        f"(per worker; 1 worker), {args.steps} optimiser steps per run, one validation and one "
        f"checkpoint at the end; dataset {args.dataset}. Local: torch's default threads "
        f"({os.cpu_count()}); Ray: 1 worker × {cpus:g} CPUs → as many torch threads. "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average at the end "
        f"{load[0]:.2f}/{load[1]:.2f}.\n\n" + "\n".join(table) +
        f"\n\nTarget: ratio >= 0.85 — {'met' if ray_m / loc_m >= 0.85 else 'NOT met'}.\n\n"
        f"Fixed costs, paid once per command (not per step or checkpoint): the local Ray "
        f"instance took {start_s:.1f} s to start (driver RSS +{driver_mb:.0f} MB; its "
        f"{len(ray_pids)} processes {ray_mb:.0f} MB RSS); a `trainer=ray` run spends a median "
        f"{over:.1f} s more wall time than its training loop (TorchTrainer controller and worker "
        f"processes start, process group, dataset load in the worker, result hand-back).")
    write_result("ray_train_throughput", "Ray Train (1 worker) vs the local trainer", body,
                 "python benchmarks/ray_train_throughput.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
