"""The episode store (zarr v3), its sampler, the background writer and interop.

Besides reading and appending: :func:`claim_store` makes one command the owner of a store for
its whole run, :func:`build_store` fills a new store that appears only when complete, and
:func:`check_store` / :func:`recover_store` report on and copy out of a damaged store without
ever modifying it.

Interop (each module imports its format's library only when used): robomimic HDF5
(:mod:`robolearn.data.robomimic`), LeRobot dataset v3.0 (:func:`export_lerobot`,
:func:`import_lerobot`, :mod:`robolearn.data.lerobot`) and diffusion_policy's zarr v2 layout
(:func:`export_diffusion_policy`, :func:`import_diffusion_policy`,
:mod:`robolearn.data.diffusion_policy`).
"""

from typing import Any

from robolearn.data.check import RecoverReport, StoreReport, check_store, recover_store
from robolearn.data.sampler import SequenceSampler, split_episodes
from robolearn.data.store import (
    Episode,
    EpisodeStore,
    KeySpec,
    StoreClaim,
    StoreError,
    build_store,
    claim_store,
)
from robolearn.data.writer import EpisodeWriter

_INTEROP = {
    "export_lerobot": "robolearn.data.lerobot",
    "import_lerobot": "robolearn.data.lerobot",
    "export_diffusion_policy": "robolearn.data.diffusion_policy",
    "import_diffusion_policy": "robolearn.data.diffusion_policy",
    "export_robomimic": "robolearn.data.robomimic",
    "import_robomimic": "robolearn.data.robomimic",
}


def __getattr__(name: str) -> Any:
    """The interop functions, imported on first use (pyarrow, h5py load only then)."""
    if name in _INTEROP:
        import importlib

        return getattr(importlib.import_module(_INTEROP[name]), name)
    raise AttributeError(f"module 'robolearn.data' has no attribute {name!r}")


__all__ = [
    "Episode",
    "EpisodeStore",
    "EpisodeWriter",
    "KeySpec",
    "RecoverReport",
    "SequenceSampler",
    "StoreClaim",
    "StoreError",
    "StoreReport",
    "build_store",
    "check_store",
    "claim_store",
    "export_diffusion_policy",
    "export_lerobot",
    "export_robomimic",
    "import_diffusion_policy",
    "import_lerobot",
    "import_robomimic",
    "recover_store",
    "split_episodes",
]
