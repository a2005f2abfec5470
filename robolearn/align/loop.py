"""GRAPE-style preference alignment of a flow-matching policy (``robolearn align``).

Each iteration i, starting from the base checkpoint (or the previous iteration's):

1. **roll out** the current policy ``rollouts_per_group`` times per group — a group is (task,
   goal seed, TaskParams draw), so its rollouts share their initial state and physics and differ
   only in the policy's own sampling noise — through the one rollout engine, on Ray actors,
   recording commanded chunks, applied actions, Meta-World's info and contacts;
2. **score** each rollout with GRAPE's R = λ1·R_self + λ2·R_ext + λ3·1[success] from stage-wise
   costs scaled within its group (:func:`policies.alignment.score_trajectories`; presets
   efficiency / smooth / safe / robust / all, or ``success`` alone; R_self is 0: a
   flow-matching policy has no tractable likelihood and GRAPE's weight on it is 0.01);
3. **pair** best vs worst within a group, when the score margin is at least ``min_margin``;
   the rollouts are kept in ``iter_<i>/rollouts.zarr`` (``source=policy``) and the pairs next to
   them (``iter_<i>/pairs.json``, store episode indices);
4. **train** with the trainer's preference objective (:class:`TPOObjective`:
   L_TPO + λ_sft·L_SFT(chosen) + λ_bc·L_BC(demos), the frozen reference = the policy at the
   start of the iteration), or a baseline on the same rollouts: ``method=sft`` (chosen-only
   fine-tuning: β = 0), ``dpo`` (the TPO term only), ``bc`` (continued BC on the demos);
5. **evaluate** on held-out goals (``eval_seed``; never the rollout goals): success, steps to
   success, jerk, chunk-boundary jumps, contact steps and peak force; optionally under a latency
   and a gain gap (``robust_eval``).

The result is an ordinary checkpoint in ``out`` (``load_policy``, ``evaluate``, ``deploy``), its
``config.json`` recording the objective, the preset, the iteration and the parent checkpoint.
``align.json`` holds every iteration's record; re-running the same command after a crash
continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.align.config import AlignConfig
from robolearn.errors import ConfigError, ReuseError

log = logging.getLogger(__name__)

STATE = "align.json"
ROLLOUT_SEED = 4000  # + cfg.seed: the rollout goals (collection uses 0, evaluation 1000)


# ----------------------------------------------------------------------------- records
def group_specs(cfg: AlignConfig, tasks: Sequence[str], iteration: int, physics: Any) -> list:
    """The iteration's groups: per task, ``groups_per_task`` (goal seed, TaskParams) points,
    each repeated ``rollouts_per_group`` times (one lock-step batch per group)."""
    from robolearn.rollout import EpisodeSpec, episode_seed

    groups = []
    for task in tasks:
        for g in range(cfg.groups_per_task):
            index = iteration * cfg.groups_per_task + g
            seed = episode_seed(ROLLOUT_SEED + cfg.seed, task, index)
            params, rand_vec = physics.draw(task, seed)
            groups.append([EpisodeSpec(task, index * cfg.rollouts_per_group + j, seed, params,
                                       rand_vec) for j in range(cfg.rollouts_per_group)])
    return groups


def rollout_groups(cfg: AlignConfig, checkpoint: Path, groups: list, suite: Any) -> list:
    """Every group as one lock-step batch on the current checkpoint (Ray actors when asked)."""
    from robolearn.cluster import uses_ray
    from robolearn.rollout import (
        RolloutOptions,
        TaskAffinity,
        agent_spec,
        load_agent,
        make_envs,
        rollout_pool,
        run_batch,
    )

    options = RolloutOptions(horizon=cfg.horizon, record="steps", contacts=cfg.contacts,
                             fast=cfg.fast, goal_observable=suite.goal_observable)
    n = cfg.rollouts_per_group
    spec = agent_spec(str(checkpoint), device="cpu", ship_files=uses_ray(cfg.ray))
    with rollout_pool(cfg.ray, spec, what="robolearn align", max_workers=len(groups)) as pool:
        if pool is None:
            agent = load_agent(str(checkpoint), "cpu")
            out: list = []
            envs: dict[str, list] = {}
            for specs in groups:
                task = specs[0].task
                if task not in envs:
                    envs = {task: make_envs(task, n, goal_observable=suite.goal_observable,
                                            fast=cfg.fast)}
                out.append(run_batch(agent, envs[task], specs, options))
            return out
        tasks = list(dict.fromkeys(s[0].task for s in groups))
        pending = {t: [k for k, s in enumerate(groups) if s[0].task == t] for t in tasks}
        affinity = TaskAffinity(tasks)

        def next_call(slot: int) -> tuple | None:
            task = affinity.pick(slot, lambda t: bool(pending[t]))
            if task is None:
                return None
            k = pending[task].pop(0)
            return k, (groups[k], options, n), {}

        results: dict[int, list] = {}
        for k, (trajs, _videos) in pool.run(next_call):
            results[k] = trajs
        return [results[k] for k in range(len(groups))]


def score_and_pair(cfg: AlignConfig, trajectories: list,
                   score_fn: Callable[[list], np.ndarray] | None = None) -> tuple[Any, list]:
    """GRAPE scores within each group and the best-vs-worst pairs. ``score_fn`` (the flat
    trajectories → (N,) scores, higher is better), when given, replaces GRAPE's scores, e.g.
    a learned reward (``robolearn pearl improve.method=tpo``)."""
    from policies.alignment import make_pairs, score_trajectories, trajectory_costs

    flat = [t for group in trajectories for t in group]
    groups = [k for k, group in enumerate(trajectories) for _ in group]
    if score_fn is not None:
        score = np.asarray(score_fn(flat), dtype=np.float64).reshape(-1)
        if score.shape != (len(flat),) or not np.isfinite(score).all():
            raise ValueError(f"score_fn returned {score.shape} scores (finite: "
                             f"{bool(np.isfinite(score).all())}), expected {len(flat)} finite")
        scores: Any = ExternalScores(score)
        return scores, make_pairs(score, groups, min_margin=cfg.min_margin,
                                  pairs_per_group=cfg.pairs_per_group)
    costs = [trajectory_costs(t.steps, success=t.success) for t in flat]
    success = [t.success for t in flat]
    if cfg.weights:
        scores = score_trajectories(costs, success, groups, weights=dict(cfg.weights))
    elif cfg.preset == "success":
        scores = score_trajectories(costs, success, groups, weights="all",
                                    lambdas=(0.0, 0.0, 1.0))
    else:
        scores = score_trajectories(costs, success, groups, weights=cfg.preset)
    pairs = make_pairs(scores.score, groups, min_margin=cfg.min_margin,
                       pairs_per_group=cfg.pairs_per_group)
    return scores, pairs


@dataclasses.dataclass
class ExternalScores:
    """Scores from a ``score_fn`` (what :func:`save_rollouts` records of them)."""

    score: np.ndarray
    keys: list[str] = dataclasses.field(default_factory=lambda: ["external"])


def pair_videos(cfg: AlignConfig, flat: list, pairs: list, out: Path, *,
                goal_observable: bool = True) -> list[str]:
    """MP4s of ``cfg.videos`` pairs, chosen on the left and rejected on the right, taking the
    tasks in turn (``<out>/pair<k>_<task>.mp4``; :mod:`robolearn.align.videos`)."""
    from robolearn.align.videos import pair_video

    by_task: dict[str, list] = {}
    for p in pairs:
        by_task.setdefault(flat[p.chosen].task, []).append(p)
    order = []  # the tasks in turn, each in its pairs' order
    for rank in range(max(len(ps) for ps in by_task.values())):
        order += [ps[rank] for ps in by_task.values() if rank < len(ps)]
    paths = []
    for k, p in enumerate(order[:cfg.videos]):
        task = flat[p.chosen].task
        path = pair_video(flat[p.chosen], flat[p.rejected], out / f"pair{k}_{task}.mp4",
                          size=cfg.video_size, fast=cfg.fast, goal_observable=goal_observable)
        paths.append(str(path))
    return paths


# ----------------------------------------------------------------------------- storage
def save_rollouts(path: Path, trajectories: list, scores: Any, pairs: list,
                  iteration: int) -> None:
    """The iteration's rollouts (an episode store, source=policy), their chunks (npz) and the
    pairs (JSON, store episode indices), each written atomically."""
    import sim
    from robolearn.data import build_store
    from robolearn.rollout import RolloutOptions, store_extras, trajectory_rows

    flat = [t for group in trajectories for t in group]
    contacts = "contact_count" in flat[0].steps
    extras = store_extras(RolloutOptions(record="steps", contacts=contacts), sim.ACTION_DIM)
    store_path = path / "rollouts.zarr"
    if not store_path.exists():
        with build_store(store_path, sim.OBS_DIM, sim.ACTION_DIM, extras=extras,
                         attrs={"source": "align", "iteration": iteration}) as store:
            for k, t in enumerate(flat):
                store.add_episode(trajectory_rows(t, tuple(extras)), task=t.task,
                                  source="policy", params=t.spec.params, seed=t.seed,
                                  policy_id=t.policy_id,
                                  info={"iteration": iteration, "rollout": k,
                                        "score": float(scores.score[k]),
                                        "success": t.success})
    chunks = {}
    for k, t in enumerate(flat):
        chunks[f"obs_{k}"] = t.chunks["obs"]
        chunks[f"action_{k}"] = t.chunks["action"]
    _atomic_npz(path / "chunks.npz", chunks)
    _atomic_json(path / "pairs.json", {
        "store": "rollouts.zarr", "iteration": iteration,
        "pairs": [{"chosen": p.chosen, "rejected": p.rejected, "margin": p.margin,
                   "group": int(p.group)} for p in pairs],
        "tasks": [t.task for t in flat], "scores": [float(s) for s in scores.score],
        "success": [bool(t.success) for t in flat], "cost_keys": scores.keys,
    })


def load_chunks(path: Path) -> list[dict[str, np.ndarray]]:
    """The generated chunks of the iteration's rollouts, in rollout order."""
    with np.load(path / "chunks.npz", allow_pickle=False) as data:
        n = len([k for k in data.files if k.startswith("obs_")])
        return [{"obs": data[f"obs_{k}"], "action": data[f"action_{k}"]} for k in range(n)]


