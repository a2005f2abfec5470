"""robolearn: the stack that assembles sim, policies, curricula and hardware.

It owns the episode store (:mod:`robolearn.data`), the configs and the ``robolearn`` command
line; see ``../shared/DESIGN.md`` for the architecture.
"""

__version__ = "0.1.0"
