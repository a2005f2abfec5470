"""Commands over episode stores: ``robolearn export``, ``robolearn import``, ``robolearn store``.

- ``export``: an episode store to robomimic HDF5 (loads in robomimic's own ``SequenceDataset``),
  a LeRobot v3.0 dataset (loads in LeRobot's ``LeRobotDataset``) or diffusion_policy's zarr v2
  layout (opens in its ``ReplayBuffer``);
- ``import``: any of the three into a new episode store (built under a temporary name: a failed
  import leaves nothing); our own exports come back exactly;
- ``store check``: what is consistent in a store and what is not; ``store recover``: copy every
  recoverable episode of a damaged store into a new one (the source is never modified).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from robolearn.errors import ConfigError, unknown

EXPORT_FORMATS = ("robomimic", "lerobot", "diffusion_policy")
IMPORT_FORMATS = ("auto", *EXPORT_FORMATS)
STORE_ACTIONS = ("check", "recover")


@dataclass
class ExportConfig:
    """``robolearn export``: an episode store to another format."""

    dataset: str = MISSING  # the episode store to export
    format: str = "robomimic"  # robomimic (HDF5) | lerobot (v3.0 dir) | diffusion_policy (zarr v2)
    out: str = MISSING  # output file (robomimic) or directory (lerobot, diffusion_policy)
    val_fraction: float = 0.1  # robomimic: episodes in mask/valid, stratified by task
    seed: int = 0  # robomimic: seed of the train/valid split
    fps: int = 80  # lerobot: frames per second of `timestamp` (Meta-World's control rate)
    overwrite: bool = False  # replace what an earlier export of the same format wrote
    run_dir: str = ""  # where config/log/summary go (default outputs/export/<time>)

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ConfigError(unknown("export format", self.format, EXPORT_FORMATS))
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"Got val_fraction={self.val_fraction}, expected 0 <= x < 1")
        if not 1 <= self.fps <= 10_000:
            raise ConfigError(f"Got fps={self.fps}, expected 1..10000 (Meta-World: 80)")


@dataclass
class ImportConfig:
    """``robolearn import``: a robomimic, LeRobot v3.0 or diffusion_policy dataset into an
    episode store."""

    src: str = MISSING  # the HDF5 file (robomimic) or dataset directory (lerobot, diffusion_policy)
    out: str = MISSING  # the episode store to create
    format: str = "auto"  # auto (from src) | robomimic | lerobot | diffusion_policy
    obs_keys: list[str] = field(default_factory=list)  # concatenated into obs (default: ours)
    task: str = ""  # task name for data that records none (or to override it)
    source: str = "expert"  # expert | policy | real
    overwrite: bool = False  # replace an existing store at out
    run_dir: str = ""  # where config/log/summary go (default outputs/import/<time>)

    def __post_init__(self) -> None:
        if self.format not in IMPORT_FORMATS:
            raise ConfigError(unknown("import format", self.format, IMPORT_FORMATS))


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
    """``robolearn export``: write the store's complete episodes in ``cfg.format``."""
    if cfg.format == "lerobot":
        from robolearn.data.lerobot import export_lerobot

        info = export_lerobot(cfg.dataset, cfg.out, fps=cfg.fps, overwrite=cfg.overwrite,
                              progress=True)
        info["steps"] = info["frames"]
    elif cfg.format == "diffusion_policy":
        from robolearn.data.diffusion_policy import export_diffusion_policy

        info = export_diffusion_policy(cfg.dataset, cfg.out, overwrite=cfg.overwrite)
    else:
        from robolearn.data.robomimic import export_robomimic

        info = export_robomimic(cfg.dataset, cfg.out, val_fraction=cfg.val_fraction,
                                seed=cfg.seed, overwrite=cfg.overwrite)
    skipped = info.get("skipped_incomplete", 0)
    print(f"exported {info['episodes']} episodes ({info['steps']} steps) to {cfg.out} "
          f"({cfg.format})" + (f"; {skipped} incomplete episode(s) left out" if skipped else ""))
    return info


def detect_format(src: str | Path) -> str:
    """The import format of ``src``: a robomimic HDF5 file, a LeRobot dataset directory
    (``meta/info.json``) or a diffusion_policy zarr v2 store (``.zgroup``)."""
    p = Path(src)
    if p.is_file():
        return "robomimic"
    if (p / "meta" / "info.json").exists() or (p / "meta" / "episodes.jsonl").exists():
        return "lerobot"
    if (p / ".zgroup").exists():
        return "diffusion_policy"
    if not p.exists():
        raise FileNotFoundError(f"no such file or directory: {src}")
    hint = (" It is a zarr v3 store: a robolearn episode store is used as it is (train "
            "dataset=...)." if (p / "zarr.json").exists() else "")
    raise ConfigError(f"cannot tell the format of {src}: not an HDF5 file, a LeRobot dataset "
                      "(meta/info.json) or a diffusion_policy zarr v2 store (.zgroup)." + hint
                      + " Pass format=robomimic|lerobot|diffusion_policy")


def run_import(cfg: ImportConfig, run_dir: Path) -> dict[str, Any]:
    """``robolearn import``: a dataset of ``cfg.format`` into a new store; what could not be
    mapped is printed."""
    from robolearn.data import claim_store

    fmt = detect_format(cfg.src) if cfg.format == "auto" else cfg.format
    kwargs = dict(obs_keys=list(cfg.obs_keys) or None, task=cfg.task or None,
                  source=cfg.source, overwrite=cfg.overwrite)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    with claim_store(cfg.out, missing_ok=True):  # one command makes (or replaces) this store
        if fmt == "lerobot":
            from robolearn.data.lerobot import import_lerobot

            info = import_lerobot(cfg.src, cfg.out, progress=True, **kwargs)
        elif fmt == "diffusion_policy":
            from robolearn.data.diffusion_policy import import_diffusion_policy

            info = import_diffusion_policy(cfg.src, cfg.out, **kwargs)
        else:
            from robolearn.data.robomimic import import_robomimic

            info = import_robomimic(cfg.src, cfg.out, **kwargs)
    print(f"imported {info['episodes']} episodes ({info['steps']} steps) into {cfg.out} ({fmt})")
    for name, why in info.get("not_imported", {}).items():
        print(f"  not imported: {name}: {why}")
    for note in info.get("notes", []):
        print(f"  note: {note}")
    info["format"] = fmt
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
