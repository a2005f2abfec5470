"""The curriculum of RLlib fine-tuning: a learning-progress sampler over (task, region) arms.

RLlib's new API stack has no task-settable envs (``env_task_fn`` raises): a curriculum is an
``RLlibCallback``. :class:`CurriculumCallback`, after every training iteration
(``on_train_result``):

1. pulls the episodes each env runner finished (``env.unwrapped.call("pop_episode_stats")``:
   task, arm, success; exact counts, not RLlib's windowed metric means);
2. scores every arm with its success rate once it has ``min_episodes`` new episodes
   (:meth:`Curriculum.observe` / :meth:`Curriculum.update`) in a ``curricula.LPSampler``;
3. turns the sampler's probabilities into the next ``curricula.TaskDistribution`` version and
   pushes it to every env runner (``env.unwrapped.call("set_task", dist)``; the envs apply it
   at their next reset, nothing is rebuilt).

``on_env_runners_recreated`` re-applies the current distribution to restarted runners (a new
runner starts from the config's initial distribution). The curriculum's state (sampler windows
and generator, pending counts, the current distribution) is plain JSON
(:meth:`Curriculum.state_dict`), saved next to every RLlib checkpoint by ``robolearn.rl.
finetune`` and restored with it: RLlib does not restore callback state by itself.

Arms: the curriculum starts from a base distribution (a box of TaskParams split into regions
by ``curricula.RegionGrid``, or a distribution file with components); an arm is one (task,
component) pair, named ``"<task>|<component>"``, and the distribution it produces has one
component per arm with the arm's probability as its weight, so every drawn episode says its
arm.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

log = logging.getLogger(__name__)

MODES = ("lp", "uniform")
SCORES = ("success", "return")
MAX_REWARD = 10.0  # Meta-World's per-step reward is in [0, 10]
STATE_FORMAT = "robolearn.rl_curriculum"
STATE_VERSION = 1


class ArmSpace:
    """The (task, component) arms of a base distribution and the distributions over them."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.arms: list[str] = []
        self._arm: dict[str, tuple[str, Any]] = {}
        for task in base.task_names:
            for comp in base.components:
                if comp.applies_to(task) and comp.weight > 0:
                    name = f"{task}|{comp.name}"
                    self.arms.append(name)
                    self._arm[name] = (task, comp)

    def task_of(self, arm: str) -> str:
        """The task of ``arm``."""
        return self._arm[arm][0]

    def distribution(self, probabilities: dict[str, float], previous: Any = None,
                     description: str = "") -> Any:
        """The distribution that draws arm a with probability ``probabilities[a]``: the next
        version of ``previous`` (or version 1 when there is none)."""
        from curricula import Component, TaskDistribution

        tasks: dict[str, float] = {}
        for arm, (task, _) in self._arm.items():
            tasks[task] = tasks.get(task, 0.0) + float(probabilities[arm])
        # P(arm) = P(task) · P(component | task); a task never drawn (P = 0) keeps equal
        # component weights, since every task needs a component with a positive weight.
        comps = tuple(Component(arm, comp.factors,
                                float(probabilities[arm]) / tasks[task] if tasks[task] > 0 else 1.0,
                                tasks=(task,), provenance=comp.provenance)
                      for arm, (task, comp) in self._arm.items())
        if previous is None:
            return TaskDistribution(tasks, comps, description=description)
        return previous.child(tasks=tasks, components=comps, description=description)


