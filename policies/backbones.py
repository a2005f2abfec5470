"""Backbones: the networks inside every policy head.

A backbone maps a conditioning vector (flattened normalised obs history + task embedding) and,
for generative heads, a noisy action chunk and a time in [0, 1], to an action chunk:

    forward(cond (B, Dc), x (B, Ta, Da) | None, t (B,) | None) -> (B, Ta, Da)

- `ResidualMLP` ("mlp"): the CPU default. Pre-norm residual blocks on the concatenated input.
- `ConditionalUnet1D` ("unet1d"): Diffusion Policy's 1-D temporal conv U-Net with FiLM
  conditioning (Chi et al., RSS 2023), for GPU machines.

Each is built from its config dataclass; `build_backbone(name, **fields)` looks the name up in
the plain-dict registry `BACKBONES`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


def sinusoidal_embedding(
    t: Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0
) -> Tensor:
    """(B,) times in [0, 1] → (B, dim) sin/cos features with geometrically spaced periods.

    The periods span [min_period, max_period] as in pi0's `posemb_sincos`, so times in [0, 1]
    are resolved finely (every policy here passes its time or step as a float in [0, 1]).
    """
    if dim % 2:
        raise ValueError(f"Got time embedding dim={dim}, expected an even number")
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = t.float()[:, None] * (2 * math.pi / period)[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)



# Fields a policy fills in from its own config; a user sets the rest via `backbone_kwargs`.
POLICY_SET_FIELDS = ("action_dim", "action_horizon", "cond_dim", "generative")


def unknown_name_message(kind: str, name: str, available: Iterable[str]) -> str:
    """'Unknown backbone 'mpl'. Did you mean 'mlp'? Available: [...]'."""
    names = sorted(available)
    close = difflib.get_close_matches(str(name), names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown {kind} {name!r}.{hint} Available: {names}"


@dataclass
class BackboneConfig:
    """Fields every backbone has. The first four are set by the policy."""

    action_dim: int
    """Da."""
    action_horizon: int
    """Ta."""
    cond_dim: int
    """Dc: size of the conditioning vector (To·Do + task_embed_dim)."""
    generative: bool = True
    """True: the input includes a noisy chunk x and a time t (flow matching, diffusion).
    False: the chunk is predicted from the conditioning alone (regression)."""
    time_embed_dim: int = 128
    """Size of the sinusoidal time embedding (even)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ("action_dim", "action_horizon", "cond_dim", "time_embed_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: Got {key}={value!r}, expected an int >= 1")
        if self.time_embed_dim % 2:
            raise ValueError(f"{name}: Got time_embed_dim={self.time_embed_dim}, expected even")

    @classmethod
    def check_kwargs(cls, kwargs: dict[str, Any]) -> None:
        """Raise if `kwargs` holds a key that is not a user-settable field of this config."""
        settable = [f.name for f in dataclasses.fields(cls) if f.name not in POLICY_SET_FIELDS]
        for key in kwargs:
            if key in POLICY_SET_FIELDS:
                raise ValueError(
                    f"{cls.__name__}: backbone_kwargs sets {key!r}, which the policy sets from "
                    "its own config; remove it"
                )
            if key not in settable:
                raise ValueError(f"{cls.__name__}: " + unknown_name_message("field", key, settable))


def _activation(name: str) -> nn.Module:
    if name == "silu":
        return nn.SiLU()
    if name == "gelu":
        return nn.GELU()
    if name == "mish":
        return nn.Mish()
    raise ValueError(f"Got activation={name!r}, expected one of ('silu', 'gelu', 'mish')")


# ---------------------------------------------------------------------------------------------
# Residual MLP


@dataclass
class ResidualMLPConfig(BackboneConfig):
    hidden_dim: int = 512
    """Width of every residual block."""
    num_blocks: int = 3
    """Number of residual blocks."""
    activation: str = "silu"
    """"silu", "gelu" or "mish"."""
    dropout: float = 0.0
    """Dropout inside each block."""

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.hidden_dim < 1 or self.num_blocks < 0:
            raise ValueError(
                f"{name}: Got hidden_dim={self.hidden_dim}, num_blocks={self.num_blocks}, "
                "expected hidden_dim >= 1 and num_blocks >= 0"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}: Got dropout={self.dropout}, expected 0 <= dropout < 1")
        _activation(self.activation)


class ResidualBlock(nn.Module):
    """h + W2·drop(act(W1·LayerNorm(h)))."""

    def __init__(self, dim: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim)
        self.act = _activation(activation)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc2(self.drop(self.act(self.fc1(self.norm(h)))))


