"""Contacts of the Sawyer with the rest of the scene, per step (for trajectory scoring).

Meta-World's info keys say nothing about collisions; alignment and safety scoring need to know
when the arm touches the table, a wall or an object it should not, and how hard. This reads
MuJoCo's contact list once per step with precomputed geom masks (no name lookups on the hot
path).

Example:
    >>> from sim import make_env
    >>> from sim.contacts import ContactMonitor
    >>> env = make_env("push-v3"); _ = env.reset(seed=0)
    >>> monitor = ContactMonitor(env)
    >>> count, peak_force = monitor.read()
"""

from __future__ import annotations

import mujoco
import numpy as np

_ROBOT_ROOT_BODY = "right_arm_base_link"


def robot_geoms(model: mujoco.MjModel) -> np.ndarray:
    """(ngeom,) bool: the geoms of bodies in the arm's kinematic subtree (gripper included)."""
    root = model.body(_ROBOT_ROOT_BODY).id
    in_robot = np.zeros(model.nbody, dtype=bool)
    for body in range(model.nbody):
        b = body
        while b not in (0, root):
            b = model.body_parentid[b]
        in_robot[body] = b == root
    return in_robot[model.geom_bodyid]


class ContactMonitor:
    """Counts the robot's contacts with non-robot geoms and their peak normal force.

    Args:
        env: A :class:`sim.MetaWorldEnv` (its model must not change topology; TaskParams do
            not change it).
    """

    def __init__(self, env: object) -> None:
        inner = env.unwrapped_metaworld  # type: ignore[attr-defined]
        self._model, self._data = inner.model, inner.data
        self._robot = robot_geoms(self._model)
        self._force = np.zeros(6, dtype=np.float64)

    def read(self) -> tuple[int, float]:
        """``(count, peak_normal_force_newtons)`` of robot-vs-other contacts right now."""
        data = self._data
        n = data.ncon
        if n == 0:
            return 0, 0.0
        g1 = data.contact.geom1[:n]
        g2 = data.contact.geom2[:n]
        mixed = np.flatnonzero(self._robot[g1] != self._robot[g2])
        peak = 0.0
        for i in mixed:
            mujoco.mj_contactForce(self._model, data, int(i), self._force)
            peak = max(peak, abs(float(self._force[0])))
        return int(len(mixed)), peak
