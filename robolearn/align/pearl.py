"""PEARL: zero-shot cross-task preference transfer and a robust reward model (``robolearn pearl``).

Liu et al., ICML 2024. A *source* task has preference labels, a *target* task only
trajectories; the loop carries the labels across and improves a target-task policy with them:

1. **pools** — a store of trajectories of mixed quality per task (:mod:`robolearn.align.pools`:
   scripted experts with increasing action noise, policy checkpoints, random actions), each
   with the per-step reward of the pinned Meta-World reward version; or stores you give;
2. **labels** — source labels from the scripted teacher (Bradley–Terry on the true returns,
   ``teacher.*``) or from a label file (CSV/JSON, validated against the source store:
   :mod:`robolearn.align.labels`); stored in ``<out>/labels/source.json`` with their digest;
3. **transfer (CPA)** — intra-task distance matrices C^S, C^T (``gw.distance`` on the
   normalised per-step observations, or [obs, action]), the Gromov–Wasserstein coupling T
   (POT; exact, entropic only with its concentration checked; fused by default with a small
   term on the task-agnostic features success / length / progress, ``gw.fused=false`` for plain
   GW: benchmarks/results/pearl_transfer_heldout.md), labels carried along it
   normalised per target pair, z_T = Tᵀ(M∘Z)T / TᵀMT, with a confidence each; an orientation
   check on held-out source labels catches (and with ``gw.orientation=auto`` undoes) a
   good↔bad reflection. The transferred pairs go to ``<out>/labels/target.json``;
4. **reward (RRL)** — a Gaussian per-step reward model (or a plain point-estimate
   Bradley–Terry one, ``reward.kind=point``) fitted on the most confident transferred pairs,
   weighted by confidence (``<out>/reward/transferred``);
5. **improve** — a policy trained on the target pool with the learned return
   (``improve.method``): ``filter`` (BC on the top ``keep_fraction`` of the pool by learned
   return, the default), ``weight`` (windows drawn ∝ exp(z/τ), z the standardised learned
   return) — both through the trainer's BC objective with per-episode weights — or ``tpo``
   (the GRAPE loop of ``robolearn align`` on the target task, from the no-label BC policy, its
   preference pairs scored by the learned reward); with ``improve.baselines=true`` also
   no-label BC on the whole pool and the oracle (a reward model fitted on as many scripted
   target labels), trained and evaluated alike;
6. **evaluate** — success on held-out target goals (``eval_seed``), with a bootstrap 95% CI
   over episodes; a summary table and ``pearl.png``.

The target's true reward is used only to *report* (label accuracy against the scripted
teacher on the target, Spearman of learned vs true return) and by the oracle baseline, never
by the transferred arm. ``pearl.json`` records every phase; running the same command again
after a crash continues where it stopped, and one made with other settings is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.align.labels import LabelSet, read_labels, teacher_label_set, write_labels
from robolearn.align.pearl_config import PearlConfig, RewardConfig, TeacherConfig, TransferConfig
from robolearn.align.pools import Pool, collect_pool, load_pool
from robolearn.errors import ConfigError, ReuseError

log = logging.getLogger(__name__)

STATE = "pearl.json"
ARMS = ("transferred", "oracle", "no_labels")


# ----------------------------------------------------------------------------- labels
def source_labels(cfg: PearlConfig, pool: Pool, *, flip_rate: float | None = None,
                  seed: int | None = None) -> LabelSet:
    """The source labels: the scripted teacher on the pool, or the label file validated
    against the source store."""
    if cfg.labels == "teacher":
        tcfg = cfg.teacher if flip_rate is None else dataclasses.replace(cfg.teacher,
                                                                         flip_rate=flip_rate)
        return teacher_label_set(pool.returns, pool.episodes, pool.task, tcfg,
                                 rewards=pool.reward, store=str(pool.path), seed=seed)
    from robolearn.data import EpisodeStore

    with EpisodeStore.open(pool.path, mode="r") as store:
        return read_labels(cfg.labels, store, pool.task)


def positions(pool: Pool, episodes: np.ndarray) -> np.ndarray:
    """Store episode indices → positions in the pool (every index must be in it)."""
    lookup = {int(e): k for k, e in enumerate(pool.episodes)}
    missing = [int(e) for e in np.asarray(episodes).reshape(-1) if int(e) not in lookup]
    if missing:
        raise ValueError(f"episodes {missing[:5]} are not in the {pool.task} pool of {pool.path}")
    return np.array([lookup[int(e)] for e in np.asarray(episodes).reshape(-1)], np.int64)


def true_preferences(pool: Pool) -> np.ndarray:
    """(n, n) the scripted teacher's hard labels on every pair: 1[R_j > R_l] (0.5 on ties)."""
    r = pool.returns
    d = r[:, None] - r[None, :]
    return np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))


