"""env.step throughput: sim's fast step vs Meta-World's own, side by side in one run.

For every task, two envs from ``sim.make_env`` — ``fast=True`` (the default, ``sim.fast``) and
``fast=False`` (Meta-World's step) — replay the same action sequences from the same reset seed:
uniform random actions, and the scripted expert's actions (recorded once beforehand, so the
expert's own time is not counted). Only ``env.step`` is timed, never ``reset``. The
three sides advance through each episode in lock step, 25 steps at a time (fast, Meta-World,
raw, fast, ...), so machine drift hits all sides alike; each 25-step chunk counts with its
fastest time over the rounds (a chunk another process pre-empted is slow in that round only).

"raw" is the bound: the same actions written straight into ``data.mocap_pos`` / ``data.ctrl``
with ``mj_step(nstep=5)`` + ``mj_forward`` and nothing else — the physics of one env step.

    python benchmarks/sim_step.py                     # MT50, 5 rounds of 500 steps
    python benchmarks/sim_step.py --tasks push-v3 reach-v3 --rounds 2 --steps 300 --no-write
    python benchmarks/sim_step.py --clock cpu      # thread CPU time: robust to a loaded machine

Targets (issue #17): median fast/Meta-World ratio over MT50 >= 2.5x, push and pick-place >= 4x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402

SEED = 0
# What a chunk's time is: wall-clock (the default), or with --clock cpu the thread's CPU time,
# which a neighbour's process pre-empting this one does not lengthen.
_CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
_clock = _CLOCKS["wall"]


def expert_actions(task: str, steps: int) -> np.ndarray:
    """The scripted expert's actions over one episode from reset seed SEED (then held)."""
    import sim

    env = sim.make_env(task)
    expert = sim.ScriptedExpert(task)
    obs, _ = env.reset(seed=SEED)
    actions = []
    for _ in range(steps):
        action = expert.act(obs)
        actions.append(action)
        obs, *_ = env.step(action)
    env.close()
    return np.array(actions, dtype=np.float32)


class _Raw:
    """The bare physics of an env's steps: mocap + ctrl written, mj_step x5, mj_forward.

    The mocap targets depend on the actions only (Meta-World's clipped running sum), so they
    are computed before any clock starts; the timed part writes them and steps.
    """

    def __init__(self, env, actions: np.ndarray) -> None:
        import mujoco

        self._mj = mujoco
        self.env = env
        inner = env.unwrapped_metaworld
        env.reset(seed=SEED)
        self.model, self.data = inner.model, inner.data
        self.mocap = np.empty((len(actions), 3))
        pos = inner.data.mocap_pos[0].copy()
        for k, action in enumerate(actions):
            pos = np.clip(
                pos + np.clip(action[:3], -1, 1) * inner.action_scale,
                inner.mocap_low,
                inner.mocap_high,
            )
            self.mocap[k] = pos
        self.ctrl = np.stack([actions[:, 3], -actions[:, 3]], axis=1).astype(np.float64)
        self.frame_skip = inner.frame_skip

    def run(self, start: int, stop: int) -> float:
        mj, model, data, nstep = self._mj, self.model, self.data, self.frame_skip
        mocap_pos, ctrl = data.mocap_pos, data.ctrl
        clock = _clock
        t0 = clock()
        for k in range(start, stop):
            mocap_pos[0] = self.mocap[k]
            ctrl[:] = self.ctrl[k]
            mj.mj_step(model, data, nstep=nstep)
            mj.mj_forward(model, data)
        return clock() - t0


def _run_env(env, actions: np.ndarray, start: int, stop: int) -> float:
    step = env.step
    clock = _clock
    t0 = clock()
    for k in range(start, stop):
        step(actions[k])
    return clock() - t0


