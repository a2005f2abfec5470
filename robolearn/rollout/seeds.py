"""Goal seeds of episodes: pure functions of (seed, task, episode index).

Collection, evaluation and deployment all derive episode ``i`` of a task from the same function,
so a collection seed different from the evaluation seed gives held-out goals, and an interrupted
collection resumes with exactly the episodes an uninterrupted one would have produced.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np


def episode_seed(seed: int, task: str, index: int) -> int:
    """Goal seed of episode (or attempt) ``index`` of ``task``: a pure function of the three."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(task.encode()), int(index)])
    return int(ss.generate_state(1, np.uint32)[0])


def eval_seeds(seed: int, tasks: Sequence[str], episodes_per_task: int) -> dict[str, list[int]]:
    """Goal seeds of an evaluation: ``episode_seed(seed, task, i)`` for i < episodes_per_task."""
    return {t: [episode_seed(seed, t, i) for i in range(episodes_per_task)] for t in tasks}
