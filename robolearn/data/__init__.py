"""The episode store (zarr v3), its sampler, the background writer and robomimic I/O.

Besides reading and appending: :func:`claim_store` makes one command the owner of a store for
its whole run, :func:`build_store` fills a new store that appears only when complete, and
:func:`check_store` / :func:`recover_store` report on and copy out of a damaged store without
ever modifying it.
"""

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
    "recover_store",
    "split_episodes",
]