def _atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- training
class PairBatches:
    """Training batches of preference pairs: ``{"chosen", "rejected"}`` padded chunk batches
    (:func:`policies.alignment.pad_chunks`) and, for the BC term, ``"demo"`` windows."""

    def __init__(self, chunks: list[dict[str, np.ndarray]], tasks: list[int],
                 pairs: list[dict[str, Any]], demos: Any = None, demo_batch: int = 0):
        if not pairs:
            raise ValueError("no preference pairs to train on")
        self.chunks, self.tasks, self.pairs = chunks, tasks, pairs
        self.demos, self.demo_batch = demos, demo_batch

    def _side(self, idx: list[int]) -> dict[str, Any]:
        from policies.alignment import pad_chunks

        return pad_chunks([{**self.chunks[i], "task": self.tasks[i]} for i in idx])

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, Any]:
        picks = rng.integers(0, len(self.pairs), size=batch_size)
        batch = {"chosen": self._side([self.pairs[k]["chosen"] for k in picks]),
                 "rejected": self._side([self.pairs[k]["rejected"] for k in picks])}
        if self.demos is not None and self.demo_batch:
            batch["demo"] = self.demos.sample(self.demo_batch, rng)
        return batch


class TPOObjective:
    """GRAPE's trajectory-wise preference objective for flow matching (the trainer's
    ``objective``): L = L_TPO + λ_sft·L_SFT(chosen) + λ_bc·L_BC(demos), with a frozen reference
    (:func:`policies.alignment.combined_loss`; β = 0 gives chosen-only fine-tuning)."""

    name = "tpo"

    def __init__(self, reference: Any, *, beta: float, chunk_norm: float, lambda_sft: float,
                 lambda_bc: float, info: dict[str, Any] | None = None):
        from robolearn.train.objectives import frozen

        self.reference = frozen(reference)
        self.beta, self.chunk_norm = float(beta), float(chunk_norm)
        self.lambda_sft, self.lambda_bc = float(lambda_sft), float(lambda_bc)
        self.info = dict(info or {})

    def __call__(self, policy: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        from policies.alignment import combined_loss

        return combined_loss(policy, self.reference, batch["chosen"], batch["rejected"],
                             beta=self.beta, chunk_norm=self.chunk_norm,
                             lambda_sft=self.lambda_sft, lambda_bc=self.lambda_bc,
                             demos=batch.get("demo"))

    def modules(self) -> dict[str, Any]:
        return {"reference": self.reference}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "beta": self.beta, "chunk_norm": self.chunk_norm,
                "lambda_sft": self.lambda_sft, "lambda_bc": self.lambda_bc, **self.info}


