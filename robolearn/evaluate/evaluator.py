"""Policy evaluation under the Meta-World protocol, over (task, TaskParams).

An episode succeeds if ``info["success"]`` fires at any step within the horizon (500 steps).
Episode ``i`` of task ``t`` starts from goal seed ``episode_seed(seed, t, i)``, the derivation
collection uses, so an evaluation seed different from the collection seed gives goals held out
from the training demonstrations. Its physics comes from ``physics.draw(t, goal seed)``: stock
Meta-World by default, a fixed TaskParams point (a reality gap) or a randomisation, so
robustness is measured by the same evaluator.

``num_envs`` envs of one task run in lock-step and the agent acts on all of them in one batched
call (:func:`robolearn.rollout.run_batch`); on a Ray pool each batch runs on an actor with its
own copy of the agent, with the same batches, seeds and so results.

Example:
    >>> from robolearn.evaluate import ExpertAgent, evaluate_agent
    >>> result = evaluate_agent(ExpertAgent(), "MT1:reach-v3", episodes_per_task=3, num_envs=3)
    >>> result.success_by_task
    {'reach-v3': 1.0}
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robolearn.rollout import (
    Agent,
    EpisodeSpec,
    FixedPhysics,
    Physics,
    RolloutOptions,
    TaskAffinity,
    Trajectory,
    eval_seeds,
    make_envs,
    run_batch,
)
from robolearn.rollout.video import check_video_support

if TYPE_CHECKING:
    import sim

log = logging.getLogger(__name__)

DEFAULT_EVAL_SEED = 1000
"""Default evaluation goal seed; collection defaults to 0, so the goals differ."""
SPLITS = ("train", "test", "all")
"""Which tasks of a suite to evaluate: its train tasks, its test tasks, or both."""
HORIZON = 500  # sim.HORIZON, spelled out so importing this module does not import Meta-World


@dataclass(frozen=True)
class EpisodeRecord:
    """One evaluation episode.

    Attributes:
        task: Task name.
        episode: Index ``i`` of the episode within its task.
        seed: Goal seed, ``episode_seed(eval_seed, task, i)``.
        success: Whether ``info["success"]`` fired at some step.
        steps: Steps until the first success (1-based), or the horizon when it never fired.
        episode_return: Sum of rewards over those steps.
        video: Path of the episode's MP4, if one was recorded.
        params: The episode's TaskParams when the evaluation was not under stock physics.
    """

    task: str
    episode: int
    seed: int
    success: bool
    steps: int
    episode_return: float
    video: str | None = None
    params: dict[str, Any] | None = None

    @classmethod
    def from_trajectory(cls, traj: Trajectory, horizon: int, *, with_params: bool) -> EpisodeRecord:
        return cls(task=traj.task, episode=traj.spec.index, seed=int(traj.seed),
                   success=traj.success, steps=traj.first_success or horizon,
                   episode_return=traj.episode_return, video=traj.video,
                   params=traj.spec.params_dict() if with_params else None)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "task": self.task,
            "episode": self.episode,
            "seed": self.seed,
            "success": self.success,
            "steps": self.steps,
            "return": round(self.episode_return, 4),
            "video": self.video,
        }
        if self.params is not None:
            d["params"] = self.params
        return d


@dataclass
class EvalResult:
    """The outcome of :func:`evaluate_agent`.

    Attributes:
        suite: Suite name. split: Which of its tasks were evaluated.
        tasks: The evaluated tasks, in suite order.
        seed: The evaluation goal seed.
        episodes_per_task: Episodes per task. horizon: Steps per episode at most.
        episodes: One record per episode, task by task, episode by episode.
        seconds: Wall time. env_steps: Env steps taken.
        physics: How each episode's TaskParams were chosen (``Physics.describe()``).
    """

    suite: str
    split: str
    tasks: tuple[str, ...]
    seed: int
    episodes_per_task: int
    horizon: int
    episodes: list[EpisodeRecord]
    seconds: float
    env_steps: int
    physics: dict[str, Any] = dataclasses.field(default_factory=lambda: {"mode": "default"})
    trajectories: list[Trajectory] | None = None  # the rollouts themselves (record_steps=True)

    @property
    def success_by_task(self) -> dict[str, float]:
        """Success rate per task."""
        out = {}
        for task in self.tasks:
            hits = [r.success for r in self.episodes if r.task == task]
            out[task] = sum(hits) / len(hits) if hits else float("nan")
        return out

    @property
    def mean_success(self) -> float:
        """Mean of the per-task success rates."""
        return float(np.mean(list(self.success_by_task.values())))

    @property
    def seeds(self) -> dict[str, list[int]]:
        """Goal seeds used, per task, in episode order."""
        return {t: [r.seed for r in self.episodes if r.task == t] for t in self.tasks}

    @property
    def videos(self) -> list[str]:
        """Paths of the recorded MP4s."""
        return [r.video for r in self.episodes if r.video]

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "split": self.split,
            "tasks": list(self.tasks),
            "eval_seed": self.seed,
            "episodes_per_task": self.episodes_per_task,
            "horizon": self.horizon,
            "physics": self.physics,
            "success_by_task": self.success_by_task,
            "mean_success": self.mean_success,
            "seconds": round(self.seconds, 3),
            "env_steps": self.env_steps,
            "env_steps_per_s": round(self.env_steps / self.seconds, 1) if self.seconds else None,
            "videos": self.videos,
            "episodes": [r.to_dict() for r in self.episodes],
        }


def split_tasks(suite: sim.Suite, split: str) -> tuple[str, ...]:
    """The tasks of ``suite`` that ``split`` (``"train"``, ``"test"`` or ``"all"``) selects."""
    if split not in SPLITS:
        raise ValueError(f"Got split={split!r}, expected one of {SPLITS}")
    if split == "train":
        return suite.train_tasks
    if split == "test":
        return suite.test_tasks
    return suite.tasks


def episode_specs(tasks: Sequence[str], seed: int, episodes_per_task: int, physics: Physics,
                  videos_per_task: int = 0) -> dict[str, list[EpisodeSpec]]:
    """The evaluation's episodes: goal seed ``episode_seed(seed, task, i)``, physics drawn from
    that seed, videos for the first ``videos_per_task`` of each task."""
    specs = {}
    for task, seeds in eval_seeds(seed, tasks, episodes_per_task).items():
        specs[task] = []
        for i, s in enumerate(seeds):
            params, rand_vec = physics.draw(task, s)
            specs[task].append(EpisodeSpec(task, i, s, params, rand_vec, video=i < videos_per_task))
    return specs


def evaluate_agent(
    agent: Agent,
    suite: str | sim.Suite,
    *,
    episodes_per_task: int = 50,
    seed: int = DEFAULT_EVAL_SEED,
    split: str = "train",
    num_envs: int = 10,
    horizon: int = HORIZON,
    physics: Physics | None = None,
    video_dir: str | os.PathLike | None = None,
    videos_per_task: int = 1,
    video_size: int = 224,
    record_steps: bool = False,
    contacts: bool = False,
    fast: bool = True,
    progress: bool = True,
    pool: Any = None,
) -> EvalResult:
    """Rolls ``agent`` out on every task of a suite split under the Meta-World protocol.

    Args:
        agent: An :class:`~robolearn.rollout.Agent` (``reset()``, ``act(obs (B, Do), task)``).
        suite: Suite name (``"MT10"``, ``"MT1:push-v3"``, ...) or a :class:`sim.Suite`.
        episodes_per_task: Episodes per task; episode ``i`` uses goal seed
            ``episode_seed(seed, task, i)``.
        seed: Evaluation goal seed; keep it different from the collection seed.
        split: ``"train"``, ``"test"`` (held-out tasks of ML suites) or ``"all"``.
        num_envs: Envs stepped in lock-step per batch (the agent's batch size B).
        horizon: Steps per episode at most (Meta-World: 500; lower only for smoke tests).
        physics: Where each episode's TaskParams come from (:mod:`robolearn.rollout.physics`);
            ``None``: stock Meta-World.
        video_dir: Where to write ``<task>_<i>.mp4`` for the first ``videos_per_task``
            episodes of each task; ``None`` records nothing. Needs ``imageio[ffmpeg]``.
        videos_per_task: Episodes recorded per task when ``video_dir`` is set.
        video_size: Video width and height in pixels (rendering is slow without a GPU).
        record_steps: Keep every rollout's per-step record (``EvalResult.trajectories``, e.g.
            to store them with ``source=policy``).
        contacts: With ``record_steps``, also record the robot's contacts per step
            (``contact_count``, ``contact_force``: what the ``safe`` alignment preset lowers).
        fast: Step with sim's fast path (identical results) or Meta-World's own (``False``).
        progress: Show a tqdm bar over episodes.
        pool: A :class:`robolearn.rollout.RolloutPool` whose actors run the batches (each
            with its own copy of the agent, built from the pool's agent spec); ``None`` runs
            them here with ``agent``. The batches, their seeds and so the results are the
            same either way.

    Returns:
        The :class:`EvalResult`.

    Raises:
        ValueError: A bad argument, an agent that does not know a task, or actions of the
            wrong shape.
    """
    from tqdm.auto import tqdm

    import sim

    suite = sim.get_suite(suite) if isinstance(suite, str) else suite
    tasks = split_tasks(suite, split)
    for name, value, low in (
        ("episodes_per_task", episodes_per_task, 1),
        ("num_envs", num_envs, 1),
        ("videos_per_task", videos_per_task, 0),
        ("seed", seed, 0),
        ("video_size", video_size, 16),
    ):
        if int(value) < low:
            raise ValueError(f"Got {name}={value}, expected >= {low}")
    if not 1 <= horizon <= sim.HORIZON:
        raise ValueError(f"Got horizon={horizon}, expected 1..{sim.HORIZON} (the env truncates)")
    known = getattr(agent, "tasks", None)
    if known is not None:
        unknown = [t for t in tasks if t not in set(map(str, known))]
        if unknown:
            raise ValueError(
                f"the agent cannot act on {unknown} of {suite.name} split={split!r}; it knows "
                f"{list(known)}. Evaluate a suite/split it was trained on (e.g. split=train)"
            )
    physics = physics or FixedPhysics()
    described = physics.describe()
    with_params = described.get("mode") != "default"
    record = video_dir is not None and videos_per_task > 0
    if record:
        check_video_support()
        video_dir = Path(video_dir)
        video_dir.mkdir(parents=True, exist_ok=True)
    specs = episode_specs(tasks, seed, episodes_per_task, physics,
                          videos_per_task if record else 0)
    batch = min(num_envs, episodes_per_task)
    render_slots = min(videos_per_task, batch) if record else 0
    options = RolloutOptions(horizon=horizon, stop_on_success=True,
                             record="steps" if record_steps else "summary",
                             goal_observable=suite.goal_observable, video_size=video_size,
                             contacts=contacts and record_steps, fast=fast)
    # The units of work: lock-step batches of `batch` episodes of one task, in a fixed order.
    units = [(task, specs[task][start:start + batch])
             for task in tasks for start in range(0, episodes_per_task, batch)]

    trajs: list[Trajectory] = []
    env_steps = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(tasks) * episodes_per_task, desc=f"evaluate {suite.name}", unit="ep",
               disable=not progress)
    try:
        if pool is None:
            for task in tasks:
                envs = make_envs(task, batch, goal_observable=suite.goal_observable,
                                 render=render_slots, size=video_size, fast=fast)
                try:
                    for _, unit in (u for u in units if u[0] == task):
                        out = run_batch(agent, envs[: len(unit)], unit, options,
                                        video_dir=video_dir, bar=bar)
                        bar.set_postfix(task=task, refresh=False)
                        trajs += out
                finally:
                    for env in envs:
                        env.close()
                _log_task(task, trajs)
        else:
            trajs = _on_pool(pool, units, options, batch, video_dir, bar)
            for task in tasks:
                _log_task(task, trajs)
    finally:
        bar.close()
    env_steps = sum(t.length for t in trajs)
    records = [EpisodeRecord.from_trajectory(t, horizon, with_params=with_params) for t in trajs]
    return EvalResult(
        suite=suite.name, split=split, tasks=tuple(tasks), seed=int(seed),
        episodes_per_task=episodes_per_task, horizon=horizon, episodes=records,
        seconds=time.perf_counter() - t0, env_steps=env_steps, physics=described,
        trajectories=trajs if record_steps else None,
    )


def _on_pool(pool: Any, units: list[tuple[str, list[EpisodeSpec]]], options: RolloutOptions,
             batch: int, video_dir: Path | None, bar: Any) -> list[Trajectory]:
    """The units on the pool's actors, each actor kept on one task while it has work; results
    in unit order whatever order they finish in."""
    tasks = list(dict.fromkeys(t for t, _ in units))
    pending = {t: deque(k for k, u in enumerate(units) if u[0] == t) for t in tasks}
    affinity = TaskAffinity(tasks)

    def next_call(slot: int) -> tuple | None:
        task = affinity.pick(slot, lambda t: bool(pending[t]))
        if task is None:
            return None
        k = pending[task].popleft()
        return k, (units[k][1], options, batch), {}

    by_unit: dict[int, list[Trajectory]] = {}
    for k, (out, videos) in pool.run(next_call):
        for name, data in videos.items():
            (Path(video_dir) / name).write_bytes(data)  # type: ignore[arg-type]
        by_unit[k] = [dataclasses.replace(t, video=str(Path(video_dir) / Path(t.video).name))
                      if t.video else t for t in out]
        bar.update(len(out))
        bar.set_postfix(task=units[k][0], refresh=False)
    return [t for k in range(len(units)) for t in by_unit[k]]


def _log_task(task: str, trajs: list[Trajectory]) -> None:
    done = [t.success for t in trajs if t.task == task]
    log.info("%s: success %d/%d", task, sum(done), len(done))
