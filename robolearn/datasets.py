"""Commands over episode stores: ``robolearn export``, ``robolearn import``, ``robolearn store``.

- ``export``: an episode store to robomimic HDF5 (loads in robomimic's own ``SequenceDataset``);
- ``import``: a robomimic HDF5 file into a new episode store (built under a temporary name: a
  failed import leaves nothing);
- ``store check``: what is consistent in a store and what is not; ``store recover``: copy every
  recoverable episode of a damaged store into a new one (the source is never modified).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from robolearn.errors import ConfigError, unknown

EXPORT_FORMATS = ("robomimic",)
STORE_ACTIONS = ("check", "recover")


@dataclass
class ExportConfig:
    """``robolearn export``: an episode store to another format."""

    dataset: str = MISSING  # the episode store to export
    format: str = "robomimic"  # robomimic (HDF5)
    out: str = MISSING  # output file
    val_fraction: float = 0.1  # episodes in robomimic's mask/valid, stratified by task
    seed: int = 0  # seed of the train/valid split
    overwrite: bool = False  # replace an HDF5 file written by an earlier export
    run_dir: str = ""  # where config/log/summary go (default outputs/export/<time>)

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ConfigError(unknown("export format", self.format, EXPORT_FORMATS))
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"Got val_fraction={self.val_fraction}, expected 0 <= x < 1")


@dataclass
class ImportConfig:
    """``robolearn import``: a robomimic HDF5 file into an episode store."""

    src: str = MISSING  # the HDF5 file
    out: str = MISSING  # the episode store to create
    obs_keys: list[str] = field(default_factory=list)  # concatenated into obs (default: ours)
    task: str = ""  # task name for files that do not record one per demo
    source: str = "expert"  # expert | policy | real
    overwrite: bool = False  # replace an existing store at out
    run_dir: str = ""  # where config/log/summary go (default outputs/import/<time>)


@dataclass
class StoreConfig:
    """``robolearn store check PATH`` | ``robolearn store recover PATH NEW``: what is consistent
    in an episode store; copy every recoverable episode of a damaged one into a new store."""

    action: str = "check"  # check | recover
    path: str = MISSING  # the episode store (never modified by either action)
    out: str = ""  # recover: the new store to copy the recoverable episodes into
    quick: bool = False  # check: skip reading every chunk (structure only)
    overwrite: bool = False  # recover: replace an existing store at out
    run_dir: str = ""  # where config/log/summary go (default outputs/store/<time>)

    def __post_init__(self) -> None:
        if self.action not in STORE_ACTIONS:
            raise ConfigError(unknown("store action", self.action, STORE_ACTIONS))
        if self.action == "recover" and not self.out:
            raise ConfigError("store action=recover needs out=<new store path>; the damaged "
                              "store is only read, never modified")


def run_export(cfg: ExportConfig, run_dir: Path) -> dict[str, Any]:
    from robolearn.data.robomimic import export_robomimic

    info = export_robomimic(cfg.dataset, cfg.out, val_fraction=cfg.val_fraction, seed=cfg.seed,
                            overwrite=cfg.overwrite)
    print(f"exported {info['episodes']} episodes ({info['steps']} steps) to {cfg.out}")
    return info


def run_import(cfg: ImportConfig, run_dir: Path) -> dict[str, Any]:
    from robolearn.data import claim_store
    from robolearn.data.robomimic import import_robomimic

    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    with claim_store(cfg.out, missing_ok=True):  # one command makes (or replaces) this store
        info = import_robomimic(cfg.src, cfg.out, obs_keys=list(cfg.obs_keys) or None,
                                task=cfg.task or None, source=cfg.source,
                                overwrite=cfg.overwrite)
    print(f"imported {info['episodes']} episodes ({info['steps']} steps) into {cfg.out}")
    return info


def run_store(cfg: StoreConfig, run_dir: Path) -> dict[str, Any]:
    """``check``: print what is consistent; exit 1 when the store is not. ``recover``: copy what
    can be proven into ``out``. Neither touches ``path``."""
    from robolearn.data import StoreError, check_store, recover_store

    if cfg.action == "recover":
        report = recover_store(cfg.path, cfg.out, overwrite=cfg.overwrite, progress=True)
        print(report.summary())
        return report.to_dict()
    report = check_store(cfg.path, deep=not cfg.quick)
    print(report.summary())
    if not report.ok:
        raise StoreError(f"{cfg.path} is not consistent (above). Copy what can be recovered with "
                         f"`robolearn store recover {cfg.path} <new path>`; {cfg.path} is left "
                         "as it is")
    return report.to_dict()
