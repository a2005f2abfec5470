"""Scripted-expert demonstration collection into an episode store (``robolearn collect``).

Every episode has its own goal seed, derived from (collection seed, task, attempt number), so a
collection is reproducible episode by episode and a resumed collection produces exactly the
episodes an uninterrupted one would have. Only successful episodes are kept; attempts and
successes are both counted and reported.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import sim
from robolearn.data.store import EpisodeStore, StoreError
from robolearn.data.writer import EpisodeWriter
from robolearn.raycluster import cfg_get, check_reachable, uses_ray
from robolearn.rollouts import TaskAffinity, rollout_pool

log = logging.getLogger(__name__)


def episode_seed(seed: int, task: str, attempt: int) -> int:
    """Goal seed of one collection attempt: a pure function of (seed, task, attempt)."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(task.encode()), int(attempt)])
    return int(ss.generate_state(1, np.uint32)[0])


def ranges_from_config(randomize: Any) -> sim.ParamRanges:
    """``RandomizationConfig`` (lists [low, high]) → ``sim.ParamRanges``."""
    d = {}
    for k, v in dict(randomize).items():
        if len(v) != 2:
            raise ValueError(f"Got randomize.{k}={list(v)}, expected [low, high]")
        cast = int if k == "action_latency" else float
        d[k] = (cast(v[0]), cast(v[1]))
    return sim.ParamRanges.from_dict(d)


def rollout_expert(
    env: Any,
    expert: sim.ScriptedExpert,
    seed: int,
    *,
    stop_on_success: bool = True,
    max_steps: int = sim.HORIZON,
) -> tuple[dict[str, np.ndarray], bool]:
    """One episode of the scripted expert; returns (steps, success).

    Row t holds the observation o_t, the action a_t taken in it, and the reward/success that
    followed. Success follows the Meta-World protocol: ``info["success"]`` at any step.
    """
    obs, _ = env.reset(seed=seed)
    expert.reset(seed=seed)
    observe = getattr(env, "expert_observation", None)
    rows_obs, rows_act, rows_rew, rows_suc = [], [], [], []
    success = False
    for _ in range(max_steps):
        expert_obs = observe() if observe is not None and not env.goal_observable else obs
        action = expert.act(expert_obs)
        rows_obs.append(obs)
        rows_act.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        rows_rew.append(reward)
        rows_suc.append(bool(info["success"]))
        success = success or rows_suc[-1]
        if (success and stop_on_success) or terminated or truncated:
            break
    steps = {
        "obs": np.asarray(rows_obs, dtype=np.float32),
        "action": np.asarray(rows_act, dtype=np.float32),
        "reward": np.asarray(rows_rew, dtype=np.float32),
        "success": np.asarray(rows_suc, dtype=bool),
    }
    return steps, success


@dataclasses.dataclass
class TaskTally:
    task: str
    kept: int = 0
    attempts: int = 0
    successes: int = 0
    steps_kept: int = 0
    new_attempts: int = 0
    new_successes: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else float("nan")

    @property
    def mean_length(self) -> float:
        return self.steps_kept / self.kept if self.kept else float("nan")


@dataclasses.dataclass
class CollectSummary:
    store: str
    suite: str
    tasks: list[TaskTally]
    seconds: float
    env_steps: int
    resumed_episodes: int
    ray_workers: int = 0  # rollout actors (0: this process)
    actors_replaced: int = 0  # lost actors replaced (their episodes re-run)
    startup_seconds: float = 0.0  # opening the store, starting Ray and the writer

    @property
    def episodes(self) -> int:
        return sum(t.kept for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "suite": self.suite,
            "episodes": self.episodes,
            "resumed_episodes": self.resumed_episodes,
            "seconds": round(self.seconds, 3),
            "env_steps": self.env_steps,
            "env_steps_per_s": round(self.env_steps / self.seconds, 1) if self.seconds else None,
            "ray_workers": self.ray_workers,
            "actors_replaced": self.actors_replaced,
            "startup_seconds": round(self.startup_seconds, 3),
            "tasks": {
                t.task: {
                    "episodes": t.kept,
                    "attempts": t.attempts,
                    "expert_success_rate": round(t.success_rate, 4),
                    "mean_length": round(t.mean_length, 2),
                }
                for t in self.tasks
            },
        }


