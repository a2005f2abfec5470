"""Preference reward models: Bradley–Terry on segment returns, point-estimate or Gaussian (RRL).

Bradley–Terry (Bradley & Terry 1952; Christiano et al. 2017 for deep RL): with a per-step
reward r_ψ(s, a) and a segment return R(σ) = Σ_t r_ψ(s_t, a_t),

    P(σ_a ≻ σ_b) = σ(R(σ_a) − R(σ_b)),
    L_BT = −[y·log σ(R_a − R_b) + (1 − y)·log σ(R_b − R_a)],   y ∈ [0, 1] a (soft) label.

`kind="point"` is that model. `kind="gaussian"` is PEARL's robust reward learning (RRL; Liu et
al., ICML 2024): the per-step reward is a Gaussian r ~ N(μ_ψ(s, a), σ_ψ(s, a)²) with a mean
and a std head, returns are *sampled* by reparameterisation (r = μ + σ·ξ, ξ ~ N(0, 1)), the BT
loss is taken on the sampled returns, and a regulariser keeps σ near a preset σ̄:

    L = L_BT(R̃_a, R̃_b) + λ_KL · mean_t KL(N(μ, σ²) ‖ N(μ, σ̄²)),
    KL(N(μ, σ²) ‖ N(μ, σ̄²)) = log(σ̄/σ) + σ²/(2σ̄²) − 1/2     (minimal, 0, at σ = σ̄).

The sampled noise makes the model less sure about close pairs, so noisy (e.g. transferred)
labels do not dominate; the regulariser stops σ collapsing to 0 (which would undo that) or
growing without bound. Per-pair weights (e.g. transfer confidence) multiply the BT term.

Inputs are per-step feature vectors x = [s, a] (D,), normalised inside the model (mean/std
fitted on the training segments, stored with the weights). Segments: (N, L, D) with a (N, L)
mask for variable lengths; a whole trajectory is a segment.

Checkpoints: `model.safetensors` (weights and normaliser) + `config.json`. No pickle.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from policies.base import Normalizer

logger = logging.getLogger(__name__)

KINDS = ("point", "gaussian")
FORMAT = "policies.alignment.reward_model"
FORMAT_VERSION = 1


@dataclass
class RewardModelConfig:
    """Config of :class:`RewardModel`.

    Example:
        >>> RewardModelConfig(input_dim=43, kind="gaussin")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: RewardModelConfig: Unknown reward model kind 'gaussin'. Did you mean ...
    """

    input_dim: int
    """D: per-step feature size (e.g. Do + Da = 43 in Meta-World)."""
    kind: str = "gaussian"
    """"gaussian" (RRL: mean and std heads, sampled returns) or "point" (plain BT)."""
    hidden_dim: int = 64
    """Width of the MLP trunk."""
    num_layers: int = 2
    """Hidden layers of the trunk (>= 1)."""
    sigma_prior: float = 0.1
    """σ̄: the per-step std the KL regulariser pulls σ toward (gaussian)."""
    kl_weight: float = 0.1
    """λ_KL of the σ regulariser (gaussian; >= 0)."""
    sigma_min: float = 1e-4
    """Floor of σ, so log σ stays finite."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.kind not in KINDS:
            from policies.backbones import unknown_name_message

            raise ValueError(f"{name}: " + unknown_name_message("reward model kind", self.kind, KINDS))
        for key in ("input_dim", "hidden_dim", "num_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: Got {key}={value!r}, expected an int >= 1")
        if not self.sigma_prior > 0:
            raise ValueError(f"{name}: Got sigma_prior={self.sigma_prior}, expected > 0")
        if not self.kl_weight >= 0:
            raise ValueError(f"{name}: Got kl_weight={self.kl_weight}, expected >= 0")
        if not 0 < self.sigma_min < self.sigma_prior:
            raise ValueError(
                f"{name}: Got sigma_min={self.sigma_min}, expected 0 < sigma_min < sigma_prior"
            )


