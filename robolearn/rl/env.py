"""A Gymnasium env over a curriculum's task distribution: ``robolearn/MetaWorld-v0``.

:class:`TaskEnv` holds one Meta-World env per task (built once, reused) and draws every episode
from a ``curricula.TaskDistribution``: the task, its ``TaskParams`` (a reality gap: gains,
latency, friction, ...), optionally its initial condition, and a goal seed. :meth:`TaskEnv.
set_task` swaps the distribution (or a single point) in and applies it at the next reset, never
rebuilding an env: the hook RLlib curriculum callbacks use on every env runner
(``env_runner.env.unwrapped.call("set_task", ...)``).

Observations: ``[obs (Do), one-hot of the task (K)]`` float32, ``K = len(tasks)``; actions: the
4-d Meta-World action in [-1, 1]. The reward is the pinned Meta-World reward
(``sim.REWARD_VERSION``) times ``reward_scale``, plus ``success_bonus`` at the first success
step; with ``terminate_on_success`` an episode ends there (the evaluation protocol: success at
any step). Every step's ``info`` carries ``success`` (this step), ``episode_success`` (at any
step so far), ``task``, ``arm`` (the distribution component it came from) and ``mw_reward``
(the unscaled reward).

Goal seeds are drawn from the env's own stream, seeded by ``(seed, worker_index, reset seed)``,
and never one of the evaluation's held-out goals (``episode_seed(heldout_seed, task, i)``,
``i < heldout_episodes``), so an evaluation with ``seed=heldout_seed`` is on goals the RL
never trained on.

Example:
    >>> import gymnasium as gym
    >>> import robolearn.rl                                   # registers the ids
    >>> env = gym.make("robolearn/MetaWorld-v0", tasks=["reach-v3", "push-v3"])
    >>> obs, info = env.reset(seed=0)
    >>> env.unwrapped.set_task("push-v3")                     # from the next reset on
    >>> obs, info = env.reset()
    >>> info["task"]
    'push-v3'
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

log = logging.getLogger(__name__)

ENV_ID = "robolearn/MetaWorld-v0"
RESIDUAL_ENV_ID = "robolearn/MetaWorldResidual-v0"  # robolearn.rl.residual.ResidualEnv
"""Gymnasium id of :class:`TaskEnv`."""
DEFAULT_HELDOUT_SEED = 1000  # robolearn.evaluate's default evaluation seed
DEFAULT_HELDOUT_EPISODES = 200
MAX_CACHED_ENVS = 16  # Meta-World envs kept per TaskEnv (MT50: least recently used closed)


def as_distribution(spec: Any, tasks: Sequence[str] | None = None) -> Any:
    """A ``curricula.TaskDistribution`` from what :meth:`TaskEnv.set_task` accepts.

    Args:
        spec: A ``TaskDistribution``; its JSON dict (``format: robolearn.task_distribution``);
            a task name (that task, stock physics); a ``TaskSample`` or a dict ``{"task",
            "params" (dict or TaskParams, optional), "rand_vec" (optional)}`` (one point).
        tasks: The tasks the caller can run (``None``: any); every task of the distribution
            must be one of them.

    Raises:
        ValueError: Anything else, or a task outside ``tasks``.
    """
    import sim
    from curricula import Component, EmpiricalInit, EmpiricalParams, TaskDistribution, TaskSample

    if isinstance(spec, TaskDistribution):
        dist = spec
    elif isinstance(spec, dict) and spec.get("format") == "robolearn.task_distribution":
        dist = TaskDistribution.from_dict(spec)
    elif isinstance(spec, (str, TaskSample, dict)):
        if isinstance(spec, str):
            task, params, rand_vec = spec, sim.TaskParams(), None
        elif isinstance(spec, TaskSample):
            task, params, rand_vec = spec.task, spec.params, spec.rand_vec
        else:
            unknown = sorted(set(spec) - {"task", "params", "rand_vec"})
            if unknown or "task" not in spec:
                raise ValueError(
                    f"set_task got a dict with keys {sorted(spec)}; expected a task distribution "
                    "(format: robolearn.task_distribution) or a point {task, params, rand_vec}"
                )
            task, rand_vec = spec["task"], spec.get("rand_vec")
            p = spec.get("params") or {}
            params = p if isinstance(p, sim.TaskParams) else sim.TaskParams(**p)
        changed = {k: v for k, v in params.to_dict().items()
                   if v != getattr(sim.TaskParams(), k)}
        factors: list[Any] = []
        if changed:
            factors.append(EmpiricalParams(list(changed), [tuple(changed.values())]))
        if rand_vec is not None:
            factors.append(EmpiricalInit({task: [tuple(float(x) for x in rand_vec)]}))
        dist = TaskDistribution([task], [Component("point", tuple(factors))],
                                description="a single point (set_task)")
    else:
        raise ValueError(
            f"set_task got a {type(spec).__name__}; expected a curricula.TaskDistribution, its "
            "JSON dict, a task name, a TaskSample or {task, params, rand_vec}"
        )
    if tasks is not None:
        outside = [t for t in dist.task_names if t not in tasks]
        if outside:
            raise ValueError(
                f"the task distribution has task(s) {outside} this env cannot run; it was built "
                f"for {list(tasks)} (the observation's task one-hot and the base policy are "
                "fixed at construction). Build the env with those tasks"
            )
    return dist


class TaskEnv(gym.Env):
    """Meta-World episodes drawn from a task distribution (see the module docstring).

    Args:
        tasks: The tasks this env can run (the one-hot order). Default: the distribution's.
        distribution: What :func:`as_distribution` accepts; default: ``tasks`` uniformly, stock
            physics.
        horizon: Steps per episode at most (<= 500, Meta-World's horizon).
        reward_scale: Multiplies Meta-World's reward (at most 10 per step).
        success_bonus: Added at the first success step of an episode.
        terminate_on_success: End the episode at its first success.
        goal_observable: Goal in the observation (MT suites) or hidden (ML).
        fast: sim's fast step (bit-identical results).
        seed: Base seed of the episode stream.
        worker_index: Mixed into the stream (RLlib's env runner index), so runners differ.
        heldout_seed: Evaluation seed whose goals are never drawn (``None``: none excluded).
        heldout_episodes: How many goals per task of ``heldout_seed`` are excluded.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        tasks: Sequence[str] | None = None,
        distribution: Any = None,
        *,
        horizon: int = 500,
        reward_scale: float = 0.01,
        success_bonus: float = 10.0,
        terminate_on_success: bool = True,
        goal_observable: bool = True,
        fast: bool = True,
        seed: int = 0,
        worker_index: int = 0,
        heldout_seed: int | None = DEFAULT_HELDOUT_SEED,
        heldout_episodes: int = DEFAULT_HELDOUT_EPISODES,
    ) -> None:
        import sim

        super().__init__()
        if tasks is None and distribution is None:
            raise ValueError("TaskEnv needs tasks=[...] or a distribution=")
        if tasks is not None:
            tasks = [tasks] if isinstance(tasks, str) else list(tasks)
            for t in tasks:
                sim.resolve_task(t)  # unknown names raise with the closest match
            if len(set(tasks)) != len(tasks) or not tasks:
                raise ValueError(f"TaskEnv: Got tasks={tasks}, expected distinct task names")
        dist = as_distribution(distribution if distribution is not None else
                               _uniform(tasks), tasks)
        self.tasks: tuple[str, ...] = tuple(tasks if tasks is not None else dist.task_names)
        if not 1 <= int(horizon) <= sim.HORIZON:
            raise ValueError(f"TaskEnv: Got horizon={horizon}, expected 1..{sim.HORIZON}")
        if not reward_scale > 0 or not success_bonus >= 0:
            raise ValueError(f"TaskEnv: Got reward_scale={reward_scale}, success_bonus="
                             f"{success_bonus}; expected reward_scale > 0, success_bonus >= 0")
        self.horizon = int(horizon)
        self.reward_scale = float(reward_scale)
        self.success_bonus = float(success_bonus)
        self.terminate_on_success = bool(terminate_on_success)
        self.goal_observable = bool(goal_observable)
        self.fast = bool(fast)
        self.seed_base = int(seed)
        self.worker_index = int(worker_index or 0)
        self._index = {t: i for i, t in enumerate(self.tasks)}
        self._heldout: set[tuple[str, int]] = set()
        if heldout_seed is not None and heldout_episodes > 0:
            from robolearn.rollout.seeds import eval_seeds

            self._heldout = {(t, s) for t, ss in
                             eval_seeds(int(heldout_seed), self.tasks, int(heldout_episodes)).items()
                             for s in ss}
        self.heldout_seed, self.heldout_episodes = heldout_seed, int(heldout_episodes)
        self._dist = dist
        self._next_dist: Any = None
        self._envs: OrderedDict[str, Any] = OrderedDict()
        self._rng = np.random.default_rng([self.seed_base, self.worker_index])
        self._finished: list[dict[str, Any]] = []
        self._episode: dict[str, Any] | None = None
        self.raw_obs: np.ndarray | None = None  # the env's float64 observation (for the base)
        dim = sim.OBS_DIM + len(self.tasks)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (sim.ACTION_DIM,), dtype=np.float32)

    # ------------------------------------------------------------------ the curriculum hook
    def set_task(self, spec: Any) -> int:
        """Uses ``spec`` (a distribution or a point, see :func:`as_distribution`) from the next
        reset on; the running episode is not touched. Returns the distribution's version."""
        self._next_dist = as_distribution(spec, self.tasks)
        return int(self._next_dist.version)

    @property
    def task_distribution(self) -> Any:
        """The distribution episodes are drawn from now (a pending ``set_task`` excluded)."""
        return self._dist

    def pop_episode_stats(self) -> list[dict[str, Any]]:
        """The episodes finished since the last call: ``{task, arm, success, return, length,
        version}`` each (what the curriculum scores arms with); clears the list."""
        out, self._finished = self._finished, []
        return out

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts an episode drawn from the distribution.

        Args:
            seed: Restarts the episode stream from ``(seed base, worker index, seed)``.
            options: ``{"episode": {"task", "seed", "params", "rand_vec"}}`` runs exactly that
                episode (goal seed, TaskParams, initial condition), as the rollout engine does;
                nothing is drawn.
        """
        import sim

        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng([self.seed_base, self.worker_index, int(seed)])
        if self._next_dist is not None:
            self._dist, self._next_dist = self._next_dist, None
        unknown = sorted(set(options or {}) - {"episode"})
        if unknown:
            raise ValueError(f"TaskEnv.reset: unknown option(s) {unknown}; expected 'episode'")
        pinned = (options or {}).get("episode")
        if pinned is not None:
            task = pinned["task"]
            if task not in self._index:
                raise ValueError(f"TaskEnv.reset: episode task {task!r} is not one of {self.tasks}")
            p = pinned.get("params")
            params = p if isinstance(p, sim.TaskParams) else sim.TaskParams(**(p or {}))
            rand_vec, goal_seed, arm = pinned.get("rand_vec"), int(pinned["seed"]), "pinned"
        else:
            sample = self._dist.sample(self._rng)
            task, params, rand_vec, arm = (sample.task, sample.params, sample.rand_vec,
                                           sample.component)
            goal_seed = self._goal_seed(task)
        env = self._env(task)
        env.set_params(params)  # as the rollout engine: physics first, then the seeded reset
        opts = {"rand_vec": list(rand_vec)} if rand_vec is not None else None
        obs, _ = env.reset(seed=goal_seed, options=opts) if opts else env.reset(seed=goal_seed)
        self._episode = {"task": task, "arm": arm, "seed": goal_seed, "steps": 0,
                         "success": False, "return": 0.0, "version": int(self._dist.version),
                         "params": params}
        self.raw_obs = obs
        return self._observe(obs, task), {"task": task, "arm": arm, "seed": goal_seed,
                                          "success": False, "episode_success": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One Meta-World step; see the module docstring for reward, termination and info."""
        ep = self._episode
        if ep is None:
            raise RuntimeError("TaskEnv.step called before reset(); call env.reset() first")
        env = self._envs[ep["task"]]
        obs, mw_reward, _term, inner_trunc, info = env.step(action)
        ep["steps"] += 1
        success = bool(info["success"])
        first = success and not ep["success"]
        if not ep["success"]:  # the evaluation's return: up to the first success
            ep["return"] += float(mw_reward)
        ep["success"] = ep["success"] or success
        reward = self.reward_scale * float(mw_reward) + (self.success_bonus if first else 0.0)
        terminated = bool(self.terminate_on_success and ep["success"])
        truncated = bool(not terminated and (inner_trunc or ep["steps"] >= self.horizon))
        if terminated or truncated:
            self._finished.append({"task": ep["task"], "arm": ep["arm"],
                                   "success": ep["success"], "return": ep["return"],
                                   "length": ep["steps"], "version": ep["version"]})
            self._episode = None  # the next step needs a reset (RLlib's vector env does it)
        self.raw_obs = obs
        out = {"task": ep["task"], "arm": ep["arm"], "success": success,
               "episode_success": ep["success"], "mw_reward": float(mw_reward)}
        return self._observe(obs, ep["task"]), reward, terminated, truncated, out

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    # ------------------------------------------------------------------ helpers
    def task_onehot(self, task: str) -> np.ndarray:
        """(K,) float32 one-hot of ``task`` in this env's task order."""
        v = np.zeros(len(self.tasks), np.float32)
        v[self._index[task]] = 1.0
        return v

    def _observe(self, obs: np.ndarray, task: str) -> np.ndarray:
        return np.concatenate([np.asarray(obs, np.float32), self.task_onehot(task)])

    def _goal_seed(self, task: str) -> int:
        while True:  # the held-out goals are ~1e-7 of the seed space: one draw almost always
            s = int(self._rng.integers(0, 2**32, dtype=np.uint64))
            if (task, s) not in self._heldout:
                return s

    def _env(self, task: str) -> Any:
        import sim

        env = self._envs.pop(task, None)
        if env is None:
            env = sim.make_env(task, goal_observable=self.goal_observable, fast=self.fast)
            while len(self._envs) >= MAX_CACHED_ENVS:
                _, old = self._envs.popitem(last=False)
                old.close()
        self._envs[task] = env  # most recently used last
        return env


def _uniform(tasks: Sequence[str] | None) -> Any:
    from curricula import Component, TaskDistribution

    return TaskDistribution(list(tasks or []), [Component("stock")],
                            description="uniform over tasks, stock physics")


def register_envs() -> None:
    """Registers :data:`ENV_ID` and :data:`RESIDUAL_ENV_ID` with Gymnasium (idempotent)."""
    for env_id, entry in ((ENV_ID, "robolearn.rl.env:TaskEnv"),
                          (RESIDUAL_ENV_ID, "robolearn.rl.residual:ResidualEnv")):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry)
