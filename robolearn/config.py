"""Structured configs of every command, registered with hydra's ConfigStore in one place.

Each command's config is a dataclass; ``robolearn <command> key=value ...`` composes it with
hydra's override grammar, so a typo or a wrong type gets hydra's error (plus a "did you
mean"). Presets (``--preset debug``) are further registered nodes of the same dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


def _span(lo: float = 1.0, hi: float | None = None) -> list[float]:
    return [lo, lo if hi is None else hi]


@dataclass
class RandomizationConfig:
    """Uniform ranges [low, high] per TaskParams field; low == high means fixed (the default)."""

    friction_scale: list[float] = field(default_factory=_span)
    object_mass_scale: list[float] = field(default_factory=_span)
    joint_damping_scale: list[float] = field(default_factory=_span)
    actuator_gain_scale: list[float] = field(default_factory=_span)
    obs_noise_std: list[float] = field(default_factory=lambda: _span(0.0))
    action_noise_std: list[float] = field(default_factory=lambda: _span(0.0))
    action_latency: list[int] = field(default_factory=lambda: [0, 0])  # steps


@dataclass
class CollectConfig:
    """``robolearn collect``: scripted-expert demonstrations into an episode store."""

    suite: str = "MT10"  # MT1:<task> | MT10 | MT50 | ML10 | ML45 (ML suites: train tasks only)
    episodes_per_task: int = 50  # successful episodes kept per task
    out: str = "data/mt10_demos.zarr"  # the episode store; re-running resumes it
    seed: int = 0  # demo goal seed; keep evaluation seeds different
    action_noise_std: float = 0.0  # Gaussian noise on the expert's actions
    max_attempts_per_task: int = 0  # give up on a task after this many attempts (0: 3x episodes)
    stop_on_success: bool = True  # end an episode at the first success (else run the horizon)
    randomize: RandomizationConfig = field(default_factory=RandomizationConfig)
    overwrite: bool = False  # replace an existing store at `out` instead of resuming it
    background_writer: bool = True  # commit episodes from a writer process while simulating
    run_dir: str = ""  # where config/log/summary go (default outputs/collect/<time>)


@dataclass
class ExportConfig:
    """``robolearn export``: an episode store to another format."""

    dataset: str = MISSING  # the episode store to export
    format: str = "robomimic"  # robomimic (HDF5)
    out: str = MISSING  # output file
    val_fraction: float = 0.1  # episodes in robomimic's mask/valid, stratified by task
    seed: int = 0  # seed of the train/valid split
    overwrite: bool = False
    run_dir: str = ""


@dataclass
class ImportConfig:
    """``robolearn import``: a robomimic HDF5 file into an episode store."""

    src: str = MISSING  # the HDF5 file
    out: str = MISSING  # the episode store to create
    obs_keys: list[str] = field(default_factory=list)  # concatenated into obs (default: ours)
    task: str = ""  # task name for files that do not record one per demo
    source: str = "expert"
    overwrite: bool = False
    run_dir: str = ""


CONFIGS: dict[str, type] = {
    "collect": CollectConfig,
    "export": ExportConfig,
    "import": ImportConfig,
}

# Presets: small, fast variants used by tests and first runs (`--preset debug`).
PRESETS: dict[str, dict[str, object]] = {
    "collect/debug": dict(
        suite="MT1:reach-v3", episodes_per_task=2, out="data/debug_demos.zarr"
    ),
}


def register_configs() -> ConfigStore:
    cs = ConfigStore.instance()
    for name, node in CONFIGS.items():
        cs.store(name=name, node=node)
    for key, values in PRESETS.items():
        command, preset = key.split("/")
        cs.store(name=f"{command}_{preset}", node=CONFIGS[command](**values))
    return cs