def train_iteration(cfg: AlignConfig, base: Path, it_dir: Path, dataset: str,
                    chunks: list[dict[str, np.ndarray]], pairs_doc: dict[str, Any],
                    task_names: list[str], info: dict[str, Any]) -> Path:
    """One iteration's fine-tuning, warm-started from ``base``: a normal run in
    ``<iteration>/train`` (resumable: a crash continues from its newest checkpoint)."""
    from policies.alignment import median_chunk_count
    from robolearn.checkpoint import LATEST, read_config, resolve_checkpoint
    from robolearn.data import EpisodeStore, SequenceSampler
    from robolearn.runtime import load_policy
    from robolearn.train import BehaviourCloning, Trainer, restore_or_explain
    from robolearn.train.config import train_config_from

    base_cfg = read_config(base)
    run = it_dir / "train"
    tc = _train_config(cfg, base_cfg, dataset, run, train_config_from)
    policy = load_policy(base, device="cpu").policy
    done = int(read_config(resolve_checkpoint(run))["step"]) if (run / LATEST).exists() else 0
    if done >= cfg.steps_per_iteration:
        return resolve_checkpoint(run)
    index = {t: i for i, t in enumerate(base_cfg["tasks"])}
    if cfg.method == "bc":
        objective: Any = BehaviourCloning()
        batches = None
    else:
        with EpisodeStore.open(dataset) as store:
            pc = policy.config
            demos = SequenceSampler(store, pc.obs_horizon, pc.action_horizon) \
                if cfg.lambda_bc > 0 else None
        counts = [c["obs"].shape[0] for c in chunks]
        beta = 0.0 if cfg.method == "sft" else cfg.beta
        lam_sft = 1.0 if cfg.method == "sft" else (0.0 if cfg.method == "dpo" else cfg.lambda_sft)
        lam_bc = 0.0 if cfg.method == "dpo" else cfg.lambda_bc
        objective = TPOObjective(policy, beta=beta, chunk_norm=median_chunk_count(counts),
                                 lambda_sft=lam_sft, lambda_bc=lam_bc if demos else 0.0,
                                 info=info)
        batches = PairBatches(chunks, [index[t] for t in pairs_doc["tasks"]],
                              pairs_doc["pairs"], demos=demos, demo_batch=cfg.demo_batch_size)
    trainer = Trainer(tc, run, objective=objective, batches=batches, init_weights=base)
    if done:
        restore_or_explain(trainer, resolve_checkpoint(run))
    result = trainer.run()
    return result.checkpoint


