"""Side-by-side MP4s of a preference pair: the chosen and the rejected rollout of one group.

Rendering every rollout would cost more than the rollouts (software EGL draws ~10 frames/s), so
the two trajectories of a pair are *replayed* afterwards: the actions the simulator actually
applied (``applied_action``, after the rollout's latency and action noise) are stepped again
from the same seed, initial condition and physics, with latency and action noise switched off
(they are already in those actions), on rendering envs of the one rollout engine. MuJoCo is
deterministic, so the replay is the rollout (:func:`replay_trajectories` checks it).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class _Replay:
    """An agent that sends recorded actions: episode ``j`` gets ``actions[j][t]`` at step t."""

    def __init__(self, actions: list[np.ndarray]):
        self.actions = [np.asarray(a, np.float32) for a in actions]
        self.t = 0

    def reset(self) -> None:
        self.t = 0

    def act(self, obs: np.ndarray, task: str | None = None) -> np.ndarray:
        out = np.stack([a[min(self.t, len(a) - 1)] for a in self.actions])
        self.t += 1
        return out


def replay_trajectories(trajectories: list[Any], *, video_dir: str | Path | None = None,
                        size: int = 224, fast: bool = True,
                        goal_observable: bool = True) -> list[Any]:
    """Replays trajectories of one task (their ``applied_action``) as one lock-step batch.

    Args:
        trajectories: Rollout-engine trajectories recorded with ``record="steps"``.
        video_dir: With it, every replay renders ``<task>_<index>.mp4`` there (needs
            ``MUJOCO_GL=egl`` on a headless machine).
        size: Video width and height.
        fast: sim's fast step (identical results).
        goal_observable: As the rollouts were made.

    Returns:
        The replayed trajectories (``record="steps"``), in order.

    Raises:
        ValueError: Trajectories of several tasks, or without recorded steps.
    """
    import sim
    from robolearn.rollout import RolloutOptions, make_envs, run_batch

    tasks = {t.task for t in trajectories}
    if len(tasks) != 1:
        raise ValueError(f"replay_trajectories replays one task at a time; got {sorted(tasks)}")
    if any(t.steps is None or "applied_action" not in t.steps for t in trajectories):
        raise ValueError("replay_trajectories needs trajectories recorded with record='steps'")
    task = tasks.pop()
    specs = []
    for t in trajectories:
        params = t.spec.params if t.spec.params is not None else sim.TaskParams()
        params = dataclasses.replace(params, action_latency=0, action_noise_std=0.0)
        specs.append(dataclasses.replace(t.spec, params=params, video=video_dir is not None))
    render = len(specs) if video_dir is not None else 0
    envs = make_envs(task, len(specs), goal_observable=goal_observable, render=render,
                     size=size, fast=fast)
    # each replay ends where its rollout did (align's rollouts stop at the first success)
    horizon = max(len(t.steps["applied_action"]) for t in trajectories)
    options = RolloutOptions(horizon=horizon, stop_on_success=True, record="steps",
                             goal_observable=goal_observable, video_size=size, fast=fast)
    agent = _Replay([t.steps["applied_action"] for t in trajectories])
    try:
        return run_batch(agent, envs, specs, options, video_dir=video_dir)
    finally:
        for env in envs:
            env.close()


def pair_video(chosen: Any, rejected: Any, path: str | Path, *, size: int = 224,
               fast: bool = True, goal_observable: bool = True) -> Path:
    """One MP4 with the chosen rollout on the left and the rejected one on the right.

    The shorter one holds its last frame until the longer one ends.
    """
    import imageio.v2 as imageio

    from robolearn.rollout.video import check_video_support, write_video

    check_video_support()
    with tempfile.TemporaryDirectory(prefix="robolearn_pair_") as tmp:
        replays = replay_trajectories([chosen, rejected], video_dir=tmp, size=size, fast=fast,
                                      goal_observable=goal_observable)
        clips = [imageio.mimread(r.video, memtest=False) for r in replays]
    n = max(len(c) for c in clips)
    clips = [c + [c[-1]] * (n - len(c)) for c in clips]
    frames = [np.concatenate([a, b], axis=1) for a, b in zip(*clips)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames)
    return path
