"""Preference alignment loops: GRAPE-style TPO (``robolearn align``); the maths is in
:mod:`policies.alignment`, the loop in :mod:`robolearn.align.loop`."""

from robolearn.align.config import AlignConfig
from robolearn.align.loop import PairBatches, TPOObjective, run_align

__all__ = ["AlignConfig", "PairBatches", "TPOObjective", "run_align"]
