"""Trajectory-wise preference optimisation (TPO) for a flow-matching policy.

GRAPE (Zhang et al. 2024, "Generalizing Robot Policy via Preference Alignment") lifts DPO
(Rafailov et al. 2023, "Direct Preference Optimization") from single responses to whole
trajectories: with log π(ζ) = Σ_t log π(a_t | o_t),

    L = −log σ(β·[(log π_θ(ζ_w) − log π_φ(ζ_w)) − (log π_θ(ζ_l) − log π_φ(ζ_l))]).

A flow-matching policy has no tractable log π. Diffusion-DPO (Wallace et al. 2023, "Diffusion
Model Alignment Using Direct Preference Optimization") replaces each log-ratio by a difference
of denoising losses evaluated at the *same* (t, ε) for the policy θ and the frozen reference φ,
and for the winner and the loser. Per generated chunk c of a trajectory (the *commanded*
chunk, A_c, observed from O_c):

    ℓ_θ(A | O; t, ε) = mean_{Ta, Da} ‖v_θ((1 − t)·ε + t·A, t | O) − (A − ε)‖²
    D_c   = ℓ_θ(A_c | O_c; t_c, ε_c) − ℓ_φ(A_c | O_c; t_c, ε_c)
    Δ(ζ)  = Σ_c D_c                       (over the chunks the policy generated)
    h     = −(β / 2)·[Δ(ζ_w) − Δ(ζ_l)] / C̄   (C̄: one fixed constant, e.g. the median chunk count)
    L_TPO = −log σ(h)

A lower loss than the reference on a chunk plays the role of a higher likelihood, so h > 0 means
θ already prefers the winner more than φ does ("implicit accuracy"). The (t, ε) sharing is what
makes D_c a low-variance estimate: with independent draws for θ and φ, D_c would be dominated
by the noise of the two draws even for θ = φ (tests check that D_c is exactly 0 then).

Chunk c of the winner and chunk c of the loser of a pair share (t_c, ε_c); trajectories with
different chunk counts are padded to a common C and masked.

Measured on a bimodal toy (see REFERENCES.md): the DPO term alone barely moves what the policy
samples; adding supervised flow matching on the chosen chunks fixes that. Hence
:func:`combined_loss`, L = L_TPO + λ_sft·L_SFT(chosen) + λ_bc·L_BC(demos).

Shapes: P pairs, C chunks per trajectory (padded), To/Do/Ta/Da as in `policies.base`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHUNK_KEYS = ("obs", "action", "task", "mask")
"""Keys of a padded chunk batch (see :func:`pad_chunks`)."""


def pad_chunks(
    trajectories: Sequence[Mapping[str, Any]],
    num_chunks: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Stack the generated chunks of P trajectories into one padded, masked batch.

    Args:
        trajectories: P mappings with `obs` (C_i, To, Do) (the history each chunk was generated
            from), `action` (C_i, Ta, Da) (the commanded chunks) and `task` (an int: the task
            index), numpy arrays or tensors. C_i >= 1 may differ between trajectories.
        num_chunks: Pad to this C (>= every C_i); default max C_i.
        device: Device of the returned tensors (default CPU).

    Returns:
        {"obs": (P, C, To, Do) float32, "action": (P, C, Ta, Da) float32, "task": (P,) long,
        "mask": (P, C) bool, True where a chunk exists}. Padding rows repeat the trajectory's
        last chunk (finite values; they are masked out of every loss).
    """
    if len(trajectories) == 0:
        raise ValueError("pad_chunks: Got no trajectories, expected at least one")
    obs_list, act_list, tasks = [], [], []
    for i, traj in enumerate(trajectories):
        missing = [k for k in ("obs", "action", "task") if k not in traj]
        if missing:
            raise ValueError(
                f"pad_chunks: trajectory {i} lacks {missing} (has {sorted(traj)}); expected "
                "'obs' (C, To, Do), 'action' (C, Ta, Da) and 'task' (int)"
            )
        obs = torch.as_tensor(np.asarray(traj["obs"]), dtype=torch.float32)
        act = torch.as_tensor(np.asarray(traj["action"]), dtype=torch.float32)
        if obs.ndim != 3 or act.ndim != 3 or obs.shape[0] != act.shape[0] or obs.shape[0] < 1:
            raise ValueError(
                f"pad_chunks: trajectory {i} has obs.shape={tuple(obs.shape)}, "
                f"action.shape={tuple(act.shape)}; expected (C, To, Do) and (C, Ta, Da) with "
                "the same C >= 1"
            )
        if obs_list and (obs.shape[1:] != obs_list[0].shape[1:]
                         or act.shape[1:] != act_list[0].shape[1:]):
            raise ValueError(
                f"pad_chunks: trajectory {i} has obs {tuple(obs.shape[1:])}, action "
                f"{tuple(act.shape[1:])} per chunk; trajectory 0 has "
                f"{tuple(obs_list[0].shape[1:])}, {tuple(act_list[0].shape[1:])}"
            )
        obs_list.append(obs)
        act_list.append(act)
        tasks.append(int(traj["task"]))
    counts = [o.shape[0] for o in obs_list]
    c_max = max(counts) if num_chunks is None else num_chunks
    if c_max < max(counts):
        raise ValueError(
            f"pad_chunks: Got num_chunks={num_chunks}, expected >= the longest trajectory's "
            f"{max(counts)} chunks"
        )

    def pad(x: Tensor) -> Tensor:
        extra = c_max - x.shape[0]
        return torch.cat([x, x[-1:].expand(extra, *x.shape[1:])]) if extra else x

    mask = torch.arange(c_max)[None, :] < torch.tensor(counts)[:, None]
    out = {
        "obs": torch.stack([pad(o) for o in obs_list]),
        "action": torch.stack([pad(a) for a in act_list]),
        "task": torch.tensor(tasks, dtype=torch.long),
        "mask": mask,
    }
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def median_chunk_count(mask_or_counts: Tensor | np.ndarray | Sequence[int]) -> float:
    """C̄ for :func:`tpo_loss`: the median number of chunks per trajectory (>= 1).

    Compute it once over the whole preference dataset (C̄ must be one fixed constant, not a
    per-batch statistic, or h would change scale from batch to batch).

    Args:
        mask_or_counts: a (P, C) bool mask of padded chunks, or the P chunk counts.
    """
    x = np.asarray(mask_or_counts.cpu() if isinstance(mask_or_counts, Tensor) else mask_or_counts)
    counts = x.sum(axis=1) if x.ndim == 2 else x
    if counts.size == 0:
        raise ValueError("median_chunk_count: Got no trajectories, expected at least one")
    return max(1.0, float(np.median(counts)))


