"""What a rollout returns: one :class:`Trajectory` per episode, with what later scoring needs.

Per step (``Trajectory.steps``, time-major arrays, row t = the step taken in observation o_t):

    obs             (T, Do) float32  the observation the agent acted on
    action          (T, Da) float32  the commanded action (what the agent returned)
    applied_action  (T, Da) float32  what the env applied after latency and action noise
    reward          (T,)    float32  the pinned Meta-World reward that followed
    success         (T,)    bool     ``info["success"]`` after the step
    chunk_index     (T,)    int32    which generated chunk the action came from (-1: no chunks)
    info_<key>      (T,)    float32  Meta-World's per-step info (near_object, grasp_success,
                                     grasp_reward, in_place_reward, obj_to_target,
                                     unscaled_reward)
    contact_count   (T,)    int32    contacts between the robot and anything else (contacts=True)
    contact_force   (T,)    float32  the largest normal force among them, N (contacts=True)

Per generated chunk (``Trajectory.chunks``, chunked agents such as ``robolearn.load_policy``):
``step`` (C,) the step it was generated at, ``action`` (C, Ta, Da) the whole chunk, ``obs``
(C, To, Do) the observation history it was generated from.

Per episode: the :class:`EpisodeSpec` (task, index, goal seed, TaskParams, initial condition),
the policy id, success (at any step), the first success step, length and return.

:func:`trajectory_rows` turns a trajectory into the rows of an episode store (``source=policy``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

INFO_KEYS = ("near_object", "grasp_success", "grasp_reward", "in_place_reward",
             "obj_to_target", "unscaled_reward")
"""Meta-World info keys every v3 task reports each step (recorded as ``info_<key>``)."""
STORE_KEYS = ("obs", "action", "reward", "success")


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to roll out: a pure description, so a re-run gives the same episode.

    Attributes:
        task: Meta-World task name.
        index: The episode's number within its task (evaluation) or attempt number (collect).
        seed: Goal seed (``episode_seed(seed, task, index)``).
        params: The ``sim.TaskParams`` applied at reset (``None``: stock).
        rand_vec: Meta-World's initial-condition vector (object/goal positions) to start from
            instead of the one the seed draws; ``None``: from the seed.
        video: Record a video of this episode.
    """

    task: str
    index: int
    seed: int
    params: Any = None
    rand_vec: tuple[float, ...] | None = None
    video: bool = False

    def params_dict(self) -> dict[str, Any]:
        import sim

        return (self.params if self.params is not None else sim.TaskParams()).to_dict()


@dataclass(frozen=True)
class RolloutOptions:
    """How episodes run and what is recorded.

    Attributes:
        horizon: Steps per episode at most (Meta-World: 500).
        stop_on_success: End an episode at its first success (the evaluation protocol; collect
            may run the whole horizon).
        record: ``"summary"`` (success, steps, return: what evaluation needs) or ``"steps"``
            (per-step arrays and chunks as well).
        contacts: Also record robot contacts and the peak contact force per step.
        goal_observable: Goal xyz in the observation (MT suites) or hidden (ML suites).
        video_size: Width and height of recorded videos, pixels.
        fast: Step with ``sim``'s fast path (bit-identical results); ``False``: Meta-World's
            own step, for comparison and debugging.
    """

    horizon: int = 500
    stop_on_success: bool = True
    record: str = "summary"
    contacts: bool = False
    goal_observable: bool = True
    video_size: int = 224
    fast: bool = True

    def __post_init__(self) -> None:
        if self.record not in ("summary", "steps"):
            raise ValueError(f"Got record={self.record!r}, expected 'summary' or 'steps'")
        if self.horizon < 1:
            raise ValueError(f"Got horizon={self.horizon}, expected >= 1")


@dataclass
class Trajectory:
    """One finished episode (see the module docstring for the per-step keys).

    Attributes:
        spec: What was rolled out.
        policy_id: Which agent produced it (checkpoint path, ``scripted-expert``, ...).
        success: ``info["success"]`` fired at some step (Meta-World protocol).
        first_success: 1-based step of the first success, ``None`` if it never fired.
        length: Steps taken.
        episode_return: Sum of rewards up to the first success (or over all steps without one).
        steps: Per-step arrays (``record="steps"``), else ``None``.
        chunks: Per-chunk arrays of chunked agents (``record="steps"``), else ``None``.
        video: Path of the episode's MP4, when one was recorded.
    """

    spec: EpisodeSpec
    policy_id: str
    success: bool
    first_success: int | None
    length: int
    episode_return: float
    steps: dict[str, np.ndarray] | None = None
    chunks: dict[str, np.ndarray] | None = None
    video: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def seed(self) -> int:
        return self.spec.seed


def trajectory_rows(traj: Trajectory, extras: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The rows of an episode store for ``traj``: obs, action (commanded), reward, success, plus
    the per-step ``extras`` the store declares (e.g. ``applied_action``, ``chunk_index``)."""
    if traj.steps is None:
        raise ValueError(
            f"trajectory of {traj.task} (seed {traj.seed}) has no per-step record; roll out with "
            "RolloutOptions(record='steps') to store it"
        )
    missing = [k for k in (*STORE_KEYS, *extras) if k not in traj.steps]
    if missing:
        raise ValueError(f"trajectory of {traj.task} lacks per-step key(s) {missing}; it has "
                         f"{sorted(traj.steps)}")
    return {k: traj.steps[k] for k in (*STORE_KEYS, *extras)}


def store_extras(options: RolloutOptions, action_dim: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The per-step extras of a store that keeps whole policy trajectories (``source=policy``)."""
    extras: dict[str, tuple[tuple[int, ...], str]] = {
        "applied_action": ((action_dim,), "float32"),
        "chunk_index": ((), "int32"),
        **{f"info_{k}": ((), "float32") for k in INFO_KEYS},
    }
    if options.contacts:
        extras |= {"contact_count": ((), "int32"), "contact_force": ((), "float32")}
    return extras
