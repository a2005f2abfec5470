"""Hardware: the ``Robot`` interface, the safety layer, the MuJoCo twin and the network link.

``hardware`` may import ``sim`` (for the twin) and nothing else of robolearn. The deployment
runner (``robolearn.deploy``) drives any :class:`Robot`; a policy never sees one.

=====================  ===============================================================
:class:`Robot`         the protocol a backend implements (``hardware/robot.py``)
:class:`Spec`          shape, dtype, bounds and names of an observation or action
:class:`SafeRobot`     wraps any backend: rejects NaN/Inf/mis-shaped actions, clamps,
                       rate-limits, keeps the end effector in a box, watchdog
:class:`SafetyConfig`  the limits, per robot (``SafetyConfig.for_metaworld()``)
:class:`TwinRobot`     Meta-World in MuJoCo with a reality gap (``hardware/twin.py``)
:class:`RemoteRobot`   the client side of the network link (``hardware/remote.py``)
:class:`RobotServer`   the server side, next to the arm; :func:`serve_robot`,
                       ``python -m hardware.server`` (``hardware/server.py``)
:class:`AuthLimits`    the server's limits on peers without a session: failure rate
                       limits with back-off, bounded refusal logging
=====================  ===============================================================

The link's security: a shared token (``--token`` / ``$ROBOLEARN_ROBOT_TOKEN``), checked first
and in constant time; sizes bounded before anything is read (``hardware.wire``); failed
attempts rate limited per address and in all; the authenticated client never limited. A wrong
or missing token raises :class:`RobotRefusedError` (the server answered "no"), a silent server
:class:`RobotLinkError`. The token is not encryption: outside a lab network, tunnel.

Plugging in a vendor driver
---------------------------
Write one class that implements :class:`Robot`; :class:`TwinRobot` is the worked example.

1. ``observation_spec`` / ``action_spec``: :class:`Spec` class attributes. The action must be
   what the policies emit: for Meta-World-trained policies ``(4,)`` float32 in [-1, 1], the
   end-effector displacement xyz (scale it to your arm: Meta-World moves 1 cm per unit) and the
   gripper effort.
2. ``connect()``: open the driver, home or hold. ``is_connected``: a property.
3. ``get_observation()``: a dict of numpy arrays with ``"state"`` (the policy input, in the
   layout the policy was trained on) and ``"ee_pos"`` (3,) metres in the frame of your
   workspace box (the safety layer reads it).
4. ``send_action(action)``: command one control step; return what you sent after any
   clipping your driver does. Blocking until the controller's next tick is fine.
5. ``stop()``: hold position (or e-stop); safe to call at any time, twice, or unconnected.
6. ``disconnect()``: release the driver; a no-op when not connected.

Subclass :class:`Robot` to inherit ``with robot:`` (connect; stop and disconnect on the way
out, exceptions included). Methods other than ``stop``/``disconnect`` called before
``connect()`` should raise :class:`RobotNotConnectedError` (``require_connected(self,
"send_action")`` does it). Do not add your own clamping beyond what the hardware needs:
wrap the driver in :class:`SafeRobot` with a :class:`SafetyConfig` for your arm, and serve
it next to the arm::

    from hardware import SafetyConfig, serve_robot
    serve_robot(MyArm("/dev/ttyUSB0"), host="0.0.0.0", port=5555, token=os.environ["TOKEN"],
                safety=SafetyConfig(workspace_low=(...), workspace_high=(...),
                                    position_scale=0.01, watchdog_timeout_s=0.05))

Then the policy machine uses ``RemoteRobot(host, 5555, token=...)`` like any other robot.
Test the driver the way ``tests/hardware`` tests the twin: the protocol, the context manager,
the not-connected errors, and the safety layer in front of it.

Example:
    >>> import numpy as np
    >>> from hardware import SafeRobot, SafetyConfig, TwinRobot
    >>> with SafeRobot(TwinRobot("reach-v3", seed=0), SafetyConfig.for_metaworld()) as robot:
    ...     obs = robot.get_observation()
    ...     sent = robot.send_action(np.array([0.1, 0.0, 0.0, -1.0]))
    >>> obs["state"].shape, obs["ee_pos"].shape
    ((39,), (3,))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hardware.errors import (
    RemoteRobotError,
    RobotError,
    RobotLinkError,
    RobotNotConnectedError,
    RobotRefusedError,
    WatchdogTrippedError,
)
from hardware.robot import Robot, Spec, require_connected, stop_and_disconnect
from hardware.safety import INTERVENTION_KINDS, SafeRobot, SafetyConfig, SafetyEvent

if TYPE_CHECKING:
    from hardware.remote import RemoteRobot
    from hardware.server import AuthLimits, RobotServer, serve_robot
    from hardware.twin import TwinRobot
    from hardware.wire import PROTOCOL_VERSION

# Loaded on first use: the remote client must not pull in MuJoCo (twin), and
# `python -m hardware.server` must not find hardware.server already imported by the package.
_LAZY = {
    "TwinRobot": "hardware.twin",
    "RemoteRobot": "hardware.remote",
    "RobotServer": "hardware.server",
    "AuthLimits": "hardware.server",
    "serve_robot": "hardware.server",
    "PROTOCOL_VERSION": "hardware.wire",
}

__all__ = [
    "INTERVENTION_KINDS",
    "PROTOCOL_VERSION",
    "AuthLimits",
    "RemoteRobot",
    "RemoteRobotError",
    "Robot",
    "RobotError",
    "RobotLinkError",
    "RobotNotConnectedError",
    "RobotRefusedError",
    "RobotServer",
    "SafeRobot",
    "SafetyConfig",
    "SafetyEvent",
    "Spec",
    "TwinRobot",
    "WatchdogTrippedError",
    "require_connected",
    "serve_robot",
    "stop_and_disconnect",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hardware' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