class ResidualMLP(nn.Module):
    """MLP on [cond, flatten(x), time_embedding(t)] → flattened chunk (B, Ta·Da).

    Example:
        >>> net = ResidualMLP(ResidualMLPConfig(action_dim=4, action_horizon=16, cond_dim=110))
        >>> net(torch.zeros(2, 110), torch.zeros(2, 16, 4), torch.rand(2)).shape
        torch.Size([2, 16, 4])
    """

    def __init__(self, cfg: ResidualMLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chunk = cfg.action_horizon * cfg.action_dim
        in_dim = cfg.cond_dim + (chunk + cfg.time_embed_dim if cfg.generative else 0)
        self.input = nn.Linear(in_dim, cfg.hidden_dim)
        self.blocks = nn.Sequential(
            *[
                ResidualBlock(cfg.hidden_dim, cfg.activation, cfg.dropout)
                for _ in range(cfg.num_blocks)
            ]
        )
        self.out_norm = nn.LayerNorm(cfg.hidden_dim)
        self.output = nn.Linear(cfg.hidden_dim, chunk)

    def forward(self, cond: Tensor, x: Tensor | None = None, t: Tensor | None = None) -> Tensor:
        parts = [cond]
        if self.cfg.generative:
            assert x is not None and t is not None, "a generative backbone needs x and t"
            parts += [x.flatten(1), sinusoidal_embedding(t, self.cfg.time_embed_dim)]
        h = self.blocks(self.input(torch.cat(parts, dim=-1)))
        out = self.output(self.out_norm(h))
        return out.view(cond.shape[0], self.cfg.action_horizon, self.cfg.action_dim)


# ---------------------------------------------------------------------------------------------
# Conditional 1-D U-Net (Diffusion Policy, Chi et al. 2023)


@dataclass
class ConditionalUnet1DConfig(BackboneConfig):
    down_dims: list[int] = dataclasses.field(default_factory=lambda: [64, 128, 256])
    """Channels per level; Ta must be divisible by 2**(len(down_dims) − 1). With Ta=16, Da=4,
    Dc=110: [64, 128, 256] has 4.8M parameters, [128, 256, 512] 17M, and Diffusion Policy's
    default [256, 512, 1024] 65M."""
    kernel_size: int = 5
    """Temporal convolution kernel (odd)."""
    n_groups: int = 8
    """GroupNorm groups; every entry of down_dims must be divisible by it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        self.down_dims = [int(d) for d in self.down_dims]
        if not self.down_dims or any(d < 1 or d % self.n_groups for d in self.down_dims):
            raise ValueError(
                f"{name}: Got down_dims={self.down_dims}, n_groups={self.n_groups}, expected a "
                "non-empty list of channel counts divisible by n_groups"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"{name}: Got kernel_size={self.kernel_size}, expected an odd int")
        factor = 2 ** (len(self.down_dims) - 1)
        if self.action_horizon % factor:
            raise ValueError(
                f"{name}: Got action_horizon={self.action_horizon}, expected a multiple of "
                f"{factor} (2**(len(down_dims) − 1) with down_dims={self.down_dims}); change "
                "action_horizon or use fewer levels"
            )


class Conv1dBlock(nn.Sequential):
    """Conv1d → GroupNorm → Mish."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int) -> None:
        super().__init__(
            nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_ch),
            nn.Mish(),
        )


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks with FiLM (per-channel scale and bias from the global conditioning)."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.conv1 = Conv1dBlock(in_ch, out_ch, kernel_size, n_groups)
        self.conv2 = Conv1dBlock(out_ch, out_ch, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x (B, C_in, T), cond (B, Dg) → (B, C_out, T)."""
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        h = self.conv2(scale * self.conv1(x) + bias)
        return h + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """Temporal U-Net over the chunk axis, conditioned by FiLM on [time features, cond].

    Follows Diffusion Policy's `ConditionalUnet1D`, including its skip layout (the first
    level's output feeds the down path only, no skip). For a non-generative (regression) head
    the input is a learned (Da, Ta) query and there is no time input.

    Example:
        >>> net = ConditionalUnet1D(ConditionalUnet1DConfig(action_dim=4, action_horizon=16,
        ...                                                 cond_dim=110))
        >>> net(torch.zeros(2, 110), torch.zeros(2, 16, 4), torch.rand(2)).shape
        torch.Size([2, 16, 4])
    """

    def __init__(self, cfg: ConditionalUnet1DConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k, g = cfg.kernel_size, cfg.n_groups
        dte = cfg.time_embed_dim
        if cfg.generative:
            self.time_mlp: nn.Module | None = nn.Sequential(
                nn.Linear(dte, 4 * dte), nn.Mish(), nn.Linear(4 * dte, dte)
            )
            global_dim = cfg.cond_dim + dte
        else:
            self.time_mlp = None
            global_dim = cfg.cond_dim
            # Regression has no noisy chunk to denoise: the U-Net starts from a learned
            # (Da, Ta) query instead (zeros would leave the first convolutions without gradient).
            self.query = nn.Parameter(0.02 * torch.randn(cfg.action_dim, cfg.action_horizon))

        dims = [cfg.action_dim, *cfg.down_dims]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.down = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        ConditionalResidualBlock1D(c_in, c_out, global_dim, k, g),
                        ConditionalResidualBlock1D(c_out, c_out, global_dim, k, g),
                        nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1),
                    ]
                )
            )
        mid = cfg.down_dims[-1]
        self.mid = nn.ModuleList(
            [
                ConditionalResidualBlock1D(mid, mid, global_dim, k, g),
                ConditionalResidualBlock1D(mid, mid, global_dim, k, g),
            ]
        )
        self.up = nn.ModuleList()
        for c_in, c_out in reversed(in_out[1:]):
            self.up.append(
                nn.ModuleList(
                    [
                        ConditionalResidualBlock1D(2 * c_out, c_in, global_dim, k, g),
                        ConditionalResidualBlock1D(c_in, c_in, global_dim, k, g),
                        nn.ConvTranspose1d(c_in, c_in, 4, stride=2, padding=1),
                    ]
                )
            )
        start = cfg.down_dims[0]
        self.final = nn.Sequential(
            Conv1dBlock(start, start, k, g), nn.Conv1d(start, cfg.action_dim, 1)
        )

    def forward(self, cond: Tensor, x: Tensor | None = None, t: Tensor | None = None) -> Tensor:
        b = cond.shape[0]
        if self.time_mlp is not None:
            assert x is not None and t is not None, "a generative backbone needs x and t"
            g = torch.cat(
                [self.time_mlp(sinusoidal_embedding(t, self.cfg.time_embed_dim)), cond], -1
            )
            h = x.transpose(1, 2)  # (B, Da, Ta): convolve along time
        else:
            h = self.query.expand(b, -1, -1)
            g = cond
        skips = []
        for res1, res2, downsample in self.down:
            h = res2(res1(h, g), g)
            skips.append(h)
            h = downsample(h)
        for res in self.mid:
            h = res(h, g)
        for res1, res2, upsample in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = upsample(res2(res1(h, g), g))
        return self.final(h).transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# Registry

BACKBONES: dict[str, tuple[type[nn.Module], type[BackboneConfig]]] = {
    "mlp": (ResidualMLP, ResidualMLPConfig),
    "unet1d": (ConditionalUnet1D, ConditionalUnet1DConfig),
}


def backbone_config_class(name: str) -> type[BackboneConfig]:
    if name not in BACKBONES:
        raise ValueError(unknown_name_message("backbone", name, BACKBONES))
    return BACKBONES[name][1]


def make_backbone_config(name: str, **fields: Any) -> BackboneConfig:
    """The config dataclass of backbone `name`, validated."""
    cls = backbone_config_class(name)
    cls.check_kwargs({k: v for k, v in fields.items() if k not in POLICY_SET_FIELDS})
    return cls(**fields)


def build_backbone(cfg: BackboneConfig | str, **fields: Any) -> nn.Module:
    """Build a backbone from its config dataclass, or from a name and the config's fields.

    Example:
        >>> net = build_backbone("mlp", action_dim=2, action_horizon=8, cond_dim=4, hidden_dim=64)
        >>> net = build_backbone(ResidualMLPConfig(action_dim=2, action_horizon=8, cond_dim=4))
        >>> build_backbone("mpl", action_dim=2, action_horizon=8, cond_dim=4)
        Traceback (most recent call last):
        ...
        ValueError: Unknown backbone 'mpl'. Did you mean 'mlp'? Available: ['mlp', 'unet1d']
    """
    if isinstance(cfg, str):
        cfg = make_backbone_config(cfg, **fields)
    elif fields:
        raise TypeError("build_backbone: pass either a config dataclass or a name and fields")
    for module_cls, cfg_cls in BACKBONES.values():
        if type(cfg) is cfg_cls:
            return module_cls(cfg)
    raise TypeError(
        f"build_backbone: Got a {type(cfg).__name__}, expected one of "
        f"{[c.__name__ for _, c in BACKBONES.values()]}"
    )
