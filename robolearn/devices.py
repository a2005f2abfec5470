"""Devices, resolved once: ``device="auto"`` → CUDA when present, else CPU; one ``to_device``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robolearn.errors import ConfigError

DEVICE_HELP = "auto | cpu | cuda | cuda:N"


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` as given.

    Raises:
        ConfigError: an unknown device name (e.g. ``gpu``) or CUDA on a machine without it.
    """
    name = str(device).strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        hint = " (for a GPU write cuda or cuda:0)" if name.lower() in ("gpu", "gpu:0") else ""
        raise ConfigError(f"Got device={device!r}, expected {DEVICE_HELP}{hint}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"Got device={device!r}, expected {DEVICE_HELP}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"Got device={device!r}, but this machine has no CUDA GPU; use "
                              "device=auto or device=cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"Got device={device!r}, but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A batch of numpy arrays or tensors (nested dicts too, e.g. the chosen and rejected sides
    of preference pairs) → tensors on ``device``: the one place batches cross to torch."""
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, dict):
            out[k] = to_device(v, device)
        elif isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        else:
            out[k] = torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
    return out
