"""Policy evaluation under the Meta-World protocol (``robolearn evaluate``).

An episode succeeds if ``info["success"]`` fires at any step within the horizon (500 steps).
Episode ``i`` of task ``t`` starts from goal seed ``robolearn.collect.episode_seed(seed, t, i)``,
the same derivation collection uses, so an evaluation seed different from the collection seed
gives goals held out from the training demonstrations (and :func:`check_heldout_seeds` verifies
it against the training store).

``num_envs`` envs of one task run in lock-step and the agent acts on all of them in one batched
call. The batch keeps its shape for the whole episode: an env that already succeeded is no
longer stepped, but its last observation stays in the batch, so stateful agents (action-chunk
queues, observation histories) see a fixed batch between two ``reset`` calls.

Example:
    >>> from robolearn.evaluate import ExpertAgent, evaluate_agent
    >>> result = evaluate_agent(ExpertAgent(), "MT1:reach-v3", episodes_per_task=3, num_envs=3)
    >>> result.success_by_task
    {'reach-v3': 1.0}
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from omegaconf import MISSING

from robolearn import stats
from robolearn.raycluster import RayConfig, cfg_get, ray_session, uses_ray
from robolearn.rollouts import TaskAffinity, checkpoint_files, rollout_pool

if TYPE_CHECKING:
    import sim

log = logging.getLogger(__name__)

DEFAULT_EVAL_SEED = 1000
"""Default evaluation goal seed; collection defaults to 0, so the goals differ."""
SPLITS = ("train", "test", "all")
"""Which tasks of a suite to evaluate: its train tasks, its test tasks, or both."""
EXPERT = "expert"
"""The ``checkpoint`` value that evaluates Meta-World's scripted experts instead of a policy."""
VIDEO_FPS = 30
_HORIZON = 500  # sim.HORIZON, spelled out so importing this module does not import Meta-World


# ----------------------------------------------------------------------------- agents
@runtime_checkable
class Agent(Protocol):
    """What the evaluator needs from a policy: two methods.

    ``robolearn.load_policy(path)`` returns one; :class:`ExpertAgent` is another. An agent may
    also have ``tasks`` (the task names it can act on; checked before rolling out) and
    ``attach(envs)``, called with the batch's envs before every ``reset`` by agents that read
    the simulator directly (the scripted experts need the goal even when it is hidden).
    """

    def reset(self) -> None:
        """Starts new episodes in every batch slot (clears queues and histories)."""

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        """Actions for a batch: obs (B, Do) float32 → actions (B, Da) in [-1, 1]."""


class ExpertAgent:
    """Meta-World's scripted experts behind the :class:`Agent` protocol, one per batch slot.

    The experts read each env's :meth:`~sim.MetaWorldEnv.expert_observation` (goal-observable,
    noise-free) rather than the observation passed to :meth:`act`, so they also work on ML
    suites, where the goal is hidden. The evaluator hands over the envs through :meth:`attach`.

    Attributes:
        task_noise: Standard deviation of Gaussian noise added to every expert action.
        train_info: Always empty (the experts were not trained on any dataset).

    Example:
        >>> agent = ExpertAgent(task_noise=0.1)
        >>> result = evaluate_agent(agent, "MT1:push-v3", episodes_per_task=2, num_envs=2)
    """

    def __init__(self, task_noise: float = 0.0) -> None:
        """Builds the agent.

        Args:
            task_noise: Action noise standard deviation in [0, 1]; the noise of each episode is
                seeded with its goal seed, so noisy evaluations are reproducible too.
        """
        if not 0.0 <= float(task_noise) <= 1.0:
            raise ValueError(f"Got ExpertAgent(task_noise={task_noise}), expected 0 <= noise <= 1")
        self.task_noise = float(task_noise)
        self.train_info: dict[str, Any] = {}
        self._envs: list[sim.MetaWorldEnv] = []
        self._experts: list[sim.ScriptedExpert] = []

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every Meta-World v3 task (there is an expert for each)."""
        import sim

        return sim.ALL_TASKS

    def attach(self, envs: Sequence[sim.MetaWorldEnv]) -> None:
        """Binds the batch's envs, slot by slot; called by the evaluator before :meth:`reset`."""
        import sim

        envs = list(envs)
        if [e.task for e in envs] != [x.task for x in self._experts]:
            self._experts = [sim.ScriptedExpert(e.task, noise_std=self.task_noise) for e in envs]
        self._envs = envs

    def reset(self) -> None:
        """Restarts each expert's noise stream from its env's reset seed."""
        for env, expert in zip(self._envs, self._experts):
            expert.reset(seed=env.seed_used)

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        """Expert actions for the attached envs.

        Args:
            obs: (B, Do) observations; only the batch size is used (see the class docstring).
            task: The task of the batch; must match the attached envs.

        Returns:
            (B, Da) float32 actions.
        """
        if not self._envs:
            raise RuntimeError(
                "ExpertAgent.act called before attach(envs); the experts read the simulator, "
                "so pass the batch's envs to attach() first (evaluate_agent does this)"
            )
        if len(obs) != len(self._envs) or any(e.task != task for e in self._envs):
            raise ValueError(
                f"ExpertAgent.act got {len(obs)} observations of task {task!r}, but "
                f"{len(self._envs)} envs of {sorted({e.task for e in self._envs})} are attached"
            )
        return np.stack([x.act(e.expert_observation()) for e, x in zip(self._envs, self._experts)])