def _train_config(cfg: AlignConfig, base_cfg: dict[str, Any], dataset: str, run: Path,
                  train_config_from: Any) -> Any:
    from robolearn.train.config import TrainOptions

    base_train = base_cfg.get("train") or {}
    policy = {"name": base_cfg["policy"]["policy"], **{
        k: v for k, v in base_cfg["policy"].items()
        if k not in ("policy", "obs_dim", "action_dim", "num_tasks")}}
    batch = cfg.batch_size * (4 if cfg.method == "bc" else 1)
    options = TrainOptions(dataset=dataset, out=str(run), steps=cfg.steps_per_iteration,
                           batch_size=batch, lr=cfg.lr, warmup_steps=0, lr_min_ratio=1.0,
                           ema_decay=float(base_train.get("ema_decay", 0.999)),
                           val_every=cfg.steps_per_iteration, log_every=max(1, min(
                               50, cfg.steps_per_iteration)), checkpoint_every=max(1, min(
                               100, cfg.steps_per_iteration)),
                           keep_checkpoints=1, seed=cfg.seed, device=cfg.device,
                           tensorboard=False, progress=cfg.progress, eval_every=0)
    return train_config_from(options, policy)


# ----------------------------------------------------------------------------- evaluation
def evaluate_iteration(cfg: AlignConfig, checkpoint: Path, suite: Any) -> dict[str, Any]:
    """Held-out goals: success and what the presets improve; optionally under gaps."""
    import sim
    from robolearn.cluster import uses_ray
    from robolearn.evaluate import evaluate_agent
    from robolearn.rollout import FixedPhysics, agent_spec, load_agent, rollout_pool

    agent = load_agent(str(checkpoint), cfg.device if cfg.device != "auto" else "cpu")
    spec = agent_spec(str(checkpoint), device="cpu", ship_files=uses_ray(cfg.ray))
    out: dict[str, Any] = {}
    gaps = {"nominal": None}
    if cfg.robust_eval:
        gaps |= {f"latency{cfg.eval_latency}": sim.TaskParams(action_latency=cfg.eval_latency),
                 f"gain{cfg.eval_gain:g}": sim.TaskParams(actuator_gain_scale=cfg.eval_gain)}
    tasks = suite.train_tasks
    with rollout_pool(cfg.ray, spec, what="align evaluation", max_workers=len(tasks)) as pool:
        for name, params in gaps.items():
            result = evaluate_agent(agent, suite, episodes_per_task=cfg.eval_episodes,
                                    seed=cfg.eval_seed, num_envs=min(10, cfg.eval_episodes),
                                    horizon=cfg.horizon,
                                    physics=FixedPhysics(params), record_steps=name == "nominal",
                                    contacts=cfg.contacts, fast=cfg.fast, pool=pool,
                                    progress=cfg.progress)
            out[name] = {"success": result.mean_success,
                         "success_by_task": result.success_by_task}
            if name == "nominal":
                out[name] |= trajectory_metrics(result.trajectories or [])
    return out


