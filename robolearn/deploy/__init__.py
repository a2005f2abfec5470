"""The deployment runner (``robolearn deploy``): a trained policy on a robot, safely, recorded.

A fixed-rate control loop at the robot's rate: observe → ``policy.act`` (action-chunk
execution through :func:`robolearn.load_policy`) → ``send_action`` through the safety layer,
with per-step timing and missed-deadline accounting. Any exception or Ctrl-C stops the robot
(the ``with robot:`` block) before it propagates. Every finished episode is committed to an
episode store with ``source="real"`` — observations, the action the policy asked for, the action
actually sent, interventions, timing, and the twin's TaskParams when known — the input of the
real-grounded curriculum; the episode a fault interrupts is kept too, marked incomplete.
"""

from robolearn.deploy.config import DeployConfig, RemoteOptions, SafetyOptions, TwinOptions
from robolearn.deploy.runner import build_robot, run_deploy
from robolearn.errors import DeployFault, RobotRefused

__all__ = ["DeployConfig", "DeployFault", "RemoteOptions", "RobotRefused", "SafetyOptions",
           "TwinOptions", "build_robot", "run_deploy"]
