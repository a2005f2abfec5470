"""The real-grounded sim-to-real loop (``robolearn curriculum``): deploy π_k on the robot,
identify the physics it saw (:func:`curricula.fit_sysid`), fold the fit into the training
distribution (p_{k+1}), retrain in sim, repeat. See :mod:`robolearn.sim2real.loop`."""

from robolearn.sim2real.config import Sim2RealConfig, SysIdOptions
from robolearn.sim2real.loop import LoopState, plot_loop, run_sim2real

__all__ = ["LoopState", "Sim2RealConfig", "SysIdOptions", "plot_loop", "run_sim2real"]