# ----------------------------------------------------------------------------- results
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
    """

    task: str
    episode: int
    seed: int
    success: bool
    steps: int
    episode_return: float
    video: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "episode": self.episode,
            "seed": self.seed,
            "success": self.success,
            "steps": self.steps,
            "return": round(self.episode_return, 4),
            "video": self.video,
        }


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
            "success_by_task": self.success_by_task,
            "mean_success": self.mean_success,
            "seconds": round(self.seconds, 3),
            "env_steps": self.env_steps,
            "env_steps_per_s": round(self.env_steps / self.seconds, 1) if self.seconds else None,
            "videos": self.videos,
            "episodes": [r.to_dict() for r in self.episodes],
        }


# ----------------------------------------------------------------------------- evaluation
def split_tasks(suite: sim.Suite, split: str) -> tuple[str, ...]:
    """The tasks of ``suite`` that ``split`` (``"train"``, ``"test"`` or ``"all"``) selects."""
    if split not in SPLITS:
        raise ValueError(f"Got split={split!r}, expected one of {SPLITS}")
    if split == "train":
        return suite.train_tasks
    if split == "test":
        return suite.test_tasks
    return suite.tasks


def eval_seeds(seed: int, tasks: Sequence[str], episodes_per_task: int) -> dict[str, list[int]]:
    """Goal seeds of an evaluation: ``episode_seed(seed, task, i)`` for i < episodes_per_task."""
    from robolearn.collect import episode_seed

    return {t: [episode_seed(seed, t, i) for i in range(episodes_per_task)] for t in tasks}


def evaluate_agent(
    agent: Agent,
    suite: str | sim.Suite,
    *,
    episodes_per_task: int = 50,
    seed: int = DEFAULT_EVAL_SEED,
    split: str = "train",
    num_envs: int = 10,
    horizon: int = _HORIZON,
    video_dir: str | os.PathLike | None = None,
    videos_per_task: int = 1,
    video_size: int = 224,
    progress: bool = True,
    pool: Any = None,
) -> EvalResult:
    """Rolls ``agent`` out on every task of a suite split under the Meta-World protocol.

    Args:
        agent: An :class:`Agent` (``reset()``, ``act(obs (B, Do), task) -> (B, Da)``).
        suite: Suite name (``"MT10"``, ``"MT1:push-v3"``, ...) or a :class:`sim.Suite`.
        episodes_per_task: Episodes per task; episode ``i`` uses goal seed
            ``episode_seed(seed, task, i)``.
        seed: Evaluation goal seed; keep it different from the collection seed.
        split: ``"train"``, ``"test"`` (held-out tasks of ML suites) or ``"all"``.
        num_envs: Envs stepped in lock-step per batch (the agent's batch size B).
        horizon: Steps per episode at most (Meta-World: 500; lower only for smoke tests).
        video_dir: Where to write ``<task>_<i>.mp4`` for the first ``videos_per_task``
            episodes of each task; ``None`` records nothing. Needs ``imageio[ffmpeg]``.
        videos_per_task: Episodes recorded per task when ``video_dir`` is set.
        video_size: Video width and height in pixels (rendering is slow without a GPU).
        progress: Show a tqdm bar over episodes.
        pool: A :class:`robolearn.rollouts.RolloutPool` whose actors run the batches (each
            with its own copy of the agent, loaded from the pool's agent spec); ``None`` runs
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
    record = video_dir is not None and videos_per_task > 0
    if record:
        _check_video_support()
        video_dir = Path(video_dir)
        video_dir.mkdir(parents=True, exist_ok=True)
    seeds = eval_seeds(seed, tasks, episodes_per_task)
    batch = min(num_envs, episodes_per_task)
    render_slots = min(videos_per_task, batch) if record else 0

    records: list[EpisodeRecord] = []
    env_steps = 0
    t0 = time.perf_counter()
    bar = tqdm(
        total=len(tasks) * episodes_per_task, desc=f"evaluate {suite.name}", unit="ep",
        disable=not progress,
    )
    # The units of work: lock-step batches of `batch` episodes of one task, in a fixed order.
    units = [(task, list(range(start, min(start + batch, episodes_per_task))))
             for task in tasks for start in range(0, episodes_per_task, batch)]
    try:
        if pool is None:
            for task in tasks:
                envs = [
                    sim.make_env(
                        task, goal_observable=suite.goal_observable,
                        **(dict(render_mode="rgb_array", camera_name="corner", width=video_size,
                                height=video_size) if j < render_slots else {}),
                    )
                    for j in range(batch)
                ]
                try:
                    for _, episodes in (u for u in units if u[0] == task):
                        out, steps = _run_batch(
                            agent, task, envs[: len(episodes)], episodes,
                            [seeds[task][i] for i in episodes], horizon=horizon,
                            record=[record and i < videos_per_task for i in episodes],
                            video_dir=video_dir, bar=bar,
                        )
                        records += out
                        env_steps += steps
                finally:
                    for env in envs:
                        env.close()
                done = [r.success for r in records if r.task == task]
                log.info("%s: success %d/%d", task, sum(done), len(done))
        else:
            pending = {t: deque(k for k, u in enumerate(units) if u[0] == t) for t in tasks}
            affinity = TaskAffinity(list(tasks))

            def next_call(slot: int) -> tuple | None:
                task = affinity.pick(slot, lambda t: bool(pending[t]))
                if task is None:
                    return None
                k = pending[task].popleft()
                episodes = units[k][1]
                return (k, "evaluate", (task, episodes, [seeds[task][i] for i in episodes]),
                        dict(horizon=horizon, goal_observable=suite.goal_observable,
                             record=[record and i < videos_per_task for i in episodes],
                             video_size=video_size, batch=batch))

            by_unit: dict[int, list[EpisodeRecord]] = {}
            for k, (out, steps, videos) in pool.run(next_call):
                for name, data in videos.items():
                    (Path(video_dir) / name).write_bytes(data)
                out = [dataclasses.replace(r, video=str(Path(video_dir) / Path(r.video).name))
                       if r.video else r for r in out]
                by_unit[k] = out
                env_steps += steps
                bar.update(len(out))
                bar.set_postfix(task=units[k][0], refresh=False)
            records = [r for k in range(len(units)) for r in by_unit[k]]
            for task in tasks:
                done = [r.success for r in records if r.task == task]
                log.info("%s: success %d/%d", task, sum(done), len(done))
    finally:
        bar.close()
    return EvalResult(
        suite=suite.name, split=split, tasks=tuple(tasks), seed=int(seed),
        episodes_per_task=episodes_per_task, horizon=horizon, episodes=records,
        seconds=time.perf_counter() - t0, env_steps=env_steps,
    )


def _run_batch(
    agent: Agent,
    task: str,
    envs: list[sim.MetaWorldEnv],
    episodes: list[int],
    seeds: list[int],
    *,
    horizon: int,
    record: list[bool],
    video_dir: Path | None,
    bar: Any,
) -> tuple[list[EpisodeRecord], int]:
    """One lock-step batch of episodes of one task; returns its records and env steps."""
    import sim

    B = len(envs)
    obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    attach = getattr(agent, "attach", None)
    if attach is not None:
        attach(envs)
    agent.reset()
    active = np.ones(B, dtype=bool)
    success = np.zeros(B, dtype=bool)
    steps = np.full(B, horizon, dtype=np.int64)
    returns = np.zeros(B, dtype=np.float64)
    frames: dict[int, list[np.ndarray]] = {j: [envs[j].render()] for j in range(B) if record[j]}
    env_steps = 0
    for t in range(horizon):
        actions = np.asarray(agent.act(obs, task=task))
        if actions.shape != (B, sim.ACTION_DIM):
            raise ValueError(
                f"agent.act returned actions of shape {actions.shape} for observations of shape "
                f"{obs.shape} (task {task!r}); expected (B, Da) = ({B}, {sim.ACTION_DIM})"
            )
        for j in np.flatnonzero(active):
            o, reward, _, _, info = envs[j].step(actions[j])
            obs[j] = o
            returns[j] += reward
            env_steps += 1
            if j in frames:
                frames[j].append(envs[j].render())
            if info["success"]:  # Meta-World protocol: success at any step counts
                success[j], steps[j], active[j] = True, t + 1, False
                if bar is not None:
                    bar.update(1)
        if not active.any():
            break
    if bar is not None:
        bar.update(int(active.sum()))
        bar.set_postfix(task=task, refresh=False)
    records = []
    for j, (i, s) in enumerate(zip(episodes, seeds)):
        video = None
        if j in frames:
            video = str(video_dir / f"{task}_{i}.mp4")
            _write_video(video, frames[j])
        records.append(EpisodeRecord(
            task=task, episode=i, seed=int(s), success=bool(success[j]), steps=int(steps[j]),
            episode_return=float(returns[j]), video=video,
        ))
    return records, env_steps


def _check_video_support() -> None:
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"videos need imageio with ffmpeg ({e}); install them with "
            "`pip install 'robolearn[video]'` or run without video"
        ) from e
    # Headless machines have no display for MuJoCo's default GLFW renderer; EGL works there.
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"


def _write_video(path: str, frames: list[np.ndarray]) -> None:
    import imageio.v2 as imageio

    imageio.mimwrite(path, np.stack(frames), fps=VIDEO_FPS, codec="libx264", macro_block_size=1)
    log.debug("wrote %s (%d frames)", path, len(frames))


# ----------------------------------------------------------------------------- held-out check
def check_heldout_seeds(
    eval_seed: int,
    seeds: dict[str, list[int]],
    *,
    dataset: str | os.PathLike | None = None,
    collect_seed: int | None = None,
) -> dict[str, Any]:
    """Checks that no evaluation goal was a training goal; raises if one was.

    A goal is the pair (task, goal seed): the same seed on another task is a different goal.

    Args:
        eval_seed: The evaluation goal seed.
        seeds: ``{task: [goal seeds]}`` of the evaluation (:func:`eval_seeds`).
        dataset: The training episode store, if known; its ``meta/seed`` and ``meta/task``
            are compared with ``seeds``. A store that is missing here is skipped with a warning.
        collect_seed: The collection seed, if known (else the store's ``collect_seed``
            attribute is used); equal to ``eval_seed`` it would reproduce the training goals.

    Returns:
        What was checked: ``{"dataset", "collect_seed", "seed_overlap_check"}``.

    Raises:
        ValueError: ``collect_seed == eval_seed``, or a (task, seed) pair of the evaluation
            occurs in the store.
    """
    info: dict[str, Any] = {"dataset": None if dataset is None else str(dataset)}
    pairs: set[tuple[str, int]] = set()
    checked = "no training dataset recorded; not checked"
    if dataset is not None:
        from robolearn.data import EpisodeStore

        if not Path(dataset).exists():
            checked = f"training dataset {dataset} not found here; not checked"
            log.warning("cannot check held-out goals: %s", checked)
        else:
            with EpisodeStore.open(dataset) as store:
                pairs = {
                    (str(t), int(s))
                    for t, s in zip(store.meta("task"), store.meta("seed"))
                    if int(s) >= 0
                }
                if collect_seed is None:
                    collect_seed = store.attrs.get("user", {}).get("collect_seed")
    info["collect_seed"] = None if collect_seed is None else int(collect_seed)
    if collect_seed is not None and int(collect_seed) == int(eval_seed):
        raise ValueError(
            f"evaluation seed={eval_seed} equals the training data's collect seed "
            f"{collect_seed}: the evaluation goals would be the training goals. Pick another "
            f"seed=, e.g. seed={DEFAULT_EVAL_SEED if eval_seed != DEFAULT_EVAL_SEED else 2000}"
        )
    if dataset is not None and Path(dataset).exists():
        overlap = sorted((t, s) for t, ss in seeds.items() for s in ss if (t, s) in pairs)
        if overlap:
            raise ValueError(
                f"{len(overlap)} evaluation goal(s) of seed={eval_seed} are training episodes in "
                f"{dataset} (task, goal seed): {overlap[:5]}. Evaluate with another seed= "
                "so the goals are held out"
            )
        n = sum(len(ss) for ss in seeds.values())
        checked = f"passed: none of {n} evaluation goals among {len(pairs)} training episodes"
    info["seed_overlap_check"] = checked
    return info


# ----------------------------------------------------------------------------- the command
@dataclass
class EvaluateConfig:
    """``robolearn evaluate``: success rates of a policy (or the scripted experts) on a suite."""

    checkpoint: str = MISSING  # checkpoint dir, run dir, `expert`, or `robomimic:<model.pth>`
    checkpoints: list[str] = field(default_factory=list)  # several runs/seeds: IQM + bootstrap CI
    suite: str = "MT10"  # MT1:<task> | MT10 | MT50 | ML10 | ML45
    split: str = "train"  # train | test (ML held-out tasks) | all
    episodes_per_task: int = 50  # episode i of a task uses goal seed episode_seed(seed, task, i)
    seed: int = DEFAULT_EVAL_SEED  # evaluation goal seed; must differ from the collect seed
    num_envs: int = 10  # envs per task stepped in lock-step (the policy's batch size)
    horizon: int = _HORIZON  # steps per episode (Meta-World: 500; lower only for smoke tests)
    video: bool = False  # write MP4s of the first episodes of each task into <out>/videos
    videos_per_task: int = 1  # episodes recorded per task when video=true
    device: str = "auto"  # auto | cpu | cuda | cuda:N (policy inference; Ray actors: cpu)
    ray: RayConfig = field(default_factory=RayConfig)  # rollouts on Ray actors (num_workers=0: here)
    out: str = ""  # report directory (default: the run directory)
    run_dir: str = ""  # where config/log/summary go (default outputs/evaluate/<time>)

    def __post_init__(self) -> None:
        check_config(self)


def check_config(cfg: Any) -> None:
    """Validates an :class:`EvaluateConfig` (dataclass or composed DictConfig).

    Raises:
        ValueError: A field out of range, naming the field, the value and what is expected.
    """
    if cfg.split not in SPLITS:
        raise ValueError(f"Got split={cfg.split!r}, expected one of {SPLITS}")
    for name, low in (("episodes_per_task", 1), ("num_envs", 1), ("videos_per_task", 0),
                      ("seed", 0), ("horizon", 1)):
        if getattr(cfg, name) < low:
            raise ValueError(f"Got {name}={getattr(cfg, name)}, expected >= {low}")
    if cfg.horizon > _HORIZON:
        raise ValueError(f"Got horizon={cfg.horizon}, expected <= {_HORIZON} (the env truncates)")


def checkpoint_list(cfg: Any) -> list[str]:
    """The runs to evaluate: ``checkpoint`` or ``checkpoints`` (exactly one of them set)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        single = None if OmegaConf.is_missing(cfg, "checkpoint") else cfg.checkpoint
    else:
        single = None if cfg.checkpoint == MISSING else cfg.checkpoint
    several = [str(c) for c in (cfg.checkpoints or [])]
    if single and several:
        raise ValueError(
            f"Got checkpoint={single!r} and checkpoints={several}; give one of them "
            "(checkpoints=[a,b,...] for several runs)"
        )
    if not single and not several:
        raise ValueError(
            "no checkpoint to evaluate; pass checkpoint=<checkpoint or run dir>, "
            "checkpoint=expert, or checkpoints=[dir1,dir2] for several runs"
        )
    return [str(single)] if single else several


def load_agent(checkpoint: str, device: str = "auto") -> Agent:
    """``"expert"`` → :class:`ExpertAgent`; ``"robomimic:<model.pth>"`` →
    :class:`robolearn.baselines.bc_rnn.RobomimicAgent`; anything else → ``robolearn.load_policy``."""
    if checkpoint == EXPERT:
        return ExpertAgent(task_noise=0.0)
    if checkpoint.startswith("robomimic:"):
        from robolearn.baselines import bc_rnn

        return bc_rnn.RobomimicAgent(checkpoint.removeprefix("robomimic:"), device=device)
    try:
        from robolearn import load_policy
    except ImportError as e:
        raise ImportError(
            f"checkpoint={checkpoint!r} needs robolearn.load_policy, which this install lacks "
            f"({e}); use checkpoint=expert to evaluate the scripted experts"
        ) from e
    return load_policy(checkpoint, device=device)


def _evaluate_one(cfg: Any, ray_cfg: Any, checkpoint: str, k: int, n: int, suite: sim.Suite,
                  seeds: dict[str, list[int]], out: Path) -> dict[str, Any]:
    """One checkpoint of :func:`run_evaluate`: load, check held-out goals, roll out."""
    log.info("evaluating %s (%d/%d) on %s split=%s", checkpoint, k + 1, n, suite.name, cfg.split)
    agent = load_agent(checkpoint, cfg.device)
    train_info = dict(getattr(agent, "train_info", None) or {})
    provenance = check_heldout_seeds(
        cfg.seed, seeds, dataset=train_info.get("dataset"),
        collect_seed=train_info.get("collect_seed"),
    )
    video_dir = None
    if cfg.video:
        video_dir = out / "videos" if n == 1 else out / "videos" / f"run{k}"
    units = len(seeds) * -(-cfg.episodes_per_task // min(cfg.num_envs, cfg.episodes_per_task))
    spec = {"checkpoint": checkpoint,
            "device": "cpu" if cfg.device == "auto" else cfg.device}
    if uses_ray(ray_cfg):
        spec["files"] = checkpoint_files(checkpoint)
    with rollout_pool(ray_cfg, what="robolearn evaluate", agent_spec=spec,
                      max_workers=units) as pool:
        result = evaluate_agent(
            agent, suite, episodes_per_task=cfg.episodes_per_task, seed=cfg.seed,
            split=cfg.split, num_envs=cfg.num_envs, horizon=cfg.horizon, video_dir=video_dir,
            videos_per_task=cfg.videos_per_task, pool=pool,
        )
        workers = 0 if pool is None else len(pool.actors)
    return {"checkpoint": checkpoint, "train": provenance, "ray_workers": workers,
            **result.to_dict()}


def run_evaluate(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """``robolearn evaluate``: evaluates each checkpoint and writes the report.

    Writes into ``cfg.out`` (default ``run_dir``): ``report.json`` (per-task success per run,
    mean, IQM, bootstrap 95% CIs when there are >= 2 runs, the evaluation seed, the training
    dataset and collect seed when the checkpoint records them, and the held-out goal check),
    ``success_by_task.png`` and, with ``video=true``, ``videos/[run<k>/]<task>_<i>.mp4``.
    Prints a table of the results.

    Args:
        cfg: An :class:`EvaluateConfig` or its composed DictConfig.
        run_dir: The run directory.

    Returns:
        The report dict (as written to ``report.json``).
    """
    import sim

    check_config(cfg)
    checkpoints = checkpoint_list(cfg)
    suite = sim.get_suite(cfg.suite)
    tasks = split_tasks(suite, cfg.split)
    out = Path(cfg.out) if cfg.out else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = eval_seeds(cfg.seed, tasks, cfg.episodes_per_task)

    runs: list[dict[str, Any]] = []
    ray_cfg = cfg_get(cfg, "ray")
    with contextlib.ExitStack() as stack:
        if uses_ray(ray_cfg):  # one Ray instance for every checkpoint of the command
            stack.enter_context(ray_session(ray_cfg))
        for k, checkpoint in enumerate(checkpoints):
            runs.append(_evaluate_one(cfg, ray_cfg, checkpoint, k, len(checkpoints), suite, seeds,
                                      out))

    matrix = np.array([[r["success_by_task"][t] for t in tasks] for r in runs])
    summary = stats.summarize(matrix)
    report = {
        "suite": suite.name,
        "split": cfg.split,
        "tasks": list(tasks),
        "episodes_per_task": cfg.episodes_per_task,
        "horizon": cfg.horizon,
        "eval_seed": cfg.seed,
        "goal_seeds": f"robolearn.collect.episode_seed({cfg.seed}, task, i) for episode i",
        "checkpoints": checkpoints,
        "success_by_task": dict(zip(tasks, summary["per_task_mean"])),
        "success_by_task_per_run": [r["success_by_task"] for r in runs],
        "mean_success": summary["mean"],
        "summary": summary,
        "files": {"report": str(out / "report.json"), "plot": str(out / "success_by_task.png")},
        "runs": runs,
    }
    plot_success(matrix, tasks, out / "success_by_task.png",
                 title=f"{suite.name} ({cfg.split}), {len(runs)} run(s)", summary=summary)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    _print_table(report, matrix)
    return report


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def plot_success(
    matrix: np.ndarray,
    tasks: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "",
    summary: dict[str, Any] | None = None,
) -> None:
    """Bar chart of per-task success (mean over runs, std error bars and run dots when R >= 2).

    Args:
        matrix: (R runs, T tasks) success rates.
        tasks: The T task names.
        path: The PNG to write.
        title: Figure title.
        summary: :func:`robolearn.stats.summarize` of ``matrix`` (computed when omitted).
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    summary = summary or stats.summarize(matrix)
    runs, n = matrix.shape
    x = np.arange(n)
    fig = Figure(figsize=(max(4.0, 0.55 * n + 1.5), 3.8), layout="constrained")
    ax = fig.add_subplot()
    yerr = matrix.std(axis=0, ddof=1) if runs >= 2 else None
    ax.bar(x, matrix.mean(axis=0), yerr=yerr, capsize=3, color="#4C72B0",
           label="success (mean ± std over runs)" if runs >= 2 else "success")
    if runs >= 2:
        for r, row in enumerate(matrix):
            ax.plot(x + 0.12, row, "o", color="#DD8452", ms=3, alpha=0.8,
                    label="individual runs" if r == 0 else None)
    label = f"mean {summary['mean']:.2f}, IQM {summary['iqm']:.2f}"
    if summary["iqm_ci"] is not None:
        lo, hi = summary["iqm_ci"]
        label += f" [{lo:.2f}, {hi:.2f}]"
    ax.axhline(summary["mean"], color="#C44E52", ls="--", lw=1.2, label=label)
    ax.set_xticks(x, [t.removesuffix("-v3") for t in tasks], rotation=45, ha="right")
    ax.set_ylim(0, 1.3)  # headroom for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("success rate")
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=3, fontsize=7, frameon=False)
    fig.savefig(path, dpi=120)


