"""Policy inference latency and training throughput.

Measures, on Meta-World-sized inputs (Do=39, Da=4, To=2, Ta=16, 50 tasks):

1. per-chunk inference latency at batch 1 on ONE CPU thread (`torch.set_num_threads(1)`):
   flow matching K=10 (and K=1) vs DDPM-100 vs regression, all on the same 3×512 ResidualMLP;
2. optimiser steps/s (AdamW, flow-matching loss) at batch 256 for the MLP (fp32 and bf16
   autocast) and the ConditionalUnet1D (fp32 and bf16 autocast), for each thread count in
   --train-threads (on CPU).

Writes a Markdown table to benchmarks/results/policy_latency.md (or --out) with the machine.

    python benchmarks/policy_latency.py                      # CPU, the defaults
    OMP_WAIT_POLICY=PASSIVE python benchmarks/policy_latency.py   # on a shared, busy CPU box
    python benchmarks/policy_latency.py --device cuda --out /tmp/policy_latency_gpu.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import make_policy  # noqa: E402

DIMS = {
    "obs_dim": 39,
    "action_dim": 4,
    "num_tasks": 50,
    "obs_horizon": 2,
    "action_horizon": 16,
    "action_exec_horizon": 8,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device, reps: int, warmup: int) -> list[float]:
    """Seconds per call, one entry per repetition."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _batch(policy, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A random batch; also fits the policy's normalisers on it."""
    cfg = policy.config
    batch = {
        "obs": torch.randn(batch_size, cfg.obs_horizon, cfg.obs_dim, device=device),
        "action": torch.randn(batch_size, cfg.action_horizon, cfg.action_dim, device=device),
        "task": torch.randint(0, cfg.num_tasks, (batch_size,), device=device),
    }
    policy.fit_normalizers(batch["obs"], batch["action"])
    return batch


def _machine(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; torch {torch.__version__} "
        f"(default intra-op threads {torch.get_num_threads()}); Python {platform.python_version()}",
    ]
    env = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    lines.append("- environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    if hasattr(os, "getloadavg"):
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        lines.append(f"- load average at start (1, 5, 15 min): {load}")
    if device.type == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name(device)}")
    return "\n".join(lines)


def latency(device: torch.device, reps: int) -> list[tuple[str, int, float, float]]:
    """(name, network evaluations, median ms, p90 ms) per chunk at batch 1."""
    rows = []
    cases = [
        ("flow_matching K=10", "flow_matching", {"num_inference_steps": 10}, 10),
        ("flow_matching K=1", "flow_matching", {"num_inference_steps": 1}, 1),
        ("diffusion DDPM-100", "diffusion", {"num_diffusion_steps": 100}, 100),
        ("regression", "regression", {}, 1),
    ]
    for label, name, extra, nfe in cases:
        torch.manual_seed(0)
        policy = make_policy(name, **DIMS, backbone="mlp", **extra).to(device).eval()
        batch = _batch(policy, 1, device)
        n = max(5, reps // 10) if nfe >= 100 else reps
        times = _time(
            lambda p=policy, b=batch: p.predict_action_chunk(b["obs"], b["task"]), device, n, 3
        )
        ms = sorted(t * 1e3 for t in times)
        rows.append((label, nfe, statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]))
        print(f"latency {label}: {rows[-1][2]:.2f} ms", flush=True)
    return rows


def throughput(
    device: torch.device, batch_size: int, steps: int, threads: int
) -> list[tuple[str, str, int, int, float, float]]:
    """(backbone, precision, threads, parameters, steps/s, ms/step), flow-matching steps."""
    torch.set_num_threads(threads)
    rows = []
    for backbone in ("mlp", "unet1d"):
        for precision in ("fp32", "bf16 autocast"):
            torch.manual_seed(0)
            policy = make_policy("flow_matching", **DIMS, backbone=backbone).to(device).train()
            optimiser = torch.optim.AdamW(policy.parameters(), lr=1e-4)
            batch = _batch(policy, batch_size, device)
            use_bf16 = precision != "fp32"

            def step(p=policy, o=optimiser, b=batch, bf16=use_bf16) -> None:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss, _ = p.compute_loss(b)
                o.zero_grad(set_to_none=True)
                loss.backward()
                o.step()

            times = _time(step, device, steps, 2)
            sec = statistics.median(times)
            params = sum(p.numel() for p in policy.parameters())
            rows.append((backbone, precision, threads, params, 1.0 / sec, sec * 1e3))
            print(f"train {backbone} {precision} {threads}T: {1.0 / sec:.1f} steps/s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=50, help="latency repetitions (DDPM: /10)")
    parser.add_argument("--train-steps", type=int, default=10, help="timed steps per case")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--train-threads",
        default=f"1,{torch.get_num_threads()}",
        help="comma-separated CPU thread counts for the training benchmark",
    )
    parser.add_argument("--note", default="", help="a line of context added to the results")
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "policy_latency.md")
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    machine = _machine(device)

    torch.set_num_threads(1)
    lat = latency(device, args.reps)
    thread_counts = sorted({int(t) for t in args.train_threads.split(",")})
    if device.type != "cpu":
        thread_counts = thread_counts[-1:]
    thr = [
        row
        for n in thread_counts
        for row in throughput(device, args.batch_size, args.train_steps, n)
    ]

    fm10 = lat[0][2]
    ddpm = lat[2][2]
    lines = [
        "# Policy inference latency and training throughput",
        "",
        f"Command: `python {shlex.join(['benchmarks/policy_latency.py', *sys.argv[1:]])}`, "
        f"device `{device}`, {time.strftime('%Y-%m-%d %H:%M %Z')}.",
        "",
        machine,
        "",
        "Inputs: Do=39, Da=4, To=2, Ta=16, 50 tasks (Meta-World MT50 sizes).",
        "",
        "## Inference: one chunk at batch 1, 1 CPU thread, 3×512 ResidualMLP",
        "",
        "| policy | network evaluations | median ms/chunk | p90 ms/chunk |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {n} | {e} | {m:.2f} | {p:.2f} |" for n, e, m, p in lat],
        "",
        f"DDPM-100 / flow matching K=10: {ddpm / fm10:.1f}× the latency.",
        "",
        f"## Training: flow-matching AdamW steps at batch {args.batch_size} on `{device}`",
        "",
        "| backbone | precision | CPU threads | parameters | steps/s | ms/step |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *[
            f"| {b} | {pr} | {t} | {n / 1e6:.2f}M | {s:.1f} | {ms:.1f} |"
            for b, pr, t, n, s, ms in thr
        ],
        "",
        f"Median over {args.train_steps} timed steps after 2 warm-up steps; latency median over "
        f"{args.reps} chunks (DDPM {max(5, args.reps // 10)}) after 3 warm-up chunks.",
        "",
        *([args.note, ""] if args.note else []),
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
