"""robolearn: the stack that assembles sim, policies, curricula and hardware.

It owns the episode store (:mod:`robolearn.data`), the configs, the trainer, the evaluator and
the ``robolearn`` command line; see ``../shared/DESIGN.md`` for the architecture.

    >>> import robolearn
    >>> policy = robolearn.load_policy("runs/<run>/checkpoint")   # device="auto"
    >>> policy.reset(); action = policy.act(obs, task="push-v3")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_policy"]


def load_policy(path: Any, device: str = "auto", **kwargs: Any) -> Any:
    """Load a trained policy; see :func:`robolearn.runtime.load_policy`."""
    from robolearn.runtime import load_policy as _load

    return _load(path, device=device, **kwargs)