def sample_shared_noise(
    policy: nn.Module,
    num_pairs: int,
    num_chunks: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw one (t, ε) per (pair, chunk position), as the policy's `compute_loss` draws them.

    t comes from the policy's own time distribution (`policy.sample_time`, pi0's Beta; global
    torch RNG, as in training); ε ~ N(0, I) (from `generator` when given).

    Returns:
        t (P, C) and eps (P, C, Ta, Da), on the policy's device and dtype.
    """
    cfg = policy.config
    device, dtype = policy.device, policy.dtype
    eps = torch.randn(
        (num_pairs, num_chunks, cfg.action_horizon, cfg.action_dim),
        generator=generator,
        device=device,
        dtype=dtype,
    )
    t = policy.sample_time(num_pairs * num_chunks, device).to(dtype).view(num_pairs, num_chunks)
    return t, eps


def chunk_flow_losses(
    policy: nn.Module, chunks: Mapping[str, Tensor], t: Tensor, eps: Tensor
) -> Tensor:
    """ℓ(A_c | O_c; t_c, ε_c) for every real chunk of a padded batch; 0 at padding.

    Args:
        policy: a `FlowMatchingPolicy` (anything with `flow_loss(batch, t, eps)`).
        chunks: padded batch of P trajectories (:func:`pad_chunks`), C chunks each.
        t: (P, C') times with C' >= C; the first C columns are used.
        eps: (P, C', Ta, Da) noise; the first C columns are used.

    Returns:
        (P, C) per-chunk losses (with grad through the policy), 0 where `mask` is False.
    """
    obs, action, task, mask = _check_chunks(chunks)
    p, c = mask.shape
    if t.ndim != 2 or t.shape[0] != p or t.shape[1] < c:
        raise ValueError(f"Got t.shape={tuple(t.shape)}, expected (P, >= C)=({p}, >= {c})")
    if eps.ndim != 4 or eps.shape[0] != p or eps.shape[1] < c:
        raise ValueError(
            f"Got eps.shape={tuple(eps.shape)}, expected (P, >= C, Ta, Da)=({p}, >= {c}, ...)"
        )
    flat = {
        "obs": obs[mask],
        "action": action[mask],
        "task": task[:, None].expand(p, c)[mask],
    }
    per_chunk, _ = policy.flow_loss(flat, t[:, :c][mask], eps[:, :c][mask], reduction="none")
    return torch.zeros(p, c, dtype=per_chunk.dtype, device=per_chunk.device).masked_scatter(
        mask, per_chunk
    )


@dataclass
class TPOTerms:
    """Everything :func:`tpo_terms` computes, per pair (P,) unless noted.

    Attributes:
        loss: scalar L_TPO = mean_p −log σ(h_p) (with grad).
        h: (P,) the DPO logit h.
        delta_chosen: (P,) Δ(ζ_w) = Σ_c (ℓ_θ − ℓ_φ) over the winner's chunks (with grad).
        delta_rejected: (P,) Δ(ζ_l) (with grad).
        chosen_losses: (P, C_w) ℓ_θ of the winner's chunks, 0 at padding (with grad): the
            supervised term of :func:`combined_loss` reuses it.
        chosen_mask: (P, C_w) bool.
    """

    loss: Tensor
    h: Tensor
    delta_chosen: Tensor
    delta_rejected: Tensor
    chosen_losses: Tensor
    chosen_mask: Tensor

    def metrics(self) -> dict[str, float]:
        """Float metrics: the loss, mean |h|, implicit accuracy (fraction h > 0), mean Δ's."""
        return {
            "loss_tpo": float(self.loss.detach()),
            "h_abs": float(self.h.detach().abs().mean()),
            "implicit_accuracy": float((self.h.detach() > 0).float().mean()),
            "delta_chosen": float(self.delta_chosen.detach().mean()),
            "delta_rejected": float(self.delta_rejected.detach().mean()),
        }


def tpo_terms(
    policy: nn.Module,
    reference: nn.Module,
    chosen: Mapping[str, Tensor],
    rejected: Mapping[str, Tensor],
    *,
    beta: float,
    chunk_norm: float,
    t: Tensor | None = None,
    eps: Tensor | None = None,
) -> TPOTerms:
    """The trajectory-wise Diffusion-DPO terms (see the module docstring and :class:`TPOTerms`).

    Args:
        policy: θ, a `FlowMatchingPolicy` being trained.
        reference: φ, the frozen reference (same architecture; evaluated without grad). It
            should be in eval mode with no dropout, like θ, or D_c gets noise of its own.
        chosen: padded winner trajectories (:func:`pad_chunks`), P of them, C_w chunks.
        rejected: padded loser trajectories, pair p = (chosen[p], rejected[p]), C_l chunks.
        beta: β of DPO (> 0). With per-element-mean losses Diffusion-DPO uses 2000–5000.
        chunk_norm: C̄ > 0, one fixed constant (:func:`median_chunk_count` of the dataset).
        t: (P, max(C_w, C_l)) shared times; drawn with :func:`sample_shared_noise` if None.
        eps: (P, max(C_w, C_l), Ta, Da) shared noise; drawn together with t if None.

    Returns:
        :class:`TPOTerms`.
    """
    if not beta > 0:
        raise ValueError(f"tpo_loss: Got beta={beta}, expected > 0 (Diffusion-DPO: 2000–5000)")
    if not chunk_norm > 0:
        raise ValueError(
            f"tpo_loss: Got chunk_norm={chunk_norm}, expected > 0 (C̄, e.g. the median chunk "
            "count of the preference data: median_chunk_count)"
        )
    w_obs, w_act, w_task, w_mask = _check_chunks(chosen, "chosen")
    l_obs, l_act, l_task, l_mask = _check_chunks(rejected, "rejected")
    p, c_w = w_mask.shape
    c_l = l_mask.shape[1]
    if l_mask.shape[0] != p:
        raise ValueError(
            f"Got {p} chosen and {l_mask.shape[0]} rejected trajectories, expected one of each "
            "per pair"
        )
    c_max = max(c_w, c_l)
    if (t is None) != (eps is None):
        raise ValueError("tpo_loss: give both t and eps, or neither (they are drawn together)")
    if t is None:
        t, eps = sample_shared_noise(policy, p, c_max)
    assert eps is not None
    # One forward pass for winners and losers together: pad both to c_max so their chunk
    # positions line up and chunk c of either side uses (t_c, ε_c) of its pair.
    both = {
        "obs": torch.cat([_pad_to(w_obs, c_max), _pad_to(l_obs, c_max)]),
        "action": torch.cat([_pad_to(w_act, c_max), _pad_to(l_act, c_max)]),
        "task": torch.cat([w_task, l_task]),
        "mask": torch.cat([_pad_to(w_mask, c_max, fill=False), _pad_to(l_mask, c_max, False)]),
    }
    t2, eps2 = torch.cat([t[:, :c_max], t[:, :c_max]]), torch.cat([eps[:, :c_max]] * 2)
    loss_theta = chunk_flow_losses(policy, both, t2, eps2)  # (2P, C)
    with torch.no_grad():
        loss_phi = chunk_flow_losses(reference, both, t2, eps2)
    d = loss_theta - loss_phi  # (2P, C), 0 at padding
    delta = d.sum(dim=1)  # (2P,)
    delta_w, delta_l = delta[:p], delta[p:]
    h = -(beta / 2.0) * (delta_w - delta_l) / chunk_norm
    loss = F.softplus(-h).mean()  # −log σ(h), stable for large |h|
    return TPOTerms(
        loss=loss,
        h=h,
        delta_chosen=delta_w,
        delta_rejected=delta_l,
        chosen_losses=loss_theta[:p, :c_w],
        chosen_mask=w_mask,
    )


def tpo_loss(
    policy: nn.Module,
    reference: nn.Module,
    chosen: Mapping[str, Tensor],
    rejected: Mapping[str, Tensor],
    *,
    beta: float,
    chunk_norm: float,
    t: Tensor | None = None,
    eps: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """L_TPO, trajectory-wise Diffusion-DPO (GRAPE, Zhang et al. 2024; DPO, Rafailov et al.
    2023; Diffusion-DPO, Wallace et al. 2023), and its metrics.

    Arguments as :func:`tpo_terms`.

    Returns:
        (loss, metrics): the scalar loss (with grad into `policy` only) and
        {"loss_tpo", "h_abs" (mean |h|), "implicit_accuracy" (fraction h > 0),
        "delta_chosen", "delta_rejected" (mean Δ of winners and losers)}.

    Example:
        >>> from policies import FlowMatchingConfig, FlowMatchingPolicy
        >>> cfg = FlowMatchingConfig(obs_dim=3, action_dim=2, obs_horizon=1, action_horizon=4,
        ...                          action_exec_horizon=2, backbone_kwargs={"hidden_dim": 16})
        >>> policy = FlowMatchingPolicy(cfg).fit_normalizers(np.random.rand(50, 3),
        ...                                                  np.random.rand(50, 2))
        >>> reference = frozen_copy(policy)
        >>> traj = lambda c: {"obs": np.zeros((c, 1, 3)), "action": np.zeros((c, 4, 2)), "task": 0}
        >>> chosen, rejected = pad_chunks([traj(3), traj(2)]), pad_chunks([traj(2), traj(4)])
        >>> loss, m = tpo_loss(policy, reference, chosen, rejected, beta=2000.0, chunk_norm=3.0)
        >>> round(float(loss.detach()), 6), m["implicit_accuracy"]   # θ = φ: log 2, no preference yet
        (0.693147, 0.0)
    """
    terms = tpo_terms(
        policy, reference, chosen, rejected, beta=beta, chunk_norm=chunk_norm, t=t, eps=eps
    )
    return terms.loss, terms.metrics()


def combined_loss(
    policy: nn.Module,
    reference: nn.Module,
    chosen: Mapping[str, Tensor],
    rejected: Mapping[str, Tensor],
    *,
    beta: float,
    chunk_norm: float,
    lambda_sft: float = 0.0,
    lambda_bc: float = 0.0,
    demos: Mapping[str, Tensor] | None = None,
    t: Tensor | None = None,
    eps: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """L = L_TPO + λ_sft·L_SFT(chosen chunks) + λ_bc·L_BC(demos).

    L_SFT is the policy's flow-matching loss on the chosen trajectories' chunks (each real chunk
    weighted equally), computed from the same forward pass as L_TPO (its (t, ε) are draws from
    the training distributions, so it is an unbiased estimate of `compute_loss` on them).
    L_BC is `policy.compute_loss(demos)` on a batch of demonstrations (fresh noise), which keeps
    the policy near the data it was cloned from. With λ_bc = λ_sft = 0 this is L_TPO.
    "Fine-tune on the chosen trajectories only" (β = 0, λ_sft > 0: no TPO term) is the baseline
    a TPO result must beat.

    Args:
        policy, reference, chosen, rejected, beta, chunk_norm, t, eps: as :func:`tpo_terms`.
        lambda_sft: weight of L_SFT (>= 0; REFERENCES.md: 0.1–1 moved the toy's samples).
        lambda_bc: weight of L_BC (>= 0); needs `demos`.
        demos: a training batch {"obs" (B, To, Do), "action" (B, Ta, Da), "task" (B,)}.

    Returns:
        (loss, metrics): metrics of :func:`tpo_loss` plus "loss" (the total), "loss_sft" and
        "loss_bc" (0.0 when their weight is 0).
    """
    for name, value in (("lambda_sft", lambda_sft), ("lambda_bc", lambda_bc)):
        if not value >= 0:
            raise ValueError(f"combined_loss: Got {name}={value}, expected >= 0")
    if lambda_bc > 0 and demos is None:
        raise ValueError(
            f"combined_loss: Got lambda_bc={lambda_bc} but no demos, expected a demonstration "
            "batch (or lambda_bc=0)"
        )
    if not beta >= 0:
        raise ValueError(f"combined_loss: Got beta={beta}, expected >= 0 (0: no TPO term)")
    # β = 0 is chosen-only fine-tuning (the baseline): no preference term in the loss; the
    # terms are still computed (with β = 1) for the same diagnostics (|h|, implicit accuracy).
    terms = tpo_terms(
        policy, reference, chosen, rejected, beta=beta if beta > 0 else 1.0,
        chunk_norm=chunk_norm, t=t, eps=eps
    )
    loss = terms.loss if beta > 0 else terms.loss * 0.0
    metrics = terms.metrics()
    mask = terms.chosen_mask
    sft = (terms.chosen_losses * mask).sum() / mask.sum().clamp(min=1)
    metrics["loss_sft"] = float(sft.detach())
    if lambda_sft > 0:
        loss = loss + lambda_sft * sft
    metrics["loss_bc"] = 0.0
    if lambda_bc > 0:
        assert demos is not None
        bc, _ = policy.compute_loss(dict(demos))
        loss = loss + lambda_bc * bc
        metrics["loss_bc"] = float(bc.detach())
    metrics["loss"] = float(loss.detach())
    return loss, metrics


def frozen_copy(policy: nn.Module) -> nn.Module:
    """A deep copy of `policy` in eval mode with `requires_grad` off: the reference φ."""
    import copy

    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _check_chunks(chunks: Any, name: str = "chunks") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if not isinstance(chunks, Mapping):
        raise TypeError(
            f"Got {name} of type {type(chunks).__name__}, expected a dict from pad_chunks"
        )
    missing = [k for k in CHUNK_KEYS if k not in chunks]
    if missing:
        raise ValueError(
            f"Got {name} with keys {sorted(chunks)}, missing {missing}; expected {CHUNK_KEYS} "
            "(build it with pad_chunks)"
        )
    obs, action, task, mask = (chunks[k] for k in CHUNK_KEYS)
    if mask.ndim != 2 or mask.dtype != torch.bool:
        raise ValueError(
            f"Got {name}['mask'] of shape {tuple(mask.shape)} and dtype {mask.dtype}, "
            "expected (P, C) bool"
        )
    p, c = mask.shape
    if obs.shape[:2] != (p, c) or action.shape[:2] != (p, c) or obs.ndim != 4 or action.ndim != 4:
        raise ValueError(
            f"Got {name} obs {tuple(obs.shape)}, action {tuple(action.shape)}, mask {(p, c)}; "
            "expected obs (P, C, To, Do) and action (P, C, Ta, Da)"
        )
    if task.shape != (p,):
        raise ValueError(f"Got {name}['task'].shape={tuple(task.shape)}, expected (P,)=({p},)")
    if not bool(mask.any(dim=1).all()):
        raise ValueError(f"Got {name} with a trajectory of 0 chunks, expected >= 1 each")
    return obs, action, task, mask


def _pad_to(x: Tensor, c: int, fill: Any = None) -> Tensor:
    """Pad axis 1 of x to length c, with `fill` or (None) the last entry."""
    extra = c - x.shape[1]
    if extra == 0:
        return x
    if fill is None:
        pad = x[:, -1:].expand(x.shape[0], extra, *x.shape[2:])
    else:
        pad = torch.full((x.shape[0], extra, *x.shape[2:]), fill, dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], dim=1)
