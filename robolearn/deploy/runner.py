"""The fixed-rate runner of ``robolearn deploy`` (see :mod:`robolearn.deploy`)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.deploy.config import DeployConfig
from robolearn.errors import DeployFault, RobotRefused

log = logging.getLogger(__name__)


# Per-step extras recorded next to obs/action (action = what was actually sent).
def _extras(action_dim: int, n_kinds: int) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        "action_policy": ((action_dim,), "float32"),  # what the policy asked for (0 if unusable)
        "policy_ok": ((), "bool"),  # the request was finite and of the right shape
        "interventions": ((n_kinds,), "int32"),  # per-kind safety interventions this step
        "ee_pos": ((3,), "float32"),
        "policy_latency_s": ((), "float32"),
        "period_s": ((), "float32"),  # time since the previous step started
        "missed_deadline": ((), "bool"),
    }


def build_robot(cfg: DeployConfig) -> Any:
    """The configured backend wrapped in the safety layer."""
    from hardware import SafeRobot, SafetyConfig
    from hardware.safety import METAWORLD_POSITION_SCALE

    if cfg.robot == "twin":
        from hardware import TwinRobot
        from robolearn.rollout.physics import params_from_config

        backend = TwinRobot(cfg.task, params=params_from_config(cfg.twin), seed=None,
                            realtime=cfg.twin.realtime, jitter_std_s=cfg.twin.jitter_std_s)
    elif cfg.robot == "remote":
        from hardware import RemoteRobot

        token = cfg.remote.token or os.environ.get("ROBOLEARN_ROBOT_TOKEN") or None
        backend = RemoteRobot(cfg.remote.host, cfg.remote.port, token=token,
                              timeout_s=cfg.remote.timeout_s)
    else:
        raise ValueError(f"Got robot={cfg.robot!r}, expected 'twin' or 'remote'")
    overrides: dict[str, Any] = {"max_delta": cfg.safety.max_delta,
                                 "watchdog_timeout_s": cfg.safety.watchdog_timeout_s,
                                 "tracking_lag_steps": cfg.safety.tracking_lag_steps or None,
                                 "position_scale": METAWORLD_POSITION_SCALE * cfg.safety.gain}
    if not cfg.safety.workspace:
        overrides.update(workspace_low=None, workspace_high=None)
    return SafeRobot(backend, SafetyConfig.for_metaworld(**overrides))


@dataclass
class _Timing:
    periods: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    missed: int = 0

    def summary(self) -> dict[str, float | int | None]:
        def pct(x: list[float], q: float) -> float | None:
            return round(float(np.percentile(x, q)) * 1e3, 3) if x else None

        return {"period_ms_p50": pct(self.periods, 50), "period_ms_p99": pct(self.periods, 99),
                "policy_latency_ms_p50": pct(self.latencies, 50),
                "policy_latency_ms_p99": pct(self.latencies, 99), "missed_deadlines": self.missed}


def _sanitize(action: Any, action_dim: int) -> tuple[np.ndarray, bool]:
    """The request as a finite (Da,) float32 for the record, and whether it was usable."""
    try:
        a = np.asarray(action, dtype=np.float32)
    except (TypeError, ValueError):
        return np.zeros(action_dim, np.float32), False
    if a.shape != (action_dim,) or not np.isfinite(a).all():
        return np.zeros(action_dim, np.float32), False
    return a, True


def run_deploy(cfg: DeployConfig, run_dir: Path, *, policy: Any = None, robot: Any = None,
               progress: bool | None = None) -> dict[str, Any]:
    """Run ``cfg.episodes`` episodes; returns the summary (also written by the CLI).

    ``progress`` (default ``cfg.progress``) shows a bar over episodes.

    ``policy`` / ``robot`` may be given directly (tests, notebooks); by default the checkpoint
    is loaded with :func:`robolearn.load_policy` and the robot built by :func:`build_robot`.
    Every finished episode is committed; when the run ends on a fault or Ctrl-C, the steps of the
    episode in progress are committed too, marked incomplete (training readers skip them).

    Raises:
        DeployFault: the run ended on a fault (dead link, watchdog); the robot was stopped.
        RobotRefused: the robot server refused this client (token, protocol, busy).
    """
    from hardware import INTERVENTION_KINDS
    from robolearn.data import claim_store

    progress = cfg.progress if progress is None else progress

    if policy is None:
        from robolearn import load_policy

        policy = load_policy(cfg.checkpoint, device=cfg.device)
    task_id = policy.task_id(cfg.task)  # unknown task: clear error before touching the robot
    robot = robot if robot is not None else build_robot(cfg)
    kinds = list(INTERVENTION_KINDS)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # One owner for the whole run (a second deploy onto the same out= is refused); an existing
    # store must have the per-step keys a deployment records.
    create = dict(obs_dim=policy.obs_dim, action_dim=policy.action_dim,
                  extras=_extras(policy.action_dim, len(kinds)),
                  attrs={"intervention_kinds": kinds, "source": "deploy"})
    existed = out.exists()
    with claim_store(out, create=create) as claim:
        try:
            with claim.open("a") as store:
                return _deploy(cfg, store, robot, policy, task_id, kinds, progress)
        except RobotRefused:
            if not existed:  # nothing ran: leave no empty store behind (we still own the path)
                _remove_if_empty(out)
            raise


def _remove_if_empty(path: Path) -> None:
    """Remove the episode store this command created at ``path`` if it holds no episode."""
    import shutil

    from robolearn.data import EpisodeStore

    try:
        with EpisodeStore.open(path) as s:
            empty = len(s) == 0 and s.num_steps == 0
    except Exception:  # noqa: BLE001 - not provably empty: keep it
        return
    if empty:
        shutil.rmtree(path, ignore_errors=True)


def _deploy(cfg: DeployConfig, store: Any, robot: Any, policy: Any, task_id: int,
            kinds: list[str], progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from hardware import RobotError, RobotRefusedError
    from robolearn.rollout import episode_seed

    out = store.path
    timing = _Timing()
    successes: list[bool] = []
    fault: str | None = None
    incomplete = 0
    params = None
    if cfg.robot == "twin" and hasattr(getattr(robot, "robot", None), "params"):
        params = robot.robot.params
    policy_id = str(getattr(policy, "path", cfg.checkpoint))
    bar = tqdm(total=cfg.episodes, desc=f"deploy {cfg.task} on {cfg.robot}", unit="ep",
               disable=not progress)
    t_start = time.perf_counter()

    def commit(rows: dict[str, list], ep: int, seed: int, success: bool, complete: bool) -> None:
        info = {"episode": ep, "success": success, "robot": cfg.robot}
        kwargs = {} if complete else {"complete": False}
        store.add_episode({k: np.asarray(v) for k, v in rows.items()}, task=cfg.task,
                          source="real", params=params,
                          seed=seed if cfg.robot == "twin" else None, policy_id=policy_id,
                          info=info, **kwargs)

    rows: dict[str, list] = _new_rows()
    ep, seed = 0, 0
    try:
        with robot:
            rate = cfg.rate_hz or getattr(getattr(robot, "robot", robot), "control_hz", 0) or 80.0
            period = 1.0 / rate
            for ep in range(cfg.episodes):
                seed = episode_seed(cfg.seed, cfg.task, ep)
                rows = _new_rows()
                success = _run_episode(cfg, robot, policy, task_id, seed, period, kinds, timing,
                                       rows)
                robot.stop()  # hold while the episode is written
                if rows["obs"]:
                    commit(rows, ep, seed, success, complete=True)
                rows = _new_rows()
                successes.append(success)
                bar.update(1)
                bar.set_postfix(success=f"{sum(successes)}/{len(successes)}", refresh=False)
    except KeyboardInterrupt:
        fault = "interrupted (Ctrl-C)"
        raise
    except RobotRefusedError as e:
        raise RobotRefused(
            f"the robot refused this client: {e}. Nothing was run; check the token "
            "(ROBOLEARN_ROBOT_TOKEN, the one `robolearn serve-robot` was started with), the "
            "address, and that no other controller holds the robot"
        ) from None
    except (RobotError, OSError) as e:
        fault = f"{type(e).__name__}: {e}"
    finally:
        bar.close()
        if fault is not None and rows["obs"]:  # the episode in progress: keep its steps
            commit(rows, ep, seed, bool(any(rows["success"])), complete=False)
            incomplete = 1
    summary = {
        "checkpoint": str(cfg.checkpoint), "robot": cfg.robot, "task": cfg.task,
        "episodes": len(successes), "success_rate": (float(np.mean(successes))
                                                      if successes else None),
        "incomplete_episodes": incomplete,
        "interventions": dict(getattr(robot, "interventions", {})),
        **timing.summary(), "store": str(out), "seconds": round(time.perf_counter() - t_start, 2),
        "fault": fault,
    }
    _print_summary(summary)
    if fault is not None:
        kept = " and the steps of the interrupted one (marked incomplete)" if incomplete else ""
        raise DeployFault(f"deployment stopped on a fault after {len(successes)} recorded "
                          f"episode(s): {fault}. The robot was stopped; the recorded episodes{kept}"
                          f" are in {out}")
    return summary


_ROW_KEYS = ("obs", "action", "reward", "success", "action_policy", "policy_ok", "interventions",
             "ee_pos", "policy_latency_s", "period_s", "missed_deadline")


def _new_rows() -> dict[str, list]:
    return {k: [] for k in _ROW_KEYS}


def _run_episode(cfg: DeployConfig, robot: Any, policy: Any, task_id: int, seed: int,
                 period: float, kinds: list[str], timing: _Timing, rows: dict[str, list]) -> bool:
    """One episode at the fixed rate; appends its steps to ``rows`` as they happen (so a fault
    mid-episode leaves the steps taken so far); returns whether it succeeded."""
    obs = robot.reset_episode(task=cfg.task, seed=seed)
    policy.reset()
    success = False
    deadline = time.monotonic()
    last_start = None
    for _ in range(cfg.max_steps):
        start = time.monotonic()
        before = dict(robot.interventions)
        t0 = time.perf_counter()
        try:
            requested = policy.act(np.asarray(obs["state"], np.float32), task=task_id)
        except ValueError as e:  # e.g. the policy refuses a non-finite observation
            log.warning("policy error: %s; holding", e)
            requested = None
        latency = time.perf_counter() - t0
        sent = robot.send_action(requested)  # the safety layer rejects what is unusable
        nxt = robot.get_observation()
        after = robot.interventions
        recorded, ok = _sanitize(requested, policy.action_dim)
        step_success = bool(np.asarray(nxt.get("success", False)))
        timing.latencies.append(latency)
        if last_start is not None:
            timing.periods.append(start - last_start)
        # The next step's slot starts one period after this one's. A step that ends more than
        # half a period past that point missed its deadline; the schedule then restarts from
        # now (so one stall counts once). The slack absorbs a robot that paces itself (a
        # driver or the real-time twin blocking in send_action until its own tick).
        deadline += period
        now = time.monotonic()
        missed = now > deadline + 0.5 * period
        if missed:
            timing.missed += 1
            deadline = now
        row = {
            "obs": np.asarray(obs["state"], np.float32),
            "action": np.asarray(sent, np.float32),
            "reward": np.float32(0.0),
            "success": step_success,
            "action_policy": recorded,
            "policy_ok": ok,
            "interventions": np.array([after[k] - before.get(k, 0) for k in kinds], np.int32),
            "ee_pos": np.asarray(obs.get("ee_pos", np.zeros(3)), np.float32),
            "policy_latency_s": np.float32(latency),
            "period_s": np.float32(start - last_start if last_start else period),
            "missed_deadline": missed,
        }
        for k, v in row.items():  # one whole row at a time: a fault never leaves a ragged one
            rows[k].append(v)
        last_start = start
        obs = nxt
        success = success or step_success
        if success:
            break
        if now < deadline:
            time.sleep(deadline - now)  # the fixed-rate loop's one wait per step
    return success


def _print_summary(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"robolearn deploy {s['task']} on {s['robot']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rate = "-" if s["success_rate"] is None else f"{s['success_rate']:.2f}"
    table.add_row("episodes", str(s["episodes"]))
    table.add_row("success rate", rate)
    for kind, n in s["interventions"].items():
        table.add_row(f"interventions: {kind}", str(n))
    table.add_row("missed deadlines", str(s["missed_deadlines"]))
    for key in ("period_ms_p50", "period_ms_p99", "policy_latency_ms_p50",
                "policy_latency_ms_p99"):
        table.add_row(key.replace("_", " "), "-" if s[key] is None else f"{s[key]:.2f}")
    if s["fault"]:
        table.add_row("FAULT", s["fault"], style="bold red")
    Console().print(table)
    Console().print(f"recorded episodes: {s['store']}")
