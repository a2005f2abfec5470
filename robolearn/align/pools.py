"""Trajectory pools of mixed quality for PEARL: collected into an episode store, read back as arrays.

A pool is one task's trajectories from agents of graded quality — Meta-World's scripted experts
with increasing action noise (by default each action replaced by a random one with probability
ε: :class:`NoisyExpertAgent`; or Gaussian noise of std σ), policy checkpoints (e.g. an early and a late one) and uniformly
random actions — each run for the whole ``horizon`` (no early stop at success, so the returns
of two trajectories sum the same number of steps and the teacher can compare them). Every
episode is stored with its per-step reward of the pinned Meta-World reward version
(``sim.REWARD_VERSION``), Meta-World's per-step info, and in its ``info`` which agent made it.

Each episode is a pure function of (task, goal seed, agent), so a pool is reproducible
episode by episode and an interrupted collection can simply be run again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

POOL_FORMAT = "robolearn.pearl_pool"
BATCH = 10  # lock-step envs per batch


class NoisyExpertAgent:
    """Meta-World's scripted expert whose action, at each step with probability ε, is replaced
    by a uniform random one (ε = 0: the expert; ε = 1: random actions). Unlike Gaussian noise,
    which the experts' saturating controllers mostly absorb (they still succeed at std 1 on
    most tasks), replacement degrades quality gradually and alike across tasks. Seeded per
    episode by its env's reset seed."""

    def __init__(self, epsilon: float) -> None:
        from robolearn.rollout import ExpertAgent

        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"Got epsilon={epsilon}, expected 0 <= epsilon <= 1")
        self.epsilon = float(epsilon)
        self.expert = ExpertAgent()
        self.policy_id = f"scripted-expert-eps{self.epsilon:g}"
        self._envs: list[Any] = []
        self._rngs: list[np.random.Generator] = []

    def attach(self, envs: list[Any]) -> None:
        """Binds the batch's envs (the expert reads the simulator; seeds come from them)."""
        self.expert.attach(envs)
        self._envs = list(envs)

    def reset(self) -> None:
        """New episodes: the expert's and the replacement streams restart from the seeds."""
        self.expert.reset()
        self._rngs = [np.random.default_rng([int(e.seed_used or 0), 11]) for e in self._envs]

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        """(B, Do) → (B, Da) float32: the expert's actions, some replaced by random ones."""
        actions = np.array(self.expert.act(obs, task), dtype=np.float32)
        for j, g in enumerate(self._rngs):
            if g.random() < self.epsilon:
                actions[j] = g.uniform(-1.0, 1.0, actions.shape[1])
        return actions


class RandomAgent:
    """Uniform random actions in [-1, 1]^Da, seeded per episode by its env's reset seed."""

    policy_id = "random"

    def __init__(self) -> None:
        self._envs: list[Any] = []
        self._rngs: list[np.random.Generator] = []

    def attach(self, envs: list[Any]) -> None:
        """Binds the batch's envs (their reset seeds seed the action streams)."""
        self._envs = list(envs)

    def reset(self) -> None:
        """New episodes: one generator per slot from its env's seed."""
        self._rngs = [np.random.default_rng([int(e.seed_used or 0), 7]) for e in self._envs]

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        """(B, Do) → (B, Da) float32 uniform actions."""
        import sim

        return np.stack([g.uniform(-1.0, 1.0, sim.ACTION_DIM) for g in self._rngs]).astype(
            np.float32)