def trajectory_metrics(trajectories: list) -> dict[str, float]:
    """Means over episodes: steps to success (successes only), jerk (mean ‖Δ²a‖²), the jump at
    chunk boundaries (mean ‖a_t − a_t-1‖), steps with robot contacts, peak contact force."""
    steps, jerk, jump, contact, force = [], [], [], [], []
    for t in trajectories:
        a = t.steps["action"].astype(np.float64)
        if t.first_success:
            steps.append(t.first_success)
        if len(a) >= 3:
            jerk.append(float(np.mean(np.sum(np.diff(a, 2, axis=0) ** 2, axis=1))))
        chunk = t.steps["chunk_index"]
        boundary = np.flatnonzero(np.diff(chunk) != 0) + 1
        if len(boundary):
            jump.append(float(np.mean(np.linalg.norm(a[boundary] - a[boundary - 1], axis=1))))
        if "contact_count" in t.steps:
            contact.append(float(np.count_nonzero(t.steps["contact_count"] > 0)))
            force.append(float(t.steps["contact_force"].max()))

    def mean(x: list[float]) -> float | None:
        return float(np.mean(x)) if x else None

    return {"steps_to_success": mean(steps), "jerk": mean(jerk), "chunk_jump": mean(jump),
            "contact_steps": mean(contact), "peak_force": mean(force)}