def measure(task: str, steps: int, rounds: int, chunk: int = 25) -> dict[str, dict[str, float]]:
    """Steps/s of fast, Meta-World and raw, for random and expert actions.

    Within a round the three sides advance through the same episode in lock step, ``chunk``
    steps at a time, so a noisy neighbour on the machine slows all three alike. Each chunk's
    time is its fastest over the rounds (a chunk a neighbour's process pre-empted is slower
    in that round only), and a side's rate is its steps over the sum of those times.
    """
    import sim

    fast = sim.make_env(task, fast=True)
    slow = sim.make_env(task, fast=False)
    physics = sim.make_env(task, fast=True)
    rng = np.random.default_rng(SEED)
    sequences = {
        "random": rng.uniform(-1.0, 1.0, (steps, 4)).astype(np.float32),
        "expert": expert_actions(task, steps),
    }
    starts = list(range(0, steps, chunk))
    out: dict[str, dict[str, float]] = {}
    for kind, actions in sequences.items():
        seconds = {
            side: np.full((rounds, len(starts)), np.inf) for side in ("fast", "metaworld", "raw")
        }
        for env in (fast, slow):  # warm up (first-call caches), untimed
            env.reset(seed=SEED)
            _run_env(env, actions, 0, min(20, steps))
        for r in range(rounds):
            fast.reset(seed=SEED)
            slow.reset(seed=SEED)
            raw = _Raw(physics, actions)
            for c, start in enumerate(starts):
                stop = min(start + chunk, steps)
                seconds["fast"][r, c] = _run_env(fast, actions, start, stop)
                seconds["metaworld"][r, c] = _run_env(slow, actions, start, stop)
                seconds["raw"][r, c] = raw.run(start, stop)
        out[kind] = {side: steps / t.min(axis=0).sum() for side, t in seconds.items()}
    for env in (fast, slow, physics):
        env.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tasks", nargs="*", help="tasks (default: all of MT50)")
    ap.add_argument("--steps", type=int, default=500, help="steps per timed episode")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; no results file")
    ap.add_argument(
        "--clock",
        choices=sorted(_CLOCKS),
        default="wall",
        help="time chunks by the wall clock (default) or by this thread's CPU time, which "
        "other processes pre-empting the benchmark do not inflate (under load a slow side's "
        "longer chunks are pre-empted more often: wall-clock ratios then favour the fast side)",
    )
    args = ap.parse_args()
    global _clock
    _clock = _CLOCKS[args.clock]
    import sim

    tasks = args.tasks or list(sim.get_suite("MT50").tasks)
    mt10 = list(sim.get_suite("MT10").tasks)
    results = {}
    load = os.getloadavg()
    t_start = time.perf_counter()
    for task in tasks:
        results[task] = r = measure(task, args.steps, args.rounds)
        print(
            f"{task:28s} "
            + "  ".join(
                f"{kind}: fast {v['fast']:6.0f} mw {v['metaworld']:6.0f} "
                f"x{v['fast'] / v['metaworld']:.2f} (bound x{v['raw'] / v['metaworld']:.2f})"
                for kind, v in r.items()
            ),
            flush=True,
        )
    elapsed = time.perf_counter() - t_start

    def ratio(task: str, kind: str, side: str = "fast") -> float:
        return results[task][kind][side] / results[task][kind]["metaworld"]

    header = (
        "| task | actions | Meta-World (steps/s) | fast (steps/s) | fast / Meta-World "
        "| raw physics (steps/s) | bound: raw / Meta-World | fast / raw |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    shown = [t for t in tasks if t in mt10] or tasks
    for task in shown:
        for kind in ("random", "expert"):
            v = results[task][kind]
            lines.append(
                f"| {task} | {kind} | {v['metaworld']:.0f} | {v['fast']:.0f} | "
                f"**{ratio(task, kind):.2f}x** | {v['raw']:.0f} | {ratio(task, kind, 'raw'):.2f}x "
                f"| {v['fast'] / v['raw']:.2f} |"
            )
    summary = ["| over | actions | median fast / Meta-World | min | max | median bound |",
               "|---|---|---|---|---|---|"]
    medians = {}
    for kind in ("random", "expert"):
        rs = [ratio(t, kind) for t in tasks]
        bs = [ratio(t, kind, "raw") for t in tasks]
        medians[kind] = statistics.median(rs)
        summary.append(
            f"| {len(tasks)} tasks | {kind} | **{medians[kind]:.2f}x** | {min(rs):.2f}x "
            f"({tasks[rs.index(min(rs))]}) | {max(rs):.2f}x | {statistics.median(bs):.2f}x |"
        )
    targets = []
    for kind in ("random", "expert"):
        met = "met" if medians[kind] >= 2.5 else "NOT met"
        targets.append(f"- median over the tasks, {kind} actions: {medians[kind]:.2f}x "
                       f"(target >= 2.5x: {met})")
    for task in ("push-v3", "pick-place-v3"):
        if task in results:
            for kind in ("random", "expert"):
                r = ratio(task, kind)
                met = "met" if r >= 4.0 else "NOT met"
                targets.append(f"- {task}, {kind} actions: {r:.2f}x (target >= 4x: {met})")
    every = ["| task | random: fast / MW | expert: fast / MW | random: bound | expert: bound |",
             "|---|---|---|---|---|"]
    every += [
        f"| {t} | {ratio(t, 'random'):.2f}x | {ratio(t, 'expert'):.2f}x | "
        f"{ratio(t, 'random', 'raw'):.2f}x | {ratio(t, 'expert', 'raw'):.2f}x |"
        for t in tasks
    ]
    body = (
        f"{len(tasks)} tasks, {args.steps} timed steps per episode (reset seed {SEED}), "
        f"{args.rounds} rounds, the sides interleaved 25 steps at a time, each chunk's fastest "
        f"round counted ({'wall-clock' if args.clock == 'wall' else 'thread CPU'} time); "
        f"{elapsed:.0f} s in all; load average {load[0]:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end (2 CPUs shared with other work). "
        "Both sides are `sim.make_env` envs (the same wrapper: action checks, TaskParams; "
        "with `fast=True` it skips the defensive info/observation copies that Meta-World's "
        "step needs), `fast=True` vs `fast=False`; \"raw\" is `mj_step(nstep=5)` + "
        "`mj_forward` with the action written into mocap/ctrl, nothing else (not even the "
        "`mj_rnePostConstraint` both steps make).\n\n"
        + ("MT10 tasks:\n\n" if shown != tasks else "")
        + "\n".join(lines)
        + "\n\nSummary:\n\n"
        + "\n".join(summary)
        + "\n\n"
        + "\n".join(targets)
        + "\n\nEvery task:\n\n"
        + "\n".join(every)
    )
    print(body)
    if not args.no_write:
        write_result(
            "sim_step",
            "env.step throughput: fast step vs Meta-World's",
            body,
            "python benchmarks/sim_step.py " + " ".join(sys.argv[1:]),
        )


if __name__ == "__main__":
    main()