def pool_plan(cfg: Any) -> list[dict[str, Any]]:
    """The pool's agents and their episode counts: ``[{"kind", "noise"/"checkpoint", "count"}]``.

    Random and checkpoint trajectories take their fractions (rounded), the scripted experts
    share the rest equally over ``cfg.noise`` (earlier levels get the remainder first).
    """
    n = int(cfg.size)
    n_random = int(round(n * cfg.random_fraction))
    n_ckpt = int(round(n * cfg.checkpoint_fraction)) if cfg.checkpoints else 0
    n_expert = n - n_random - n_ckpt
    plan: list[dict[str, Any]] = []
    levels = list(cfg.noise)
    if n_expert > 0 and not levels:
        n_random += n_expert  # the fractions were validated to sum to 1 in that case
        n_expert = 0
    for k, level in enumerate(levels):
        count = n_expert // len(levels) + (1 if k < n_expert % len(levels) else 0)
        if count:
            plan.append({"kind": "expert", "noise": float(level), "noise_kind": cfg.noise_kind,
                         "count": count})
    ckpts = list(cfg.checkpoints)
    for k, path in enumerate(ckpts):
        count = n_ckpt // len(ckpts) + (1 if k < n_ckpt % len(ckpts) else 0)
        if count:
            plan.append({"kind": "checkpoint", "checkpoint": str(path), "count": count})
    if n_random:
        plan.append({"kind": "random", "count": n_random})
    return plan


def collect_pool(path: str | Path, task: str, cfg: Any, *, fast: bool = True,
                 progress: bool = True) -> Path:
    """Roll out ``cfg`` (a :class:`~robolearn.align.pearl_config.PoolConfig`) on ``task`` into
    a new episode store at ``path`` (built under a temporary name: it appears complete or not
    at all). Experts' episodes have ``source=expert``, the others ``source=policy``."""
    import sim
    from robolearn.data import build_store
    from robolearn.rollout import (
        EpisodeSpec,
        ExpertAgent,
        RolloutOptions,
        episode_seed,
        load_agent,
        make_envs,
        run_batch,
        store_extras,
        trajectory_rows,
    )

    path = Path(path)
    options = RolloutOptions(horizon=cfg.horizon, stop_on_success=False, record="steps",
                             fast=fast)
    extras = store_extras(options, sim.ACTION_DIM)
    plan = pool_plan(cfg)
    attrs = {"format": POOL_FORMAT, "task": task, "reward_version": sim.REWARD_VERSION,
             "horizon": cfg.horizon, "seed": cfg.seed, "plan": plan}
    envs = make_envs(task, BATCH, fast=fast)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.size, desc=f"pool {task}", unit="ep", leave=False)
    index = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with build_store(path, sim.OBS_DIM, sim.ACTION_DIM, extras=extras, tasks=[task],
                     attrs=attrs) as store:
        for entry in plan:
            if entry["kind"] == "expert":
                agent: Any = (NoisyExpertAgent(entry["noise"]) if cfg.noise_kind == "replace"
                              else ExpertAgent(task_noise=entry["noise"]))
            elif entry["kind"] == "random":
                agent = RandomAgent()
            else:
                agent = load_agent(entry["checkpoint"], "cpu")
                known = getattr(agent, "tasks", None)
                if known is not None and task not in known:
                    raise ValueError(f"pool.checkpoints: {entry['checkpoint']} was not trained "
                                     f"on {task} (its tasks: {list(known)}); give checkpoints "
                                     "of a policy that knows the task")
            for start in range(0, entry["count"], BATCH):
                b = min(BATCH, entry["count"] - start)
                specs = [EpisodeSpec(task, index + j, episode_seed(cfg.seed, task, index + j))
                         for j in range(b)]
                for traj in run_batch(agent, envs[:b], specs, options):
                    info = {k: v for k, v in entry.items() if k != "count"}
                    info |= {"return": float(traj.steps["reward"].sum()),
                             "success": bool(traj.success), "first_success": traj.first_success}
                    store.add_episode(trajectory_rows(traj, tuple(extras)), task=task,
                                      source="expert" if entry["kind"] == "expert" else "policy",
                                      params=traj.spec.params, seed=traj.seed,
                                      policy_id=traj.policy_id, info=info)
                index += b
                if bar is not None:
                    bar.update(b)
    if bar is not None:
        bar.close()
    log.info("pool of %d %s trajectories in %s", index, task, path)
    return path