# ----------------------------------------------------------------------------- the command
def run_align(cfg: AlignConfig, run_dir: Path, *,
              score_fn: Callable[[list], np.ndarray] | None = None) -> dict[str, Any]:
    """``robolearn align``: iterations of roll out → score → pair → train → evaluate.
    ``score_fn`` (in code only): see :func:`score_and_pair`; its ``describe`` attribute, if
    any, is part of the run's settings."""
    import sim
    from robolearn.checkpoint import install_checkpoint, read_config, resolve_checkpoint
    from robolearn.rollout.physics import physics_from_config

    suite = sim.get_suite(cfg.suite)
    tasks = list(suite.train_tasks)
    base = resolve_checkpoint(cfg.checkpoint)
    base_cfg = read_config(base)
    if cfg.method != "bc" and base_cfg["policy"].get("policy") != "flow_matching":
        raise ConfigError(f"align method={cfg.method} needs a flow-matching policy; "
                          f"{cfg.checkpoint} is {base_cfg['policy'].get('policy')!r} (use "
                          "method=bc, or align a flow-matching checkpoint)")
    unknown = [t for t in tasks if t not in base_cfg["tasks"]]
    if unknown:
        raise ConfigError(f"{cfg.checkpoint} was not trained on {unknown}; its tasks: "
                          f"{base_cfg['tasks']}")
    dataset = cfg.dataset or base_cfg.get("dataset") or ""
    if not dataset or not Path(dataset).exists():
        raise ConfigError(f"align needs the policy's demonstrations (the BC term, the trainer's "
                          f"data): {dataset or '(none recorded)'} not found; pass dataset=<store>")
    from robolearn.data import EpisodeStore

    with EpisodeStore.open(dataset) as store:
        if store.tasks != list(base_cfg["tasks"]):
            raise ConfigError(f"dataset={dataset} holds tasks {store.tasks}, the policy was "
                              f"trained on {base_cfg['tasks']} (in that order); give the store it "
                              "was trained on")
    physics = physics_from_config(cfg.params, cfg.randomize, cfg.distribution)
    out = Path(cfg.out) if cfg.out else Path("runs") / (
        f"align-{cfg.method}-{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps({**dataclasses.asdict(cfg), "checkpoint": str(base),
                                      "out": str(out), "run_dir": None, "ray": None}, default=str))
    # what is shown, not what is trained: may change between runs
    for shown in ("videos", "video_size", "progress"):
        settings.pop(shown)
    if score_fn is not None:
        settings["score_fn"] = json.loads(json.dumps(getattr(score_fn, "describe", "external"),
                                                     default=str))
    state = _load_state(out, settings)
    if cfg.videos:
        from robolearn.rollout.video import check_video_support

        check_video_support()  # before any rollout is spent
    t_start = time.perf_counter()
    if "base_eval" not in state:
        state["base_eval"] = evaluate_iteration(cfg, base, suite)
        _atomic_json(out / STATE, state)
    current = base
    for i in range(cfg.iterations):
        rec = state["iterations"][i] if i < len(state["iterations"]) else {"iteration": i}
        if i >= len(state["iterations"]):
            state["iterations"].append(rec)
        it_dir = out / f"iter_{i}"
        it_dir.mkdir(exist_ok=True)
        times = rec.setdefault("seconds", {})
        if "pairs" not in rec:
            t0 = time.perf_counter()
            trajs = rollout_groups(cfg, current, group_specs(cfg, tasks, i, physics), suite)
            scores, pairs = score_and_pair(cfg, trajs, score_fn)
            save_rollouts(it_dir, trajs, scores, pairs, i)
            flat = [t for g in trajs for t in g]
            rec.update(pairs=len(pairs), rollouts=len(flat),
                       rollout_success=float(np.mean([t.success for t in flat])),
                       mean_margin=float(np.mean([p.margin for p in pairs])) if pairs else None)
            times["rollouts"] = round(time.perf_counter() - t0, 1)
            _atomic_json(out / STATE, state)
            if cfg.videos and pairs:
                t0 = time.perf_counter()
                rec["videos"] = pair_videos(cfg, flat, pairs, it_dir / "videos",
                                            goal_observable=suite.goal_observable)
                times["videos"] = round(time.perf_counter() - t0, 1)
                _atomic_json(out / STATE, state)
        if "checkpoint" not in rec:
            t0 = time.perf_counter()
            pairs_doc = json.loads((it_dir / "pairs.json").read_text())
            if not pairs_doc["pairs"] and cfg.method != "bc":
                raise ReuseError(
                    f"iteration {i} found no preference pairs among {rec['rollouts']} rollouts "
                    f"(min_margin={cfg.min_margin}): the rollouts of each group scored alike. "
                    "Lower min_margin=, raise rollouts_per_group=, or use another preset"
                )
            info = {"preset": cfg.preset if not cfg.weights else "explicit",
                    "method": cfg.method, "iteration": i + 1, "parent": str(current),
                    "base": str(base)}
            ckpt = train_iteration(cfg, current, it_dir, dataset, load_chunks(it_dir),
                                   pairs_doc, tasks, info)
            rec["checkpoint"] = str(ckpt)
            times["train"] = round(time.perf_counter() - t0, 1)
            _atomic_json(out / STATE, state)
        current = Path(rec["checkpoint"])
        if "eval" not in rec:
            t0 = time.perf_counter()
            rec["eval"] = evaluate_iteration(cfg, current, suite)
            times["evaluate"] = round(time.perf_counter() - t0, 1)
            _atomic_json(out / STATE, state)
        _print_iteration(rec, state["base_eval"])
    # the result: an ordinary checkpoint in `out`
    final = out / "checkpoints" / current.name
    if not (out / "checkpoint").exists() or resolve_checkpoint(out) != final.resolve():
        tmp = out / "checkpoints" / f".tmp_{current.name}_{os.getpid()}"
        tmp.parent.mkdir(exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(current, tmp)
        install_checkpoint(out, tmp, final)
    plot = plot_iterations(state, out / "align.png")
    summary = {"out": str(out), "checkpoint": str(resolve_checkpoint(out)), "plot": str(plot),
               "method": cfg.method, "preset": cfg.preset, "base": state["base_eval"],
               "iterations": state["iterations"],
               "seconds": round(time.perf_counter() - t_start, 1)}
    _print_summary(summary)
    return summary


def _load_state(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    path = out / STATE
    if not path.exists():
        return {"settings": settings, "iterations": []}
    state = json.loads(path.read_text())
    if state.get("settings") != settings:
        have = state.get("settings", {})
        diff = sorted(k for k in set(have) | set(settings) if have.get(k) != settings.get(k))
        raise ReuseError(f"{out} holds an alignment run made with other settings "
                         f"({', '.join(diff)}); use another out= or its settings")
    return state


def plot_iterations(state: dict[str, Any], path: Path) -> Path:
    """Success and the preset's metrics per iteration (iteration 0: the base checkpoint)."""
    from matplotlib.figure import Figure

    rows = [state["base_eval"]] + [r["eval"] for r in state["iterations"] if "eval" in r]
    keys = ["success", "steps_to_success", "jerk", "chunk_jump", "contact_steps", "peak_force"]
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    for k, key in enumerate(keys):
        ax = fig.add_subplot(2, 3, k + 1)
        ys = [r["nominal"].get(key) for r in rows]
        xs = [i for i, y in enumerate(ys) if y is not None]
        ax.plot(xs, [ys[i] for i in xs], "o-")
        for name in rows[0]:
            if name != "nominal" and key == "success":
                ax.plot(range(len(rows)), [r[name]["success"] for r in rows], "s--", label=name)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("iteration")
        if key == "success":
            ax.set_ylim(0, 1.05)
            if len(rows[0]) > 1:
                ax.legend(fontsize=7)
    s = state["settings"]
    fig.suptitle(f"align {s['method']} / {s['preset']}", fontsize=10)
    fig.savefig(path, dpi=110)
    return path


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _print_iteration(rec: dict[str, Any], base: dict[str, Any]) -> None:
    from rich.console import Console

    e, b = rec["eval"]["nominal"], base["nominal"]
    Console().print(
        f"iteration {rec['iteration'] + 1}: {rec['pairs']} pairs from {rec['rollouts']} "
        f"rollouts; held-out success {_fmt(e['success'])} (base {_fmt(b['success'])}), steps "
        f"{_fmt(e['steps_to_success'])} ({_fmt(b['steps_to_success'])}), jerk {_fmt(e['jerk'])} "
        f"({_fmt(b['jerk'])}), chunk jump {_fmt(e['chunk_jump'])} ({_fmt(b['chunk_jump'])})")


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = [("base", summary["base"])] + [(str(r["iteration"] + 1), r["eval"])
                                          for r in summary["iterations"]]
    keys = ["success", "steps_to_success", "jerk", "chunk_jump", "contact_steps", "peak_force"]
    gaps = [k for k in summary["base"] if k != "nominal"]
    table = Table(title=f"robolearn align {summary['method']} / {summary['preset']} "
                        "(held-out goals)")
    table.add_column("iteration")
    for k in keys + [f"success {g}" for g in gaps]:
        table.add_column(k, justify="right")
    for name, e in rows:
        table.add_row(name, *[_fmt(e["nominal"].get(k)) for k in keys],
                      *[_fmt(e[g]["success"]) for g in gaps])
    console = Console()
    console.print(table)
    console.print(f"checkpoint: {summary['checkpoint']}\nplot: {summary['plot']}")
