"""Windows of (observation history, action chunk) cut from an episode store.

Reading zarr chunks per sample is about 100x too slow for training, so the sampler reads the
arrays it needs once into memory and cuts every batch with two vectorised gathers from a
precomputed index table. Shapes: obs (B, To, Do), action (B, Ta, Da), task (B,).

Window for the step ``t`` of an episode spanning rows ``[s, e)``::

    obs    rows t-To+1 .. t      clamped to >= s   (edge padding: the first obs repeats)
    action rows t .. t+Ta-1      clamped to <  e   (edge padding: the last action repeats)

``action_is_pad`` (B, Ta) marks the repeated actions past the episode end.

Episode weights (for weighted objectives): with ``weighting="sample"`` windows are drawn with
probability proportional to their episode's weight; with ``weighting="loss"`` they are drawn
uniformly and each batch carries ``weight`` (B,), normalised to mean 1 over the windows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from robolearn.data.store import EpisodeStore

log = logging.getLogger(__name__)
WEIGHTINGS = ("sample", "loss")


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
    task_ids: np.ndarray,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    episodes: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split episode indices into train/validation, stratified by task.

    Each task with at least two episodes gives ``max(1, round(val_fraction * n))`` of them to
    validation (none when ``val_fraction == 0``); a task with a single episode stays in train.

    Args:
        task_ids: (E,) task id of every episode of the store (``store.task_ids()``).
        val_fraction: share of each task's episodes for validation.
        seed: the shuffle's seed.
        episodes: split only these episode indices, e.g. ``store.complete_episodes()`` so that
            incomplete episodes reach neither side. Default: all. With all episodes given the
            split is the same as without.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"Got val_fraction={val_fraction}, expected 0 <= val_fraction < 1")
    rng = np.random.default_rng(seed)
    task_ids = np.asarray(task_ids)
    chosen = np.arange(len(task_ids)) if episodes is None else np.asarray(episodes, np.int64)
    if len(chosen) and (chosen.min() < 0 or chosen.max() >= len(task_ids)):
        raise ValueError(f"episode indices must be in [0, {len(task_ids)}), got {chosen}")
    chosen = np.unique(chosen)
    train, val = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for t in np.unique(task_ids[chosen]):
        eps = chosen[task_ids[chosen] == t]
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
        episodes: indices of the episodes to draw from, e.g. one side of
            :func:`split_episodes`. Default: the complete ones (``store.complete_episodes()``).
            Incomplete episodes in an explicit selection are skipped (with a warning) unless
            ``include_incomplete``.
        extra_keys: further ``data/`` keys to cut along the action window.
        arrays: the store's whole arrays already read with ``store.load`` (to share one read
            between several samplers); read here when not given.
        include_incomplete: also draw from episodes recorded with ``complete=False``.
        episode_weights: one non-negative finite weight per entry of ``episodes`` as given (per
            store episode when ``episodes`` is None). Zero weights are allowed: never drawn
            (``"sample"``) or zero loss (``"loss"``).
        weighting: ``"sample"``: :meth:`sample` draws a window with probability proportional to
            its episode's weight (so an episode's share is weight x length). ``"loss"``: draws
            stay uniform and every batch has ``weight`` (B,) float32, the episode weights
            scaled so that their mean over the sampler's windows is 1.

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
        *,
        include_incomplete: bool = False,
        episode_weights: Sequence[float] | np.ndarray | None = None,
        weighting: str = "sample",
    ):
        if obs_horizon < 1 or action_horizon < 1:
            raise ValueError(
                f"Got obs_horizon={obs_horizon}, action_horizon={action_horizon}; both must be >= 1"
            )
        if weighting not in WEIGHTINGS:
            raise ValueError(f"Got weighting={weighting!r}, expected one of {WEIGHTINGS}")
        n_ep = len(store)
        if n_ep == 0:
            raise ValueError(f"{store.path} has no committed episodes to sample from")
        named = np.arange(n_ep) if episodes is None else np.asarray(episodes, dtype=np.int64)
        if named.size == 0:
            raise ValueError("Got an empty episode selection, expected at least one episode")
        if named.ndim != 1 or named.min() < 0 or named.max() >= n_ep:
            raise ValueError(f"episode indices must be in [0, {n_ep}), got {named}")
        weights = _check_weights(episode_weights, len(named), episodes is None)
        keep = np.ones(len(named), bool)
        if not include_incomplete:
            incomplete = store.incomplete_episodes()
            keep = ~np.isin(named, incomplete)
            if episodes is not None and not keep.all():
                log.warning(
                    "%s: skipping %d incomplete episode(s) of the selection (%s); pass "
                    "include_incomplete=True to train on them", store.path, int((~keep).sum()),
                    ", ".join(map(str, named[~keep][:8])),
                )
        episodes = named[keep]
        if episodes.size == 0:
            raise ValueError(
                f"{store.path}: every selected episode is incomplete (recorded with "
                "complete=False); pass include_incomplete=True to sample them anyway"
            )
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

        # Weights per window (the window's episode's weight).
        self.weighting = weighting
        self.episode_weights = None if weights is None else weights[keep]
        self._window_weight: np.ndarray | None = None
        self._cdf: np.ndarray | None = None
        if self.episode_weights is not None:
            w = self.episode_weights[ep]
            total = float(w.sum())
            if total <= 0:
                raise ValueError(
                    "Got episode_weights that are zero for every selected episode; at least "
                    "one window needs a positive weight"
                )
            if weighting == "sample":
                self._cdf = np.cumsum(w)
                self._last_drawable = int(np.flatnonzero(w > 0)[-1])
            else:  # mean 1 over the windows: the loss keeps its scale on average
                self._window_weight = (w * (len(w) / total)).astype(np.float32)

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
        if self._window_weight is not None:
            batch["weight"] = self._window_weight[idx]
        return batch

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A batch of ``batch_size`` windows drawn with replacement.

        Uniformly, or with probability proportional to the episode weight when
        ``weighting="sample"``; deterministic given ``rng``.
        """
        if self._cdf is None:
            return self.window(rng.integers(0, len(self), size=batch_size))
        u = rng.random(batch_size) * self._cdf[-1]
        # cdf[i-1] <= u < cdf[i] picks window i: a zero-weight window has an empty interval.
        # u can round up to cdf[-1]; the clip sends that to the last drawable window.
        idx = np.minimum(np.searchsorted(self._cdf, u, side="right"), self._last_drawable)
        return self.window(idx)

    def iter_epoch(
        self, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = False
    ) -> Iterator[dict[str, np.ndarray]]:
        """Every window once, shuffled when ``rng`` is given, in batches.

        With ``weighting="loss"`` batches carry ``weight``; with sample weights an epoch is not
        defined (it would visit zero-weight windows), so that raises.
        """
        if self._cdf is not None:
            raise ValueError(
                "iter_epoch visits every window once, which ignores weighting='sample'; draw "
                "with sample(), or use weighting='loss' to weight an epoch"
            )
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            yield self.window(order[i : i + batch_size])


def _check_weights(
    weights: Sequence[float] | np.ndarray | None, n: int, per_store: bool
) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    what = "episode of the store (episodes=None)" if per_store else "entry of episodes"
    if w.ndim != 1 or len(w) != n:
        raise ValueError(f"Got episode_weights of shape {w.shape}, expected ({n},): one per {what}")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if len(bad):
        raise ValueError(
            f"Got episode_weights[{int(bad[0])}]={w[bad[0]]} ({len(bad)} bad in all); weights must "
            "be finite and >= 0 (0 means never drawn / no loss)"
        )
    return w
