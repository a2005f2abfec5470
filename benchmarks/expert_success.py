"""Success rate of Meta-World's scripted experts on a suite, under the Meta-World protocol.

An episode succeeds if ``info["success"]`` fires at any step within the 500-step horizon; it
stops at the first success. Episode ``i`` of every task uses goal seed ``seed + i`` (held out
from training seeds by default). Experts read ``env.expert_observation()``, so ML suites (goal
hidden) work too.

The markdown table (per task: success rate, mean steps to success) is printed and written to
``benchmarks/results/expert_success.md``; each suite keeps its own section there, so runs for
different suites accumulate.

Usage (from the repository root):
    python -m benchmarks.expert_success --suite MT10 --episodes 10
    python -m benchmarks.expert_success --suite MT50 --episodes 5 --workers 2
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from sim import HORIZON, ScriptedExpert, get_suite, make_env

logger = logging.getLogger("benchmarks.expert_success")

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "expert_success.md"
_SECTION = re.compile(r"<!-- suite:(?P<name>\S+) -->\n.*?<!-- end suite:(?P=name) -->\n", re.S)


@dataclass(frozen=True)
class TaskResult:
    """Outcome of one task's episodes."""

    task: str
    steps_to_success: tuple[int | None, ...]  # per episode; None = no success in HORIZON steps
    seconds: float

    @property
    def success_rate(self) -> float:
        return sum(s is not None for s in self.steps_to_success) / len(self.steps_to_success)

    @property
    def mean_steps(self) -> float | None:
        hits = [s for s in self.steps_to_success if s is not None]
        return sum(hits) / len(hits) if hits else None


def run_task(
    task: str, episodes: int, seed: int, goal_observable: bool, noise_std: float
) -> TaskResult:
    """Runs the scripted expert for ``episodes`` episodes of ``task``."""
    start = time.perf_counter()
    env = make_env(task, goal_observable=goal_observable)
    expert = ScriptedExpert(task, noise_std=noise_std)
    steps: list[int | None] = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        expert.reset(seed=seed + episode)
        first = None
        for step in range(1, HORIZON + 1):
            _, _, _, _, info = env.step(expert.act(env.expert_observation()))
            if info["success"]:
                first = step
                break
        steps.append(first)
    env.close()
    return TaskResult(task, tuple(steps), time.perf_counter() - start)


def _command() -> str:
    spec = globals().get("__spec__")
    program = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    versions = ", ".join(
        f"{pkg} {metadata.version(pkg)}" for pkg in ("metaworld", "mujoco", "numpy", "gymnasium")
    )
    return (
        f"{platform.platform()}; {cpu}; {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; {versions}"
    )


def render_markdown(
    suite_name: str,
    results: list[TaskResult],
    *,
    episodes: int,
    seed: int,
    noise_std: float,
    workers: int,
    wall_seconds: float,
) -> str:
    """The suite's markdown section: settings, machine, command and the per-task table."""
    rates = [r.success_rate for r in results]
    all_steps = [s for r in results for s in r.steps_to_success if s is not None]
    lines = [
        f"<!-- suite:{suite_name} -->",
        f"## {suite_name}",
        "",
        f"- Tasks: {len(results)}; episodes per task: {episodes}; goal seeds "
        f"{seed}..{seed + episodes - 1}; expert action noise std: {noise_std}",
        f'- Protocol: success if `info["success"]` at any step within {HORIZON} steps; '
        "an episode stops at its first success",
        f"- Mean success rate: **{sum(rates) / len(rates):.3f}**; tasks at 100%: "
        f"{sum(r == 1.0 for r in rates)}/{len(rates)}",
        f"- Machine: {_machine()}",
        f"- Command: `{_command()}` ({workers} worker processes, "
        f"{wall_seconds:.0f} s wall, {datetime.date.today().isoformat()})",
        "",
        "| task | success rate | successes | mean steps to success |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        mean = "—" if r.mean_steps is None else f"{r.mean_steps:.1f}"
        hits = sum(s is not None for s in r.steps_to_success)
        lines.append(f"| {r.task} | {r.success_rate:.2f} | {hits}/{episodes} | {mean} |")
    overall = f"{sum(all_steps) / len(all_steps):.1f}" if all_steps else "—"
    total_hits = len(all_steps)
    lines.append(
        f"| **all** | **{sum(rates) / len(rates):.3f}** | {total_hits}/{episodes * len(results)} "
        f"| {overall} |"
    )
    lines.append(f"<!-- end suite:{suite_name} -->")
    return "\n".join(lines) + "\n"


def write_section(path: Path, suite_name: str, section: str) -> None:
    """Replaces (or appends) ``suite_name``'s section in the results file."""
    header = (
        "# Scripted expert success (Meta-World protocol)\n\n"
        "Written by `benchmarks/expert_success.py`; one section per suite.\n\n"
    )
    text = path.read_text() if path.exists() else header
    sections = {m["name"]: m.group(0) for m in _SECTION.finditer(text)}
    sections[suite_name] = section
    order = ["MT10", "MT50", "ML10", "ML45"]
    names = sorted(sections, key=lambda n: (order.index(n) if n in order else len(order), n))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(sections[n] for n in names))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="MT50", help="MT1:<task>, MT10, MT50, ML10 or ML45")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task")
    parser.add_argument("--seed", type=int, default=12345, help="goal seed of episode 0")
    parser.add_argument("--noise-std", type=float, default=0.0, help="expert action noise")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes={args.episodes} must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    suite = get_suite(args.suite)
    tasks = suite.tasks
    workers = max(1, min(args.workers, len(tasks)))
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                run_task, task, args.episodes, args.seed, suite.goal_observable, args.noise_std
            )
            for task in tasks
        ]
        results = []
        for future in futures:
            result = future.result()
            logger.info(
                "%-28s success %.2f in %.1f s", result.task, result.success_rate, result.seconds
            )
            results.append(result)
    wall = time.perf_counter() - start

    section = render_markdown(
        suite.name,
        results,
        episodes=args.episodes,
        seed=args.seed,
        noise_std=args.noise_std,
        workers=workers,
        wall_seconds=wall,
    )
    write_section(args.output, suite.name, section)
    print(section)
    logger.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
