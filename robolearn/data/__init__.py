"""The episode store (zarr v3), its sampler, the background writer and robomimic I/O."""

from robolearn.data.sampler import SequenceSampler, split_episodes
from robolearn.data.store import Episode, EpisodeStore, KeySpec, StoreError
from robolearn.data.writer import EpisodeWriter

__all__ = [
    "Episode",
    "EpisodeStore",
    "EpisodeWriter",
    "KeySpec",
    "SequenceSampler",
    "StoreError",
    "split_episodes",
]
