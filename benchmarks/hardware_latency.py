"""Hardware link latency and control-loop timing.

1. Command round trip over the loopback remote: a ``RemoteRobot`` talking to
   ``python -m hardware.server --backend twin --no-realtime`` in another process (server-side
   SafeRobot on, as the command line runs it). ``status`` is the bare link (no robot work),
   ``get_observation`` adds the twin's observation, ``send_action`` adds the safety filter and one
   MuJoCo step (5 substeps).
2. Control-loop period error at the twin's default rate (80 Hz, 12.5 ms): the interval between
   consecutive ``send_action`` returns minus the nominal period, for
   a. a fixed-rate loop (one ``time.sleep`` to each tick) driving an as-fast-as-possible twin,
   b. the real-time twin pacing itself (``TwinRobot(realtime=True)``, the loop does not sleep),
   c. b through ``SafeRobot(RemoteRobot)`` to the real-time twin served in another process.
   Each step reads an observation and sends the scripted expert's action.

Writes benchmarks/results/hardware_latency.md with the machine.

    python benchmarks/hardware_latency.py                 # ~30 s
    python benchmarks/hardware_latency.py --roundtrips 5000 --steps 2000
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import write_result  # noqa: E402
from hardware import RemoteRobot, SafeRobot, SafetyConfig, TwinRobot  # noqa: E402
from sim import ScriptedExpert  # noqa: E402

TASK = "reach-v3"
TOKEN = "benchmark"


def start_server(realtime: bool) -> tuple[subprocess.Popen, int]:
    """``python -m hardware.server`` on a free loopback port; returns (process, port)."""
    args = [sys.executable, "-m", "hardware.server", "--backend", "twin", "--task", TASK,
            "--port", "0", "--token", TOKEN, "--log-level", "WARNING",
            "--realtime" if realtime else "--no-realtime"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT)))
    deadline, text = time.monotonic() + 60, ""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        match = re.search(r"hardware\.server listening on tcp://127\.0\.0\.1:(\d+)\n", text)
        if match:
            return proc, int(match.group(1))
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            text += chunk.decode()
    proc.kill()
    raise RuntimeError(f"server did not start: {text}")


def percentiles_ms(seconds: list[float]) -> tuple[float, float, float]:
    ms = np.array(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max())


def roundtrips(n: int) -> list[tuple[str, float, float, float]]:
    proc, port = start_server(realtime=False)
    rows = []
    try:
        with RemoteRobot("127.0.0.1", port, token=TOKEN, timeout_s=2.0) as robot:
            action = np.zeros(4, np.float32)
            calls: dict[str, Callable[[], object]] = {
                "status (bare link)": robot.status,
                "get_observation": robot.get_observation,
                "send_action (+ safety + 1 sim step)": lambda: robot.send_action(action),
            }
            for name, call in calls.items():
                for _ in range(50):
                    call()
                times = []
                for i in range(n):
                    if name.startswith("send") and i % 400 == 399:
                        robot.reset_episode()  # stay inside Meta-World's 500-step horizon
                    t0 = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - t0)
                rows.append((name, *percentiles_ms(times)))
                print(f"round trip {name}: p50 {rows[-1][1]:.3f} ms", flush=True)
    finally:
        proc.kill()
        proc.wait(10)
    return rows


def control_loop(robot, expert: ScriptedExpert, steps: int, period: float,
                 pace: bool) -> list[float]:
    """Returns the ``send_action`` return times of ``steps`` steps."""
    stamps = []
    next_tick = time.monotonic()
    for _ in range(steps):
        if pace:
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_tick += period
        obs = robot.get_observation()
        robot.send_action(expert.act(obs["state"]))
        stamps.append(time.monotonic())
    return stamps


def period_errors(steps: int) -> list[tuple[str, float, float, float, float, int]]:
    expert = ScriptedExpert(TASK)
    rows = []
    safety = SafetyConfig.for_metaworld(watchdog_timeout_s=0.1)

    def summarise(name: str, stamps: list[float], period: float) -> None:
        err = np.diff(stamps) - period
        absolute = np.abs(err) * 1e3
        missed = int((err > period / 2).sum())
        rows.append((name, float(np.percentile(absolute, 50)), float(np.percentile(absolute, 99)),
                     float(absolute.max()), float(np.mean(np.diff(stamps))) * 1e3, missed))
        print(f"loop {name}: |error| p50 {rows[-1][1]:.3f} ms p99 {rows[-1][2]:.3f} ms",
              flush=True)

    with TwinRobot(TASK, seed=0) as twin:
        stamps = control_loop(twin, expert, min(steps, 499), twin.period_s, pace=True)
        summarise("a. fixed-rate loop, twin as fast as possible", stamps, twin.period_s)
    with SafeRobot(TwinRobot(TASK, seed=0, realtime=True), safety) as robot:
        stamps = control_loop(robot, expert, min(steps, 499), robot.robot.period_s, pace=False)
        summarise("b. real-time twin (SafeRobot, in process)", stamps, robot.robot.period_s)
    proc, port = start_server(realtime=True)
    try:
        remote = RemoteRobot("127.0.0.1", port, token=TOKEN, timeout_s=1.0)
        with SafeRobot(remote, safety) as robot:
            stamps = control_loop(robot, expert, min(steps, 499), 1 / 80, pace=False)
            summarise("c. real-time twin over the loopback link (SafeRobot(RemoteRobot))",
                      stamps, 1 / 80)
    finally:
        proc.kill()
        proc.wait(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roundtrips", type=int, default=2000, help="calls per operation")
    parser.add_argument("--steps", type=int, default=499,
                        help="control steps per loop variant (at most 499: one episode)")
    parser.add_argument("--note", default="", help="a line of context added to the results")
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rt = roundtrips(args.roundtrips)
    loops = period_errors(args.steps)
    body = "\n".join([
        f"Load average at start (1, 5, 15 min): {load}. Task {TASK}; loopback TCP via ZeroMQ "
        "(DEALER/ROUTER), msgpack payloads; the server is `python -m hardware.server` in "
        "another process.",
        "",
        f"## Command round trip ({args.roundtrips} calls each, after 50 warm-up calls)",
        "",
        "| request | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {n} | {p50:.3f} | {p99:.3f} | {mx:.3f} |" for n, p50, p99, mx in rt],
        "",
        f"## Control-loop period error at 80 Hz (12.5 ms), {min(args.steps, 499)} steps each",
        "",
        "|period − 12.5 ms| between consecutive `send_action` returns; each step reads an "
        "observation and sends the scripted expert's action. Missed = periods more than "
        "half a period late.",
        "",
        "| loop | p50 ms | p99 ms | max ms | mean period ms | missed |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {n} | {p50:.3f} | {p99:.3f} | {mx:.3f} | {mean:.3f} | {missed} |"
          for n, p50, p99, mx, mean, missed in loops],
        "",
        *([args.note, ""] if args.note else []),
    ])
    write_result("hardware_latency", "Hardware link latency and control-loop timing", body,
                 shlex.join(["python", "benchmarks/hardware_latency.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