# ----------------------------------------------------------------------------- transfer
@dataclass
class TransferResult:
    """What :func:`transfer` returns.

    Attributes:
        transfer: :class:`policies.alignment.Transfer` on the target pool (after any flip).
        coupling: The GW coupling.
        orientation: :class:`policies.alignment.Orientation`, or None (``gw.orientation=off``
            or no held-out labels).
        flipped: The labels were inverted because the orientation check said so.
        used, heldout: The source labels carried across and those kept for the check.
        seconds: Distances, coupling and transfer times.
    """

    transfer: Any
    coupling: Any
    orientation: Any
    flipped: bool
    used: LabelSet
    heldout: LabelSet
    seconds: dict[str, float]


def trajectory_features(pool: Pool, which: str) -> list[np.ndarray]:
    """Per-step features for the distances: ``obs`` or ``obs_action`` ([obs, action])."""
    if which == "obs":
        return [np.asarray(o, np.float64) for o in pool.obs]
    return pool.features()


def transfer(source: Pool, target: Pool, labels: LabelSet, cfg: TransferConfig, *,
             seed: int = 0, distances: tuple[np.ndarray, np.ndarray] | None = None
             ) -> TransferResult:
    """CPA: carry the source labels to the target pool along a (fused) GW coupling.

    Args:
        source, target: The two pools.
        labels: Source labels (store episode indices of the source pool).
        cfg: ``gw.*``.
        seed: Seeds the split of held-out labels (orientation check).
        distances: Precomputed (C_S, C_T) (:func:`pool_distances`), e.g. to reuse them.
    """
    from policies.alignment import (
        feature_cost,
        gw_coupling,
        orientation_check,
        pair_matrices,
        task_agnostic_features,
        transfer_labels,
    )

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    c_s, c_t = distances if distances is not None else pool_distances(source, target, cfg)
    times["distances"] = time.perf_counter() - t0
    held = np.zeros(len(labels), bool)
    if cfg.orientation != "off" and cfg.heldout_fraction > 0 and len(labels) >= 4:
        rng = np.random.default_rng([seed, 3])
        k = max(1, int(round(cfg.heldout_fraction * len(labels))))
        held[rng.permutation(len(labels))[:k]] = True
    used, heldout = labels.subset(~held), labels.subset(held)
    n_s = len(source)
    z, m = pair_matrices(n_s, positions(source, used.a), positions(source, used.b), used.label)
    features_cost = None
    if cfg.fused:
        horizon = float(max(source.length.max(), target.length.max()))
        features_cost = feature_cost(
            task_agnostic_features(source.success, source.length, source.progress, horizon),
            task_agnostic_features(target.success, target.length, target.progress, horizon))
    t0 = time.perf_counter()
    coupling = gw_coupling(c_s, c_t, solver=cfg.solver, features_cost=features_cost,
                           feature_weight=cfg.feature_weight, epsilon=cfg.epsilon,
                           min_concentration=cfg.min_concentration)
    times["coupling"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = transfer_labels(coupling.plan, z, m)
    times["transfer"] = time.perf_counter() - t0
    orientation, flipped = None, False
    if len(heldout) and cfg.orientation != "off":
        z_all, _ = pair_matrices(n_s, positions(source, labels.a), positions(source, labels.b),
                                 labels.label)
        _, m_held = pair_matrices(n_s, positions(source, heldout.a),
                                  positions(source, heldout.b), heldout.label)
        orientation = orientation_check(tr, target.anchor(), z_all, m_held, source.anchor())
        if cfg.orientation == "auto" and orientation.flipped:
            tr = dataclasses.replace(tr, labels=1.0 - tr.labels)
            flipped = True
    return TransferResult(tr, coupling, orientation, flipped, used, heldout,
                          {k: round(v, 3) for k, v in times.items()})


def pool_distances(source: Pool, target: Pool, cfg: TransferConfig) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """(C_S, C_T): the intra-task distance matrices of the two pools."""
    from policies.alignment import distance_matrix

    return (distance_matrix(trajectory_features(source, cfg.features), cfg.distance,
                            length=cfg.length),
            distance_matrix(trajectory_features(target, cfg.features), cfg.distance,
                            length=cfg.length))


def target_pairs(result: TransferResult, target: Pool, count: int,
                 min_confidence: float = 0.0, seed: int = 0) -> LabelSet:
    """The ``count`` most confident transferred target pairs, as a label set with their
    confidence. Ties are broken in a seeded random order, not by pair index: pools are stored
    agent by agent, so index order would favour some agents' trajectories."""
    j, l_, y, conf = result.transfer.pairs(min_confidence)
    order = _by_confidence(conf, seed)[:count]
    return LabelSet(target.task, target.episodes[j[order]], target.episodes[l_[order]],
                    y[order], store=str(target.path), confidence=conf[order],
                    provenance={"source": "transfer"})


def _by_confidence(conf: np.ndarray, seed: int) -> np.ndarray:
    """Indices by decreasing confidence, ties in a seeded random order."""
    shuffle = np.random.default_rng([seed, 5]).permutation(len(conf))
    return shuffle[np.argsort(-conf[shuffle], kind="stable")]


def label_report(result: TransferResult, target: Pool, seed: int = 0) -> dict[str, Any]:
    """Transferred-label accuracy against the scripted teacher on the target (its true
    returns): on every pair that got a label, on the most confident half (ties in a seeded
    random order), and flipped."""
    from policies.alignment import label_accuracy

    tr = result.transfer
    truth = true_preferences(target)
    n = len(target)
    every = label_accuracy(tr.labels, truth, np.ones((n, n)))
    j, l_ = np.triu_indices(n, k=1)
    ok = np.isfinite(tr.labels[j, l_]) & (truth[j, l_] != 0.5)
    idx = np.flatnonzero(ok)
    top = idx[_by_confidence(tr.confidence[j[idx], l_[idx]], seed)[: max(1, len(idx) // 2)]]
    mask = np.zeros((n, n))
    mask[j[top], l_[top]] = 1.0
    half = label_accuracy(tr.labels, truth, mask)
    conf = tr.confidence[j[idx], l_[idx]]
    o = result.orientation
    return {
        "accuracy": every["accuracy"], "confident_half": half["accuracy"],
        "flipped_accuracy": every["flipped_accuracy"], "pairs": every["n"],
        "coverage": float(np.isfinite(tr.labels[j, l_]).mean()),
        "confidence_spread": float(conf.std()) if len(conf) else 0.0,
        "concentration": result.coupling.concentration, "gw_cost": result.coupling.cost,
        "orientation": None if o is None else {
            "source_agreement": o.source_agreement, "target_agreement": o.target_agreement,
            "flipped": o.flipped, "reliable": o.reliable, "applied": result.flipped},
        "seconds": result.seconds,
    }


# ----------------------------------------------------------------------------- reward
def segments(pool: Pool, labels: LabelSet, stride: int = 1) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray, np.ndarray]:
    """Reward-model inputs for ``labels`` on ``pool``: (X (N, L, D), mask (N, L), index_a,
    index_b). Whole-episode labels use whole trajectories; windowed ones their window.
    ``stride`` keeps every stride-th step (a cheaper fit; the return is then a sum over those
    steps, consistently for training and prediction)."""
    feats = pool.features()
    keys: dict[tuple[int, int, int], int] = {}
    pa, pb = positions(pool, labels.a), positions(pool, labels.b)
    ia, ib = [], []
    for k in range(len(labels)):
        s, n = int(labels.start[k]), int(labels.length[k])
        for p, out in ((pa[k], ia), (pb[k], ib)):
            key = (int(p), s, n)
            if key not in keys:
                keys[key] = len(keys)
            out.append(keys[key])
    cuts = [feats[p][s:s + n] if n else feats[p] for (p, s, n) in keys]
    x, mask = pad_steps([c[::stride] for c in cuts])
    return x, mask, np.array(ia), np.array(ib)


def pad_steps(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """n arrays (T_i, D) → (n, max T, D) float32 zero-padded and the (n, max T) mask."""
    length = max(len(s) for s in seqs)
    x = np.zeros((len(seqs), length, seqs[0].shape[1]), np.float32)
    mask = np.zeros((len(seqs), length), bool)
    for k, s in enumerate(seqs):
        x[k, : len(s)] = s
        mask[k, : len(s)] = True
    return x, mask


def fit_reward(pool: Pool, labels: LabelSet, cfg: RewardConfig, *, kind: str | None = None,
               stride: int = 1) -> tuple[Any, dict[str, float]]:
    """A reward model fitted on labelled pairs of ``pool`` (weights: their confidence)."""
    from policies.alignment import RewardModel, RewardModelConfig, fit

    x, mask, ia, ib = segments(pool, labels, stride)
    mcfg = RewardModelConfig(input_dim=x.shape[2], kind=kind or cfg.kind,
                             hidden_dim=cfg.hidden_dim, num_layers=cfg.num_layers,
                             sigma_prior=cfg.sigma_prior, kl_weight=cfg.kl_weight,
                             sigma_min=min(1e-4, cfg.sigma_prior / 2))
    model = RewardModel(mcfg, seed=cfg.seed)
    result = fit(model, x, mask, ia, ib, labels.label, weights=labels.confidence,
                 epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    return model, result.final


def learned_returns(model: Any, pool: Pool, stride: int = 1) -> np.ndarray:
    """(n,) the model's mean return Σ_t μ(s_t, a_t) of every pool trajectory."""
    from policies.alignment import predict_return

    x, mask = pad_steps([f[::stride] for f in pool.features()])
    return predict_return(model, x, mask)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(np.asarray(x), np.asarray(y)).statistic)


# ----------------------------------------------------------------------------- improvement
def episode_weights(learned: np.ndarray, pool: Pool, store_size: int, method: str, *,
                    keep_fraction: float = 0.3, temperature: float = 0.5) -> np.ndarray:
    """One weight per store episode from the learned returns of the pool's episodes.

    ``filter``: 1 for the top ``keep_fraction`` of the pool (at least one), else 0;
    ``weight``: exp((z − max z)/τ), z the standardised learned return; ``none``: 1 each.
    Store episodes outside the pool get 0.
    """
    w = np.zeros(store_size)
    r = np.asarray(learned, np.float64)
    if method == "none":
        pool_w = np.ones_like(r)
    elif method == "filter":
        k = max(1, int(round(keep_fraction * len(r))))
        pool_w = np.zeros_like(r)
        pool_w[np.argsort(-r, kind="stable")[:k]] = 1.0
    elif method == "weight":
        z = (r - r.mean()) / max(r.std(), 1e-12)
        pool_w = np.exp((z - z.max()) / temperature)
    else:
        raise ValueError(f"Got method={method!r}, expected filter, weight or none")
    w[pool.episodes] = pool_w
    return w / w[pool.episodes].mean()


def train_policy(cfg: PearlConfig, dataset: Path, run: Path, weights: np.ndarray | None,
                 init: str = "") -> Path:
    """Train ``improve.policy`` on the target pool with per-episode sampling weights (the
    trainer's BC objective); resumable: a finished run is reused, a partial one continued."""
    from robolearn.checkpoint import LATEST, read_config, resolve_checkpoint
    from robolearn.train import Trainer, restore_or_explain
    from robolearn.train.config import TrainOptions, train_config_from

    imp = cfg.improve
    options = TrainOptions(
        dataset=str(dataset), out=str(run), steps=imp.steps, batch_size=imp.batch_size,
        lr=imp.lr, warmup_steps=min(200, imp.steps // 10), val_fraction=0.0,
        val_every=imp.steps, checkpoint_every=max(1, min(1000, imp.steps)), keep_checkpoints=1,
        log_every=max(1, min(100, imp.steps)), eval_every=0, seed=cfg.seed, device=cfg.device,
        tensorboard=False, progress=cfg.progress)
    tc = train_config_from(options, {"name": imp.policy})
    done = int(read_config(resolve_checkpoint(run))["step"]) if (run / LATEST).exists() else 0
    if done >= imp.steps:
        return resolve_checkpoint(run)
    trainer = Trainer(tc, run, episode_weights=weights, init_weights=init or None)
    if done:
        restore_or_explain(trainer, resolve_checkpoint(run))
    return trainer.run().checkpoint


def evaluate_policy(cfg: PearlConfig, checkpoint: Path) -> dict[str, Any]:
    """Success on ``eval_episodes`` held-out target goals, with a bootstrap 95% CI over
    episodes."""
    from robolearn.cluster import uses_ray
    from robolearn.evaluate import evaluate_agent
    from robolearn.evaluate.stats import bootstrap_ci
    from robolearn.evaluate.stats import mean as mean_stat
    from robolearn.rollout import agent_spec, load_agent, rollout_pool

    agent = load_agent(str(checkpoint), "cpu")
    spec = agent_spec(str(checkpoint), device="cpu", ship_files=uses_ray(cfg.ray))
    with rollout_pool(cfg.ray, spec, what="pearl evaluation", max_workers=1) as pool:
        result = evaluate_agent(agent, f"MT1:{cfg.target}", episodes_per_task=cfg.eval_episodes,
                                seed=cfg.eval_seed, num_envs=min(10, cfg.eval_episodes),
                                fast=cfg.fast, pool=pool, progress=cfg.progress)
    hits = np.array([r.success for r in result.episodes], np.float64)
    low, high = bootstrap_ci(hits[:, None], statistic=mean_stat) if len(hits) > 1 else (
        float(hits.mean()), float(hits.mean()))
    return {"success": float(hits.mean()), "ci95": [low, high], "episodes": len(hits)}


def reward_score_fn(model: Any, reference: np.ndarray, stride: int = 1) -> Any:
    """A ``score_fn`` for :func:`robolearn.align.loop.run_align`: the learned return of each
    rollout, standardised by the pool's learned returns (so ``min_margin`` is in their std)."""
    from policies.alignment import step_features

    mu, sd = float(np.mean(reference)), max(float(np.std(reference)), 1e-12)

    def score(trajectories: list[Any]) -> np.ndarray:
        feats = step_features([t.steps["obs"] for t in trajectories],
                              [t.steps["action"] for t in trajectories])
        x, mask = pad_steps([f[::stride] for f in feats])
        from policies.alignment import predict_return

        return (predict_return(model, x, mask) - mu) / sd

    score.describe = {"score": "pearl learned reward", "mean": mu, "std": sd}  # type: ignore[attr-defined]
    return score


# ----------------------------------------------------------------------------- the command
def run_pearl(cfg: PearlConfig, run_dir: Path) -> dict[str, Any]:
    """``robolearn pearl``: pools → labels → transfer → reward → improve → evaluate."""
    from policies.alignment import load_reward_model, save_reward_model

    t_start = time.perf_counter()
    out = Path(cfg.out) if cfg.out else Path("runs") / (
        f"pearl-{cfg.source.removesuffix('-v3')}-{cfg.target.removesuffix('-v3')}-"
        f"{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps({**dataclasses.asdict(cfg), "out": str(out),
                                      "run_dir": None, "ray": None}, default=str))
    settings.pop("progress")  # what is shown, not what is trained: may change between runs
    state = _load_state(out, settings)

    def save() -> None:
        _atomic_json(out / STATE, state)

    # 1. pools
    stores = {}
    for side, task, given in (("source", cfg.source, cfg.source_store),
                              ("target", cfg.target, cfg.target_store)):
        path = Path(given) if given else out / "pools" / f"{side}.zarr"
        if not path.exists():
            if given:
                raise ConfigError(f"{side}_store={given}: no such store; leave it empty to "
                                  f"collect a pool of {task} into {out / 'pools'}")
            t0 = time.perf_counter()
            collect_pool(path, task, cfg.pool, fast=cfg.fast, progress=cfg.progress)
            state.setdefault("seconds", {})[f"pool_{side}"] = round(time.perf_counter() - t0, 1)
        stores[side] = path
    source, target = load_pool(stores["source"], cfg.source), load_pool(stores["target"],
                                                                           cfg.target)
    state["pools"] = {side: {"store": str(p.path), "trajectories": len(p),
                             "success": float(p.success.mean()),
                             "return_quartiles": np.percentile(p.returns, [25, 50, 75]).round(
                                 1).tolist()} for side, p in (("source", source),
                                                              ("target", target))}
    # 2. source labels: stored with their digest; a changed label set is another run
    labels = source_labels(cfg, source)
    digest = write_labels(out / "labels" / "source.json", labels)
    if state.get("labels", {}).get("digest", digest) != digest:
        raise ReuseError(f"{out} was run with other source labels (digest "
                         f"{state['labels']['digest'][:12]}, now {digest[:12]}); use another "
                         "out= for the new labels")
    state["labels"] = {"digest": digest, "pairs": len(labels), "file": "labels/source.json",
                       "provenance": labels.provenance}
    save()
    # 3. transfer
    result = transfer(source, target, labels, cfg.gw, seed=cfg.teacher.seed)
    count = cfg.reward.pairs or len(result.used)
    chosen = target_pairs(result, target, count, cfg.reward.min_confidence)
    if not len(chosen):
        raise ReuseError(f"no transferred target pairs with confidence >= "
                         f"{cfg.reward.min_confidence}; lower reward.min_confidence")
    chosen.provenance = {"source": "transfer", "source_labels": digest,
                         "gw": dataclasses.asdict(cfg.gw), "flipped": result.flipped}
    state["transfer"] = {**label_report(result, target), "pairs_used": len(chosen),
                         "target_labels": write_labels(out / "labels" / "target.json", chosen)}
    np.savez(out / "labels" / "transfer.npz", plan=result.coupling.plan,
             labels=result.transfer.labels, confidence=result.transfer.confidence)
    save()
    _print_transfer(cfg, state["transfer"])
    # 4. reward models: the transferred one (and the oracle's, for the baselines)
    arms = ["transferred"]
    if cfg.improve.method != "none" and (cfg.improve.baselines or cfg.improve.method == "tpo"):
        arms.append("no_labels")
    if cfg.improve.baselines:
        arms.append("oracle")
    rewards: dict[str, np.ndarray] = {}
    models: dict[str, Any] = {}
    for arm in [a for a in arms if a != "no_labels"]:
        directory = out / "reward" / arm
        rec = state.setdefault("reward", {}).get(arm)
        if rec is None or not (directory / "model.safetensors").exists():
            arm_labels = chosen if arm == "transferred" else oracle_labels(cfg, target,
                                                                           len(chosen))
            if arm == "oracle":
                write_labels(out / "labels" / "oracle.json", arm_labels)
            t0 = time.perf_counter()
            model, final = fit_reward(target, arm_labels, cfg.reward, stride=cfg.reward.stride)
            save_reward_model(model, directory)
            rec = {"fit": final, "pairs": len(arm_labels),
                   "seconds": round(time.perf_counter() - t0, 1)}
        model = load_reward_model(directory)
        models[arm] = model
        rewards[arm] = learned_returns(model, target, cfg.reward.stride)
        rec["spearman"] = spearman(rewards[arm], target.returns)
        state["reward"][arm] = rec
        save()
    # 5. improve and 6. evaluate
    if cfg.improve.method != "none":
        from robolearn.data import EpisodeStore

        with EpisodeStore.open(target.path, mode="r") as store:
            size = len(store)
        runs = state.setdefault("improve", {})
        for arm in arms:
            if cfg.improve.method == "tpo" and arm == "transferred":
                continue  # after the no-label base below
            rec = runs.setdefault(arm, {})
            if "checkpoint" not in rec:
                method = "none" if arm == "no_labels" else (
                    "filter" if cfg.improve.method == "tpo" else cfg.improve.method)
                w = episode_weights(rewards.get(arm, np.zeros(len(target))), target, size,
                                    method, keep_fraction=cfg.improve.keep_fraction,
                                    temperature=cfg.improve.temperature)
                t0 = time.perf_counter()
                ckpt = train_policy(cfg, target.path, out / "improve" / arm, w,
                                    cfg.improve.init_checkpoint)
                rec |= {"checkpoint": str(ckpt), "method": method,
                        "train_seconds": round(time.perf_counter() - t0, 1),
                        "kept_true_return": _kept_return(w, target)}
                save()
            if "eval" not in rec:
                rec["eval"] = evaluate_policy(cfg, Path(rec["checkpoint"]))
                save()
        if cfg.improve.method == "tpo":
            rec = runs.setdefault("transferred", {})
            if "checkpoint" not in rec:
                rec |= run_tpo(cfg, out, Path(runs["no_labels"]["checkpoint"]), target.path,
                               models["transferred"], rewards["transferred"], run_dir)
                save()
            if "eval" not in rec:
                rec["eval"] = evaluate_policy(cfg, Path(rec["checkpoint"]))
                save()
        _install_result(out, Path(runs["transferred"]["checkpoint"]))
    plot = plot_pearl(state, target, rewards, out / "pearl.png")
    summary = {"out": str(out), "source": cfg.source, "target": cfg.target,
               "labels": state["labels"], "transfer": state["transfer"],
               "reward": state.get("reward", {}), "improve": state.get("improve", {}),
               "checkpoint": str(out / "checkpoint") if (out / "checkpoint").exists() else None,
               "plot": str(plot), "seconds": round(time.perf_counter() - t_start, 1)}
    _print_summary(summary)
    return summary


def oracle_labels(cfg: PearlConfig, target: Pool, count: int) -> LabelSet:
    """The oracle's labels: the scripted teacher on ``count`` random target pairs (clean)."""
    tcfg = TeacherConfig(pairs=count, mode=cfg.teacher.mode, temperature=cfg.teacher.temperature,
                         equal_margin=cfg.teacher.equal_margin, segment=cfg.teacher.segment,
                         seed=cfg.teacher.seed + 1)
    labels = teacher_label_set(target.returns, target.episodes, target.task, tcfg,
                               rewards=target.reward, store=str(target.path))
    labels.provenance["source"] = "oracle-teacher"
    return labels


def run_tpo(cfg: PearlConfig, out: Path, base: Path, dataset: Path, model: Any,
            reference: np.ndarray, run_dir: Path) -> dict[str, Any]:
    """GRAPE's loop (``robolearn align``) on the target task from ``base``, its preference
    pairs scored by the learned reward instead of GRAPE's costs."""
    from robolearn.align.config import AlignConfig
    from robolearn.align.loop import run_align

    imp = cfg.improve
    acfg = AlignConfig(checkpoint=str(base), suite=f"MT1:{cfg.target}", out=str(out / "tpo"),
                       method="tpo", preset="success", iterations=imp.tpo_iterations,
                       groups_per_task=imp.tpo_groups, rollouts_per_group=imp.tpo_rollouts,
                       min_margin=imp.tpo_min_margin, steps_per_iteration=imp.tpo_steps,
                       dataset=str(dataset), seed=cfg.seed, contacts=False,
                       eval_episodes=min(cfg.eval_episodes, 10), eval_seed=cfg.eval_seed,
                       fast=cfg.fast, device=cfg.device, ray=cfg.ray,
                       run_dir=str(run_dir / "tpo"))
    t0 = time.perf_counter()
    summary = run_align(acfg, run_dir, score_fn=reward_score_fn(model, reference,
                                                                  cfg.reward.stride))
    return {"checkpoint": summary["checkpoint"], "method": "tpo",
            "train_seconds": round(time.perf_counter() - t0, 1),
            "tpo_pairs": [r.get("pairs") for r in summary["iterations"]]}


def _kept_return(weights: np.ndarray, pool: Pool) -> float:
    """The weighted mean true return of what the policy trains on (a diagnostic)."""
    w = weights[pool.episodes]
    return float((w * pool.returns).sum() / max(w.sum(), 1e-12))


def _install_result(out: Path, checkpoint: Path) -> None:
    """The improved policy as an ordinary checkpoint of ``out`` (``load_policy(out)``)."""
    from robolearn.checkpoint import install_checkpoint, resolve_checkpoint

    checkpoint = resolve_checkpoint(checkpoint)
    final = out / "checkpoints" / checkpoint.name
    if (out / "checkpoint").exists() and resolve_checkpoint(out) == final.resolve():
        return
    tmp = out / "checkpoints" / f".tmp_{checkpoint.name}_{os.getpid()}"
    tmp.parent.mkdir(exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp)
    if final.exists():
        shutil.rmtree(final)
    install_checkpoint(out, tmp, final)


def _load_state(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    path = out / STATE
    if not path.exists():
        return {"settings": settings}
    state = json.loads(path.read_text())
    if state.get("settings") != settings:
        have = state.get("settings", {})
        diff = sorted(k for k in set(have) | set(settings) if have.get(k) != settings.get(k))
        raise ReuseError(f"{out} holds a PEARL run made with other settings "
                         f"({', '.join(diff)}); use another out= or its settings")
    return state


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- reporting
def plot_pearl(state: dict[str, Any], target: Pool, rewards: dict[str, np.ndarray],
               path: Path) -> Path:
    """Label accuracy, learned vs true return, success per arm (with 95% CIs)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.8), layout="constrained")
    ax = fig.add_subplot(1, 3, 1)
    t = state["transfer"]
    names = ["all", "confident half", "flipped"]
    vals = [t["accuracy"], t["confident_half"], t["flipped_accuracy"]]
    ax.bar(names, vals, color=["C0", "C2", "C3"])
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_title("transferred labels vs target teacher", fontsize=9)
    ax = fig.add_subplot(1, 3, 2)
    for k, (arm, r) in enumerate(rewards.items()):
        z = (r - r.mean()) / max(r.std(), 1e-12)
        rho = state["reward"][arm]["spearman"]
        ax.scatter(target.returns, z, s=8, alpha=0.6, color=f"C{k}", label=f"{arm} ρ={rho:.2f}")
    ax.set_xlabel("true return (pinned reward)")
    ax.set_ylabel("learned return (standardised)")
    ax.legend(fontsize=7)
    ax.set_title("reward model on the target pool", fontsize=9)
    ax = fig.add_subplot(1, 3, 3)
    runs = state.get("improve", {})
    arms = [a for a in ARMS if "eval" in runs.get(a, {})]
    if arms:
        s = [runs[a]["eval"]["success"] for a in arms]
        lo = [s[k] - runs[a]["eval"]["ci95"][0] for k, a in enumerate(arms)]
        hi = [runs[a]["eval"]["ci95"][1] - s[k] for k, a in enumerate(arms)]
        ax.bar(arms, s, yerr=[lo, hi], capsize=4, color=["C0", "C1", "C7"][: len(arms)])
        ax.set_ylim(0, 1.05)
    ax.set_title(f"{target.task} success (held-out goals)", fontsize=9)
    settings = state["settings"]
    fig.suptitle(f"PEARL {settings['source']} → {settings['target']}", fontsize=10)
    fig.savefig(path, dpi=110)
    return path


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _print_transfer(cfg: PearlConfig, t: dict[str, Any]) -> None:
    from rich.console import Console

    o = t["orientation"] or {}
    Console().print(
        f"transfer {cfg.source} → {cfg.target}: {t['pairs']} target pairs labelled, accuracy vs "
        f"the target teacher {_fmt(t['accuracy'])} (confident half {_fmt(t['confident_half'])}, "
        f"flipped {_fmt(t['flipped_accuracy'])}); plan concentration "
        f"{_fmt(t['concentration'])}; orientation: anchor agrees with held-out source labels "
        f"{_fmt(o.get('source_agreement'))}, with the transfer {_fmt(o.get('target_agreement'))}"
        f"{' — inverted, undone' if o.get('applied') else ''}")


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"robolearn pearl {summary['source']} → {summary['target']}")
    for col in ("arm", "reward pairs", "Spearman(learned, true)", "policy", "success",
                "95% CI"):
        table.add_column(col, justify="right")
    for arm in ARMS:
        r = summary["reward"].get(arm, {})
        i = summary["improve"].get(arm, {})
        if not r and not i:
            continue
        e = i.get("eval", {})
        ci = e.get("ci95")
        table.add_row(arm, _fmt(r.get("pairs")), _fmt(r.get("spearman")), i.get("method", "-"),
                      _fmt(e.get("success")), f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-")
    console = Console()
    console.print(table)
    console.print(f"checkpoint: {summary['checkpoint']}\nplot: {summary['plot']}")
