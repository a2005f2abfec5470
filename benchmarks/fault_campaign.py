"""Fault/fuzz campaign: kill -9, hand-corrupted stores, hostile robot-link clients, CLI misuse.

Everything goes through the real ``robolearn`` command line (``python -m robolearn ...`` in a
subprocess, in a temporary directory, ``OMP_WAIT_POLICY=PASSIVE``, ``ray.num_workers=0``) on
real files; the checks read the stores back with :mod:`robolearn.data`.

1. **kill -9** at a random time (uniform over the command's measured duration, every second
   draw over its working phase only, after start-up) of ``collect`` (``background_writer``
   true and false), ``deploy`` (twin, appending to an existing store or creating one),
   ``import`` and ``train``, alternately the process alone and its whole process group; then
   the same command again, to completion. Checked: every episode committed before the kill is
   byte-identical afterwards, the store checks ok (``check_store`` after every kill and every
   re-run; ``robolearn store check`` on every fifth re-run), collect ends identical to an
   uninterrupted collection, an import leaves nothing or a complete store and ends equal to
   its source, training ends with the weights of an uninterrupted run (exact resume).
2. **Hand-corrupted stores** (raw zarr / file edits): each case is given to ``train``,
   ``deploy`` (append), ``export``, ``store check``, ``store recover`` and training on the
   recovered store. The corrupt store's files must stay byte-identical throughout; recovered
   episodes are compared with the number that can be proven and with the originals.
3. **Hostile robot-link clients** (oversized hellos, wrong tokens, over-limit tokens, garbage,
   requests without a session) while ``robolearn deploy robot=remote`` runs against
   ``robolearn serve-robot``.
4. **CLI misuse**: each must exit 1/2/3 with a one-paragraph message, never a traceback.

A traceback is any ``Traceback (most recent call last)`` in a command's stdout or stderr.
Writes ``benchmarks/results/fault_campaign.md`` (``--out``) with the machine and the load.

    python benchmarks/fault_campaign.py                # the full campaign (~20 min on 2 cores)
    python benchmarks/fault_campaign.py --quick        # 3 kills per command, fewer cases
    python benchmarks/fault_campaign.py --parts 2,4    # only some parts
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import http.server
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine  # noqa: E402

PACKAGES = ("robolearn", "sim", "policies", "curricula", "hardware")
TRACEBACK = "Traceback (most recent call last)"
TASK = "reach-v3"
TOKEN = "fault-campaign-token"
CMD_TIMEOUT_S = 240.0  # any single command running longer than this is a hang
GROUP_GRACE_S = 30.0  # how long the rest of a process group may live on after a kill


# ============================================================================ processes
def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[-1].split()
        if len(rest) > 2 and int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
            pids.append(int(entry))
    return pids


_LIVE_GROUPS: set[int] = set()


def _kill_live_groups() -> None:
    for pgid in list(_LIVE_GROUPS):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
        _LIVE_GROUPS.discard(pgid)


@dataclass
class Run:
    """One finished command."""

    label: str
    rc: int | None
    out: str
    err: str
    wall: float
    lines: list[tuple[float, str]] = field(default_factory=list)  # (t, stdout+stderr line)
    timed_out: bool = False
    killed: bool = False
    survivors: int = 0  # group members still alive GROUP_GRACE_S after a kill (then killed)

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err

    @property
    def tracebacks(self) -> int:
        return self.text.count(TRACEBACK)

    def traceback_excerpt(self) -> str:
        i = self.text.find(TRACEBACK)
        return self.text[i:i + 2500] if i >= 0 else ""


class Proc:
    """A command in its own session (process group), its output read with timestamps."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: dict[str, str], label: str,
                 stdin: Any = subprocess.DEVNULL) -> None:
        self.label = label
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=stdin,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  start_new_session=True)
        _LIVE_GROUPS.add(self.p.pid)
        self.out: list[str] = []
        self.err: list[str] = []
        self.lines: list[tuple[float, str]] = []
        self._threads = [threading.Thread(target=self._read, args=(s, buf), daemon=True)
                         for s, buf in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self._threads:
            t.start()
        self.killed = False

    def _read(self, stream: Any, buf: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            buf.append(line)
            self.lines.append((time.monotonic() - self.t0, line))
        stream.close()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def kill(self, group: bool) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.p.pid, signal.SIGKILL)
            else:
                os.kill(self.p.pid, signal.SIGKILL)
        self.killed = True

    def finish(self, timeout: float = CMD_TIMEOUT_S) -> Run:
        """Waits for the process (killing its group on timeout), then for the rest of its group
        (``GROUP_GRACE_S``: a killed command's children may drain, but must then exit)."""
        timed_out = False
        try:
            self.p.wait(max(0.0, timeout - self.elapsed()))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill(True)
            self.p.wait()
        wall = self.elapsed()
        deadline = time.monotonic() + GROUP_GRACE_S
        while group_members(self.p.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = len(group_members(self.p.pid))
        if survivors:
            with contextlib.suppress(OSError):
                os.killpg(self.p.pid, signal.SIGKILL)
        _LIVE_GROUPS.discard(self.p.pid)
        for t in self._threads:
            t.join(10)
        return Run(self.label, None if timed_out else self.p.returncode, "".join(self.out),
                   "".join(self.err), wall, sorted(self.lines), timed_out, self.killed, survivors)


# ============================================================================ the campaign
@dataclass
class Finding:
    """A defect (or a noteworthy behaviour) to report: what ran and what happened."""

    part: str
    case: str
    command: str
    what: str
    detail: str = ""
    defect: bool = True


@dataclass
class Tally:
    """One row of the summary table."""

    tried: int = 0
    refused_clearly: int | None = None
    recovered: int | None = None
    lost: int = 0
    tracebacks: int = 0


class Campaign:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = Path(tempfile.mkdtemp(prefix="fault_campaign_"))
        self.findings: list[Finding] = []
        self.tallies: dict[str, Tally] = {}
        self.details: dict[str, list[str]] = {}
        self.notes: dict[str, list[str]] = {}
        self.timing: dict[str, float] = {}
        self._n = 0
        env = {k: v for k, v in os.environ.items()
               if k not in ("ROBOLEARN_ROBOT_TOKEN", "RAY_ADDRESS")}
        env.update(OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1", COLUMNS="160",
                   NO_COLOR="1", TERM="dumb")
        self.code = self.snapshot_code() if not args.live_tree else ROOT
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.code), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.env = env

    def snapshot_code(self) -> Path:
        """A copy of the checkout's packages, imported by every command (PYTHONPATH wins over
        the editable install): other engineers edit the working tree while the campaign runs,
        and every command should test the same code."""
        dst = self.root / "code"
        for name in PACKAGES:
            shutil.copytree(ROOT / name, dst / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        sys.path.insert(0, str(dst))  # this process reads stores with the same code
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *PACKAGES], cwd=ROOT,
                               capture_output=True, text=True).stdout.splitlines()
        self.code_note = (f"the working tree's {', '.join(PACKAGES)} copied at the start "
                          f"(git HEAD {head or '?'}, {len(dirty)} file(s) of them uncommitted "
                          "or new)")
        return dst

    # ------------------------------------------------------------------ helpers
    def dir(self, name: str) -> Path:
        self._n += 1
        d = self.root / f"{self._n:04d}_{name}"
        d.mkdir(parents=True)
        return d

    def spawn(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None,
              stdin: Any = subprocess.DEVNULL) -> Proc:
        return Proc([sys.executable, "-m", "robolearn", *args], cwd, env or self.env,
                    "robolearn " + shlex.join(args), stdin=stdin)

    def rl(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None,
           timeout: float = CMD_TIMEOUT_S) -> Run:
        return self.spawn(args, cwd, env).finish(timeout)

    def rl_python(self, args: Sequence[str], cwd: Path) -> Run:
        return Proc([sys.executable, *args], cwd, self.env, "python " + shlex.join(args)
                    ).finish()

    def rl_probe(self, args: Sequence[str], cwd: Path, started: Callable[[], bool],
                 done: Callable[[], bool]) -> tuple[Run, tuple[float, float] | None]:
        """Runs a command and measures its working phase: from when ``started()`` first holds
        to when ``done()`` first does (polled every 10 ms)."""
        proc = self.spawn(args, cwd)
        t0 = t1 = None
        while proc.p.poll() is None:
            if t0 is None and started():
                t0 = proc.elapsed()
            if t0 is not None and t1 is None and done():
                t1 = proc.elapsed()
            time.sleep(0.01)
        run = proc.finish()
        window = (t0, t1 if t1 is not None else run.wall) if t0 is not None else None
        return run, window

    def finding(self, part: str, case: str, run: Run | None, what: str, detail: str = "",
                defect: bool = True) -> None:
        f = Finding(part, case, run.label if run else "", what,
                    detail or (run.traceback_excerpt() if run else ""), defect)
        self.findings.append(f)
        print(f"  !! {part} / {case}: {what}", flush=True)
        if f.detail:
            print("     " + "\n     ".join(f.detail.strip().splitlines()[-40:]), flush=True)

    def guarded(self, step: Callable[[], None]) -> None:
        """Runs one part; an error of the campaign itself is reported, and the other parts
        still run (the results of a long run are not lost to one bad case)."""
        import traceback

        try:
            step()
        except Exception as e:  # noqa: BLE001 - reported in the results
            self.finding("campaign", step.__name__, None, f"the campaign's own step failed: "
                         f"{type(e).__name__}: {str(e)[:300]}", traceback.format_exc(),
                         defect=False)

    def need(self, run: Run, part: str, case: str, codes: Sequence[int] = (0,)) -> None:
        """A set-up command that must succeed; stops the campaign with its output if not."""
        if run.rc not in codes or run.tracebacks:
            raise RuntimeError(f"set-up command failed ({part} / {case}): {run.label}\n"
                               f"rc={run.rc}\n{run.text[-4000:]}")

    def traceback_check(self, part: str, case: str, run: Run) -> int:
        if run.tracebacks:
            self.finding(part, case, run, f"traceback (exit {run.rc})")
            return 1
        return 0

    # ------------------------------------------------------------------ fixtures
    def fixtures(self) -> None:
        """A tiny checkpoint, reference collections, the import source, a deploy base store."""
        t0 = time.monotonic()
        fx = self.fx = self.dir("fixtures")
        probe = self.rl_python(["-c", "import robolearn, sim; print(robolearn.__file__); "
                                "print(sim.__file__)"], fx)
        where = probe.out.split()
        if probe.rc != 0 or not all(w.startswith(str(self.code)) for w in where[:2]):
            raise SystemExit(f"the commands do not import the code under test ({self.code}): "
                             f"{probe.text[-2000:]}")
        run = self.rl(["pipeline", "--preset", "debug", "ray.num_workers=0"], fx)
        self.need(run, "fixtures", "pipeline --preset debug")
        self.ckpt = fx / "runs" / "debug_flow_matching"
        self.timing["fixture: pipeline --preset debug"] = run.wall
        # The import source: an export of a larger collection.
        run = self.rl(["collect", "--preset", "debug", f"suite=MT1:{TASK}",
                       f"episodes_per_task={self.args.import_episodes}", "ray.num_workers=0",
                       "out=import_src.zarr"], fx)
        self.need(run, "fixtures", "collect (import source)")
        run = self.rl(["export", "dataset=import_src.zarr", "format=robomimic",
                       "out=import_src.hdf5"], fx)
        self.need(run, "fixtures", "export (import source)")
        self.import_src = fx / "import_src.zarr"
        self.import_hdf5 = fx / "import_src.hdf5"
        self.timing["fixtures total"] = time.monotonic() - t0

    # ================================================================== part 1: kill -9
    def collect_cmd(self, bg: bool) -> list[str]:
        return ["collect", "--preset", "debug", f"suite=MT1:{TASK}",
                f"episodes_per_task={self.args.collect_episodes}",
                f"background_writer={'true' if bg else 'false'}", "ray.num_workers=0",
                "out=demos.zarr"]

    def deploy_cmd(self, extra: Sequence[str] = ()) -> list[str]:
        # A 2 s watchdog: on a CPU-starved shared machine the default 0.1 s one trips now and
        # then (exit 3, by design); here the store is under test, not the pacing.
        return ["deploy", f"checkpoint={self.ckpt}", "robot=twin", "twin.realtime=false",
                "episodes=6", "max_steps=60", "safety.watchdog_timeout_s=2", "out=rec.zarr",
                *extra]

    def import_cmd(self) -> list[str]:
        return ["import", f"src={self.import_hdf5}", "out=imported.zarr"]

    def train_cmd(self, dataset: Path) -> list[str]:
        return ["train", "--preset", "debug", f"dataset={dataset}", "out=run",
                f"steps={self.args.train_steps}", "checkpoint_every=20", "val_every=50",
                "log_every=50", "tensorboard=false", "progress=false"]

    def draw_kill(self, k: int, total: float, window: tuple[float, float] | None) -> float:
        """Even draws: uniform over the whole measured duration (start-up and teardown
        included); odd draws: uniform over the measured working phase (first write to last
        commit), where the store is being written."""
        if k % 2 == 0 or window is None or window[1] <= window[0]:
            return self.rng.uniform(0.0, total)
        return self.rng.uniform(*window)

    def kill_loop(self, name: str, total: float, window: tuple[float, float] | None,
                  one: Callable[[int, float, bool], dict[str, Any] | None]) -> None:
        """Runs ``one(k, at_s, group)`` until ``--kills`` kills landed (a draw after the
        command already ended is not a kill and is drawn again, up to 3x as many tries)."""
        kills, tries = 0, 0
        part = "1 kill -9"
        tally = self.tallies.setdefault(f"{part}: {name}", Tally(recovered=0))
        rows = self.details.setdefault(f"{part}: {name}", [])
        while kills < self.args.kills and tries < 3 * self.args.kills:
            group = kills % 2 == 1
            at = self.draw_kill(tries, total, window)
            tries += 1
            res = one(kills, at, group)
            if res is None:  # finished before the kill
                continue
            kills += 1
            tally.tried += 1
            tally.lost += res["lost"]
            tally.tracebacks += res["tracebacks"]
            tally.recovered += bool(res["recovered"])
            rows.append(res["row"])
            print(f"  {name} kill {kills}: at {at:.2f}s {'group' if group else 'process'} -> "
                  f"{res['row']}", flush=True)
        if kills < self.args.kills:
            self.finding(part, name, None, f"only {kills} of {self.args.kills} kills landed "
                         f"in {tries} tries (the command ended first)", defect=False)

    def read_store(self, path: Path, timestamps: bool = True
                   ) -> tuple[list[str] | None, str]:
        """Per-episode digests of a store (``None`` when there is none), or the error."""
        from robolearn.data import EpisodeStore

        if not path.exists():
            return None, ""
        try:
            with EpisodeStore.open(path, "r") as s:
                return [digest(s.episode(i), timestamps) for i in range(len(s))], ""
        except Exception as e:  # noqa: BLE001 - reported as a finding
            return None, f"{type(e).__name__}: {e}"

    def check_ok(self, path: Path) -> tuple[bool, str]:
        from robolearn.data import check_store

        if not path.exists():
            return True, "absent"
        try:
            rep = check_store(path)
        except Exception as e:  # noqa: BLE001
            return False, f"{type(e).__name__}: {e}"
        return rep.ok, "; ".join(rep.problems)[:300]

    def after_kill(self, name: str, k: int, killed: Run, store: Path
                   ) -> tuple[list[str], int, list[str]]:
        """Snapshot + checks right after a kill; returns (digests, tracebacks, problems)."""
        problems = []
        tb = self.traceback_check("1 kill -9", f"{name} kill {k + 1} (killed run)", killed)
        if killed.survivors:
            problems.append(f"{killed.survivors} process(es) of the killed group still alive "
                            f"{GROUP_GRACE_S:.0f} s after the kill")
            self.finding("1 kill -9", f"{name} kill {k + 1}", killed, problems[-1])
        snap, err = self.read_store(store)
        if err:
            problems.append(f"store unreadable after the kill: {err}")
            self.finding("1 kill -9", f"{name} kill {k + 1}", killed, problems[-1], err)
        ok, why = self.check_ok(store)
        if not ok:
            problems.append(f"check_store not ok after the kill: {why}")
            self.finding("1 kill -9", f"{name} kill {k + 1}", killed, problems[-1], why)
        return snap or [], tb, problems

    def rerun(self, name: str, k: int, args: Sequence[str], cwd: Path, store: Path | None,
              problems: list[str], codes: Sequence[int] = (0,)) -> tuple[Run, int]:
        run = self.rl(args, cwd)
        tb = self.traceback_check("1 kill -9", f"{name} kill {k + 1} (re-run)", run)
        if run.rc not in codes:
            problems.append(f"re-run exit {run.rc}" + (" (timed out)" if run.timed_out else ""))
            self.finding("1 kill -9", f"{name} kill {k + 1}", run, problems[-1],
                         run.traceback_excerpt() or run.text[-1500:])
        if store is not None:
            ok, why = self.check_ok(store)
            if not ok:
                problems.append(f"check_store not ok after the re-run: {why}")
                self.finding("1 kill -9", f"{name} kill {k + 1}", run, problems[-1], why)
            if k % 5 == 0:
                chk = self.rl(["store", "check", store.name], cwd)
                tb += self.traceback_check("1 kill -9", f"{name} kill {k + 1} (store check)", chk)
                if chk.rc != 0:
                    problems.append(f"`robolearn store check` exit {chk.rc}")
                    self.finding("1 kill -9", f"{name} kill {k + 1}", chk, problems[-1],
                                 chk.text[-1500:])
        return run, tb

    @staticmethod
    def prefix_lost(before: list[str], after: list[str] | None) -> int:
        after = after or []
        return sum(1 for i, d in enumerate(before) if i >= len(after) or after[i] != d)

    def killed_run(self, args: Sequence[str], cwd: Path, at: float, group: bool
                   ) -> Run | None:
        proc = self.spawn(args, cwd)
        while proc.elapsed() < at and proc.p.poll() is None:
            time.sleep(0.002)
        if proc.p.poll() is not None:
            proc.finish()
            return None
        proc.kill(group)
        return proc.finish()

    # ------------------------------------------------------------------ collect
    def part1_collect(self) -> None:
        print("part 1: collect", flush=True)
        refs = {}
        windows = []
        totals = []
        n = self.args.collect_episodes
        for bg in (True, False):
            d = self.dir(f"collect_ref_bg{int(bg)}")
            run, window = self.rl_probe(self.collect_cmd(bg), d,
                                        lambda d=d: (d / "demos.zarr").exists(),
                                        lambda d=d: committed(d / "demos.zarr") >= n)
            self.need(run, "1", "collect reference")
            refs[bg] = self.read_store(d / "demos.zarr", timestamps=False)[0]
            totals.append(run.wall)
            windows.append(window or (0.0, run.wall))
        self.timing["collect (reference, uninterrupted)"] = float(np.mean(totals))
        if refs[True] != refs[False]:
            self.finding("1 kill -9", "collect reference", None,
                         "background_writer=true and false give different stores")
        ref = refs[True]
        total = float(np.mean(totals))
        window = (float(np.mean([w[0] for w in windows])), float(np.mean([w[1] for w in windows])))

        def one(k: int, at: float, group: bool) -> dict[str, Any] | None:
            bg = (k // 2) % 2 == 0
            d = self.dir(f"collect_kill{k}")
            store = d / "demos.zarr"
            killed = self.killed_run(self.collect_cmd(bg), d, at, group)
            if killed is None:
                shutil.rmtree(d)
                return None
            before, tb, problems = self.after_kill("collect", k, killed, store)
            run, tb2 = self.rerun("collect", k, self.collect_cmd(bg), d, store, problems)
            after, err = self.read_store(store)
            lost = self.prefix_lost(before, after)
            if lost:
                problems.append(f"{lost} committed episode(s) missing or changed")
                self.finding("1 kill -9", f"collect kill {k + 1}", run, problems[-1])
            final = self.read_store(store, timestamps=False)[0]
            if final != ref:
                problems.append(f"store differs from the uninterrupted collection "
                                f"({len(final or [])} vs {len(ref)} episodes)")
                self.finding("1 kill -9", f"collect kill {k + 1}", run, problems[-1])
            row = (f"| {k + 1} | bg={'true' if bg else 'false'} | {at:.2f} | "
                   f"{'group' if group else 'process'} | {len(before)} | "
                   f"{len(after or [])} | {run.rc} | {lost} | "
                   f"{'; '.join(problems) or 'ok'} |")
            shutil.rmtree(d)
            return dict(lost=lost, tracebacks=tb + tb2, recovered=not problems, row=row)

        self.kill_loop("collect", total, window, one)
        self.notes["1 kill -9: collect"] = [
            f"`{shlex.join(['robolearn', *self.collect_cmd(True)])}` (and "
            "`background_writer=false`); reference duration "
            f"{total:.1f} s, store created at {window[0]:.1f} s, last episode committed at "
            f"{window[1]:.1f} s (the working phase of odd draws). Committed = what "
            "`EpisodeStore.open(mode='r')` shows after the killed group is gone; the re-run's "
            "store must hold those byte-identical (timestamps included) and equal the "
            f"uninterrupted collection ({len(ref)} episodes; all fields but the timestamp)."]

    # ------------------------------------------------------------------ deploy
    def part1_deploy(self) -> None:
        print("part 1: deploy", flush=True)
        d = self.dir("deploy_ref")
        run, window = self.rl_probe(self.deploy_cmd(), d, lambda: (d / "rec.zarr").exists(),
                                    lambda: committed(d / "rec.zarr") >= 6)
        self.need(run, "1", "deploy reference")
        self.deploy_base = d / "rec.zarr"
        total = run.wall
        self.timing["deploy (reference, uninterrupted)"] = total

        def one(k: int, at: float, group: bool) -> dict[str, Any] | None:
            with_base = (k // 2) % 2 == 0
            dk = self.dir(f"deploy_kill{k}")
            store = dk / "rec.zarr"
            if with_base:
                shutil.copytree(self.deploy_base, store)
            killed = self.killed_run(self.deploy_cmd(), dk, at, group)
            if killed is None:
                shutil.rmtree(dk)
                return None
            before, tb, problems = self.after_kill("deploy", k, killed, store)
            run, tb2 = self.rerun("deploy", k, self.deploy_cmd(), dk, store, problems)
            after, _ = self.read_store(store)
            lost = self.prefix_lost(before, after)
            if lost:
                problems.append(f"{lost} committed episode(s) missing or changed")
                self.finding("1 kill -9", f"deploy kill {k + 1}", run, problems[-1])
            if after is not None and len(after) != len(before) + 6:
                problems.append(f"{len(after)} episodes after the re-run, expected "
                                f"{len(before)} + 6")
                self.finding("1 kill -9", f"deploy kill {k + 1}", run, problems[-1])
            row = (f"| {k + 1} | {'6 before' if with_base else 'new store'} | {at:.2f} | "
                   f"{'group' if group else 'process'} | {len(before)} | "
                   f"{len(after or [])} | {run.rc} | {lost} | "
                   f"{'; '.join(problems) or 'ok'} |")
            shutil.rmtree(dk)
            return dict(lost=lost, tracebacks=tb + tb2, recovered=not problems, row=row)

        self.kill_loop("deploy", total, window, one)
        self.notes["1 kill -9: deploy"] = [
            f"`{shlex.join(['robolearn', *self.deploy_cmd()])}` (the debug-preset "
            "checkpoint, 80 Hz twin pacing); every other pair of kills starts from a copy of "
            f"a 6-episode store. Reference duration {total:.1f} s, working phase (store "
            f"created → 6th commit) {fmt_window(window)}. After the re-run the store must hold the committed "
            "episodes byte-identical, plus 6. The watchdog is 2 s instead of the default "
            "0.1 s: with the machine's load at ~6 on 2 cores, the default tripped in 2 of 5 "
            "uninterrupted runs of this command (exit 3, the robot stopped and the episode "
            "kept as incomplete, as designed; part 3 measures the default)."]

    # ------------------------------------------------------------------ import
    def part1_import(self) -> None:
        print("part 1: import", flush=True)
        src = self.read_store(self.import_src)[0]
        d = self.dir("import_ref")
        run, window = self.rl_probe(
            self.import_cmd(), d, lambda: bool(list(d.glob(".imported.zarr.building*"))),
            lambda: (d / "imported.zarr").exists())
        self.need(run, "1", "import reference")
        if self.read_store(d / "imported.zarr")[0] != src:
            self.finding("1 kill -9", "import reference", run,
                         "an uninterrupted import differs from its source store")
        total = run.wall
        self.timing["import (reference, uninterrupted)"] = total

        def one(k: int, at: float, group: bool) -> dict[str, Any] | None:
            dk = self.dir(f"import_kill{k}")
            store = dk / "imported.zarr"
            killed = self.killed_run(self.import_cmd(), dk, at, group)
            if killed is None:
                shutil.rmtree(dk)
                return None
            problems = []
            tb = self.traceback_check("1 kill -9", f"import kill {k + 1} (killed run)", killed)
            snap, err = self.read_store(store)
            state = "nothing" if not store.exists() else (
                "complete" if snap == src else f"PARTIAL ({len(snap or [])} ep, {err})")
            if state.startswith("PARTIAL"):
                problems.append(f"killed import left {state} at out=")
                self.finding("1 kill -9", f"import kill {k + 1}", killed, problems[-1])
            temps = [p.name for p in dk.iterdir() if p.name.startswith(".imported.zarr.")
                     and not p.name.endswith(".owner")]
            # An import killed after the rename leaves a complete store: the same command then
            # refuses (out= exists), which is the right answer.
            codes = (0, 1) if state == "complete" else (0,)
            run, tb2 = self.rerun("import", k, self.import_cmd(), dk, store, problems, codes)
            if run.rc == 1 and "already exists" not in run.err:
                problems.append("re-run refused for another reason than an existing complete "
                                "store")
                self.finding("1 kill -9", f"import kill {k + 1}", run, problems[-1], run.err[-800:])
            final, _ = self.read_store(store)
            if final != src:
                problems.append("store after the re-run differs from the source")
                self.finding("1 kill -9", f"import kill {k + 1}", run, problems[-1])
            left = [p.name for p in dk.iterdir() if p.name.startswith(".imported.zarr.")
                    and not p.name.endswith(".owner")]
            if left:
                problems.append(f"temporary directories left after the re-run: {left}")
                self.finding("1 kill -9", f"import kill {k + 1}", run, problems[-1])
            lost = 0 if final == src else len(src)
            row = (f"| {k + 1} | {at:.2f} | {'group' if group else 'process'} | {state} | "
                   f"{len(temps)} | {run.rc} | {len(final or [])}/{len(src)} | "
                   f"{'; '.join(problems) or 'ok'} |")
            shutil.rmtree(dk)
            return dict(lost=lost, tracebacks=tb + tb2, recovered=not problems, row=row)

        self.kill_loop("import", total, window, one)
        self.notes["1 kill -9: import"] = [
            f"`{shlex.join(['robolearn', *self.import_cmd()])}` of a {len(src)}-episode "
            f"export. Reference duration {total:.1f} s, working phase (temporary store "
            f"appears → renamed to out=) {fmt_window(window)}. "
            "After the kill out= must hold nothing or the complete store; after the re-run "
            "the store must equal the source (every field, timestamps included) and no "
            "temporary directory may be left. 'temps' = temporary directories the kill left "
            "(removed by the next run)."]

    # ------------------------------------------------------------------ train
    def part1_train(self) -> None:
        print("part 1: train", flush=True)
        from safetensors.numpy import load_file

        dataset = self.import_src
        before_hash = tree_hash(dataset)
        d = self.dir("train_ref")
        final_name = f"step_{self.args.train_steps:07d}"
        run, window = self.rl_probe(
            self.train_cmd(dataset), d, lambda: (d / "run" / "metrics.jsonl").exists(),
            lambda: (d / "run" / "checkpoints" / final_name / "model.safetensors").exists())
        self.need(run, "1", "train reference")
        ref = load_file(d / "run" / "checkpoints" / final_name / "model.safetensors")
        total = run.wall
        self.timing["train (reference, uninterrupted)"] = total

        def one(k: int, at: float, group: bool) -> dict[str, Any] | None:
            dk = self.dir(f"train_kill{k}")
            killed = self.killed_run(self.train_cmd(dataset), dk, at, group)
            if killed is None:
                shutil.rmtree(dk)
                return None
            problems = []
            tb = self.traceback_check("1 kill -9", f"train kill {k + 1} (killed run)", killed)
            ckpts = sorted(p.name for p in (dk / "run" / "checkpoints").glob("step_*")) if (
                dk / "run" / "checkpoints").exists() else []
            # A run killed after its last checkpoint is finished: the same command then
            # refuses it (exit 1, "finished"), which is the right answer.
            finished = (dk / "run" / "checkpoints" / final_name / "model.safetensors").exists()
            run, tb2 = self.rerun("train", k, self.train_cmd(dataset), dk, None, problems,
                                  (0, 1) if finished else (0,))
            if run.rc == 1 and "finished" not in run.err:
                problems.append("re-run refused for another reason than a finished run")
                self.finding("1 kill -9", f"train kill {k + 1}", run, problems[-1], run.err[-800:])
            flat = re.sub(r"\s+", " ", run.text)
            resumed = re.search(r"resum\w* .*? at step (\d+)|already finished \(step (\d+)",
                                flat)
            path = dk / "run" / "checkpoints" / final_name / "model.safetensors"
            same = False
            if path.exists():
                got = load_file(path)
                same = got.keys() == ref.keys() and all(
                    got[n].dtype == ref[n].dtype and got[n].tobytes() == ref[n].tobytes()
                    for n in ref)
            if not same:
                problems.append("final weights differ from the uninterrupted run" if
                                path.exists() else "no final checkpoint")
                self.finding("1 kill -9", f"train kill {k + 1}", run, problems[-1])
            row = (f"| {k + 1} | {at:.2f} | {'group' if group else 'process'} | "
                   f"{ckpts[-1] if ckpts else '-'} | "
                   f"{(resumed.group(1) or resumed.group(2)) if resumed else 'fresh'} | "
                   f"{run.rc} | {'yes' if same else 'NO'} | {'; '.join(problems) or 'ok'} |")
            shutil.rmtree(dk)
            return dict(lost=0, tracebacks=tb + tb2, recovered=not problems, row=row)

        self.kill_loop("train", total, window, one)
        if tree_hash(dataset) != before_hash:
            self.finding("1 kill -9", "train", None, "training modified its dataset's files")
        self.notes["1 kill -9: train"] = [
            f"`{shlex.join(['robolearn', *self.train_cmd(dataset)])}`. Reference duration "
            f"{total:.1f} s, working phase (metrics.jsonl appears → final checkpoint) "
            f"{fmt_window(window)}. The re-run must exit 0 and its "
            f"{final_name}/model.safetensors must equal the uninterrupted run's, tensor for "
            "tensor, byte for byte. 'newest ckpt' = the newest checkpoint directory the kill "
            "left; 'resumed' = the step the re-run's output says it resumed from."]

    # ================================================================== part 2: corruption
    def part2(self) -> None:
        print("part 2: corrupted stores", flush=True)
        from robolearn.data import EpisodeStore

        base_dir = self.dir("corrupt_base")
        run = self.rl(["deploy", f"checkpoint={self.ckpt}", "robot=twin", "twin.realtime=false",
                       "episodes=10", "max_steps=40", "rate_hz=1000",
                       "safety.watchdog_timeout_s=2", "out=raw.zarr"], base_dir)
        self.need(run, "2", "deploy (base store)")
        # Re-chunked (32 rows per chunk) so that one damaged chunk costs a few episodes only.
        pristine = base_dir / "base.zarr"
        with EpisodeStore.open(base_dir / "raw.zarr", "r") as src:
            extras = {k: (s.shape, s.dtype) for k, s in src.spec.items()
                      if k not in ("obs", "action", "reward", "success")}
            with EpisodeStore.create(pristine, src.obs_dim, src.action_dim, extras=extras,
                                     tasks=src.tasks, chunk_len=32,
                                     attrs=src.attrs.get("user", {})) as dst:
                for i in range(len(src)):
                    ep = src.episode(i)
                    info = {k: v for k, v in ep.info.items() if k != "incomplete"}
                    dst.add_episode(ep.data, task=ep.task, source=ep.source, params=ep.params,
                                    seed=ep.seed, policy_id=ep.policy_id, info=info,
                                    timestamp=ep.timestamp, complete=ep.complete)
            ends = np.asarray(src.episode_ends)
        pristine_eps = self.read_store(pristine)[0]
        n_ep = len(pristine_eps)
        starts = np.concatenate([[0], ends[:-1]])

        def overlapping(lo: int, hi: int) -> int:
            return int(np.sum((starts < hi) & (ends > lo)))

        def chunk(store: Path, key: str, j: int) -> tuple[Path, int, int]:
            files = sorted((store / "data" / key / "c").rglob("*"), key=lambda p: int(
                p.relative_to(store / "data" / key / "c").parts[0]))
            files = [f for f in files if f.is_file()]
            f = files[j]
            c = int(f.relative_to(store / "data" / key / "c").parts[0])
            return f, c * 32, (c + 1) * 32

        def zarr_edit(store: Path, name: str, fn: Callable[[Any], None]) -> None:
            import zarr

            fn(zarr.open_array(str(store / name), mode="r+"))

        k = n_ep // 2

        def equal_adjacent(s: Path) -> int:
            zarr_edit(s, "meta/episode_ends", lambda a: a.__setitem__(k, a[k - 1]))
            return n_ep - 3

        def swapped(s: Path) -> int:
            def swap(a: Any) -> None:
                x, y = int(a[k]), int(a[k + 1])
                a[k], a[k + 1] = y, x
            zarr_edit(s, "meta/episode_ends", swap)
            return n_ep - 3

        def deleted_ends(s: Path) -> int:
            for f in (s / "meta" / "episode_ends" / "c").rglob("*"):
                if f.is_file():
                    f.unlink()
            return 0

        def deleted_data(s: Path) -> int:
            f, lo, hi = chunk(s, "obs", 4)
            f.unlink()
            return n_ep - overlapping(lo, hi)

        def truncated(s: Path) -> int:
            f, lo, hi = chunk(s, "action", 6)
            data = f.read_bytes()
            f.write_bytes(data[: len(data) // 2])
            return n_ep - overlapping(lo, hi)

        def empty(s: Path) -> int:
            f, lo, hi = chunk(s, "reward", 2)
            f.write_bytes(b"")
            return n_ep - overlapping(lo, hi)

        def nan(s: Path) -> int:
            row = int(starts[k]) + 5

            def put(a: Any) -> None:
                a[row, 3] = np.nan
            zarr_edit(s, "data/obs", put)
            return n_ep - 1

        def unknown_task(s: Path) -> int:
            zarr_edit(s, "meta/task", lambda a: a.__setitem__(k, "not-a-task-v3"))
            return n_ep - 1

        cases: list[tuple[str, Callable[[Path], int]]] = [
            ("equal adjacent episode_ends entries", equal_adjacent),
            ("two swapped episode_ends entries", swapped),
            ("deleted meta/episode_ends chunk", deleted_ends),
            ("deleted data chunk (data/obs)", deleted_data),
            ("truncated data chunk (data/action)", truncated),
            ("empty chunk file (data/reward)", empty),
            ("NaN written into data/obs", nan),
            ("meta/task not in the task list", unknown_task),
        ]
        if self.args.quick:
            cases = [cases[0], cases[3], cases[6]]
        tally = self.tallies.setdefault("2 corrupted stores", Tally(refused_clearly=0,
                                                                      recovered=0))
        rows = self.details.setdefault("2 corrupted stores", [])
        for name, corrupt in cases:
            self._part2_case(name, corrupt, pristine, pristine_eps, starts, ends, tally,
                             rows)
        self.notes["2 corrupted stores"] = [
            f"Base: a {n_ep}-episode `robolearn deploy` store (twin, 40 steps per episode), "
            "copied episode by episode into a store with 32-row chunks (`EpisodeStore.create"
            "(chunk_len=32)`), then damaged with raw zarr / file edits, one case per copy. "
            "Commands: `train --preset debug dataset=bad.zarr steps=10`, `deploy ... "
            "episodes=1 max_steps=10 out=bad.zarr`, `export dataset=bad.zarr out=bad.hdf5`, "
            "`store check bad.zarr`, `store recover bad.zarr fixed.zarr`, then `train` on "
            "fixed.zarr. A cell is the exit code; ✗ marks a result that is not a clear "
            "refusal (exit 1, one paragraph naming the store, no traceback) or a recovery "
            "that is not exact. 'recover' = episodes copied / episodes that can be proven "
            "(every episode neither of whose boundaries nor rows were touched; each copied "
            "episode is compared with the original, timestamps included). 'files changed' "
            "= commands after which the corrupt store's tree hash differed (writer lock "
            "file excluded)."]

    def _part2_case(self, name: str, corrupt: Callable[[Path], int], pristine: Path,
                    pristine_eps: list[str], starts: np.ndarray, ends: np.ndarray,
                    tally: Tally, rows: list[str]) -> None:
        """One corruption case: every command on the damaged copy, then recover."""
        n_ep = len(pristine_eps)
        d = self.dir("corrupt")
        store = d / "bad.zarr"
        shutil.copytree(pristine, store)
        provable = corrupt(store)
        shutil.copytree(store, d / "bad.orig")  # restored after a command changes it
        h0 = tree_hash(store)
        raw0 = raw_digests(store, starts, ends)
        cells = []
        modified = []
        lost_here = 0

        def after_command(label: str, run: Run) -> None:
            nonlocal lost_here
            changed = diff_tree(h0, tree_hash(store))
            if not changed:
                return
            raw1 = raw_digests(store, starts, ends)
            lost = sum(1 for a, b in zip(raw0, raw1) if a is not None and a != b)
            lost_here = max(lost_here, lost)
            modified.append(label + (f" ({lost} ep changed)" if lost else ""))
            self.finding("2 corrupted stores", f"{name}: {label}", run,
                         f"the corrupt store's files changed ({changed}); "
                         f"{lost} of its existing episodes read back differently")
            shutil.rmtree(store)
            shutil.copytree(d / "bad.orig", store)
        print(f"  {name} (provable {provable}/{n_ep})", flush=True)
        cmds = [
            ("train", ["train", "--preset", "debug", "dataset=bad.zarr", "out=tr",
                       "steps=10", "tensorboard=false", "progress=false"], (1,)),
            ("deploy", ["deploy", f"checkpoint={self.ckpt}", "robot=twin",
                        "twin.realtime=false", "episodes=1", "max_steps=10",
                        "safety.watchdog_timeout_s=2", "out=bad.zarr"], (1,)),
            ("export", ["export", "dataset=bad.zarr", "out=bad.hdf5"], (1,)),
            ("store check", ["store", "check", "bad.zarr"], (1,)),
        ]
        # Training reads obs and action only (and the episode boundaries, tasks and flags):
        # damage confined to another per-step key (data/reward) does not reach it, and it may
        # train; every other command must refuse.
        trains_anyway = "(data/reward)" in name
        for label, args, codes in cmds:
            run = self.rl(args, d)
            tally.tried += 1
            tb = self.traceback_check("2 corrupted stores", f"{name}: {label}", run)
            tally.tracebacks += tb
            if label == "train" and trains_anyway and run.rc == 0 and not tb:
                after_command(label, run)
                cells.append("0 (reads obs/action only)")
                continue
            clear, why = refusal(run, codes, must_name="bad.zarr")
            tally.refused_clearly += clear
            if not clear:
                self.finding("2 corrupted stores", f"{name}: {label}", run,
                             f"not a clear refusal: {why}", run.text[-1500:])
            after_command(label, run)
            if label == "export" and (d / "bad.hdf5").exists():
                self.finding("2 corrupted stores", f"{name}: export", run,
                             "export of a corrupt store left an output file")
            cells.append(f"{run.rc}{'' if clear else ' ✗'}")
        # recover, then train on what it recovered
        run = self.rl(["store", "recover", "bad.zarr", "fixed.zarr", "run_dir=recover"], d)
        tally.tried += 1
        tally.tracebacks += self.traceback_check("2 corrupted stores", f"{name}: recover",
                                                 run)
        after_command("recover", run)
        copied: list[int] = []
        try:
            summary = json.loads((d / "recover" / "summary.json").read_text())
            copied = list(summary.get("copied", []))
        except (OSError, ValueError):
            pass
        fixed = d / "fixed.zarr"
        got, err = self.read_store(fixed)
        exact = got is not None and len(got) == len(copied) and all(
            i < n_ep and got[j] == pristine_eps[i] for j, i in enumerate(copied))
        rec_ok = run.rc == 0 and exact and len(copied) == provable
        if run.rc != 0 and provable == 0:
            rec_ok, why = refusal(run, (1,), must_name="bad.zarr")
            rec_cell = f"{run.rc} (refused{'' if rec_ok else ' ✗ ' + why})"
        else:
            rec_cell = f"{run.rc}: {len(copied)}/{provable}"
            if run.rc != 0:
                self.finding("2 corrupted stores", f"{name}: recover", run,
                             f"recover exit {run.rc}", run.text[-1500:])
            elif not exact:
                self.finding("2 corrupted stores", f"{name}: recover", run,
                             f"recovered episodes differ from the originals ({err})")
            elif len(copied) > provable:
                self.finding("2 corrupted stores", f"{name}: recover", run,
                             f"recovered {len(copied)} episodes, only {provable} can be "
                             "proven")
            elif len(copied) < provable:
                self.finding("2 corrupted stores", f"{name}: recover", run,
                             f"recovered {len(copied)} of the {provable} provable episodes",
                             defect=False)
        cells.append(rec_cell + ("" if rec_ok else " ✗"))
        train_cell = "-"
        if fixed.exists():
            run = self.rl(["train", "--preset", "debug", "dataset=fixed.zarr", "out=tr2",
                           "steps=10", "tensorboard=false", "progress=false"], d)
            tally.tried += 1
            tally.tracebacks += self.traceback_check("2 corrupted stores",
                                                     f"{name}: train on recovered", run)
            if copied:
                ok = run.rc == 0
                if not ok:
                    self.finding("2 corrupted stores", f"{name}: train on recovered", run,
                                 f"exit {run.rc}", run.text[-1500:])
            else:
                ok, why = refusal(run, (1,), must_name="fixed.zarr")
                tally.refused_clearly += ok
            train_cell = f"{run.rc}{'' if ok else ' ✗'}"
            rec_ok = rec_ok and ok
        cells.append(train_cell)
        tally.recovered += rec_ok
        tally.lost += lost_here
        rows.append(f"| {name} | {' | '.join(cells)} | {provable}/{n_ep} | "
                    f"{', '.join(modified) or 'none'} |")
        shutil.rmtree(d)

    # ================================================================== part 3: robot link
    def start_server(self, d: Path, token: str) -> tuple[Proc, int]:
        env = dict(self.env, ROBOLEARN_ROBOT_TOKEN=token)
        proc = Proc([sys.executable, "-m", "robolearn", "serve-robot", "--backend", "twin",
                     "--task", TASK, "--port", "0", "--log-level", "INFO"], d, env,
                    "robolearn serve-robot --backend twin --task reach-v3 --port 0")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            m = re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", "".join(proc.out + proc.err))
            if m:
                return proc, int(m.group(1))
            if proc.p.poll() is not None:
                break
            time.sleep(0.05)
        run = proc.finish(1)
        raise RuntimeError(f"serve-robot did not start: {run.text[-3000:]}")

    def stop_server(self, proc: Proc) -> Run:
        with contextlib.suppress(ProcessLookupError):
            proc.p.terminate()
        return proc.finish(30)

    def part3(self) -> None:
        print("part 3: hostile robot-link clients", flush=True)
        conditions = [
            ("no flood (baseline)", 0, 0, 0.0, "none"),
            ("3 oversized + 3 wrong-token + 3 odd clients, 1 ms loop, after the deploy "
             "connected", 3, 3, 0.001, "after"),
            ("8 oversized + 8 wrong-token + 3 odd clients, no sleep, after the deploy "
             "connected", 8, 8, 0.0, "after"),
            ("3 oversized + 3 wrong-token + 3 odd clients, 1 ms loop, already flooding when "
             "the deploy connects", 3, 3, 0.001, "before"),
        ]
        if self.args.quick:
            conditions = conditions[:2]
        tally = self.tallies.setdefault("3 hostile robot-link clients",
                                        Tally(refused_clearly=0, recovered=0))
        rows = self.details.setdefault("3 hostile robot-link clients", [])
        for name, n_big, n_guess, sleep_s, when in conditions:
            d = self.dir("link")
            server, port = self.start_server(d, TOKEN)
            hostile = None
            try:
                deploy_args = ["deploy", f"checkpoint={self.ckpt}", "robot=remote",
                               f"remote.port={port}", f"task={TASK}", "episodes=5",
                               "max_steps=100", "out=remote.zarr", "run_dir=deploy"]
                if when == "before":
                    hostile = self.start_hostile(port, n_big, n_guess, sleep_s)
                    time.sleep(1.0)
                deploy = self.spawn(deploy_args, d, dict(self.env, ROBOLEARN_ROBOT_TOKEN=TOKEN))
                if when == "after":
                    deadline = time.monotonic() + 120
                    while (time.monotonic() < deadline and deploy.p.poll() is None
                           and "connected from" not in "".join(server.err + server.out)):
                        time.sleep(0.02)
                    hostile = self.start_hostile(port, n_big, n_guess, sleep_s)
                run = deploy.finish()
                h = self.stop_hostile(hostile)
            finally:
                if hostile is not None and hostile.p.poll() is None:
                    hostile.kill(True)
                    hostile.finish(5)
                srv = self.stop_server(server)
            tally.tried += when != "none"
            tb = self.traceback_check("3 hostile robot-link clients", name, run)
            tb += self.traceback_check("3 hostile robot-link clients", name + " (server)", srv)
            tally.tracebacks += tb
            summary = {}
            with contextlib.suppress(OSError, ValueError):
                summary = json.loads((d / "deploy" / "summary.json").read_text())
            eps, _ = self.read_store(d / "remote.zarr")
            n_eps = len(eps or [])
            watchdog = summary.get("interventions", {}).get("watchdog")
            if watchdog is None:  # a faulted run writes no summary.json; its table has it
                m = re.search(r"interventions: watchdog\W+(\d+)", run.out)
                watchdog = int(m.group(1)) if m else "-"
            accepted = h.get("accepted", 0 if when == "none" else "?")
            p99 = summary.get("period_ms_p99")
            if p99 is None:
                m = re.search(r"period ms p99\W+([\d.]+)", run.out)
                p99 = m.group(1) if m else "-"
            attempts = h.get("attempts", 0)
            tally.refused_clearly += (h.get("replies", 0) - (accepted if isinstance(
                accepted, int) else 0) + h.get("big_dropped", 0))
            ok = run.rc == 0 and n_eps == 5 and watchdog == 0 and accepted == 0
            if when == "before" and run.rc == 1:
                clear, why = refusal(run, (1,))
                ok = clear and accepted == 0
                self.finding("3 hostile robot-link clients", name, run,
                             "the deploy could not connect while the flood ran: refused "
                             f"({first_line(error_message(run))})", defect=False)
            elif not ok:
                self.finding("3 hostile robot-link clients", name, run,
                             f"deploy exit {run.rc}, {n_eps} episodes, watchdog {watchdog}, "
                             f"hostile accepted {accepted}"
                             + (" (no flood: the machine's load alone)" if when == "none"
                                else ""), error_message(run) or run.text[-1500:],
                             defect=when != "none")
            if summary.get("episodes") not in (None, n_eps):
                self.finding("3 hostile robot-link clients", name, run,
                             f"summary says {summary.get('episodes')} episodes, the store "
                             f"holds {n_eps}")
                tally.lost += abs(int(summary.get("episodes")) - n_eps)
            tally.recovered += ok and when != "none"
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(h.get("reasons", {}).items()))
            rows.append(f"| {name} | {run.rc} | {n_eps} | {watchdog} | "
                        f"{p99} | {attempts} | {accepted} | "
                        f"{h.get('big_dropped', '-')} | {reasons or '-'} |")
            shutil.rmtree(d)
        self.notes["3 hostile robot-link clients"] = [
            "`ROBOLEARN_ROBOT_TOKEN=... robolearn serve-robot --backend twin --task reach-v3 "
            "--port 0` (real-time twin, 80 Hz; a fresh server per condition) and `robolearn "
            "deploy checkpoint=<debug ckpt> robot=remote remote.port=<port> task=reach-v3 "
            "episodes=5 max_steps=100` with the right token. The hostile process "
            "(`benchmarks/fault_campaign.py --hostile`, another process on 127.0.0.1 at nice 19: "
            "an attacker's CPU is not the controller's) runs N "
            "connections sending 15 MiB hellos, N sending wrong-token hellos, and three odd "
            "ones: a hello with a 3000-byte token (within the 4 KiB hello limit, over the "
            "1024-byte token limit), msgpack garbage, and `get_observation` with an invented "
            "session id. 'attempts' = requests the hostile side sent; 'accepted' = replies "
            "with ok=true. 'watchdog' = the deploy summary's watchdog interventions."]

    def start_hostile(self, port: int, n_big: int, n_guess: int, sleep_s: float) -> Proc:
        proc = Proc([sys.executable, str(Path(__file__).resolve()), "--hostile", str(port),
                     str(n_big), str(n_guess), str(sleep_s)], ROOT, self.env, "hostile",
                    stdin=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "flooding" not in "".join(proc.out):
            if proc.p.poll() is not None:
                break
            time.sleep(0.02)
        return proc

    def stop_hostile(self, proc: Proc | None) -> dict[str, Any]:
        if proc is None:
            return {}
        with contextlib.suppress(OSError):
            proc.p.stdin.write(b"stop\n")
            proc.p.stdin.close()
        run = proc.finish(60)
        if run.tracebacks:
            self.finding("3 hostile robot-link clients", "hostile process", run,
                         "the campaign's own hostile client failed", defect=False)
        for line in run.out.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        return {"error": run.text[-500:]}

    # ================================================================== part 4: CLI misuse
    def part4(self) -> None:
        print("part 4: CLI misuse", flush=True)
        import h5py
        from safetensors.numpy import load_file, save_file

        d = self.dir("misuse")
        good_ck = Path(os.path.realpath(self.ckpt / "checkpoint")) if (
            self.ckpt / "checkpoint").exists() else self.ckpt
        shutil.copytree(self.import_src, d / "demos.zarr")

        def bad_ckpt(name: str, edit_cfg: Callable[[dict], None] | None = None,
                     nan: bool = False) -> Path:
            p = d / name
            shutil.copytree(good_ck, p)
            if edit_cfg is not None:
                cfg = json.loads((p / "config.json").read_text())
                edit_cfg(cfg)
                (p / "config.json").write_text(json.dumps(cfg))
            if nan:
                w = load_file(p / "model.safetensors")
                floats = sorted(k for k in w if w[k].dtype.kind == "f")
                first = ([k for k in floats if k.endswith("weight")] or floats)[0]
                w[first] = np.full_like(w[first], np.nan)
                save_file(w, str(p / "model.safetensors"))
            return p

        def dims(cfg: dict) -> None:
            cfg["obs_dim"] = 40
            cfg["policy"]["obs_dim"] = 40

        def huge(cfg: dict) -> None:
            cfg["policy"]["backbone_kwargs"] = {"hidden_dim": 1_000_000_000}

        ck_dims = bad_ckpt("ck_dims", dims)
        ck_huge = bad_ckpt("ck_huge", huge)
        ck_nan = bad_ckpt("ck_nan", nan=True)
        # robomimic file with 1-D actions (T,)
        with h5py.File(d / "actions_1d.hdf5", "w") as f:
            for i in range(3):
                g = f.create_group(f"data/demo_{i}")
                g.create_dataset("obs/state", data=np.random.default_rng(i).normal(
                    size=(20, 5)).astype(np.float32))
                g.create_dataset("actions", data=np.linspace(-1, 1, 20, dtype=np.float32))
                g.create_dataset("rewards", data=np.zeros(20, np.float32))
                g.create_dataset("dones", data=np.zeros(20, np.int64))
                g.attrs["num_samples"] = 20
        (d / "adir").mkdir()
        (d / "adir" / "keep.txt").write_text("not an export\n")
        # a store whose task list names a task no one knows
        from robolearn.data import EpisodeStore
        with EpisodeStore.open(d / "demos.zarr", "r") as src, EpisodeStore.create(
                d / "unknown_task.zarr", src.obs_dim, src.action_dim,
                tasks=[TASK, "not-a-task-v3"]) as dst:
            for i in range(6):
                ep = src.episode(i)
                dst.add_episode(ep.data, task=TASK if i % 2 else "not-a-task-v3",
                                source="expert", seed=ep.seed)
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        busy_port = busy.getsockname()[1]
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # Ray's probe is expected noise
                pass

        http_srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        threading.Thread(target=http_srv.serve_forever, daemon=True).start()
        http_port = http_srv.server_address[1]
        server, port = self.start_server(d, TOKEN)
        dep = ["deploy", "robot=twin", "twin.realtime=false", "episodes=1", "max_steps=5",
               "safety.watchdog_timeout_s=2"]
        evl = ["evaluate", f"suite=MT1:{TASK}", "episodes_per_task=1", "horizon=10",
               "ray.num_workers=0"]
        # name, args, acceptable exit codes, extra check (returns "" or what is wrong)
        Check = Callable[[Run], str]

        def absent(*names: str) -> Check:
            return lambda run: ", ".join(f"{n} was created" for n in names if (d / n).exists())

        def unchanged(name: str) -> Check:
            h = tree_hash(d / name)
            return lambda run: "" if tree_hash(d / name) == h else f"{name} was modified"

        def within(seconds: float) -> Check:
            def check(run: Run) -> str:
                first = next((t for t, line in run.lines if "run directory" in line), None)
                if first is None:
                    return ""
                return "" if run.wall - first <= seconds else (
                    f"took {run.wall - first:.1f} s after start-up (limit {seconds:g} s)")
            return check

        def both(*checks: Check) -> Check:
            return lambda run: "; ".join(x for x in (c(run) for c in checks) if x)

        cases: list[tuple[str, list[str], tuple[int, ...], Check | None, dict | None]] = [
            ("train device=gpu", ["train", "--preset", "debug", "dataset=demos.zarr",
                                  "out=t_gpu", "device=gpu"], (2,), absent("t_gpu"), None),
            ("checkpoint: config.json dims ≠ weights",
             [*dep, f"checkpoint={ck_dims}", "out=o_dims.zarr"], (1,), absent("o_dims.zarr"),
             None),
            ("checkpoint: config.json asks for a huge layer",
             [*evl, f"checkpoint={ck_huge}"], (1,), within(30), None),
            ("checkpoint: NaN weights", [*dep, f"checkpoint={ck_nan}", "out=o_nan.zarr"],
             (1, 3), None, None),
            ("evaluate checkpoints=[good,bad] (bad: NaN weights)",
             [*evl, f"checkpoints=[{good_ck},{ck_nan}]", "save_rollouts=ev_rollouts.zarr"],
             (1,), absent("ev_rollouts.zarr"), None),
            ("import of a file with 1-D actions",
             ["import", "src=actions_1d.hdf5", "out=imp1d.zarr", "obs_keys=[state]",
              f"task={TASK}"], (0, 1, 2), None, None),
            ("export overwrite=true onto a directory",
             ["export", "dataset=demos.zarr", "out=adir", "overwrite=true"], (1,),
             unchanged("adir"), None),
            ("serve-robot --task bogus", ["serve-robot", "--task", "bogus-v3", "--port", "0"],
             (2,), None, None),
            ("serve-robot --params bad JSON", ["serve-robot", "--params", "{friction", "--port",
                                               "0"], (2,), None, None),
            ("serve-robot --params out of range",
             ["serve-robot", "--params", '{"friction_scale": 99}', "--port", "0"], (2,), None,
             None),
            ("serve-robot --port in use", ["serve-robot", "--port", str(busy_port)], (1,), None,
             None),
            ("collect --preset (no name)", ["collect", "--preset"], (2,), None, None),
            ("collect max_attempts_per_task=-5",
             ["collect", "max_attempts_per_task=-5", "out=o_att.zarr"], (2,),
             absent("o_att.zarr"), None),
            ("deploy rate_hz=-5", [*dep, f"checkpoint={good_ck}", "rate_hz=-5",
                                   "out=o_r1.zarr"], (2,), absent("o_r1.zarr"), None),
            ("deploy rate_hz=0.001", [*dep, f"checkpoint={good_ck}", "rate_hz=0.001",
                                      "out=o_r2.zarr"], (2,), absent("o_r2.zarr"), None),
            ("collect seed=-1 (no store created)", ["collect", "seed=-1", "out=o_seed.zarr",
                                                    "ray.num_workers=0"], (2,),
             absent("o_seed.zarr"), None),
            ("collect ray.address= an HTTP server",
             ["collect", f"ray.address=127.0.0.1:{http_port}", "ray.connect_timeout_s=5",
              "ray.num_workers=1", f"suite=MT1:{TASK}", "episodes_per_task=1",
              "out=o_ray.zarr"], (1,), both(absent("o_ray.zarr"), within(5 + 5)), None),
            ("deploy with a wrong token",
             ["deploy", f"checkpoint={good_ck}", "robot=remote", f"remote.port={port}",
              "episodes=1", "max_steps=5", "out=o_tok.zarr"], (1,), None,
             {"ROBOLEARN_ROBOT_TOKEN": "wrong-token"}),
            ("train on a store naming an unknown task",
             ["train", "--preset", "debug", "dataset=unknown_task.zarr", "out=t_unk",
              "steps=10", "tensorboard=false", "progress=false"], (0, 1), None, None),
            ("deploy task=not-a-task-v3", [*dep, f"checkpoint={good_ck}", "task=not-a-task-v3",
                                           "out=o_task.zarr"], (1, 2), absent("o_task.zarr"),
             None),
            ("collect suite=MT1:not-a-task-v3", ["collect", "suite=MT1:not-a-task-v3",
                                                 "out=o_suite.zarr", "ray.num_workers=0"],
             (1, 2), absent("o_suite.zarr"), None),
        ]
        if self.args.quick:
            cases = cases[::3]
        tally = self.tallies.setdefault("4 CLI misuse", Tally(refused_clearly=0))
        rows = self.details.setdefault("4 CLI misuse", [])
        try:
            for name, args, codes, check, env_extra in cases:
                env = dict(self.env, **env_extra) if env_extra else None
                run = self.rl(args, d, env=env, timeout=120)
                self._misuse_row(name, run, codes, check, tally, rows)
                if name == "deploy with a wrong token" and (d / "o_tok.zarr").exists():
                    self.finding("4 CLI misuse", name, run, "the refused deploy left an empty "
                                 "episode store at out= (o_tok.zarr): it is created before the "
                                 "robot link is opened", defect=False)
            # `robolearn --help | head -1`, and a reader gone before the first write
            sh = subprocess.run(["bash", "-c", f"{shlex.quote(sys.executable)} -m robolearn "
                                 "--help | head -1; exit ${PIPESTATUS[0]}"], cwd=d,
                                env=self.env, capture_output=True, text=True, timeout=120)
            run = Run("robolearn --help | head -1", sh.returncode, sh.stdout, sh.stderr, 0.0)
            self._misuse_row("robolearn --help | head -1", run, (0,),
                             lambda r: "" if r.out.strip() else "no first line", tally, rows)
            run = self.closed_pipe(["--help"], d)
            self._misuse_row("robolearn --help, stdout closed before the first write", run,
                             (0,), None, tally, rows)
        finally:
            busy.close()
            http_srv.shutdown()
            srv = self.stop_server(server)
            tally.tracebacks += self.traceback_check("4 CLI misuse", "serve-robot (wrong-token "
                                                     "server)", srv)
        self.notes["4 CLI misuse"] = [
            "Each case runs in one directory holding a copy of a collected store "
            "(demos.zarr); the bad checkpoints are copies of the debug checkpoint with "
            "config.json or model.safetensors edited. 'clear' = an accepted exit code, a "
            "one-paragraph message (no blank line, ≤ 12 lines) and no traceback, plus the "
            "case's own check (nothing created at out=, the directory untouched, the time "
            "after start-up). `deploy` cases use the twin (`episodes=1 max_steps=5`), "
            "`evaluate` cases `suite=MT1:reach-v3 episodes_per_task=1 horizon=10`. Exit 0 is "
            "accepted where the input is valid by the README (1-D actions are read as "
            "(T, 1)) or may be (a store whose task names are not Meta-World's can be trained "
            "on)."]

    def _misuse_row(self, name: str, run: Run, codes: Sequence[int],
                    check: Callable[[Run], str] | None, tally: Tally, rows: list[str]) -> None:
        tally.tried += 1
        tb = self.traceback_check("4 CLI misuse", name, run)
        tally.tracebacks += tb
        if run.rc == 0 and 0 in codes:
            clear, why = not tb, "" if not tb else "traceback"
        else:
            clear, why = refusal(run, [c for c in codes if c != 0])
        extra = check(run) if check else ""
        if extra:
            clear, why = False, "; ".join(x for x in (why, extra) if x)
        if "Exception ignored" in run.text or "BrokenPipeError" in run.text:
            clear, why = False, "; ".join(x for x in (why, "BrokenPipe noise on stderr") if x)
        tally.refused_clearly += clear
        if not clear:
            self.finding("4 CLI misuse", name, run, f"not clear: {why}",
                         run.traceback_excerpt() or run.text[-1500:])
        msg = first_line(error_message(run)) if run.rc else (
            run.out.strip().splitlines() or [""])[-1]
        rows.append(f"| {name} | {run.rc} | {'yes' if clear else 'NO: ' + why} | "
                    f"{msg[:150].replace('|', '/')} |")
        print(f"  {name}: exit {run.rc} {'clear' if clear else 'NOT CLEAR: ' + why}", flush=True)

    def closed_pipe(self, args: Sequence[str], cwd: Path) -> Run:
        r, w = os.pipe()
        os.close(r)  # the reader is gone before the command writes anything
        err_r, err_w = os.pipe()
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, "-m", "robolearn", *args], cwd=cwd, env=self.env,
                             stdout=w, stderr=err_w, stdin=subprocess.DEVNULL)
        os.close(w)
        os.close(err_w)
        with os.fdopen(err_r, "rb") as f:
            err = f.read().decode(errors="replace")
        rc = p.wait(120)
        return Run("robolearn " + shlex.join(args) + " >closed-pipe", rc, "", err,
                   time.monotonic() - t0)

    # ================================================================== report
    def report(self, started: float, load_samples: list[tuple[float, float, float]]) -> str:
        order = [k for k in self.tallies]
        lines = [
            "| part | cases tried | refused clearly | recovered | episodes lost | tracebacks |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        total = Tally(refused_clearly=0, recovered=0)
        for key in order:
            t = self.tallies[key]
            lines.append(f"| {key} | {t.tried} | {fmt(t.refused_clearly)} | {fmt(t.recovered)} "
                         f"| {t.lost} | {t.tracebacks} |")
            total.tried += t.tried
            total.refused_clearly += t.refused_clearly or 0
            total.recovered += t.recovered or 0
            total.lost += t.lost
            total.tracebacks += t.tracebacks
        lines.append(f"| **all** | **{total.tried}** | | | **{total.lost}** | "
                     f"**{total.tracebacks}** |")
        minutes = (time.monotonic() - started) / 60
        l1 = [s[0] for s in load_samples] or [0.0]
        body = [
            f"Wall time {minutes:.1f} min. Load average (1 min) sampled every 10 s during the "
            f"run: mean {np.mean(l1):.2f}, max {np.max(l1):.2f} on {os.cpu_count()} cores, "
            "shared with other engineers' jobs. Seed "
            f"{self.args.seed}{', --quick' if self.args.quick else ''}. Code under test: "
            f"{getattr(self, 'code_note', 'the checkout as it was on disk (--live-tree)')}.",
            "",
            "## Summary",
            "",
            "'cases tried': kills (part 1), commands run on a corrupt or recovered store "
            "(part 2), deploys under a flood (part 3), misuse commands (part 4). 'refused "
            "clearly': exit 1/2 with a one-paragraph message and no traceback (part 3: "
            "hostile requests refused). 'recovered': part 1 kills after which the re-run "
            "succeeded and every check held; part 2 cases where `store recover` copied exactly "
            "the provable episodes and training on the result worked; part 3 deploys that "
            "completed their 5 episodes without a watchdog trip. 'episodes lost': committed "
            "episodes missing or changed afterwards (part 2: all episodes of a corrupt store "
            "whose files a command changed).",
            "",
            *lines,
            "",
        ]
        defects = [f for f in self.findings if f.defect]
        others = [f for f in self.findings if not f.defect]
        body += ["## Defects found", ""]
        if not defects:
            body += ["None: no episode lost, no traceback, no hang, every misuse refused "
                     "clearly.", ""]
        for f in defects:
            body += [f"- **{f.part} / {f.case}**: {f.what}.", f"  Command: `{f.command}`"
                     if f.command else "", ""]
            if f.detail:
                body += ["  ```", *("  " + x for x in f.detail.strip().splitlines()[-40:]),
                         "  ```", ""]
        if others:
            body += ["## Other observations (not defects)", ""]
            for f in others:
                body += [f"- **{f.part} / {f.case}**: {f.what}." + (
                    f" Command: `{f.command}`" if f.command else ""), ""]
        headers = {
            "1 kill -9: collect": "| # | writer | kill at s | killed | committed before | "
                                  "after re-run | re-run exit | lost | result |",
            "1 kill -9: deploy": "| # | start | kill at s | killed | committed before | "
                                 "after re-run | re-run exit | lost | result |",
            "1 kill -9: import": "| # | kill at s | killed | out= after the kill | temps | "
                                 "re-run exit | episodes | result |",
            "1 kill -9: train": "| # | kill at s | killed | newest ckpt | resumed | re-run "
                                "exit | weights equal | result |",
            "2 corrupted stores": "| case | train | deploy | export | store check | recover | "
                                  "train on recovered | provable | files changed |",
            "3 hostile robot-link clients": "| flood | deploy exit | episodes | watchdog | "
                                            "period p99 ms | hostile attempts | accepted | "
                                            "oversized dropped | replies by reason |",
            "4 CLI misuse": "| case | exit | clear | message (first line) |",
        }
        for key in order:
            header = headers[key]
            ncol = header.count("|") - 1
            body += [f"## {key}", "", *self.notes.get(key, []), "", header,
                     "|" + " --- |" * ncol, *self.details.get(key, []), ""]
        body += ["## Durations", "", "| what | seconds |", "| --- | ---: |",
                 *(f"| {k} | {v:.1f} |" for k, v in self.timing.items()), ""]
        return "\n".join(body)

    def cleanup(self) -> None:
        _kill_live_groups()
        shutil.rmtree(self.root, ignore_errors=True)


# ============================================================================ helpers
def digest(ep: Any, timestamps: bool = True) -> str:
    """A hash of one episode: every array (dtype, shape, bytes) and every metadata field."""
    h = hashlib.sha256()
    for k in sorted(ep.data):
        a = np.ascontiguousarray(ep.data[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    meta = dict(task=ep.task, params=ep.params, source=ep.source, seed=ep.seed,
                policy_id=ep.policy_id, info=ep.info)
    if timestamps:
        meta["timestamp"] = repr(ep.timestamp)
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


def tree_hash(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (the writer lock file, which holds a pid, excluded)."""
    out = {}
    if not path.exists():
        return out
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.name != ".robolearn.lock":
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def raw_digests(store: Path, starts: np.ndarray, ends: np.ndarray) -> list[str | None]:
    """Per-episode hashes of a store's raw zarr content at the given (original) boundaries:
    every data row, every meta entry and the two end entries; ``None`` where a chunk does not
    decode. Read without robolearn's checks, to see whether a command changed old episodes."""
    import zarr

    try:
        root = zarr.open_group(str(store), mode="r")
    except Exception:  # noqa: BLE001 - an unreadable store: nothing to compare
        return [None] * len(ends)
    out: list[str | None] = []
    for j in range(len(ends)):
        h = hashlib.sha256()
        try:
            for key in sorted(root["data"].array_keys()):
                h.update(np.ascontiguousarray(root["data"][key][int(starts[j]):int(ends[j])])
                         .tobytes())
            e = root["meta"]["episode_ends"]
            h.update(np.asarray(e[max(0, j - 1):j + 1]).tobytes())
            for key in sorted(root["meta"].array_keys()):
                if key != "episode_ends":
                    h.update(str(root["meta"][key][j]).encode())
        except Exception:  # noqa: BLE001 - a damaged chunk
            out.append(None)
            continue
        out.append(h.hexdigest())
    return out


def diff_tree(a: dict[str, str], b: dict[str, str]) -> str:
    changed = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    added = sorted(b.keys() - a.keys())
    removed = sorted(a.keys() - b.keys())
    parts = [f"{n} {what}: {xs[:5]}" for n, what, xs in (
        (len(changed), "changed", changed), (len(added), "added", added),
        (len(removed), "removed", removed)) if xs]
    return "; ".join(parts)


def error_message(run: Run) -> str:
    """The command's error paragraph: from the last ``robolearn <cmd>:`` (or the server's
    ``error:``) line of stderr to the end."""
    err = run.err
    starts = [m.start() for m in re.finditer(
        r"^(robolearn [\w-]+(?: \[[^\]]*\])?: |python -m hardware\.server: error: |robolearn: )",
        err, re.M)]
    return err[starts[-1]:].strip() if starts else ""


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def refusal(run: Run, codes: Sequence[int], must_name: str | None = None) -> tuple[bool, str]:
    """Whether ``run`` is a clear refusal: an accepted exit code, a one-paragraph message
    (naming ``must_name`` when given), no traceback. Returns (ok, what is wrong)."""
    if run.timed_out:
        return False, "timed out (hang)"
    if run.tracebacks:
        return False, "traceback"
    if run.rc not in codes:
        return False, f"exit {run.rc}, expected {'/'.join(map(str, codes))}"
    msg = error_message(run)
    if not msg and run.rc and "store check" in run.label:
        msg = run.out.strip()  # the check's report is on stdout, its verdict on stderr
    if not msg:
        return False, "no error message on stderr"
    if "\n\n" in msg or len(msg.splitlines()) > 12:
        return False, "message is not one paragraph"
    if must_name and must_name not in msg:
        return False, f"message does not name {must_name}"
    return True, ""


def fmt_window(window: tuple[float, float] | None) -> str:
    return f"{window[0]:.1f}–{window[1]:.1f} s" if window else "not seen"


def committed(store: Path) -> int:
    """Committed episodes of a schema-2 store, from its ``meta/episode_ends`` metadata (the
    shape is the commit), without opening it; 0 when absent or unreadable."""
    try:
        meta = json.loads((store / "meta" / "episode_ends" / "zarr.json").read_text())
        return int(meta["shape"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return 0


def fmt(v: int | None) -> str:
    return "—" if v is None else str(v)


# ============================================================================ hostile side
def hostile(port: int, n_big: int, n_guess: int, sleep_s: float) -> None:
    """Floods ``127.0.0.1:port`` until a line arrives on stdin; prints ``RESULT {json}``."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message

    from hardware import wire

    # Lowest CPU priority: a real attacker runs on another machine; here it shares 2 cores
    # with the server and the controller, and its own CPU use must not be what is measured.
    os.nice(19)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    ctx = zmq.Context()

    def dealer(hwm: int) -> zmq.Socket:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.connect(f"tcp://127.0.0.1:{port}")
        return sock

    def hello(rid: int, token: str) -> bytes:
        return wire.pack({"op": "hello", "id": rid, "version": wire.PROTOCOL_VERSION,
                          "token": token, "client": "hostile"})

    big = hello(0, "x" * (15 * 2**20))
    bigs = [dealer(2) for _ in range(n_big)]
    monitors = [s.get_monitor_socket(zmq.EVENT_DISCONNECTED) for s in bigs]
    guessers = [dealer(1000) for _ in range(n_guess)]
    odd = [dealer(1000) for _ in range(3)]
    n: dict[str, Any] = {"attempts": 0, "big_sent": 0, "big_dropped": 0, "replies": 0,
                         "accepted": 0, "reasons": {}}
    print("flooding", flush=True)
    rid, t0 = 0, time.monotonic()

    def send(sock: zmq.Socket, data: bytes) -> None:
        try:
            sock.send(data, zmq.NOBLOCK)
            n["attempts"] += 1
        except zmq.Again:
            pass

    def drain(sock: zmq.Socket) -> None:
        while sock.poll(0):
            raw = sock.recv()
            n["replies"] += 1
            try:
                reply = wire.unpack(raw)
            except ValueError:
                reply = {"error": "undecodable reply"}
            n["accepted"] += bool(reply.get("ok"))
            key = str(reply.get("reason", reply.get("error")))
            n["reasons"][key] = n["reasons"].get(key, 0) + 1

    while not stop.is_set() and time.monotonic() < t0 + 600:
        for s in bigs:
            before = n["attempts"]
            send(s, big)
            n["big_sent"] += n["attempts"] - before
            drain(s)
        for s in guessers:
            rid += 1
            send(s, hello(rid, f"guess-{rid}"))
            drain(s)
        rid += 1
        send(odd[0], hello(rid, "y" * 3000))
        send(odd[1], b"\xc1\xff\x00garbage" * 8)
        send(odd[2], wire.pack({"op": "get_observation", "id": rid,
                                "session": f"invented-{rid}"}))
        for s in odd:
            drain(s)
        for m in monitors:
            while m.poll(0):
                recv_monitor_message(m)
                n["big_dropped"] += 1
        if sleep_s:
            time.sleep(sleep_s)
    n["seconds"] = time.monotonic() - t0
    print("RESULT " + json.dumps(n), flush=True)
    ctx.destroy(linger=0)


# ============================================================================ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 kills per command and fewer cases in parts 2-4 (a smoke run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--kills", type=int, default=None,
                        help="kills per command (default 20; 3 with --quick)")
    parser.add_argument("--parts", default="1,2,3,4",
                        help="which parts to run (comma list; collect, deploy, import, train "
                             "pick one command of part 1)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                             "fault_campaign.md"), help="results file")
    parser.add_argument("--collect-episodes", type=int, default=20,
                        help="episodes_per_task of the killed collection")
    parser.add_argument("--import-episodes", type=int, default=60,
                        help="episodes of the store exported for the killed import")
    parser.add_argument("--train-steps", type=int, default=200, help="steps of the killed train")
    parser.add_argument("--note", default="", help="a line of context added to the results")
    parser.add_argument("--live-tree", action="store_true",
                        help="run the checkout's code as it is on disk during the run (default: "
                             "a copy taken at the start)")
    parser.add_argument("--hostile", nargs=4, metavar=("PORT", "N_BIG", "N_GUESS", "SLEEP_S"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hostile:
        port, n_big, n_guess, sleep_s = args.hostile
        hostile(int(port), int(n_big), int(n_guess), float(sleep_s))
        return
    if args.kills is None:
        args.kills = 3 if args.quick else 20
    parts = {p.strip() for p in args.parts.split(",")}

    camp = Campaign(args)
    atexit.register(camp.cleanup)

    def stop(signum: int, frame: Any) -> None:
        camp.cleanup()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    load: list[tuple[float, float, float]] = []
    done = threading.Event()

    def sample_load() -> None:
        while not done.is_set():
            load.append(os.getloadavg())
            done.wait(10)

    threading.Thread(target=sample_load, daemon=True).start()
    started = time.monotonic()
    print(f"fault campaign in {camp.root}", flush=True)
    camp.fixtures()
    for name, step in (("collect", camp.part1_collect), ("deploy", camp.part1_deploy),
                       ("import", camp.part1_import), ("train", camp.part1_train)):
        if "1" in parts or name in parts:
            t0 = time.monotonic()
            camp.guarded(step)
            camp.timing[f"{step.__name__} (all kills)"] = time.monotonic() - t0
    for name, step in (("2", camp.part2), ("3", camp.part3), ("4", camp.part4)):
        if name in parts:
            t0 = time.monotonic()
            camp.guarded(step)
            camp.timing[f"part {name}"] = time.monotonic() - t0
    done.set()
    body = camp.report(started, load)
    if args.note:
        body += f"\n{args.note}\n"
    command = shlex.join(["python", "benchmarks/fault_campaign.py", *sys.argv[1:]])
    text = (f"# Fault/fuzz campaign: kill -9, corrupted stores, hostile link, CLI misuse\n\n"
            f"- Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n- Machine: {machine()}\n"
            f"- Command: `{command}`\n\n{body.rstrip()}\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