def _existing_tally(store: EpisodeStore, tasks: list[str]) -> dict[str, TaskTally]:
    """Kept episodes and attempts already in the store, per task (for resuming)."""
    tally = {t: TaskTally(t) for t in tasks}
    if len(store) == 0:
        return tally
    lengths = store.episode_lengths
    for i, (task, source, info) in enumerate(
        zip(store.meta("task"), store.meta("source"), store.meta("info"))
    ):
        if task not in tally or source != "expert":
            continue
        t = tally[str(task)]
        meta = json.loads(str(info))
        t.kept += 1
        t.steps_kept += int(lengths[i])
        # attempts up to and including this kept one (attempt numbers start at 0)
        t.attempts = max(t.attempts, int(meta.get("attempt", t.attempts)) + 1)
        t.successes += 1
    return tally


def collect(
    cfg: Any,
    *,
    progress: bool = True,
    on_episode: Callable[[str, int, bool], None] | None = None,
) -> CollectSummary:
    """Collect ``cfg.episodes_per_task`` successful expert episodes per task of ``cfg.suite``.

    Resumes an existing store at ``cfg.out`` (unless ``cfg.overwrite``): tasks that already
    have enough episodes are skipped, others continue at their next attempt number.
    """
    suite = sim.get_suite(cfg.suite)
    tasks = list(suite.train_tasks)
    if cfg.episodes_per_task < 1:
        raise ValueError(f"Got episodes_per_task={cfg.episodes_per_task}, expected >= 1")
    ranges = ranges_from_config(cfg.randomize)
    ray_cfg = cfg_get(cfg, "ray")
    if uses_ray(ray_cfg) and cfg_get(ray_cfg, "address"):
        # before touching the store: a wrong address fails in a second and leaves nothing
        check_reachable(ray_cfg.address, float(cfg_get(ray_cfg, "connect_timeout_s", 10.0)))
    max_attempts = cfg.max_attempts_per_task or 3 * cfg.episodes_per_task
    out = Path(cfg.out)
    if cfg.overwrite or not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        EpisodeStore.create(
            out, sim.OBS_DIM, sim.ACTION_DIM, tasks=tasks, overwrite=cfg.overwrite,
            attrs={"suite": cfg.suite, "collect_seed": int(cfg.seed),
                   "reward_version": sim.REWARD_VERSION},
        ).close()
    t0 = time.perf_counter()
    # Append mode waits for a previous writer (say, one still draining after its collector was
    # killed) and repairs a crash tail, so the tally below is what is really committed.
    with EpisodeStore.open(out, mode="a", lock_timeout=60.0) as existing:
        if existing.obs_dim != sim.OBS_DIM or existing.action_dim != sim.ACTION_DIM:
            raise StoreError(
                f"{out} holds obs_dim={existing.obs_dim}, action_dim={existing.action_dim}; "
                f"Meta-World needs {sim.OBS_DIM}/{sim.ACTION_DIM}. Use another out= or "
                "overwrite=true"
            )
        tally = _existing_tally(existing, tasks)
        resumed = len(existing)
    todo = sum(max(0, cfg.episodes_per_task - t.kept) for t in tally.values())
    if resumed:
        log.info("resuming %s: %d episodes present, %d to collect", out, resumed, todo)
    if todo == 0:
        ray_cfg = {"num_workers": 0}  # nothing to roll out: no need for Ray
    # The writer process first: its start-up (imports, opening the store) overlaps Ray's.
    with EpisodeWriter(out, background=cfg.background_writer, wait_ready=False) as writer, \
            rollout_pool(ray_cfg, what="robolearn collect", max_workers=max(1, todo)) as pool:
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        bar = tqdm(total=todo, desc=f"collect {cfg.suite}", unit="ep", disable=not progress)

        def record(task: str, attempt: int, seed: int, params: sim.TaskParams,
                   steps: dict[str, np.ndarray], success: bool) -> None:
            t = tally[task]
            t.attempts += 1
            t.new_attempts += 1
            if success:
                t.successes += 1
                t.new_successes += 1
                writer.add_episode(
                    steps, task=task, source="expert", params=params, seed=seed,
                    policy_id="scripted-expert",
                    info={"attempt": attempt, "action_noise_std": cfg.action_noise_std},
                )
                t.kept += 1
                t.steps_kept += len(steps["action"])
                bar.update(1)
            if on_episode is not None:
                on_episode(task, attempt, success)
            bar.set_postfix(task=task, success=f"{t.successes}/{t.attempts}", refresh=False)

        run = _collect_here if pool is None else functools.partial(_collect_on_ray, pool)
        env_steps = run(cfg, tasks, tally, max_attempts, ranges, record)
        bar.close()
        workers = 0 if pool is None else len(pool.actors)
        replaced = 0 if pool is None else pool.replaced
        seconds = time.perf_counter() - t0  # the rollouts (and commits), not Ray's start-up
    for task in tasks:
        t = tally[task]
        if t.kept < cfg.episodes_per_task:
            log.warning(
                "%s: only %d/%d successful episodes after %d attempts (max_attempts_per_task)",
                task, t.kept, cfg.episodes_per_task, t.attempts,
            )
    return CollectSummary(
        store=str(out), suite=cfg.suite, tasks=[tally[t] for t in tasks],
        seconds=seconds, env_steps=env_steps, resumed_episodes=resumed,
        ray_workers=workers, actors_replaced=replaced, startup_seconds=startup,
    )