class RewardModel(nn.Module):
    """Per-step reward r_ψ(x) for x = [s, a]: an MLP with a mean head and (gaussian) a std head.

    Example:
        >>> model = RewardModel(RewardModelConfig(input_dim=5, kind="gaussian"), seed=0)
        >>> mu, sigma = model(torch.zeros(2, 7, 5))
        >>> mu.shape, sigma.shape
        (torch.Size([2, 7]), torch.Size([2, 7]))
    """

    def __init__(self, config: RewardModelConfig, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        # Initialise from `seed` without touching the global RNG stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.normalizer = Normalizer(config.input_dim, mode="mean_std")
            layers: list[nn.Module] = []
            dim = config.input_dim
            for _ in range(config.num_layers):
                layers += [nn.Linear(dim, config.hidden_dim), nn.SiLU()]
                dim = config.hidden_dim
            self.trunk = nn.Sequential(*layers)
            self.mean_head = nn.Linear(dim, 1)
            self.std_head = nn.Linear(dim, 1) if config.kind == "gaussian" else None
            if self.std_head is not None:
                # Start at σ = σ̄: softplus(b) + σ_min = σ̄.
                nn.init.zeros_(self.std_head.weight)
                with torch.no_grad():
                    self.std_head.bias.fill_(_softplus_inv(config.sigma_prior - config.sigma_min))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(..., D) features → (μ (...), σ (...) or None for kind="point")."""
        h = self.trunk(self.normalizer.normalize(x))
        mu = self.mean_head(h).squeeze(-1)
        if self.std_head is None:
            return mu, None
        sigma = F.softplus(self.std_head(h).squeeze(-1)) + self.config.sigma_min
        return mu, sigma


def segment_returns(
    model: RewardModel, segments: Tensor, mask: Tensor, noise: Tensor | None = None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Σ_t r_t over each segment's valid steps.

    Args:
        model: the reward model.
        segments: (N, L, D) features.
        mask: (N, L) bool, True on real steps.
        noise: (N, L) ξ for the reparameterised sample r = μ + σ·ξ (gaussian only); None: the
            mean return Σ μ.

    Returns:
        (returns (N,), μ (N, L), σ (N, L) or None).
    """
    mu, sigma = model(segments)
    r = mu
    if noise is not None and sigma is not None:
        r = mu + sigma * noise
    m = mask.to(r.dtype)
    return (r * m).sum(dim=1), mu, sigma


def preference_loss(
    model: RewardModel,
    seg_a: Tensor,
    mask_a: Tensor,
    seg_b: Tensor,
    mask_b: Tensor,
    labels: Tensor,
    weights: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """L_BT (+ λ_KL·KL for kind="gaussian") on a batch of B labelled segment pairs.

    Args:
        model: the reward model.
        seg_a, seg_b: (B, L, D) segments; mask_a, mask_b: (B, L) bool.
        labels: (B,) y = P(a ≻ b) in [0, 1] (soft labels allowed).
        weights: (B,) per-pair weights >= 0 (default 1).
        generator: RNG of the reparameterisation noise (gaussian).

    Returns:
        (loss, {"loss", "bt", "kl", "accuracy" (sign of the mean return difference vs the
        label, on pairs with y ≠ 0.5), "sigma" (mean σ)}).
    """
    cfg = model.config
    gaussian = cfg.kind == "gaussian"

    def draw(seg: Tensor) -> Tensor | None:
        if not gaussian:
            return None
        return torch.randn(seg.shape[:2], generator=generator, dtype=seg.dtype, device=seg.device)

    ret_a, mu_a, sig_a = segment_returns(model, seg_a, mask_a, draw(seg_a))
    ret_b, mu_b, sig_b = segment_returns(model, seg_b, mask_b, draw(seg_b))
    y = labels.to(ret_a.dtype)
    w = torch.ones_like(y) if weights is None else weights.to(ret_a.dtype)
    bt_per = F.binary_cross_entropy_with_logits(ret_a - ret_b, y, reduction="none")
    bt = (w * bt_per).sum() / w.sum().clamp(min=1e-12)
    loss = bt
    kl_value = 0.0
    sigma_mean = float("nan")
    if gaussian:
        assert sig_a is not None and sig_b is not None
        sig = torch.cat([sig_a[mask_a], sig_b[mask_b]])
        s0 = cfg.sigma_prior
        kl = (np.log(s0) - torch.log(sig) + sig**2 / (2 * s0**2) - 0.5).mean()
        loss = loss + cfg.kl_weight * kl
        kl_value = float(kl.detach())
        sigma_mean = float(sig.detach().mean())
    with torch.no_grad():
        diff = (mu_a * mask_a).sum(1) - (mu_b * mask_b).sum(1)
        decided = y != 0.5
        acc = ((diff > 0) == (y > 0.5))[decided].float().mean() if decided.any() else None
    return loss, {
        "loss": float(loss.detach()),
        "bt": float(bt.detach()),
        "kl": kl_value,
        "accuracy": float(acc) if acc is not None else float("nan"),
        "sigma": sigma_mean,
    }


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch mean metrics (lists, one entry per epoch)."""

    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's metrics."""
        return {k: v[-1] for k, v in self.history.items() if v}


def fit(
    model: RewardModel,
    segments: Tensor | np.ndarray,
    mask: Tensor | np.ndarray | None,
    index_a: Tensor | np.ndarray,
    index_b: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    weights: Tensor | np.ndarray | None = None,
    epochs: int = 50,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> FitResult:
    """Train a reward model on labelled segment pairs (Adam), deterministically given `seed`.

    The input normaliser is fitted on the valid steps of `segments` first unless the model's
    normaliser is already fitted (a model being fine-tuned keeps its statistics).

    Args:
        model: :class:`RewardModel` (trained in place).
        segments: (N, L, D) per-step features of N segments.
        mask: (N, L) bool of real steps (None: all real).
        index_a, index_b: (P,) segment indices of each labelled pair.
        labels: (P,) y = P(a ≻ b) in [0, 1].
        weights: (P,) per-pair weights >= 0 (e.g. transfer confidence; default 1).
        epochs: passes over the pairs.
        batch_size: pairs per step.
        lr, weight_decay: Adam's.
        seed: seeds the pair shuffling and the reparameterisation noise.

    Returns:
        :class:`FitResult` with per-epoch "loss", "bt", "kl", "accuracy", "sigma".
    """
    x, m = _segments(model, segments, mask)
    a = torch.as_tensor(np.asarray(index_a), dtype=torch.long).reshape(-1)
    b = torch.as_tensor(np.asarray(index_b), dtype=torch.long).reshape(-1)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float32).reshape(-1)
    n, p = x.shape[0], a.shape[0]
    if not (b.shape[0] == p == y.shape[0]) or p == 0:
        raise ValueError(
            f"Got index_a ({a.shape[0]},), index_b ({b.shape[0]},), labels ({y.shape[0]},); "
            "expected (P,) each with P >= 1"
        )
    if int(min(a.min(), b.min())) < 0 or int(max(a.max(), b.max())) >= n:
        raise ValueError(f"Got pair indices outside 0..{n - 1} (there are {n} segments)")
    if not bool(((y >= 0) & (y <= 1)).all()):
        raise ValueError("Got labels outside [0, 1], expected P(a ≻ b) in [0, 1]")
    w = None
    if weights is not None:
        w = torch.as_tensor(np.asarray(weights), dtype=torch.float32).reshape(-1)
        if w.shape[0] != p or not bool((w >= 0).all()):
            raise ValueError(f"Got weights of shape {tuple(w.shape)}, expected ({p},) >= 0")
    for key, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"fit: Got {key}={value!r}, expected an int >= 1")
    if not model.normalizer.is_fitted:
        model.normalizer.fit(x[m])
    device = model.normalizer.center.device
    x, m, a, b, y = (t.to(device) for t in (x, m, a, b, y))
    w = w.to(device) if w is not None else None
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    result = FitResult({k: [] for k in ("loss", "bt", "kl", "accuracy", "sigma")})
    model.train()
    for _ in range(epochs):
        order = torch.randperm(p, generator=gen).to(device)
        sums: dict[str, float] = dict.fromkeys(result.history, 0.0)
        steps = 0
        for start in range(0, p, batch_size):
            idx = order[start : start + batch_size]
            ia, ib = a[idx], b[idx]
            loss, info = preference_loss(
                model, x[ia], m[ia], x[ib], m[ib], y[idx],
                None if w is None else w[idx], generator=noise_gen,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k in sums:
                sums[k] += info[k]
            steps += 1
        for k in sums:
            result.history[k].append(sums[k] / steps)
    model.eval()
    return result


@torch.no_grad()
def predict_return(
    model: RewardModel, segments: Tensor | np.ndarray, mask: Tensor | np.ndarray | None = None
) -> np.ndarray:
    """(N,) mean returns Σ_t μ_ψ(x_t) of N segments (N, L, D) over their valid steps."""
    x, m = _segments(model, segments, mask)
    device = model.normalizer.center.device
    ret, _, _ = segment_returns(model, x.to(device), m.to(device))
    return ret.cpu().numpy().astype(np.float64)


@torch.no_grad()
def predict_reward(model: RewardModel, x: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-step (μ, σ) for features x (..., D); σ is None for kind="point"."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float32)
    mu, sigma = model(t.to(model.normalizer.center.device))
    return mu.cpu().numpy(), None if sigma is None else sigma.cpu().numpy()


def save_reward_model(model: RewardModel, directory: str | Path) -> Path:
    """Write `model.safetensors` (weights + normaliser) and `config.json` into `directory`."""
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **dataclasses.asdict(model.config)}
    (path / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_reward_model(directory: str | Path, device: str | torch.device = "cpu") -> RewardModel:
    """Rebuild a :class:`RewardModel` saved by :func:`save_reward_model`."""
    from safetensors.torch import load_file

    path = Path(directory)
    cfg_path, weights_path = path / "config.json", path / "model.safetensors"
    for f in (cfg_path, weights_path):
        if not f.is_file():
            raise FileNotFoundError(f"reward model: {f} not found; expected a directory written "
                                    "by save_reward_model")
    meta: dict[str, Any] = json.loads(cfg_path.read_text())
    if meta.pop("format", None) != FORMAT:
        raise ValueError(f"{cfg_path}: not a reward model config (format {FORMAT!r} expected)")
    version = meta.pop("version", None)
    if version != FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: Got version {version}, expected {FORMAT_VERSION}")
    known = {f.name for f in dataclasses.fields(RewardModelConfig)}
    unknown = sorted(set(meta) - known)
    if unknown:
        raise ValueError(f"{cfg_path}: unknown config fields {unknown}; expected {sorted(known)}")
    model = RewardModel(RewardModelConfig(**meta))
    model.load_state_dict(load_file(str(weights_path), device="cpu"))
    return model.to(device).eval()


def _segments(
    model: RewardModel, segments: Tensor | np.ndarray, mask: Tensor | np.ndarray | None
) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(
        np.asarray(segments) if not isinstance(segments, Tensor) else segments,
        dtype=torch.float32,
    )
    d = model.config.input_dim
    if x.ndim != 3 or x.shape[-1] != d:
        raise ValueError(f"Got segments.shape={tuple(x.shape)}, expected (N, L, D={d})")
    if mask is None:
        m = torch.ones(x.shape[:2], dtype=torch.bool)
    else:
        m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).bool()
        if m.shape != x.shape[:2]:
            raise ValueError(f"Got mask.shape={tuple(m.shape)}, expected (N, L)={tuple(x.shape[:2])}")
    if not bool(torch.isfinite(x[m]).all()):
        raise ValueError("Got non-finite values in the segments' valid steps")
    # Padded steps are zeroed so the MLP never sees garbage (they are masked out anyway).
    x = torch.where(m[..., None], x, torch.zeros((), dtype=x.dtype))
    return x, m


def _softplus_inv(y: float) -> float:
    return float(np.log(np.expm1(y)))
