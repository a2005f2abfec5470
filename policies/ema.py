"""Exponential moving average of a model's parameters, for evaluation and deployment.

    θ_ema ← d·θ_ema + (1 − d)·θ,   d = min(decay, (1 + n) / (10 + n)) with warm-up

(n = number of updates so far). Only parameters are averaged; buffers (normaliser stats) are
always the live model's, so swapping EMA weights in never changes the normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class EMA:
    """EMA of `model`'s floating-point parameters.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> ema = EMA(model, decay=0.999)
        >>> # ... optimiser.step(); ema.update() after every step ...
        >>> with ema.average_parameters():
        ...     y = model(torch.zeros(1, 3))   # evaluated with the EMA weights
        >>> state = ema.state_dict()           # flat dict of tensors: safetensors-ready

    Args:
        model: the module to track (the unwrapped module, not a DDP wrapper).
        decay: the asymptotic decay d (Diffusion Policy uses up to 0.9999).
        warmup: use d_n = min(decay, (1 + n) / (10 + n)) so early averages are not dominated by
            the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: Got decay={decay}, expected 0 <= decay < 1")
        self.model = model
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {name: p.detach().clone() for name, p in self._params()}

    def _params(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, p in self.model.named_parameters():
            if p.is_floating_point():
                yield name, p

    def current_decay(self) -> float:
        """The decay the next `update()` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self) -> None:
        """θ_ema ← d·θ_ema + (1 − d)·θ for every parameter; call after each optimiser step."""
        d = self.current_decay()
        shadows, params = [], []
        for name, p in self._params():
            shadow = self.shadow[name]
            if shadow.device != p.device:
                shadow = self.shadow[name] = shadow.to(p.device)
            shadows.append(shadow)
            params.append(p.detach().to(shadow.dtype))
        if shadows:  # one fused call instead of a Python loop over ~50 tensors
            torch._foreach_lerp_(shadows, params, 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module | None = None) -> None:
        """Write the EMA weights into `model` (default: the tracked model), e.g. before export."""
        target = dict((model or self.model).named_parameters())
        missing = [name for name in self.shadow if name not in target]
        if missing:
            raise ValueError(f"EMA.copy_to: the model has no parameters {missing[:5]}")
        for name, shadow in self.shadow.items():
            target[name].copy_(shadow)

    @contextmanager
    def average_parameters(self) -> Iterator[nn.Module]:
        """Swap the EMA weights into the tracked model for the block, then restore the live ones."""
        backup = {name: p.detach().clone() for name, p in self._params()}
        self.copy_to()
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for name, p in self._params():
                    p.copy_(backup[name])

    def to(self, device: torch.device | str) -> EMA:
        self.shadow = {name: t.to(device) for name, t in self.shadow.items()}
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """Flat dict of tensors (safetensors-ready): `shadow.<param name>` and `num_updates`."""
        state = {f"shadow.{name}": t.detach().clone() for name, t in self.shadow.items()}
        state["num_updates"] = torch.tensor(self.num_updates, dtype=torch.int64)
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        shadow = {k.removeprefix("shadow."): v for k, v in state.items() if k.startswith("shadow.")}
        if set(shadow) != set(self.shadow):
            missing = sorted(set(self.shadow) - set(shadow))
            unexpected = sorted(set(shadow) - set(self.shadow))
            raise ValueError(
                f"EMA.load_state_dict: parameter names differ (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]})"
            )
        if "num_updates" not in state:
            raise ValueError("EMA.load_state_dict: missing 'num_updates'")
        for name, t in shadow.items():
            self.shadow[name] = (
                t.detach().to(self.shadow[name].device, self.shadow[name].dtype).clone()
            )
        self.num_updates = int(state["num_updates"])
