"""The episode loop: B envs of one task in lock-step, one batched ``agent.act`` per step.

Every rollout of the stack goes through :func:`run_batch`: demonstration collection (B = 1,
the scripted expert), evaluation (B = ``num_envs``), and later alignment and curricula. It
applies each episode's TaskParams and initial condition, resets from its goal seed, steps until
success (Meta-World protocol: success at any step) or the horizon, and returns one
:class:`~robolearn.rollout.records.Trajectory` per episode.

The batch keeps its shape for the whole episode: an env that already finished is no longer
stepped, but its last observation stays in the batch, so stateful agents (action-chunk queues,
observation histories) see a fixed batch between two ``reset`` calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.rollout.agents import Agent, policy_id
from robolearn.rollout.records import INFO_KEYS, EpisodeSpec, RolloutOptions, Trajectory
from robolearn.rollout.video import write_video


def make_envs(task: str, n: int, *, goal_observable: bool = True, render: int = 0,
              size: int = 224, fast: bool = True) -> list[Any]:
    """``n`` envs of ``task``; the first ``render`` of them render RGB frames (for videos);
    ``fast=False`` steps with Meta-World's own code instead of sim's (identical) fast path."""
    import sim

    return [
        sim.make_env(task, goal_observable=goal_observable, fast=fast,
                     **(dict(render_mode="rgb_array", camera_name="corner", width=size,
                             height=size) if j < render else {}))
        for j in range(n)
    ]


def _reset(env: Any, spec: EpisodeSpec) -> np.ndarray:
    import sim

    env.set_params(spec.params if spec.params is not None else sim.TaskParams())
    options = {"rand_vec": list(spec.rand_vec)} if spec.rand_vec is not None else None
    obs, _ = env.reset(seed=spec.seed, options=options) if options else env.reset(seed=spec.seed)
    return obs


def run_batch(
    agent: Agent,
    envs: Sequence[Any],
    specs: Sequence[EpisodeSpec],
    options: RolloutOptions | None = None,
    *,
    video_dir: str | Path | None = None,
    bar: Any = None,
) -> list[Trajectory]:
    """Rolls out ``specs[j]`` on ``envs[j]`` (all of one task) in lock-step.

    Args:
        agent: The :class:`~robolearn.rollout.agents.Agent` (acts on the whole batch).
        envs: B envs of the specs' task (:func:`make_envs`); those of specs with ``video``
            must render.
        specs: B episodes.
        options: Horizon, early stop, what to record (default :class:`RolloutOptions`).
        video_dir: Where ``<task>_<index>.mp4`` of specs with ``video`` are written.
        bar: A tqdm bar to advance by one per finished episode.

    Returns:
        One trajectory per spec, in order.

    Raises:
        ValueError: Specs of several tasks, or actions of the wrong shape.
    """
    import sim

    options = options or RolloutOptions()
    B = len(envs)
    if B == 0 or len(specs) != B:
        raise ValueError(f"Got {B} envs for {len(specs)} episode specs; expected one env each")
    task = specs[0].task
    if any(s.task != task for s in specs) or any(e.task != task for e in envs):
        raise ValueError(f"a lock-step batch holds one task; got specs of "
                         f"{sorted({s.task for s in specs})} on envs of "
                         f"{sorted({e.task for e in envs})}")
    horizon = options.horizon
    steps_mode = options.record == "steps"
    obs = np.stack([_reset(env, s) for env, s in zip(envs, specs)])  # (B, Do) float64
    attach = getattr(agent, "attach", None)
    if attach is not None:
        attach(envs)
    agent.reset()
    monitors = None
    if steps_mode and options.contacts:
        from sim.contacts import ContactMonitor

        monitors = [ContactMonitor(env) for env in envs]
    active = np.ones(B, dtype=bool)
    success = np.zeros(B, dtype=bool)
    first = np.zeros(B, dtype=np.int64)  # 1-based step of the first success (0: none)
    length = np.zeros(B, dtype=np.int64)
    returns = np.zeros(B, dtype=np.float64)  # up to the first success
    rows: list[dict[str, list]] = [dict() for _ in range(B)]
    chunk_rows: list[dict[str, list]] = [{"step": [], "action": [], "obs": []} for _ in range(B)]
    frames: dict[int, list[np.ndarray]] = {j: [envs[j].render()] for j in range(B)
                                           if specs[j].video}
    chunk_index = -1
    for t in range(horizon):
        actions = np.asarray(agent.act(obs, task=task))
        if actions.shape != (B, sim.ACTION_DIM):
            raise ValueError(
                f"agent.act returned actions of shape {actions.shape} for observations of shape "
                f"{obs.shape} (task {task!r}); expected (B, Da) = ({B}, {sim.ACTION_DIM})"
            )
        plan = getattr(agent, "last_plan", None)
        if plan is not None and plan.step == t:  # a chunk was generated for this step
            chunk_index += 1
            if steps_mode:
                for j in np.flatnonzero(active):
                    chunk_rows[j]["step"].append(t)
                    chunk_rows[j]["action"].append(plan.chunk[j])
                    chunk_rows[j]["obs"].append(plan.obs[j])
        for j in np.flatnonzero(active):
            o, reward, terminated, truncated, info = envs[j].step(actions[j])
            length[j] += 1
            if not success[j]:
                returns[j] += reward
            if steps_mode:
                r = rows[j]
                r.setdefault("obs", []).append(obs[j].copy())
                r.setdefault("action", []).append(actions[j])
                r.setdefault("applied_action", []).append(info["applied_action"])
                r.setdefault("reward", []).append(reward)
                r.setdefault("success", []).append(bool(info["success"]))
                r.setdefault("chunk_index", []).append(chunk_index if plan is not None else -1)
                for k in INFO_KEYS:
                    r.setdefault(f"info_{k}", []).append(float(info.get(k, np.nan)))
                if monitors is not None:
                    count, force = monitors[j].read()
                    r.setdefault("contact_count", []).append(count)
                    r.setdefault("contact_force", []).append(force)
            obs[j] = o
            if j in frames:
                frames[j].append(envs[j].render())
            if info["success"] and not success[j]:
                success[j], first[j] = True, t + 1
            if (success[j] and options.stop_on_success) or terminated or truncated:
                active[j] = False
                if bar is not None:
                    bar.update(1)
        if not active.any():
            break
    if bar is not None:
        bar.update(int(active.sum()))
    pid = policy_id(agent)
    out = []
    for j, spec in enumerate(specs):
        video = None
        if j in frames:
            if video_dir is None:
                raise ValueError("a spec asks for a video but run_batch got no video_dir")
            video = str(Path(video_dir) / f"{task}_{spec.index}.mp4")
            write_video(video, frames[j])
        traj = Trajectory(
            spec=spec, policy_id=pid, success=bool(success[j]),
            first_success=int(first[j]) or None, length=int(length[j]),
            episode_return=float(returns[j]), video=video,
        )
        if steps_mode:
            traj.steps = _stack_rows(rows[j])
            if chunk_rows[j]["step"]:
                traj.chunks = {"step": np.asarray(chunk_rows[j]["step"], np.int32),
                               "action": np.asarray(chunk_rows[j]["action"], np.float32),
                               "obs": np.asarray(chunk_rows[j]["obs"], np.float32)}
        out.append(traj)
    return out


_DTYPES = {"success": bool, "chunk_index": np.int32, "contact_count": np.int32}


def _stack_rows(r: dict[str, list]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=_DTYPES.get(k, np.float32)) for k, v in r.items()}