Record = Callable[[str, int, int, sim.TaskParams, dict[str, np.ndarray], bool], None]


def _attempt(cfg: Any, ranges: sim.ParamRanges, task: str, attempt: int) -> tuple[int, Any]:
    """Goal seed and TaskParams of one attempt: functions of (seed, task, attempt) only."""
    seed = episode_seed(cfg.seed, task, attempt)
    return seed, ranges.sample(np.random.default_rng(seed))


def _collect_here(cfg: Any, tasks: list[str], tally: dict[str, TaskTally], max_attempts: int,
                  ranges: sim.ParamRanges, record: Record) -> int:
    """The single-process path: attempts one after the other, task by task."""
    env_steps = 0
    for task in tasks:
        t = tally[task]
        if t.kept >= cfg.episodes_per_task:
            continue
        env = sim.make_env(task)
        expert = sim.ScriptedExpert(task, noise_std=cfg.action_noise_std)
        while t.kept < cfg.episodes_per_task and t.attempts < max_attempts:
            attempt = t.attempts
            seed, params = _attempt(cfg, ranges, task, attempt)
            env.set_params(params)
            steps, success = rollout_expert(env, expert, seed, stop_on_success=cfg.stop_on_success)
            env_steps += len(steps["action"])
            record(task, attempt, seed, params, steps, success)
        env.close()
    return env_steps


def _collect_on_ray(pool: Any, cfg: Any, tasks: list[str], tally: dict[str, TaskTally],
                    max_attempts: int, ranges: sim.ParamRanges, record: Record) -> int:
    """The Ray path: attempts run on the pool's actors, results are recorded in the order the
    single-process path records them (task by task, attempt by attempt), so the store ends up
    with the same episodes in the same order, and a resume works the same.

    A task gets as many attempts in flight as it would need if they all succeeded; a failed
    attempt makes room for one more. Each actor keeps to its own task while it has work
    (:class:`~robolearn.rollouts.TaskAffinity`); results that arrive ahead of their turn wait
    in memory, for at most ``2 × workers`` tasks ahead of the one being recorded.
    """
    need = cfg.episodes_per_task
    order = [t for t in tasks if tally[t].kept < need and tally[t].attempts < max_attempts]
    next_attempt = {t: tally[t].attempts for t in order}
    unprocessed = dict.fromkeys(order, 0)  # dispatched, not yet recorded
    failed = dict.fromkeys(order, 0)  # finished as failures, not yet recorded
    ready: dict[str, dict[int, tuple]] = {t: {} for t in order}
    finished: set[str] = set()
    affinity = TaskAffinity(order)
    # Tasks ahead of the one being recorded that may start: bounds what waits in memory.
    lookahead = 2 * len(pool.actors)
    env_steps = 0
    cursor = 0

    def has_work(task: str) -> bool:
        t = tally[task]
        return (task not in finished and next_attempt[task] < max_attempts
                and t.kept + unprocessed[task] - failed[task] < need)

    def next_call(slot: int) -> tuple | None:
        task = affinity.pick(slot, has_work, order[cursor:cursor + lookahead])
        if task is None:
            return None
        attempt = next_attempt[task]
        next_attempt[task] += 1
        unprocessed[task] += 1
        seed, params = _attempt(cfg, ranges, task, attempt)
        return ((task, attempt, seed, params), "collect",
                (task, attempt, seed, params.to_dict(), float(cfg.action_noise_std),
                 bool(cfg.stop_on_success)), {})

    for (task, attempt, seed, params), (steps, success) in pool.run(next_call):
        env_steps += len(steps["action"])
        if task in finished:
            continue  # a speculative attempt past what the task needed
        ready[task][attempt] = (seed, params, steps, success)
        failed[task] += not success
        while cursor < len(order):  # record everything whose turn has come
            task = order[cursor]
            t = tally[task]
            if t.kept >= need or t.attempts >= max_attempts:
                finished.add(task)
                ready[task].clear()
                cursor += 1
                continue
            if t.attempts not in ready[task]:
                break
            seed, params, steps, success = ready[task].pop(t.attempts)
            unprocessed[task] -= 1
            failed[task] -= not success
            record(task, t.attempts, seed, params, steps, success)
    return env_steps
