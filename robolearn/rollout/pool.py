"""Whole-episode rollouts on a pool of Ray actors.

Each actor owns a few envs (of the task it last ran) and its own copy of the agent; one call
runs a lock-step batch of whole episodes (:func:`~robolearn.rollout.engine.run_batch`) and
returns them finished. Stepping envs one call at a time across the Ray boundary is slower than
a plain loop; whole episodes per call are not.

The pool keeps two calls queued per actor so no actor waits for the driver. A lost actor
(killed, OOM, node gone) is replaced by a new one and the work it held is queued again; since
an episode is a pure function of its :class:`~robolearn.rollout.records.EpisodeSpec`, the re-run
gives the same episode, and callers commit results in a fixed order, so results do not depend
on the number of workers or on failures.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from robolearn.rollout.records import EpisodeSpec, RolloutOptions, Trajectory

log = logging.getLogger(__name__)

QUEUE_PER_WORKER = 2


class RolloutWorker:
    """The actor: envs of its current task, its own agent, lock-step batches per call."""

    def __init__(self, agent_spec: dict[str, Any]) -> None:
        import torch

        # Everything an episode needs is imported (and the agent built) here, in the start-up
        # the command pays once, not in the first episodes.
        import sim  # noqa: F401
        from robolearn.rollout.agents import build_agent

        # One actor per reserved CPU: keep torch to the threads Ray granted it.
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
        self._agent = build_agent(agent_spec)
        self._envs: dict[tuple, list[Any]] = {}

    def pid(self) -> int:
        return os.getpid()

    def _env_batch(self, task: str, n: int, options: RolloutOptions, render: int) -> list[Any]:
        from robolearn.rollout.engine import make_envs

        key = (task, n, options.goal_observable, render, options.video_size, options.fast)
        if key not in self._envs:
            for envs in self._envs.values():  # keep one task's envs: memory stays flat on MT50
                for env in envs:
                    env.close()
            self._envs = {key: make_envs(task, n, goal_observable=options.goal_observable,
                                         render=render, size=options.video_size,
                                         fast=options.fast)}
        return self._envs[key]

    def rollout(self, specs: list[EpisodeSpec], options: RolloutOptions,
                batch: int) -> tuple[list[Trajectory], dict[str, bytes]]:
        """One lock-step batch (``len(specs) <= batch``; envs are kept for batches of that
        size; specs with ``video`` come first, on the rendering envs); MP4s come back as bytes,
        keyed by file name."""
        from robolearn.rollout.engine import run_batch
        from robolearn.rollout.video import check_video_support

        render = sum(s.video for s in specs)
        if render:
            check_video_support()  # MUJOCO_GL=egl on a headless node
        envs = self._env_batch(specs[0].task, batch, options, render=render)
        with tempfile.TemporaryDirectory(prefix="robolearn_videos_") as video_dir:
            trajs = run_batch(self._agent, envs[: len(specs)], specs, options,
                              video_dir=video_dir)
            videos = {Path(t.video).name: Path(t.video).read_bytes() for t in trajs if t.video}
        return trajs, videos


class RolloutPool:
    """``num_workers`` :class:`RolloutWorker` actors; :meth:`run` maps calls over them.

    Args:
        ray: the ``ray`` module (initialised).
        num_workers: actors to start.
        agent_spec: what the actors build their agent from
            (:func:`~robolearn.rollout.agents.agent_spec`).
        cpus_per_worker: CPUs each actor reserves.
        max_replacements: lost actors replaced before giving up (default 2 per worker).
    """

    def __init__(self, ray: Any, num_workers: int, agent_spec: dict[str, Any], *,
                 cpus_per_worker: float = 1.0, max_replacements: int | None = None):
        self.ray = ray
        self.cpus = float(cpus_per_worker)
        self._actor_cls = ray.remote(num_cpus=self.cpus, max_restarts=0)(RolloutWorker)
        self._spec_ref = ray.put(agent_spec)
        self.max_replacements = (2 * num_workers if max_replacements is None
                                 else max_replacements)
        self.replaced = 0
        self.actors = [self._new_actor() for _ in range(num_workers)]

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._spec_ref)

    def pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    def run(
        self,
        next_call: Callable[[int], tuple[Any, tuple, dict] | None],
        *,
        on_replace: Callable[[int, Exception], None] | None = None,
    ) -> Iterator[tuple[Any, Any]]:
        """Runs ``rollout`` calls ``(key, args, kwargs)``; yields ``(key, result)`` as they finish.

        ``next_call(slot)`` is asked for more work whenever actor ``slot``'s queue has room
        (so a caller can keep an actor on the task whose envs it already built, see
        :class:`TaskAffinity`); it returns ``None`` when it has nothing to submit *now* (it is
        asked again after each result, so a caller can decide what to submit from the results
        it has seen). The run ends when nothing is in flight and ``next_call`` has nothing. A
        call whose actor died is re-run on a replacement actor.
        """
        ray = self.ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        lost_errors = (RayActorError, ActorDiedError, ActorUnavailableError)
        inflight: dict[Any, tuple[int, Any, tuple]] = {}  # ref -> (actor slot, key, call)
        load = [0] * len(self.actors)
        retry: deque[tuple] = deque()

        def submit(slot: int, call: tuple) -> None:
            key, args, kwargs = call
            ref = self.actors[slot].rollout.remote(*args, **kwargs)
            inflight[ref] = (slot, key, call)
            load[slot] += 1

        while True:
            for _ in range(QUEUE_PER_WORKER):  # fill every actor's queue, round-robin
                for slot in range(len(load)):
                    if load[slot] >= QUEUE_PER_WORKER:
                        continue
                    call = retry.popleft() if retry else next_call(slot)
                    if call is not None:
                        submit(slot, call)
            if not inflight:
                return
            done, _ = ray.wait(list(inflight), num_returns=1)
            ref = done[0]
            slot, key, call = inflight.pop(ref)
            load[slot] -= 1
            try:
                result = ray.get(ref)
            except lost_errors as e:
                self._replace(slot, e, on_replace)
                # everything queued on the dead actor fails too: re-queue it, in order
                for other, (s, _, c) in list(inflight.items()):
                    if s == slot:
                        inflight.pop(other)
                        load[slot] -= 1
                        retry.append(c)
                retry.appendleft(call)
                continue
            yield key, result

    def _replace(self, slot: int, error: Exception,
                 on_replace: Callable[[int, Exception], None] | None) -> None:
        self.replaced += 1
        if self.replaced > self.max_replacements:
            raise RuntimeError(
                f"{self.replaced} rollout actors were lost (limit {self.max_replacements}); "
                f"last error: {error}. Check the Ray logs (/tmp/ray/session_latest/logs) for "
                "OOM kills or crashes"
            ) from None
        log.warning("rollout actor %d was lost (%s); starting a replacement and re-queuing its "
                    "work", slot, type(error).__name__)
        with contextlib.suppress(Exception):
            self.ray.kill(self.actors[slot])
        self.actors[slot] = self._new_actor()
        if on_replace is not None:
            on_replace(slot, error)

    def shutdown(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(a)
        self.actors = []


class TaskAffinity:
    """Which task each actor works on: an actor stays on its task while that task has work,
    then takes a task no other actor is on, and only then shares one. Building a task's env
    (compiling its MuJoCo model) costs ~0.3 s per task and process; sharing every task between
    all actors would pay that in every actor.

    Args:
        tasks: the tasks in their order of priority.
    """

    def __init__(self, tasks: list[str]):
        self.tasks = list(tasks)
        self.current: dict[int, str] = {}

    def pick(self, slot: int, has_work: Callable[[str], bool],
             candidates: list[str] | None = None) -> str | None:
        """The task actor ``slot`` should get work of next, or None when no task has work."""
        mine = self.current.get(slot)
        if mine is not None and has_work(mine):
            return mine
        pool = self.tasks if candidates is None else candidates
        taken = {t for s, t in self.current.items() if s != slot}
        for prefer_free in (True, False):
            for task in pool:
                if has_work(task) and not (prefer_free and task in taken):
                    self.current[slot] = task
                    return task
        return None


def wait_for_workers(pool: RolloutPool, timeout: float = 120.0) -> float:
    """Blocks until every actor answers; returns the seconds it took (start-up cost)."""
    t0 = time.perf_counter()
    refs = [a.pid.remote() for a in pool.actors]
    ready, pending = pool.ray.wait(refs, num_returns=len(refs), timeout=timeout)
    if pending:
        raise RuntimeError(
            f"{len(pending)} of {len(refs)} rollout actors did not start within {timeout:.0f} s; "
            "the cluster may be busy with other jobs (see `ray status`)"
        )
    return time.perf_counter() - t0


@contextlib.contextmanager
def rollout_pool(
    ray_cfg: Any,
    agent_spec: dict[str, Any],
    *,
    what: str,
    max_workers: int | None = None,
) -> Iterator[RolloutPool | None]:
    """A :class:`RolloutPool` per ``ray_cfg`` (``None`` when ``ray.num_workers=0``).

    Joins or starts Ray (once per command: an initialised Ray is reused), checks the cluster
    has the CPUs asked for, starts the actors and waits until they answer.
    """
    from robolearn.cluster import (
        INSTALL_HINT,
        cfg_get,
        check_resources,
        default_rollout_workers,
        ray_session,
        uses_ray,
    )

    if not uses_ray(ray_cfg):
        yield None
        return
    if cfg_get(ray_cfg, "num_workers") is None and not cfg_get(ray_cfg, "address"):
        try:
            import ray  # noqa: F401
        except ImportError:  # the default asks for Ray only if it is there
            log.warning("%s: ray is not installed, so the rollouts run in this process (%s)",
                        what, INSTALL_HINT)
            yield None
            return
    with ray_session(ray_cfg) as ray:
        n = default_rollout_workers(ray_cfg)
        if max_workers is not None:
            n = max(1, min(n, max_workers))  # no idle actors when there is less work
        cpus = float(cfg_get(ray_cfg, "cpus_per_worker", 1.0))
        check_resources(what, n, cpus)
        pool = RolloutPool(ray, n, agent_spec, cpus_per_worker=cpus)
        try:
            secs = wait_for_workers(pool)
            log.info("%s: %d Ray rollout actor(s) ready in %.1f s", what, n, secs)
            yield pool
        finally:
            pool.shutdown()
