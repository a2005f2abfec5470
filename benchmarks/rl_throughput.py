"""Sample throughput of ``robolearn finetune`` (RLlib PPO) vs the bare env loop, same run.

Three loops on the same task and base checkpoint, measured in one process, bare loops before
and after the RLlib iterations (so machine drift shows):

- **env**: ``TaskEnv`` stepped with zero actions (Meta-World's fast step and our bookkeeping);
- **env + base**: ``ResidualEnv`` with δ = 0 (the frozen base policy's chunked inference at
  every step, batch 1): the difference to *env* is the base policy's cost per step;
- **RLlib**: ``robolearn finetune``'s algorithm (1 remote env runner × ``--envs`` sub-envs,
  the learner in the driver), ``--iterations`` PPO iterations of ``--batch`` env steps:
  sampling throughput (RLlib's sampling timer) and end-to-end (sampling + learning).

    python benchmarks/rl_throughput.py --checkpoint /tmp/fresh/runs/mt10_flow_matching \
        --task peg-insert-side-v3 --iterations 3 --batch 4000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402


def bare_loop(env, steps: int) -> float:
    """Env steps per second of ``env`` under zero actions, resetting at episode ends."""
    import numpy as np

    zero = np.zeros(env.action_space.shape, np.float32)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(zero)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--task", default="peg-insert-side-v3")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4000)
    ap.add_argument("--envs", type=int, default=4)
    ap.add_argument("--bare-steps", type=int, default=3000)
    args = ap.parse_args()

    import gymnasium as gym
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from robolearn.cli import compose
    from robolearn.cluster import ray_session
    from robolearn.rl.callbacks import Curriculum
    from robolearn.rl.env import TaskEnv
    from robolearn.rl.finetune import base_distribution, build_config
    from robolearn.rl.module import model_config
    from robolearn.rl.residual import ResidualEnv
    from robolearn.runtime import load_policy

    cfg = compose("finetune", [f"checkpoint={args.checkpoint}", f"suite=MT1:{args.task}",
                               f"ppo.train_batch_size={args.batch}", "ray.num_workers=1",
                               f"ray.num_envs_per_worker={args.envs}"])
    base = load_policy(args.checkpoint, device="cpu")
    env = TaskEnv([args.task])
    renv = ResidualEnv(base, [args.task])
    rows = []
    rows.append(("env (before)", bare_loop(env, args.bare_steps)))
    rows.append(("env + base policy (before)", bare_loop(renv, args.bare_steps)))

    curriculum = Curriculum(base_distribution(cfg, [args.task]))
    env_config = {"base": args.checkpoint, "tasks": [args.task],
                  "distribution": curriculum.distribution.to_dict()}
    spaces = (gym.spaces.Box(-np.inf, np.inf, (39 + 1 + 4,), np.float32),
              gym.spaces.Box(-1.0, 1.0, (4,), np.float32))
    norm = base.policy.obs_encoder.obs_normalizer
    mcfg = model_config(obs_dim=39, action_dim=4, num_tasks=1, obs_center=norm.center.tolist(),
                        obs_scale=norm.scale.tolist())
    sample_s = learn_s = total_s = 0.0
    steps = 0
    with ray_session(cfg.ray):
        t0 = time.perf_counter()
        algo = build_config(cfg, env_config, spaces, mcfg).build_algo()
        build_s = time.perf_counter() - t0
        try:
            algo.train()  # warm-up: actor start, first weights sync
            for _ in range(args.iterations):
                t0 = time.perf_counter()
                r = algo.train()
                total_s += time.perf_counter() - t0
                timers = r["timers"]
                sample_s += timers["env_runner_sampling_timer"]
                learn_s += timers["learner_update_timer"]
                steps += int(r["env_runners"]["num_env_steps_sampled"])
        finally:
            algo.stop()
    rows.append(("RLlib: sampling (1 env runner)", steps / sample_s))
    rows.append(("RLlib: end to end (sampling + PPO update)", steps / total_s))
    rows.append(("env (after)", bare_loop(env, args.bare_steps)))
    rows.append(("env + base policy (after)", bare_loop(renv, args.bare_steps)))

    env_rate = np.mean([r for n, r in rows if n.startswith("env (")])
    base_rate = np.mean([r for n, r in rows if n.startswith("env + base")])
    base_ms = 1000 * (1 / base_rate - 1 / env_rate)
    body = ["| loop | env steps/s |", "|---|---|"]
    body += [f"| {n} | {r:.0f} |" for n, r in rows]
    body += ["", f"- Base policy inference per env step (chunked, batch 1): **{base_ms:.2f} ms** "
             f"(env + base vs env alone, mean of before/after).",
             f"- RLlib sampling vs the bare env + base loop: **{(steps / sample_s) / base_rate:.2f}×**"
             f"; end to end (with PPO updates: {learn_s / args.iterations:.1f} s per iteration "
             f"of {args.batch} steps) **{(steps / total_s) / base_rate:.2f}×**.",
             "- The sampling row divides by RLlib's own `env_runner_sampling_timer`, which RLlib "
             "smooths across iterations (the warm-up iteration included): approximate. The end-to-"
             "end row is wall-clock around `algo.train()`, the figure to use.",
             f"- Algorithm build (env runner actor start, module, learner): {build_s:.1f} s.",
             f"- {args.iterations} timed iterations after one warm-up, {steps} env steps, "
             f"1 env runner × {args.envs} sub-envs, learner in the driver (CPU).",
             f"- Load average at the end: {os.getloadavg()[0]:.1f} (2 cores, shared)."]
    write_result("rl_throughput", "RLlib residual PPO: sample throughput vs the bare env loop",
                 "\n".join(body), "python benchmarks/rl_throughput.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
