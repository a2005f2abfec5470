"""The deployment runner (``robolearn deploy``): a trained policy on a robot, safely, recorded.

A fixed-rate control loop at the robot's rate: observe → ``policy.act`` (action-chunk
execution through :func:`robolearn.load_policy`) → ``send_action`` through the safety layer,
with per-step timing and missed-deadline accounting. Any exception or Ctrl-C stops the robot
(the ``with robot:`` block) before it propagates. Every finished episode is committed to an
episode store with ``source="real"`` — observations, the action the policy asked for, the action
actually sent, interventions, timing, and the twin's TaskParams when known — the input of the
real-grounded curriculum.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import MISSING, DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass
class TwinOptions:
    """The simulated twin and its reality gap."""

    realtime: bool = True  # step at the control rate in wall-clock time (else as fast as possible)
    jitter_std_s: float = 0.0  # control-period jitter, seconds
    friction_scale: float = 1.0  # reality gap: TaskParams applied to the twin
    object_mass_scale: float = 1.0
    joint_damping_scale: float = 1.0
    actuator_gain_scale: float = 1.0
    obs_noise_std: float = 0.0
    action_noise_std: float = 0.0
    action_latency: int = 0  # steps


@dataclass
class RemoteOptions:
    """A robot served with `python -m hardware.server` (next to the arm)."""

    host: str = "127.0.0.1"
    port: int = 5555
    token: str = ""  # shared token (default: $ROBOLEARN_ROBOT_TOKEN)
    timeout_s: float = 1.0  # a reply slower than this is a dead link


@dataclass
class SafetyOptions:
    """Client-side safety layer (the server may add its own)."""

    max_delta: float = 0.5  # max change of any action entry per step
    watchdog_timeout_s: float = 0.1  # stop the robot when no valid command arrives for this long
    workspace: bool = True  # keep the end effector in Meta-World's hand box


@dataclass
class DeployConfig:
    """``robolearn deploy``: run a checkpoint on a robot, record every episode."""

    policy: str = MISSING  # checkpoint or run directory written by `robolearn train`
    robot: str = "twin"  # twin | remote
    task: str = "reach-v3"  # task name, as the policy knows it
    episodes: int = 10  # episodes to run
    max_steps: int = 500  # steps per episode (Meta-World's horizon)
    seed: int = 2000  # episode i's goal seed (twin): episode_seed(seed, task, i)
    rate_hz: float = 0.0  # control rate (0: the robot's own; the twin's is 80 Hz)
    out: str = "data/real_episodes.zarr"  # episode store for the recordings (source=real)
    device: str = "auto"  # policy inference device
    twin: TwinOptions = field(default_factory=TwinOptions)
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    safety: SafetyOptions = field(default_factory=SafetyOptions)
    run_dir: str = ""  # where config/log/summary go (default outputs/deploy/<time>)


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


class DeployFault(RuntimeError):
    """The run ended on a fault (link loss, watchdog trip, policy error); the robot was stopped."""


def build_robot(cfg: DictConfig) -> Any:
    """The configured backend wrapped in the safety layer."""
    from hardware import SafeRobot, SafetyConfig

    if cfg.robot == "twin":
        from hardware import TwinRobot
        from sim import TaskParams

        gap = {k: v for k, v in OmegaConf.to_container(cfg.twin).items()
               if k not in ("realtime", "jitter_std_s")}
        backend = TwinRobot(cfg.task, params=TaskParams(**gap), seed=None,
                            realtime=cfg.twin.realtime, jitter_std_s=cfg.twin.jitter_std_s)
    elif cfg.robot == "remote":
        from hardware import RemoteRobot

        token = cfg.remote.token or os.environ.get("ROBOLEARN_ROBOT_TOKEN") or None
        backend = RemoteRobot(cfg.remote.host, cfg.remote.port, token=token,
                              timeout_s=cfg.remote.timeout_s)
    else:
        raise ValueError(f"Got robot={cfg.robot!r}, expected 'twin' or 'remote'")
    overrides: dict[str, Any] = {"max_delta": cfg.safety.max_delta,
                                 "watchdog_timeout_s": cfg.safety.watchdog_timeout_s}
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


def run_deploy(cfg: DictConfig, run_dir: Path, *, policy: Any = None, robot: Any = None,
               progress: bool = True) -> dict[str, Any]:
    """Run ``cfg.episodes`` episodes; returns the summary (also written by the CLI).

    ``policy`` / ``robot`` may be given directly (tests, notebooks); by default the checkpoint
    is loaded with :func:`robolearn.load_policy` and the robot built by :func:`build_robot`.
    Raises :class:`DeployFault` after stopping the robot when the run ends on a fault.
    """
    from tqdm.auto import tqdm

    from hardware import INTERVENTION_KINDS, RobotError
    from robolearn.collect import episode_seed
    from robolearn.data import EpisodeStore

    if cfg.episodes < 1 or cfg.max_steps < 1:
        raise ValueError(f"Got episodes={cfg.episodes}, max_steps={cfg.max_steps}; both >= 1")
    if policy is None:
        from robolearn import load_policy

        policy = load_policy(cfg.policy, device=cfg.device)
    task_id = policy.task_id(cfg.task)  # unknown task: clear error before touching the robot
    robot = robot if robot is not None else build_robot(cfg)
    action_dim = policy.action_dim
    kinds = list(INTERVENTION_KINDS)
    out = Path(cfg.out)
    if out.exists():
        store = EpisodeStore.open(out, mode="a")
        missing = set(_extras(action_dim, len(kinds))) - set(store.spec)
        if store.obs_dim != policy.obs_dim or missing:
            store.close()
            raise ValueError(f"{out} is not a deployment store for this policy (obs_dim "
                             f"{store.obs_dim} vs {policy.obs_dim}, missing keys {sorted(missing)});"
                             " pick another out=")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        store = EpisodeStore.create(out, policy.obs_dim, action_dim,
                                    extras=_extras(action_dim, len(kinds)),
                                    attrs={"intervention_kinds": kinds, "source": "deploy"})
    timing = _Timing()
    successes: list[bool] = []
    fault: str | None = None
    params = None
    if cfg.robot == "twin" and hasattr(getattr(robot, "robot", None), "params"):
        params = robot.robot.params
    bar = tqdm(total=cfg.episodes, desc=f"deploy {cfg.task} on {cfg.robot}", unit="ep",
               disable=not progress)
    t_start = time.perf_counter()
    try:
        with store, robot:
            rate = cfg.rate_hz or getattr(getattr(robot, "robot", robot), "control_hz", 0) or 80.0
            period = 1.0 / rate
            for ep in range(cfg.episodes):
                seed = episode_seed(cfg.seed, cfg.task, ep)
                rows, success = _run_episode(cfg, robot, policy, task_id, seed, period, kinds,
                                             timing)
                robot.stop()  # hold while the episode is written
                if rows["obs"]:
                    store.add_episode(
                        {k: np.asarray(v) for k, v in rows.items()}, task=cfg.task,
                        source="real", params=params, seed=seed if cfg.robot == "twin" else None,
                        policy_id=str(getattr(policy, "path", cfg.policy)),
                        info={"episode": ep, "success": success, "robot": cfg.robot},
                    )
                successes.append(success)
                bar.update(1)
                bar.set_postfix(success=f"{sum(successes)}/{len(successes)}", refresh=False)
    except KeyboardInterrupt:
        fault = "interrupted (Ctrl-C)"
        raise
    except (RobotError, OSError) as e:
        fault = f"{type(e).__name__}: {e}"
    finally:
        bar.close()
    summary = {
        "policy": str(cfg.policy), "robot": cfg.robot, "task": cfg.task,
        "episodes": len(successes), "success_rate": (float(np.mean(successes))
                                                      if successes else None),
        "interventions": dict(getattr(robot, "interventions", {})),
        **timing.summary(), "store": str(out), "seconds": round(time.perf_counter() - t_start, 2),
        "fault": fault,
    }
    _print_summary(summary)
    if fault is not None:
        raise DeployFault(f"deployment stopped on a fault after {len(successes)} recorded "
                          f"episode(s): {fault}. The robot was stopped; recorded episodes are in "
                          f"{out}")
    return summary


def _run_episode(cfg: DictConfig, robot: Any, policy: Any, task_id: int, seed: int,
                 period: float, kinds: list[str], timing: _Timing) -> tuple[dict[str, list], bool]:
    obs = robot.reset_episode(task=cfg.task, seed=seed)
    policy.reset()
    rows: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "success", "action_policy",
                                             "policy_ok", "interventions", "ee_pos",
                                             "policy_latency_s", "period_s", "missed_deadline")}
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
        rows["obs"].append(np.asarray(obs["state"], np.float32))
        rows["action"].append(np.asarray(sent, np.float32))
        rows["reward"].append(np.float32(0.0))
        rows["success"].append(step_success)
        rows["action_policy"].append(recorded)
        rows["policy_ok"].append(ok)
        rows["interventions"].append(np.array([after[k] - before.get(k, 0) for k in kinds],
                                              np.int32))
        rows["ee_pos"].append(np.asarray(obs.get("ee_pos", np.zeros(3)), np.float32))
        rows["policy_latency_s"].append(np.float32(latency))
        rows["period_s"].append(np.float32(start - last_start if last_start else period))
        timing.latencies.append(latency)
        if last_start is not None:
            timing.periods.append(start - last_start)
        last_start = start
        obs = nxt
        success = success or step_success
        # The next step's slot starts one period after this one's. A step that ends more than
        # half a period past that point missed its deadline; the schedule then restarts from
        # now (so one stall counts once). The slack absorbs a robot that paces itself (a
        # driver or the real-time twin blocking in send_action until its own tick).
        deadline += period
        now = time.monotonic()
        missed = now > deadline + 0.5 * period
        rows["missed_deadline"].append(missed)
        if missed:
            timing.missed += 1
            deadline = now
        if success:
            break
        if now < deadline:
            time.sleep(deadline - now)  # the fixed-rate loop's one wait per step
    return rows, success


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