def _print_table(report: dict[str, Any], matrix: np.ndarray) -> None:
    from rich.console import Console
    from rich.table import Table

    runs = report["runs"]
    table = Table(title=f"{report['suite']} ({report['split']})")
    table.add_column("task")
    if len(runs) > 1:
        for k in range(len(runs)):
            table.add_column(f"run{k}", justify="right")
    table.add_column("success", justify="right")
    for t, task in enumerate(report["tasks"]):
        cells = [f"{v:.2f}" for v in matrix[:, t]] if len(runs) > 1 else []
        table.add_row(task, *cells, f"{matrix[:, t].mean():.2f}")
    s = report["summary"]
    per_run = [f"{v:.3f}" for v in s["per_run_mean"]] if len(runs) > 1 else []
    table.add_row("mean", *per_run, f"{s['mean']:.3f}{_ci(s['mean_ci'])}", style="bold")
    table.add_row("IQM", *([""] * len(per_run)), f"{s['iqm']:.3f}{_ci(s['iqm_ci'])}")
    console = Console()
    console.print(
        f"robolearn evaluate: {report['episodes_per_task']} episodes per task, horizon "
        f"{report['horizon']}, goal seeds episode_seed({report['eval_seed']}, task, i)"
    )
    console.print(table)
    if len(runs) > 1:
        for k, r in enumerate(runs):
            console.print(f"run{k}: {r['checkpoint']}")
    steps = sum(r["env_steps"] for r in runs)
    secs = sum(r["seconds"] for r in runs)
    workers = runs[0].get("ray_workers", 0)
    where = f"on {workers} Ray actors" if workers else "in this process"
    console.print(f"{steps} env steps in {secs:.1f} s ({steps / max(secs, 1e-9):.0f} steps/s "
                  f"{where})")
    console.print(f"report: {report['files']['report']}")
    console.print(f"plot:   {report['files']['plot']}")
    videos = [v for r in runs for v in r["videos"]]
    if videos:
        console.print(f"videos: {len(videos)} in {Path(videos[0]).parent}")


def _ci(interval: list[float] | None) -> str:
    return f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
