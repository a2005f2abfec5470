"""Collection throughput: `robolearn collect` (episode store + validation) vs a raw loop.

Both sides run the same scripted experts on the same goal seeds and step the same number of
env steps; the raw side is Meta-World's own env class stepped in a bare Python loop that keeps
nothing. Rounds alternate (raw, store, raw, store, ...) so machine drift hits both alike.

    python benchmarks/collect_throughput.py --suite MT10 --episodes-per-task 10 --rounds 2

Target (issue #2): store and validation cost <= 10%, i.e. ratio >= 0.90.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402


def raw_loop(tasks: list[str], episodes: int, seed: int, max_attempts: int) -> tuple[int, float]:
    """The experts in Meta-World's bare env classes; returns (env steps, seconds)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    from robolearn.collect import episode_seed

    steps = 0
    t0 = time.perf_counter()
    for task in tasks:
        env = ALL_V3_ENVIRONMENTS[task](reward_function_version="v2")
        env._partially_observable = False
        del env.sawyer_observation_space
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        policy = ENV_POLICY_MAP[task]()
        kept = attempt = 0
        while kept < episodes and attempt < max_attempts:
            env.seed(episode_seed(seed, task, attempt))
            obs, _ = env.reset()
            attempt += 1
            for _ in range(env.max_path_length):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    action = policy.get_action(obs)
                obs, reward, term, trunc, info = env.step(action.clip(-1, 1))
                steps += 1
                if info["success"]:
                    kept += 1
                    break
        env.close()
    return steps, time.perf_counter() - t0


def store_loop(suite: str, episodes: int, seed: int, max_attempts: int, out: Path) -> tuple[int, float]:
    from robolearn.cli import compose
    from robolearn.collect import collect

    cfg = compose("collect", ["ray.num_workers=0", f"suite={suite}",
                              f"episodes_per_task={episodes}", f"seed={seed}", f"out={out}",
                              "overwrite=true", f"max_attempts_per_task={max_attempts}"])
    t0 = time.perf_counter()
    summary = collect(cfg, progress=False)
    return summary.env_steps, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="MT10")
    ap.add_argument("--episodes-per-task", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import sim

    tasks = list(sim.get_suite(args.suite).train_tasks)
    max_attempts = 3 * args.episodes_per_task
    tmp = Path(tempfile.mkdtemp(prefix="robolearn-bench-"))
    rows = []
    try:
        for r in range(args.rounds):
            raw_steps, raw_s = raw_loop(tasks, args.episodes_per_task, args.seed, max_attempts)
            st_steps, st_s = store_loop(args.suite, args.episodes_per_task, args.seed,
                                        max_attempts, tmp / "demos.zarr")
            if raw_steps != st_steps:
                raise SystemExit(f"the two sides stepped differently: {raw_steps} vs {st_steps}")
            rows.append((r, raw_steps, raw_steps / raw_s, st_steps / st_s, raw_s / st_s))
            print(f"round {r}: raw {raw_steps / raw_s:.0f} steps/s, store {st_steps / st_s:.0f} "
                  f"steps/s, ratio {raw_s / st_s:.3f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    raw_total = sum(x[1] for x in rows) / sum(x[1] / x[2] for x in rows)
    st_total = sum(x[1] for x in rows) / sum(x[1] / x[3] for x in rows)
    table = ["| round | env steps | raw loop (steps/s) | robolearn collect (steps/s) | ratio |",
             "|---|---|---|---|---|"]
    table += [f"| {r} | {n} | {a:.0f} | {b:.0f} | {c:.3f} |" for r, n, a, b, c in rows]
    table.append(f"| all | {sum(x[1] for x in rows)} | {raw_total:.0f} | {st_total:.0f} | "
                 f"**{st_total / raw_total:.3f}** |")
    body = (f"Suite {args.suite}, {args.episodes_per_task} successful episodes per task, goal seed "
            f"{args.seed}. The collect side's time includes creating the store and starting the "
            "writer process (once per command).\n\n" + "\n".join(table) +
            f"\n\nTarget: ratio >= 0.90 — {'met' if st_total / raw_total >= 0.9 else 'NOT met'}.")
    write_result("collect_throughput", "Collection throughput: episode store vs raw env loop", body,
                 "python benchmarks/collect_throughput.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
