"""``robolearn deploy``'s config, validated once at the CLI edge."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from omegaconf import MISSING

from robolearn.errors import ConfigError
from robolearn.rollout.physics import ParamsConfig, params_from_config

log = logging.getLogger(__name__)

ROBOTS = ("twin", "remote")
MIN_RATE_HZ = 1.0  # below this a "control loop" is not one (and the watchdog would trip)
MAX_RATE_HZ = 1000.0


@dataclass
class TwinOptions(ParamsConfig):
    """The simulated twin: its reality gap (the TaskParams fields) and its timing."""

    realtime: bool = True  # step at the control rate in wall-clock time (else as fast as possible)
    jitter_std_s: float = 0.0  # control-period jitter, seconds


@dataclass
class RemoteOptions:
    """A robot served with `robolearn serve-robot` (next to the arm)."""

    host: str = "127.0.0.1"  # the robot server's address
    port: int = 5555  # its TCP port (`robolearn serve-robot --port`)
    token: str = ""  # shared token; prefer $ROBOLEARN_ROBOT_TOKEN (never written to run records)
    timeout_s: float = 1.0  # a reply slower than this is a dead link


@dataclass
class SafetyOptions:
    """Client-side safety layer (the server may add its own)."""

    max_delta: float = 0.5  # max change of any action entry per step
    watchdog_timeout_s: float = 0.1  # stop the robot when no valid command arrives for this long
    workspace: bool = True  # keep the end effector in Meta-World's hand box
    tracking_lag_steps: float = 4.0  # workspace lead bound: arm's tracking lag + latency, steps (0: none)
    gain: float = 1.0  # the arm's motion per unit action vs Meta-World's 1 cm, as the check assumes


@dataclass
class DeployConfig:
    """``robolearn deploy``: run a checkpoint on a robot, record every episode."""

    checkpoint: str = MISSING  # checkpoint or run directory written by `robolearn train`
    robot: str = "twin"  # twin | remote
    task: str = "reach-v3"  # task name, as the policy knows it
    episodes: int = 10  # episodes to run
    max_steps: int = 500  # steps per episode (Meta-World's horizon)
    seed: int = 2000  # episode i's goal seed (twin): episode_seed(seed, task, i)
    rate_hz: float = 0.0  # control rate (0: the robot's own; the twin's is 80 Hz)
    out: str = "data/real_episodes.zarr"  # episode store for the recordings (source=real)
    device: str = "auto"  # policy inference device
    progress: bool = True  # progress bar on the terminal (the summary is printed either way)
    twin: TwinOptions = field(default_factory=TwinOptions)
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    safety: SafetyOptions = field(default_factory=SafetyOptions)
    run_dir: str = ""  # where config/log/summary go (default outputs/deploy/<time>)

    def __post_init__(self) -> None:
        if self.checkpoint in (MISSING, ""):
            raise ConfigError("missing required option checkpoint: pass checkpoint=<checkpoint "
                              "or run dir> (see `robolearn deploy --help`)")
        if self.robot not in ROBOTS:
            from robolearn.errors import unknown

            raise ConfigError(unknown("robot", self.robot, ROBOTS))
        for name, value, low in (("episodes", self.episodes, 1), ("max_steps", self.max_steps, 1),
                                 ("seed", self.seed, 0), ("remote.port", self.remote.port, 1)):
            if value < low:
                raise ConfigError(f"Got {name}={value}, expected >= {low}")
        rate = self.rate_hz
        if not math.isfinite(rate) or (rate != 0 and not MIN_RATE_HZ <= rate <= MAX_RATE_HZ):
            raise ConfigError(f"Got rate_hz={rate}, expected 0 (the robot's own rate) or "
                              f"{MIN_RATE_HZ:g}..{MAX_RATE_HZ:g} Hz")
        for name, value in (("remote.timeout_s", self.remote.timeout_s),
                            ("safety.watchdog_timeout_s", self.safety.watchdog_timeout_s),
                            ("safety.max_delta", self.safety.max_delta),
                            ("safety.gain", self.safety.gain)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"Got {name}={value}, expected a positive number")
        lag = self.safety.tracking_lag_steps
        if not (math.isfinite(lag) and (lag == 0 or lag >= 1)):
            raise ConfigError(f"Got safety.tracking_lag_steps={lag}, expected 0 (unbounded) or "
                              "a number of control steps >= 1")
        if self.twin.jitter_std_s < 0:
            raise ConfigError(f"Got twin.jitter_std_s={self.twin.jitter_std_s}, expected >= 0")
        try:
            params_from_config(self.twin)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"twin: {e}") from None