@dataclass
class Pool:
    """One task's trajectories as arrays (all lists / arrays in store-episode order).

    Attributes:
        path: The store. task: Its task.
        episodes: (n,) store indices of the pool's episodes.
        seeds: (n,) goal seeds.
        obs, action: n arrays (T_i, Do), (T_i, Da).
        reward: n arrays (T_i,) of the pinned Meta-World reward.
        returns: (n,) true returns Σ_t r_t (the teacher's signal; never a learner's input).
        success: (n,) success at any step. length: (n,) steps.
        progress: (n,) 1 − final/initial object-to-target distance, in [0, 1] (task-agnostic).
        kind: (n,) which agent made each (``expert:0.5``, ``random``, ``checkpoint:<path>``).
    """

    path: Path
    task: str
    episodes: np.ndarray
    seeds: np.ndarray
    obs: list[np.ndarray]
    action: list[np.ndarray]
    reward: list[np.ndarray]
    returns: np.ndarray
    success: np.ndarray
    length: np.ndarray
    progress: np.ndarray
    kind: list[str]

    def __len__(self) -> int:
        return len(self.episodes)

    def features(self) -> list[np.ndarray]:
        """Per-step [obs, action] of each trajectory (the GW and reward-model input)."""
        from policies.alignment import step_features

        return step_features(self.obs, self.action)

    def anchor(self) -> np.ndarray:
        """The task-agnostic anchor score of the orientation check: success + progress."""
        return self.success.astype(np.float64) + self.progress


def load_pool(path: str | Path, task: str | None = None) -> Pool:
    """Read a pool store (any episode store with obs, action, reward, success and, for the
    progress feature, ``info_obj_to_target``): the complete episodes of ``task`` (default: the
    store's only task)."""
    from policies.alignment import distance_progress
    from robolearn.data import EpisodeStore

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pool store {path} not found; collect one (leave the store "
                                "option empty) or give an existing episode store")
    with EpisodeStore.open(path, mode="r") as store:
        tasks = store.tasks
        if task is None:
            if len(tasks) != 1:
                raise ValueError(f"{path} holds tasks {tasks}; name the one to use")
            task = tasks[0]
        if task not in tasks:
            raise ValueError(f"{path} holds no episodes of {task!r}; its tasks: {tasks}")
        names = store.meta("task")
        eps = np.array([i for i in store.complete_episodes() if str(names[i]) == task],
                       dtype=np.int64)
        if len(eps) < 2:
            raise ValueError(f"{path} has {len(eps)} complete episode(s) of {task}; a pool "
                             "needs at least 2")
        keys = ["obs", "action", "reward", "success"]
        has_dist = "info_obj_to_target" in store.spec
        arrays = store.load(keys + (["info_obj_to_target"] if has_dist else []))
        ends = store.episode_ends
        seeds = store.meta("seed")[eps]
        infos = store.meta("info")[eps]
    starts = np.concatenate([[0], ends[:-1]])
    sl = [slice(int(starts[i]), int(ends[i])) for i in eps]
    obs = [arrays["obs"][s] for s in sl]
    reward = [arrays["reward"][s].astype(np.float64) for s in sl]
    success = np.array([bool(arrays["success"][s].any()) for s in sl])
    if has_dist:
        d = [arrays["info_obj_to_target"][s] for s in sl]
        progress = distance_progress(np.array([x[0] for x in d]), np.array([x[-1] for x in d]))
    else:
        progress = np.zeros(len(eps))
    import json

    kinds = []
    for raw in infos:
        info = json.loads(str(raw))
        kind = str(info.get("kind", "unknown"))
        if kind == "expert":
            kind += f":{info.get('noise', 0.0):g}"
        elif kind == "checkpoint":
            kind += f":{Path(str(info.get('checkpoint', ''))).name}"
        kinds.append(kind)
    return Pool(path=path, task=task, episodes=eps, seeds=np.asarray(seeds, np.int64), obs=obs,
                action=[arrays["action"][s] for s in sl], reward=reward,
                returns=np.array([r.sum() for r in reward]), success=success,
                length=np.array([s.stop - s.start for s in sl], np.int64), progress=progress,
                kind=kinds)