class Curriculum:
    """Learning-progress (or uniform) allocation of episodes over arms; JSON state.

    Args:
        base: The base ``curricula.TaskDistribution`` (its (task, component) pairs are the arms).
        mode: ``"lp"`` (``curricula.LPSampler``'s probabilities) or ``"uniform"`` (fixed; the
            sampler still records each arm's scores, for the report).
        window, epsilon, floor, seed: The ``LPSampler``'s.
        min_episodes: Episodes an arm needs before its mean score is one sampler score.
        score: What an episode scores: ``"success"`` (0/1) or ``"return"`` (its mean
            Meta-World reward per step / 10, in [0, 1]: a dense signal where no arm succeeds
            yet).
    """

    def __init__(self, base: Any, *, mode: str = "lp", window: int = 10, epsilon: float = 0.1,
                 floor: float | None = None, min_episodes: int = 4, seed: int = 0,
                 score: str = "success") -> None:
        from curricula import LPSampler

        if mode not in MODES:
            raise ValueError(f"Got curriculum.mode={mode!r}, expected one of {MODES}")
        if score not in SCORES:
            raise ValueError(f"Got curriculum.score={score!r}, expected one of {SCORES}")
        self.score = score
        if int(min_episodes) < 1:
            raise ValueError(f"Got curriculum.min_episodes={min_episodes}, expected >= 1")
        self.mode = mode
        self.min_episodes = int(min_episodes)
        self.space = ArmSpace(base)
        self.sampler = LPSampler(self.space.arms, window=window, epsilon=epsilon, floor=floor,
                                 seed=seed)
        self.pending: dict[str, list[float]] = {a: [0.0, 0] for a in self.space.arms}
        self.updates = 0
        self._pushed = self.probabilities()
        self.distribution = self.space.distribution(self._pushed, description="curriculum start")

    @property
    def arms(self) -> list[str]:
        return list(self.space.arms)

    def probabilities(self) -> dict[str, float]:
        """``{arm: P(arm)}`` of the next episodes."""
        if self.mode == "uniform":
            return {a: 1.0 / len(self.space.arms) for a in self.space.arms}
        return self.sampler.probabilities()

    def observe(self, episodes: Sequence[dict[str, Any]]) -> None:
        """Counts finished episodes (``{"arm", "success", "return", "length"}``) towards their
        arm's score."""
        for ep in episodes:
            arm = ep.get("arm")
            if arm in self.pending:
                self.pending[arm][0] += self.episode_score(ep)
                self.pending[arm][1] += 1

    def episode_score(self, ep: dict[str, Any]) -> float:
        """One episode's score in [0, 1] (see ``score``)."""
        if self.score == "success":
            return float(bool(ep["success"]))
        per_step = float(ep["return"]) / max(int(ep["length"]), 1) / MAX_REWARD
        return min(max(per_step, 0.0), 1.0)

    def update(self) -> bool:
        """Scores every arm with ``min_episodes`` pending episodes; a new distribution version
        when the probabilities change. Returns whether there is a new version to push."""
        scored = {}
        for arm, (total, n) in self.pending.items():
            if n >= self.min_episodes:
                self.sampler.update(arm, min(max(total / n, 0.0), 1.0))
                scored[arm] = total / n
                self.pending[arm] = [0.0, 0]
        if not scored:
            return False
        self.updates += 1
        probs = self.probabilities()
        if probs == self._pushed:
            return False  # uniform mode, one arm, or no change: nothing new to push
        self._pushed = probs
        self.distribution = self.space.distribution(
            probs, self.distribution, description=f"learning-progress update {self.updates}")
        return True

    def summary(self) -> dict[str, Any]:
        """Per arm: probability, ALP, the last score; the distribution's version."""
        lp = self.sampler.progress()
        probs = self.probabilities()
        return {"version": int(self.distribution.version), "updates": self.updates,
                "arms": {a: {"p": round(probs[a], 4),
                             "alp": None if lp[a] is None else round(lp[a], 4),
                             "last": (self.sampler.scores(a) or (None,))[-1]}
                         for a in self.space.arms}}

    def state_dict(self) -> dict[str, Any]:
        """Everything a restore needs, as JSON types."""
        return {"format": STATE_FORMAT, "state_version": STATE_VERSION, "mode": self.mode,
                "score": self.score, "min_episodes": self.min_episodes, "updates": self.updates,
                "base": self.space.base.to_dict(), "sampler": self.sampler.state_dict(),
                "pending": {a: list(v) for a, v in self.pending.items()},
                "probabilities": dict(self._pushed),
                "distribution": self.distribution.to_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Curriculum:
        """The curriculum of :meth:`state_dict` (continues identically)."""
        from curricula import LPSampler, TaskDistribution

        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a curriculum state (format={state.get('format')!r}, expected "
                             f"{STATE_FORMAT!r})")
        if int(state.get("state_version", 0)) > STATE_VERSION:
            raise ValueError(f"curriculum state version {state.get('state_version')} is newer "
                             f"than this robolearn reads ({STATE_VERSION}); upgrade robolearn")
        out = cls.__new__(cls)
        out.mode = state["mode"]
        out.score = state["score"]
        out.min_episodes = int(state["min_episodes"])
        out.updates = int(state["updates"])
        out.space = ArmSpace(TaskDistribution.from_dict(state["base"]))
        out.sampler = LPSampler.from_state_dict(state["sampler"])
        if list(out.sampler.arms) != out.space.arms or set(state["pending"]) != set(out.space.arms):
            raise ValueError("curriculum state is inconsistent: its sampler's arms differ from "
                             "the arms of its base distribution")
        out.pending = {a: [float(v[0]), int(v[1])] for a, v in state["pending"].items()}
        out.distribution = TaskDistribution.from_dict(state["distribution"])
        out._pushed = {a: float(p) for a, p in state["probabilities"].items()}
        return out


# ----------------------------------------------------------------------------- runners
def _local_only(group: Any) -> bool:
    # With remote runners the local one has no env (RLlib builds none there).
    return group.num_remote_env_runners() == 0


def push_distribution(group: Any, distribution: dict[str, Any],
                      indices: Sequence[int] | None = None) -> list[Any]:
    """``set_task(distribution)`` on every sub-env of the runners (all, or ``indices``)."""
    def apply(env_runner: Any, _d: dict[str, Any] = distribution) -> Any:
        return env_runner.env.unwrapped.call("set_task", _d)

    return group.foreach_env_runner(apply, local_env_runner=_local_only(group),
                                    remote_worker_ids=list(indices) if indices else None)


def pull_episode_stats(group: Any) -> list[dict[str, Any]]:
    """The episodes every (healthy) runner finished since the last pull."""
    def pop(env_runner: Any) -> list[dict[str, Any]]:
        return [ep for eps in env_runner.env.unwrapped.call("pop_episode_stats") for ep in eps]

    return [ep for eps in group.foreach_env_runner(pop, local_env_runner=_local_only(group))
            for ep in eps]


def runner_pids(group: Any) -> list[int]:
    """The process ids of the remote env runners (for fault-injection tests and benchmarks)."""
    import os

    return group.foreach_env_runner(lambda er: os.getpid(), local_env_runner=False)


def task_distributions(group: Any) -> list[int]:
    """The distribution version each runner's sub-envs draw from (pending ``set_task`` too)."""
    def version(env_runner: Any) -> list[int]:
        envs = env_runner.env.unwrapped.envs
        out = []
        for e in envs:
            te = getattr(e.unwrapped, "task_env", e.unwrapped)
            pending = te._next_dist  # what the next reset applies
            out.append(int((pending or te.task_distribution).version))
        return out

    return [v for vs in group.foreach_env_runner(version, local_env_runner=_local_only(group))
            for v in vs]


class CurriculumCallback(RLlibCallback):
    """Pulls episode stats, updates the curriculum, pushes its distribution (module docstring).

    ``curriculum`` is attached on the driver after the algorithm is built (``None``: stats
    only). ``last_episodes`` holds the episodes of the last iteration, ``recreated`` how many
    env runners were restarted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.curriculum: Curriculum | None = None
        self.last_episodes: list[dict[str, Any]] = []
        self.recreated = 0
        self.pushes = 0

    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        # RLlib has no notion of success: log it per episode (RLlib's windowed mean).
        if metrics_logger is None:
            return
        info = episode.get_infos(-1) or {}
        success = float(bool(info.get("episode_success", False)))
        metrics_logger.log_value("success", success, reduce="mean", window=100)
        if "task" in info:
            metrics_logger.log_value(f"success/{info['task']}", success, reduce="mean",
                                     window=100)

    def on_train_result(self, *, algorithm: Any, result: dict, metrics_logger: Any = None,
                        **kwargs: Any) -> None:
        episodes = pull_episode_stats(algorithm.env_runner_group)
        self.last_episodes = episodes
        if self.curriculum is None:
            return
        self.curriculum.observe(episodes)
        if self.curriculum.update():
            push_distribution(algorithm.env_runner_group, self.curriculum.distribution.to_dict())
            self.pushes += 1
            log.info("curriculum: distribution version %d pushed to the env runners",
                     self.curriculum.distribution.version)

    def on_env_runners_recreated(self, *, algorithm: Any, env_runner_group: Any,
                                 env_runner_indices: list[int], is_evaluation: bool,
                                 **kwargs: Any) -> None:
        self.recreated += len(env_runner_indices)
        log.warning("env runner(s) %s were restarted%s", env_runner_indices,
                    "; re-applying the curriculum's distribution"
                    if self.curriculum is not None and not is_evaluation else "")
        if self.curriculum is not None and not is_evaluation:
            push_distribution(env_runner_group, self.curriculum.distribution.to_dict(),
                              env_runner_indices)


def find_callback(algorithm: Any) -> CurriculumCallback:
    """The algorithm's :class:`CurriculumCallback` instance (the new stack keeps a list)."""
    cbs = algorithm.callbacks if isinstance(algorithm.callbacks, list) else [algorithm.callbacks]
    for cb in cbs:
        if isinstance(cb, CurriculumCallback):
            return cb
    raise RuntimeError("the algorithm has no CurriculumCallback; build it with "
                       "config.callbacks(CurriculumCallback)")
