"""Windows of (observation history, action chunk) cut from an episode store.

Reading zarr chunks per sample is about 100x too slow for training, so the sampler reads the
arrays it needs once into memory and cuts every batch with two vectorised gathers from a
precomputed index table. Shapes: obs (B, To, Do), action (B, Ta, Da), task (B,).

Window for the step ``t`` of an episode spanning rows ``[s, e)``::

    obs    rows t-To+1 .. t      clamped to >= s   (edge padding: the first obs repeats)
    action rows t .. t+Ta-1      clamped to <  e   (edge padding: the last action repeats)

``action_is_pad`` (B, Ta) marks the repeated actions past the episode end.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from robolearn.data.store import EpisodeStore


def _padded_rows(starts: np.ndarray, lengths: np.ndarray, before: int, after: int) -> np.ndarray:
    """Row indices of each episode with ``before``/``after`` repeats of its first/last row."""
    total = lengths + before + after
    ep = np.repeat(np.arange(len(lengths)), total)
    k = np.arange(total.sum()) - np.repeat(np.cumsum(total) - total, total) - before
    return starts[ep] + np.clip(k, 0, lengths[ep] - 1)


def _blocks(buf: np.ndarray, h: int) -> np.ndarray:
    """Read-only (N - h + 1, h, ...) view of every h consecutive rows of ``buf`` (no copy)."""
    n = buf.shape[0] - h + 1
    return np.lib.stride_tricks.as_strided(
        buf, shape=(n, h, *buf.shape[1:]), strides=(buf.strides[0], *buf.strides), writeable=False
    )


def split_episodes(
    task_ids: np.ndarray, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split episode indices into train/validation, stratified by task.

    Each task with at least two episodes gives ``max(1, round(val_fraction * n))`` of them to
    validation (none when ``val_fraction == 0``); a task with a single episode stays in train.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"Got val_fraction={val_fraction}, expected 0 <= val_fraction < 1")
    rng = np.random.default_rng(seed)
    task_ids = np.asarray(task_ids)
    train, val = [], []
    for t in np.unique(task_ids):
        eps = np.flatnonzero(task_ids == t)
        rng.shuffle(eps)
        n_val = 0
        if val_fraction > 0 and len(eps) >= 2:
            n_val = min(len(eps) - 1, max(1, round(val_fraction * len(eps))))
        val.append(eps[:n_val])
        train.append(eps[n_val:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(
        np.concatenate(val)
    ).astype(np.int64)


class SequenceSampler:
    """Random-access (obs history, action chunk) windows over selected episodes.

    Args:
        store: the episode store to read (its committed episodes).
        obs_horizon: To >= 1, observations per window (the last one is step t).
        action_horizon: Ta >= 1, actions per window (the first one is step t).
        episodes: indices of the episodes to draw from (default: all), e.g. one side of
            :func:`split_episodes`.
        extra_keys: further ``data/`` keys to cut along the action window.
        arrays: the store's whole arrays already read with ``store.load`` (to share one read
            between several samplers); read here when not given.

    Example:
        >>> train, val = split_episodes(store.task_ids(), 0.1)
        >>> sampler = SequenceSampler(store, obs_horizon=2, action_horizon=16, episodes=train)
        >>> batch = sampler.sample(256, np.random.default_rng(0))
        >>> batch["obs"].shape, batch["action"].shape
        ((256, 2, 39), (256, 16, 4))
    """

    def __init__(
        self,
        store: EpisodeStore,
        obs_horizon: int = 1,
        action_horizon: int = 1,
        episodes: Sequence[int] | np.ndarray | None = None,
        extra_keys: Sequence[str] = (),
        arrays: Mapping[str, np.ndarray] | None = None,
    ):
        if obs_horizon < 1 or action_horizon < 1:
            raise ValueError(
                f"Got obs_horizon={obs_horizon}, action_horizon={action_horizon}; both must be >= 1"
            )
        n_ep = len(store)
        if n_ep == 0:
            raise ValueError(f"{store.path} has no committed episodes to sample from")
        episodes = np.arange(n_ep) if episodes is None else np.asarray(episodes, dtype=np.int64)
        if episodes.size == 0:
            raise ValueError("Got an empty episode selection, expected at least one episode")
        if episodes.min() < 0 or episodes.max() >= n_ep:
            raise ValueError(f"episode indices must be in [0, {n_ep}), got {episodes}")
        self.obs_horizon = int(obs_horizon)
        self.action_horizon = int(action_horizon)
        self.episodes = episodes
        self.tasks = store.tasks

        keys = ["obs", "action", *extra_keys]
        if arrays is None or any(k not in arrays for k in keys):
            arrays = store.load(keys)
        arrays = {k: arrays[k] for k in keys}
        ends = store.episode_ends[episodes]
        starts = np.concatenate([[0], store.episode_ends[:-1]])[episodes]
        lengths = ends - starts
        To, Ta = self.obs_horizon, self.action_horizon

        # Edge-padded copies of the selected episodes: each episode's obs preceded by To-1
        # copies of its first obs, its actions followed by Ta-1 copies of its last action. A
        # window is then one contiguous block, and a batch is a single gather of B blocks.
        self._obs_buf = arrays.pop("obs")[_padded_rows(starts, lengths, To - 1, 0)]
        act_rows = _padded_rows(starts, lengths, 0, Ta - 1)
        self._act_buf = arrays.pop("action")[act_rows]
        self._extra_bufs = {k: a[act_rows] for k, a in arrays.items()}

        # Index table: one row per window (step t of a selected episode).
        n = int(lengths.sum())
        ep = np.repeat(np.arange(len(episodes)), lengths)
        offset = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        self._obs_start = (np.cumsum(lengths + To - 1) - (lengths + To - 1))[ep] + offset
        self._act_start = (np.cumsum(lengths + Ta - 1) - (lengths + Ta - 1))[ep] + offset
        self._steps_left = (lengths[ep] - offset).astype(np.int64)  # rows from t to episode end
        self._task = store.task_ids()[episodes][ep].astype(np.int64)
        self._obs_view = _blocks(self._obs_buf, To)
        self._act_view = _blocks(self._act_buf, Ta)
        self._extra_views = {k: _blocks(a, Ta) for k, a in self._extra_bufs.items()}
        self._pad_offsets = np.arange(Ta, dtype=np.int64)

    @property
    def nbytes(self) -> int:
        """Memory held by the padded copies of the data."""
        bufs = [self._obs_buf, self._act_buf, *self._extra_bufs.values()]
        return sum(b.nbytes for b in bufs)

    def __len__(self) -> int:
        return len(self._task)

    def window(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Windows for index-table rows ``idx`` (B,), as numpy arrays."""
        idx = np.asarray(idx, dtype=np.int64)
        act_start = self._act_start[idx]
        batch = {
            "obs": self._obs_view[self._obs_start[idx]],
            "action": self._act_view[act_start],
            "action_is_pad": self._pad_offsets[None, :] >= self._steps_left[idx][:, None],
            "task": self._task[idx],
        }
        for k, view in self._extra_views.items():
            batch[k] = view[act_start]
        return batch

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A batch of ``batch_size`` windows drawn uniformly with replacement."""
        return self.window(rng.integers(0, len(self), size=batch_size))

    def iter_epoch(
        self, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = False
    ) -> Iterator[dict[str, np.ndarray]]:
        """Every window once, shuffled when ``rng`` is given, in batches."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            yield self.window(order[i : i + batch_size])
