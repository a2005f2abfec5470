"""Scripted-expert demonstration collection into an episode store (``robolearn collect``).

Every episode has its own goal seed, derived from (collection seed, task, attempt number), and
its TaskParams are drawn from that seed, so a collection is reproducible episode by episode and
a resumed collection produces exactly the episodes an uninterrupted one would have. Only
successful episodes are kept; attempts and successes are both counted and reported.

The episodes are rolled out by the one engine (:func:`robolearn.rollout.run_batch`, B = 1,
the scripted expert acting on what the store records) in this process or on Ray actors.

A store remembers how it was collected (``attrs["collect"]``: suite, seed, expert noise,
randomisation, early stop): re-running with the same settings resumes it (or extends it to more
episodes per task), and other settings are refused with the fix rather than mixed in.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import sim
from robolearn.cluster import RayConfig, cfg_get, check_reachable, uses_ray
from robolearn.data.store import EpisodeStore, StoreError, claim_store
from robolearn.data.writer import EpisodeWriter
from robolearn.errors import ConfigError, ReuseError, did_you_mean
from robolearn.rollout import (
    EpisodeSpec,
    ExpertAgent,
    RandomizationConfig,
    RolloutOptions,
    TaskAffinity,
    Trajectory,
    agent_spec,
    episode_seed,
    physics_from_config,
    rollout_pool,
    run_batch,
    trajectory_rows,
)
from robolearn.rollout.physics import describe_briefly

log = logging.getLogger(__name__)

EXPERT_ID = "scripted-expert"
EXPERT_SEES = ("observation", "state")  # what the scripted expert acts on (`expert_sees`)


@dataclass
class CollectConfig:
    """``robolearn collect``: scripted-expert demonstrations into an episode store."""

    suite: str = "MT10"  # MT1:<task> | MT10 | MT50 | ML10 | ML45 (ML suites: train tasks only)
    episodes_per_task: int = 50  # successful episodes kept per task
    out: str = "data/mt10_demos.zarr"  # the episode store; re-running resumes it
    seed: int = 0  # demo goal seed; keep evaluation seeds different
    expert_noise_std: float = 0.0  # Gaussian noise on the scripted expert's actions
    # (`state`: privileged labels from the simulator's noise-free state; the store still keeps
    # the noisy observation the policy will see)
    expert_sees: str = "observation"  # what the expert acts on: observation (noise included) | state
    max_attempts_per_task: int = 0  # give up on a task after this many attempts (0: 3x episodes)
    stop_on_success: bool = True  # end an episode at the first success (else run the horizon)
    randomize: RandomizationConfig = field(default_factory=RandomizationConfig)  # env physics box
    distribution: str = ""  # or a task distribution file (curricula JSON): TaskParams + initial states
    overwrite: bool = False  # replace an existing store at `out` instead of resuming it
    background_writer: bool = True  # commit episodes from a writer process while simulating
    fast: bool = True  # sim's fast step (identical results); false: Meta-World's own step
    ray: RayConfig = field(default_factory=RayConfig)  # rollouts on Ray actors (num_workers=0: here)
    progress: bool = True  # progress bar on the terminal (the summary table is printed either way)
    run_dir: str = ""  # where config/log/summary go (default outputs/collect/<time>)

    def __post_init__(self) -> None:
        for name, value, low in (("episodes_per_task", self.episodes_per_task, 1),
                                 ("max_attempts_per_task", self.max_attempts_per_task, 0),
                                 ("seed", self.seed, 0)):
            if value < low:
                raise ConfigError(f"Got {name}={value}, expected >= {low}"
                                  + (" (0: 3 x episodes_per_task)"
                                     if name == "max_attempts_per_task" else ""))
        if not 0.0 <= self.expert_noise_std <= 1.0:
            raise ConfigError(f"Got expert_noise_std={self.expert_noise_std}, expected 0..1")
        if self.expert_sees not in EXPERT_SEES:
            raise ConfigError(f"Got expert_sees={self.expert_sees!r}, expected one of "
                              f"{list(EXPERT_SEES)}" + did_you_mean(self.expert_sees, EXPERT_SEES))
        if not self.out:
            raise ConfigError("Got out='', expected the path of the episode store to write")
        try:
            suite = sim.get_suite(self.suite)
            physics = physics_from_config(None, self.randomize, self.distribution)
            if hasattr(physics, "check_tasks"):
                physics.check_tasks(suite.train_tasks)
        except (TypeError, ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from None

    def settings(self) -> dict[str, Any]:
        """What decides the episodes (recorded in the store; a resume must match it)."""
        return {"suite": self.suite, "seed": int(self.seed),
                "expert_noise_std": float(self.expert_noise_std),
                "stop_on_success": bool(self.stop_on_success),
                "expert_sees": self.expert_sees,
                "physics": physics_from_config(None, self.randomize,
                                               self.distribution).describe(),
                "reward_version": sim.REWARD_VERSION}


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


def check_reuse(store: EpisodeStore, cfg: CollectConfig, tally: dict[str, TaskTally],
                need: dict[str, int]) -> None:
    """Refuses, with the fix, to resume a store collected with other settings, or one that
    already holds more episodes per task than asked for (training on it would use them all)."""
    user = store.attrs.get("user", {})
    want = cfg.settings()
    have = user.get("collect")
    if have is not None:  # stores from before `expert_sees`: the experts saw the observation
        have = {"expert_sees": "observation", **have}
    fix = (f"Use another out= for these settings, overwrite=true to replace {store.path}, or "
           "the settings it was collected with")
    if have is None:  # a store written before stores recorded their settings
        have = {"suite": user.get("suite", want["suite"]),
                "seed": user.get("collect_seed", want["seed"])}
        if len(store):
            info = json.loads(str(store.meta("info")[0]))
            have["expert_noise_std"] = float(info.get("action_noise_std", 0.0))
    diff = {k: (have[k], want[k]) for k in have if k in want and have[k] != want[k]}
    if "physics" in diff:
        diff["physics"] = tuple(describe_briefly(d) for d in diff["physics"])
    if diff:
        what = "; ".join(f"{k}: store {a}, asked {b}" if k == "physics" else
                         f"{k}: store {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise ReuseError(f"{store.path} was collected with other settings ({what}). {fix}")
    over = {t: x.kept for t, x in tally.items() if x.kept > need[t]}
    if over:
        most = max(over.values())
        raise ReuseError(
            f"{store.path} already holds more episodes than asked for of {len(over)} task(s) "
            f"(up to {most}, asked {min(need[t] for t in over)}); training on it would use them "
            f"all. Pass episodes_per_task={most} to reuse it as it is, or another out= for a "
            f"{cfg.episodes_per_task}-per-task store"
        )


def collect(
    cfg: CollectConfig,
    *,
    progress: bool = True,
    on_episode: Callable[[str, int, bool], None] | None = None,
    targets: dict[str, int] | None = None,
) -> CollectSummary:
    """Collect ``cfg.episodes_per_task`` successful expert episodes per task of ``cfg.suite``.

    Resumes an existing store at ``cfg.out`` (unless ``cfg.overwrite``) collected with the same
    settings: tasks that already have enough episodes are skipped, others continue at their
    next attempt number.

    Args:
        cfg: The collection config.
        progress: Show a progress bar.
        on_episode: Called after every attempt with (task, attempt, success).
        targets: Episodes to hold per task instead of ``cfg.episodes_per_task`` for all (a
            curriculum's allocation); tasks not named get ``cfg.episodes_per_task``.
    """
    suite = sim.get_suite(cfg.suite)
    tasks = list(suite.train_tasks)
    physics = physics_from_config(None, cfg.randomize, cfg.distribution)
    ray_cfg = cfg_get(cfg, "ray")
    if uses_ray(ray_cfg) and cfg_get(ray_cfg, "address"):
        # before touching the store: a wrong address fails in a second and leaves nothing
        check_reachable(ray_cfg.address, float(cfg_get(ray_cfg, "connect_timeout_s", 10.0)))
    unknown = sorted(set(targets or {}) - set(tasks))
    if unknown:
        raise ValueError(f"collect targets name task(s) {unknown} outside {cfg.suite}")
    need = {t: int((targets or {}).get(t, cfg.episodes_per_task)) for t in tasks}
    # attempts count from the start of the store's task, so a larger target gets more of them
    max_attempts = {t: cfg.max_attempts_per_task or 3 * need[t] for t in tasks}
    out = Path(cfg.out)
    attrs = {"suite": cfg.suite, "collect_seed": int(cfg.seed),
             "reward_version": sim.REWARD_VERSION, "collect": cfg.settings()}
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # One owner for the whole command, taken before planning: a second collect on the same
    # out= is refused (naming this one) instead of computing the same missing work.
    with claim_store(out, create=dict(obs_dim=sim.OBS_DIM, action_dim=sim.ACTION_DIM,
                                      tasks=tasks, attrs=attrs, overwrite=cfg.overwrite)) as claim:
        return _collect_claimed(cfg, claim, tasks, need, physics, ray_cfg, max_attempts, t0,
                                progress, on_episode)


def _collect_claimed(cfg: CollectConfig, claim: Any, tasks: list[str], need: dict[str, int],
                     physics: Any, ray_cfg: Any, max_attempts: dict[str, int], t0: float,
                     progress: bool,
                     on_episode: Callable[[str, int, bool], None] | None) -> CollectSummary:
    out = Path(cfg.out)
    # Append mode waits for a previous writer (say, one still draining after its collector was
    # killed) and trims a crash tail, so the tally below is what is really committed.
    with claim.open("a", lock_timeout=60.0) as existing:
        if existing.obs_dim != sim.OBS_DIM or existing.action_dim != sim.ACTION_DIM:
            raise StoreError(
                f"{out} holds obs_dim={existing.obs_dim}, action_dim={existing.action_dim}; "
                f"Meta-World needs {sim.OBS_DIM}/{sim.ACTION_DIM}. Use another out= or "
                "overwrite=true"
            )
        tally = _existing_tally(existing, tasks)
        check_reuse(existing, cfg, tally, need)
        resumed = len(existing)
    todo = sum(max(0, need[name] - t.kept) for name, t in tally.items())
    if resumed:
        log.info("resuming %s: %d episodes present, %d to collect", out, resumed, todo)
    if todo == 0:
        ray_cfg = {"num_workers": 0}  # nothing to roll out: no need for Ray
    spec = agent_spec(expert_noise=cfg.expert_noise_std, clean_obs=cfg.expert_sees == "state")
    options = RolloutOptions(stop_on_success=cfg.stop_on_success, record="steps",
                             fast=cfg.fast)
    # The writer process first: its start-up (imports, opening the store) overlaps Ray's.
    with EpisodeWriter(out, claim=claim, background=cfg.background_writer,
                       wait_ready=False) as writer, \
            rollout_pool(ray_cfg, spec, what="robolearn collect", max_workers=max(1, todo)) as pool:
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        bar = tqdm(total=todo, desc=f"collect {cfg.suite}", unit="ep", disable=not progress)

        def record(traj: Trajectory) -> None:
            task, attempt = traj.task, traj.spec.index
            t = tally[task]
            t.attempts += 1
            t.new_attempts += 1
            if traj.success:
                t.successes += 1
                t.new_successes += 1
                writer.add_episode(
                    trajectory_rows(traj), task=task, source="expert", params=traj.spec.params,
                    seed=traj.seed, policy_id=EXPERT_ID,
                    info={"attempt": attempt, "action_noise_std": cfg.expert_noise_std},
                )
                t.kept += 1
                t.steps_kept += traj.length
                bar.update(1)
            if on_episode is not None:
                on_episode(task, attempt, traj.success)
            bar.set_postfix(task=task, success=f"{t.successes}/{t.attempts}", refresh=False)

        def attempt_spec(task: str, attempt: int) -> EpisodeSpec:
            seed = episode_seed(cfg.seed, task, attempt)
            params, rand_vec = physics.draw(task, seed)
            return EpisodeSpec(task, attempt, seed, params, rand_vec)

        run = (functools.partial(_collect_here, expert_noise_std=cfg.expert_noise_std,
                                 clean_obs=cfg.expert_sees == "state")
               if pool is None else functools.partial(_collect_on_ray, pool))
        env_steps = run(tasks, tally, need, max_attempts, attempt_spec, options, record)
        bar.close()
        workers = 0 if pool is None else len(pool.actors)
        replaced = 0 if pool is None else pool.replaced
        seconds = time.perf_counter() - t0  # the rollouts (and commits), not Ray's start-up
    with claim.open("a", lock_timeout=60.0) as store:
        _record_target(store, cfg, max(need.values()))
    for task in tasks:
        t = tally[task]
        if t.kept < need[task]:
            log.warning(
                "%s: only %d/%d successful episodes after %d attempts (max_attempts_per_task)",
                task, t.kept, need[task], t.attempts,
            )
    return CollectSummary(
        store=str(out), suite=cfg.suite, tasks=[tally[t] for t in tasks],
        seconds=seconds, env_steps=env_steps, resumed_episodes=resumed,
        ray_workers=workers, actors_replaced=replaced, startup_seconds=startup,
    )


def _record_target(store: EpisodeStore, cfg: CollectConfig, most: int) -> None:
    """Remember the settings (and the largest episodes_per_task asked) in the store's attrs."""
    have = store.attrs.get("user", {}).get("collect", {})
    settings = {**cfg.settings(), "episodes_per_task": max(
        int(have.get("episodes_per_task", 0) or 0), int(most))}
    if have != json.loads(json.dumps(settings)):
        store.update_user_attrs({"collect": settings})


SpecFn = Callable[[str, int], EpisodeSpec]
Record = Callable[[Trajectory], None]


def _collect_here(tasks: list[str], tally: dict[str, TaskTally], need: dict[str, int],
                  max_attempts: dict[str, int], attempt_spec: SpecFn, options: RolloutOptions,
                  record: Record, *, expert_noise_std: float = 0.0,
                  clean_obs: bool = False) -> int:
    """The single-process path: attempts one after the other, task by task."""
    env_steps = 0
    agent = ExpertAgent(expert_noise_std, clean_obs=clean_obs)
    for task in tasks:
        t = tally[task]
        if t.kept >= need[task]:
            continue
        env = sim.make_env(task, fast=options.fast)
        while t.kept < need[task] and t.attempts < max_attempts[task]:
            (traj,) = run_batch(agent, [env], [attempt_spec(task, t.attempts)], options)
            env_steps += traj.length
            record(traj)
        env.close()
    return env_steps


def _collect_on_ray(pool: Any, tasks: list[str], tally: dict[str, TaskTally],
                    need: dict[str, int], max_attempts: dict[str, int], attempt_spec: SpecFn,
                    options: RolloutOptions, record: Record) -> int:
    """The Ray path: attempts run on the pool's actors, results are recorded in the order the
    single-process path records them (task by task, attempt by attempt), so the store ends up
    with the same episodes in the same order, and a resume works the same.

    A task gets as many attempts in flight as it would need if they all succeeded; a failed
    attempt makes room for one more. Each actor keeps to its own task while it has work
    (:class:`~robolearn.rollout.TaskAffinity`); results that arrive ahead of their turn wait
    in memory, for at most ``2 × workers`` tasks ahead of the one being recorded.
    """
    order = [t for t in tasks if tally[t].kept < need[t] and tally[t].attempts < max_attempts[t]]
    next_attempt = {t: tally[t].attempts for t in order}
    unprocessed = dict.fromkeys(order, 0)  # dispatched, not yet recorded
    failed = dict.fromkeys(order, 0)  # finished as failures, not yet recorded
    ready: dict[str, dict[int, Trajectory]] = {t: {} for t in order}
    finished: set[str] = set()
    affinity = TaskAffinity(order)
    # Tasks ahead of the one being recorded that may start: bounds what waits in memory.
    lookahead = 2 * len(pool.actors)
    env_steps = 0
    cursor = 0

    def has_work(task: str) -> bool:
        t = tally[task]
        return (task not in finished and next_attempt[task] < max_attempts[task]
                and t.kept + unprocessed[task] - failed[task] < need[task])

    def next_call(slot: int) -> tuple | None:
        task = affinity.pick(slot, has_work, order[cursor:cursor + lookahead])
        if task is None:
            return None
        attempt = next_attempt[task]
        next_attempt[task] += 1
        unprocessed[task] += 1
        return (task, attempt), ([attempt_spec(task, attempt)], options, 1), {}

    for (task, attempt), ((traj,), _videos) in pool.run(next_call):
        env_steps += traj.length
        if task in finished:
            continue  # a speculative attempt past what the task needed
        ready[task][attempt] = traj
        failed[task] += not traj.success
        while cursor < len(order):  # record everything whose turn has come
            task = order[cursor]
            t = tally[task]
            if t.kept >= need[task] or t.attempts >= max_attempts[task]:
                finished.add(task)
                ready[task].clear()
                cursor += 1
                continue
            if t.attempts not in ready[task]:
                break
            traj = ready[task].pop(t.attempts)
            unprocessed[task] -= 1
            failed[task] -= not traj.success
            record(traj)
    return env_steps


def summary_table(summary: CollectSummary, run_dir: Path) -> None:
    """Prints the per-task table and the totals (the command's summary)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"robolearn collect {summary.suite} → {summary.store}")
    for col in ("task", "episodes", "attempts", "expert success", "mean length"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for t in summary.tasks:
        table.add_row(
            t.task, str(t.kept), str(t.attempts), f"{t.success_rate:.2f}", f"{t.mean_length:.1f}"
        )
    total_att = sum(t.attempts for t in summary.tasks)
    total_succ = sum(t.successes for t in summary.tasks)
    table.add_row(
        "total", str(summary.episodes), str(total_att),
        f"{total_succ / total_att:.2f}" if total_att else "-", "", style="bold",
    )
    console = Console()
    console.print(table)
    rate = summary.env_steps / summary.seconds if summary.seconds else 0.0
    console.print(
        f"{summary.episodes} episodes in {summary.store} "
        f"({summary.resumed_episodes} were already there); "
        f"{summary.env_steps} env steps this run in {summary.seconds:.1f} s ({rate:.0f} steps/s"
        + (f" on {summary.ray_workers} Ray actors" if summary.ray_workers else ", in this process")
        + f"; start-up {summary.startup_seconds:.1f} s"
        + (f"; {summary.actors_replaced} lost actor(s) replaced" if summary.actors_replaced
           else "")
        + f"). Run directory: {run_dir}"
    )


def run_collect(cfg: CollectConfig, run_dir: Path) -> dict[str, Any]:
    """``robolearn collect``: collect, print the summary table, return the summary."""
    summary = collect(cfg, progress=cfg.progress)
    summary_table(summary, run_dir)
    return summary.to_dict()
