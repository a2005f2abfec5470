"""Scripted-expert demonstration collection into an episode store (``robolearn collect``).

Every episode has its own goal seed, derived from (collection seed, task, attempt number), so a
collection is reproducible episode by episode and a resumed collection produces exactly the
episodes an uninterrupted one would have. Only successful episodes are kept; attempts and
successes are both counted and reported.
"""

from __future__ import annotations

import dataclasses
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
    env_steps = 0
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
    with EpisodeWriter(out, background=cfg.background_writer, wait_ready=False) as writer:
        todo = sum(max(0, cfg.episodes_per_task - t.kept) for t in tally.values())
        if resumed:
            log.info("resuming %s: %d episodes present, %d to collect", out, resumed, todo)
        bar = tqdm(total=todo, desc=f"collect {cfg.suite}", unit="ep", disable=not progress)
        for task in tasks:
            t = tally[task]
            if t.kept >= cfg.episodes_per_task:
                continue
            env = sim.make_env(task)
            expert = sim.ScriptedExpert(task, noise_std=cfg.action_noise_std)
            while t.kept < cfg.episodes_per_task and t.attempts < max_attempts:
                attempt = t.attempts
                seed = episode_seed(cfg.seed, task, attempt)
                params = ranges.sample(np.random.default_rng(seed))
                env.set_params(params)
                steps, success = rollout_expert(
                    env, expert, seed, stop_on_success=cfg.stop_on_success
                )
                env_steps += len(steps["action"])
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
            env.close()
            if t.kept < cfg.episodes_per_task:
                log.warning(
                    "%s: only %d/%d successful episodes after %d attempts (max_attempts_per_task)",
                    task, t.kept, cfg.episodes_per_task, t.attempts,
                )
        bar.close()
    return CollectSummary(
        store=str(out), suite=cfg.suite, tasks=[tally[t] for t in tasks],
        seconds=time.perf_counter() - t0, env_steps=env_steps, resumed_episodes=resumed,
    )
