"""An automatic curriculum for multi-task training (``robolearn pipeline curriculum.mode=lp``).

The pipeline's budget — ``collect.episodes_per_task × tasks`` demonstrations and
``train.steps`` optimiser steps — is spent in ``curriculum.rounds`` rounds instead of at once:

    round 0   collect ``initial_fraction`` of every task's demos (uniform), train steps/R, probe
    round r   allocate the round's demos over tasks, collect them, train steps/R more (the
              run continues: optimiser, schedule and RNG carry on), probe every task

A probe rolls the current checkpoint out on ``probe_episodes`` goals per task (seed
``probe_seed``: neither the collection goals nor the evaluation ones; the same goals every
round, so successive probes are paired). ``mode=lp`` allocates where a learning-progress sampler
(:class:`curricula.LPSampler`: absolute learning progress over a sliding window of probe
successes, ε-exploration, a floor) sees progress, mixed with where success is still low
(``need_weight``); the round's training windows are drawn with task weights that follow the
same allocation (``train_weight_mix``). ``mode=uniform`` spends the same budget in the same
rounds with the same probes, uniformly: the baseline the curriculum must beat.

``relabel=dagger`` spends part of each round's budget (``dagger_fraction``) on the current
policy's own rollouts labelled by the scripted expert at every state the policy visits
(DAgger-style), instead of fresh expert demonstrations. Fresh demos are the default because
they measured better: on MT50 at the same budget ``lp`` 0.905, ``lp`` + ``dagger`` 0.878,
``uniform`` 0.886 (``benchmarks/results/curriculum_mt50.md``). The weak tasks there fail as
often on their training goals as on new ones (``benchmarks/results/curriculum_limits.md``): they
lack optimisation steps, which relabelled states do not add.

Everything lives in the run directory (``train.out``): the demonstration store
(``demos.zarr``), the checkpoints, ``curriculum.json`` (per round: targets, allocation, training
weights, probe successes, the sampler's state), the task distribution of every round
(``distributions/round_<r>.json``, versioned, provenance = the probes), a PNG of per-task probe
success and budget share over rounds, and the final evaluation. Re-running the same command
after a crash continues the round it stopped in and ends with the same allocations.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.errors import ConfigError, ReuseError, unknown

log = logging.getLogger(__name__)

MODES = ("none", "uniform", "lp")
RELABEL = ("demos", "dagger")
STATE = "curriculum.json"
DAGGER_SEED = 5000  # goal seeds of relabelled rollouts: distinct from demos, probes, evaluation


@dataclass
class CurriculumConfig:
    """``curriculum.*`` of ``robolearn pipeline``: spend the budget in rounds, where it helps."""

    mode: str = "none"  # none (one shot) | uniform (rounds, uniform) | lp (learning progress)
    rounds: int = 5  # rounds of collect → train → probe
    initial_fraction: float = 0.4  # share of each task's demos collected before round 1
    probe_episodes: int = 5  # probe goals per task per round (part of the budget)
    probe_seed: int = 3000  # probe goal seed: neither collection's nor evaluation's
    relabel: str = "demos"  # demos: fresh expert demos | dagger: expert labels on policy states
    dagger_fraction: float = 0.5  # relabel=dagger: share of a round's episodes from the policy
    window: int = 4  # probes per task the learning progress looks at (even)
    epsilon: float = 0.1  # share of the allocation spread uniformly
    floor: float = 0.0  # minimum allocation share per task (0: a quarter of uniform)
    need_weight: float = 0.5  # allocation = (1-w)·progress + w·(1 - success), normalised
    train_weight_mix: float = 0.5  # task weights of training windows: (1-m)·1 + m·K·allocation

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(unknown("curriculum.mode", self.mode, MODES))
        if self.relabel not in RELABEL:
            raise ConfigError(unknown("curriculum.relabel", self.relabel, RELABEL))
        for name, value, low in (("rounds", self.rounds, 1), ("probe_episodes", self.probe_episodes, 1),
                                 ("probe_seed", self.probe_seed, 0), ("window", self.window, 2)):
            if value < low:
                raise ConfigError(f"Got curriculum.{name}={value}, expected >= {low}")
        if self.window % 2:
            raise ConfigError(f"Got curriculum.window={self.window}, expected an even number")
        for name in ("initial_fraction", "dagger_fraction", "epsilon", "need_weight",
                     "train_weight_mix", "floor"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"Got curriculum.{name}={value}, expected 0..1")
        if self.mode != "none" and self.rounds >= 2 and not 0 < self.initial_fraction < 1:
            raise ConfigError("curriculum.initial_fraction must be in (0, 1) with 2+ rounds: "
                              "round 0 needs demos, later rounds a budget to allocate")

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- budget
def split_budget(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` integers as equal as possible (the earlier parts larger)."""
    base, extra = divmod(int(total), int(parts))
    return [base + (i < extra) for i in range(parts)]


def allocate(budget: int, shares: dict[str, float], floor: float) -> dict[str, int]:
    """Largest-remainder split of ``budget`` by ``shares`` (normalised), each task at least
    ``floor·budget`` (rounded down). Deterministic: ties go to the earlier task."""
    tasks = list(shares)
    if budget <= 0:
        return dict.fromkeys(tasks, 0)
    p = np.array([max(0.0, shares[t]) for t in tasks], dtype=np.float64)
    p = p / p.sum() if p.sum() > 0 else np.full(len(tasks), 1.0 / len(tasks))
    floor = min(floor, 1.0 / len(tasks))
    p = floor + (1.0 - floor * len(tasks)) * p
    raw = p * budget
    counts = np.floor(raw).astype(int)
    rest = budget - counts.sum()
    order = sorted(range(len(tasks)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return {t: int(c) for t, c in zip(tasks, counts)}


def allocation_shares(mode: str, sampler: Any, success: dict[str, float],
                      need_weight: float) -> dict[str, float]:
    """Where the next round's budget goes: uniform, or progress mixed with need."""
    tasks = list(success)
    if mode == "uniform":
        return {t: 1.0 / len(tasks) for t in tasks}
    progress = sampler.probabilities()
    need = {t: 1.0 - success[t] for t in tasks}
    total_need = sum(need.values())
    need = ({t: v / total_need for t, v in need.items()} if total_need > 0
            else {t: 1.0 / len(tasks) for t in tasks})
    return {t: (1 - need_weight) * progress[t] + need_weight * need[t] for t in tasks}


# ----------------------------------------------------------------------------- state
class _State:
    """``curriculum.json``: the settings, one record per round; written atomically."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path = path
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("settings") != settings:
                diff = sorted(k for k in set(settings) | set(data.get("settings", {}))
                              if settings.get(k) != data.get("settings", {}).get(k))
                raise ReuseError(
                    f"{path.parent} holds a curriculum run made with other settings ({', '.join(diff)}"
                    "). Use another train.out=, or the settings it was made with"
                )
            self.rounds: list[dict[str, Any]] = data["rounds"]
            self.final: dict[str, Any] | None = data.get("final")
        else:
            if (path.parent / "checkpoint").exists():
                raise ReuseError(
                    f"{path.parent} holds a training run that is not a curriculum run (no "
                    f"{path.name}); a curriculum would continue it instead of training its own. "
                    "Use another train.out="
                )
            self.rounds, self.final = [], None
        self.settings = settings

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"settings": self.settings, "rounds": self.rounds,
                                   "final": self.final}, indent=2))
        os.replace(tmp, self.path)


# ----------------------------------------------------------------------------- the loop
def run_curriculum(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """The pipeline in rounds (see the module docstring); returns the pipeline's summary."""
    import sim
    from curricula import LPSampler

    cur: CurriculumConfig = cfg.curriculum
    suite = sim.get_suite(cfg.collect.suite)
    tasks = list(suite.train_tasks)
    out = Path(cfg.train.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"curriculum": cur.settings(), "suite": cfg.collect.suite,
                "episodes_per_task": cfg.collect.episodes_per_task, "steps": cfg.train.steps,
                "collect_seed": cfg.collect.seed, "policy": dict(cfg.policy)}
    state = _State(out / STATE, json.loads(json.dumps(settings, default=str)))
    rounds = cur.rounds
    k = len(tasks)
    d0 = max(1, round(cur.initial_fraction * cfg.collect.episodes_per_task)) if rounds > 1 \
        else cfg.collect.episodes_per_task
    later = split_budget(max(0, cfg.collect.episodes_per_task * k - d0 * k), max(1, rounds - 1))
    steps = np.cumsum(split_budget(cfg.train.steps, rounds)).tolist()
    sampler = LPSampler(tasks, window=cur.window, epsilon=cur.epsilon,
                        floor=cur.floor or None, seed=cfg.collect.seed)
    collect_cfg = dataclasses.replace(cfg.collect, out=str(out / "demos.zarr"))
    t_start = time.perf_counter()
    times: dict[str, float] = {"collect": 0.0, "train": 0.0, "probe": 0.0}
    targets = dict.fromkeys(tasks, 0)
    dagger_counts = dict.fromkeys(tasks, 0)
    success: dict[str, float] = {}
    for r in range(rounds):
        rec = state.rounds[r] if r < len(state.rounds) else None
        if rec is None:  # plan the round (deterministic: from the probes recorded so far)
            if r == 0:
                alloc, shares = dict.fromkeys(tasks, d0), {t: 1.0 / k for t in tasks}
            else:
                shares = allocation_shares(cur.mode, sampler, success, cur.need_weight)
                alloc = allocate(later[r - 1], shares, sampler.floor)
            dagger = ({t: int(round(cur.dagger_fraction * n)) for t, n in alloc.items()}
                      if cur.relabel == "dagger" and r > 0 else dict.fromkeys(tasks, 0))
            rec = {"round": r, "allocation": alloc, "shares": shares, "dagger": dagger,
                   "demo_targets": {t: targets[t] + alloc[t] - dagger[t] for t in tasks},
                   "train_until": int(steps[r]),
                   "train_task_weights": _train_weights(shares, cur, k)}
            state.rounds.append(rec)
            state.save()
        targets = dict(rec["demo_targets"])
        if "probe" not in rec:  # the round to (re)do; earlier ones are complete
            log.info("curriculum round %d/%d: %d demos, %d relabelled rollouts, train to step %d",
                     r + 1, rounds,
                     sum(rec["allocation"].values()) - sum(rec["dagger"].values()),
                     sum(rec["dagger"].values()), rec["train_until"])
            t0 = time.perf_counter()
            _collect(collect_cfg, targets)
            if any(rec["dagger"].values()):
                _relabel(cfg, out, collect_cfg.out, rec, dagger_counts)
            times["collect"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            _train(cfg, out, collect_cfg.out, rec)
            times["train"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            rec["probe"] = _probe(cfg, out, tasks)
            times["probe"] += time.perf_counter() - t0
            _save_distribution(out, tasks, rec, r)
            state.save()
        for t, n in rec["dagger"].items():
            dagger_counts[t] += n
        success = dict(rec["probe"])
        sampler.update_many(success)
        rec["sampler"] = sampler.state_dict()
        state.save()
        _print_round(rec, tasks)
    # the evaluation of the final checkpoint on held-out goals (the pipeline's third stage)
    from robolearn.evaluate import run_evaluate

    t0 = time.perf_counter()
    ec = dataclasses.replace(cfg.evaluate, checkpoint=str(out), checkpoints=[])
    report = run_evaluate(ec, run_dir / "evaluate")
    times["evaluate"] = time.perf_counter() - t0
    budget = _budget(state.rounds, collect_cfg.out, cfg.curriculum.probe_episodes, k)
    state.final = {"mean_success": report["mean_success"], "budget": budget,
                   "report": str(run_dir / "evaluate" / "report.json")}
    state.save()
    plot = plot_rounds(state.rounds, tasks, out / "curriculum.png", mode=cur.mode)
    summary = {"mode": cur.mode, "rounds": rounds, "run": str(out), "plot": str(plot),
               "evaluate": {"mean_success": report["mean_success"]}, "budget": budget,
               "probe_success_by_round": [float(np.mean(list(x["probe"].values())))
                                          for x in state.rounds],
               "report": str(run_dir / "evaluate" / "report.json"),
               "seconds": {k: round(v, 1) for k, v in times.items()} | {
                   "total": round(time.perf_counter() - t_start, 1)}}
    _print_summary(summary)
    return summary


def _train_weights(shares: dict[str, float], cur: CurriculumConfig, k: int) -> dict[str, float]:
    mix = cur.train_weight_mix if cur.mode == "lp" else 0.0
    return {t: float((1 - mix) + mix * k * s) for t, s in shares.items()}


def _collect(collect_cfg: Any, targets: dict[str, int]) -> None:
    from robolearn.collect import collect

    collect(collect_cfg, progress=collect_cfg.progress, targets=targets)


def _train(cfg: Any, out: Path, dataset: str, rec: dict[str, Any]) -> None:
    """Continue the one run to this round's step, with this round's task weights (a new Trainer
    on the grown store, restored from the newest checkpoint: optimiser, schedule, RNG carry on)."""
    from robolearn.checkpoint import LATEST, read_config, resolve_checkpoint
    from robolearn.train import Trainer, restore_or_explain
    from robolearn.train.config import train_config_from

    weights = dataclasses.replace(cfg.train.weights, task=dict(rec["train_task_weights"]))
    tc = train_config_from(cfg.train, cfg.policy, out=str(out), dataset=dataset, resume=False,
                           weights=weights, eval_every=0)  # the rounds probe themselves
    done = int(read_config(resolve_checkpoint(out))["step"]) if (out / LATEST).exists() else 0
    if done >= rec["train_until"]:
        return
    trainer = Trainer(tc, out)
    if done:
        restore_or_explain(trainer, resolve_checkpoint(out))
    trainer.run(until_step=rec["train_until"])


def _probe(cfg: Any, out: Path, tasks: list[str]) -> dict[str, float]:
    """Success of the current checkpoint per task on the probe goals (held out from training)."""
    from robolearn.cluster import uses_ray
    from robolearn.evaluate import evaluate_agent
    from robolearn.rollout import agent_spec, load_agent, rollout_pool

    cur = cfg.curriculum
    agent = load_agent(str(out), "cpu")
    spec = agent_spec(str(out), device="cpu", ship_files=uses_ray(cfg.collect.ray))
    with rollout_pool(cfg.collect.ray, spec, what="curriculum probe",
                      max_workers=len(tasks)) as pool:
        result = evaluate_agent(agent, cfg.collect.suite, episodes_per_task=cur.probe_episodes,
                                seed=cur.probe_seed, num_envs=cur.probe_episodes,
                                fast=cfg.collect.fast, pool=pool,
                                progress=cfg.collect.progress)
    return {t: float(v) for t, v in result.success_by_task.items()}


def _relabel(cfg: Any, out: Path, store_path: str, rec: dict[str, Any],
             done_before: dict[str, int]) -> None:
    """The round's relabelled rollouts: the current policy acts, the scripted expert labels every
    state it visits; stored with ``source=policy`` (training windows: the visited observations,
    the expert's actions). Episode i of a task uses goal seed ``episode_seed(DAGGER_SEED, task,
    done_before + i)``, so a re-run after a crash appends exactly the missing ones."""
    import sim
    from robolearn.data import claim_store
    from robolearn.rollout import EpisodeSpec, ExpertAgent, RolloutOptions, episode_seed, run_batch
    from robolearn.rollout import load_agent as _load

    policy = _load(str(out), "cpu")
    with claim_store(store_path) as claim, claim.open("a") as store:
        have = _dagger_counts(store)
        for task, n in rec["dagger"].items():
            first = done_before[task] + have.get((task, rec["round"]), 0)
            last = done_before[task] + n
            if first >= last:
                continue
            env = sim.make_env(task, fast=cfg.collect.fast)
            agent = DaggerAgent(policy, ExpertAgent())
            for i in range(first, last):
                spec = EpisodeSpec(task, i, episode_seed(DAGGER_SEED, task, i))
                (traj,) = run_batch(agent, [env], [spec], RolloutOptions(record="steps"))
                rows = {"obs": traj.steps["obs"], "action": agent.labels(0, traj.length),
                        "reward": traj.steps["reward"], "success": traj.steps["success"]}
                store.add_episode(rows, task=task, source="policy", seed=spec.seed,
                                  policy_id=traj.policy_id,
                                  info={"relabel": "dagger", "round": rec["round"],
                                        "episode": i, "success": traj.success})
            env.close()


def _dagger_counts(store: Any) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for task, source, info in zip(store.meta("task"), store.meta("source"), store.meta("info")):
        if source != "policy":
            continue
        meta = json.loads(str(info))
        if meta.get("relabel") == "dagger":
            key = (str(task), int(meta["round"]))
            counts[key] = counts.get(key, 0) + 1
    return counts


class DaggerAgent:
    """Acts with ``policy``; records the scripted expert's action at every state it visits."""

    def __init__(self, policy: Any, expert: Any):
        self.policy, self.expert = policy, expert
        self.tasks = policy.tasks
        self.path = getattr(policy, "path", None)
        self._labels: list[np.ndarray] = []

    @property
    def last_plan(self) -> Any:
        return getattr(self.policy, "last_plan", None)

    def attach(self, envs: Any) -> None:
        self.expert.attach(envs)

    def reset(self) -> None:
        self.policy.reset()
        self.expert.reset()
        self._labels = []

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        self._labels.append(np.asarray(self.expert.act(obs, task), np.float32))
        return self.policy.act(obs, task)

    def labels(self, slot: int, length: int) -> np.ndarray:
        """The expert's actions for slot ``slot`` over its first ``length`` steps."""
        return np.stack([x[slot] for x in self._labels[:length]])


def _save_distribution(out: Path, tasks: list[str], rec: dict[str, Any], r: int) -> None:
    """The round's task distribution (what the next round collects from), versioned."""
    from curricula import Component, Provenance, TaskDistribution

    dist = TaskDistribution({t: max(float(rec["shares"][t]), 1e-9) for t in tasks},
                            [Component("stock", provenance=Provenance(
                                source="sim", cycle=r,
                                episodes=int(sum(rec["allocation"].values())),
                                diagnostics={"probe_success": rec["probe"]}))],
                            version=r + 1, parent=r or None,
                            description=f"curriculum round {r}")
    (out / "distributions").mkdir(exist_ok=True)
    dist.save(out / "distributions" / f"round_{r}.json")


def _budget(rounds: list[dict[str, Any]], store_path: str, probes: int, k: int) -> dict[str, int]:
    """What was spent: demo episodes, relabelled episodes and their expert labels, training
    steps, probe episodes (the totals a fair comparison must match)."""
    from robolearn.data import EpisodeStore

    with EpisodeStore.open(store_path) as store:
        sources = store.meta("source")
        lengths = store.episode_lengths
        demos = int(sum(s == "expert" for s in sources))
        relabelled = [i for i, s in enumerate(sources) if s == "policy"]
    return {"demo_episodes": demos, "relabelled_episodes": len(relabelled),
            "expert_labels": int(sum(lengths[i] for i in relabelled)),
            "train_steps": int(rounds[-1]["train_until"]) if rounds else 0,
            "probe_episodes": probes * k * len(rounds)}


def plot_rounds(rounds: list[dict[str, Any]], tasks: list[str], path: Path, *,
                mode: str) -> Path:
    """Per-task probe success (left) and budget share (right) over rounds, as heat maps."""
    from matplotlib.figure import Figure

    r = len(rounds)
    succ = np.array([[x["probe"].get(t, np.nan) for x in rounds] for t in tasks])
    share = np.array([[x["allocation"][t] / max(1, sum(x["allocation"].values())) for x in rounds]
                      for t in tasks])
    fig = Figure(figsize=(8, max(3.0, 0.18 * len(tasks) + 1.5)), layout="constrained")
    for k, (data, title, cmap) in enumerate(((succ, "probe success", "viridis"),
                                             (share, "share of the round's demos", "magma"))):
        ax = fig.add_subplot(1, 2, k + 1)
        im = ax.imshow(data, aspect="auto", cmap=cmap, vmin=0.0,
                       vmax=1.0 if k == 0 else max(1e-9, float(np.nanmax(data))))
        ax.set_xticks(range(r), [str(i) for i in range(r)])
        ax.set_xlabel("round")
        ax.set_yticks(range(len(tasks)), [t.removesuffix("-v3") for t in tasks] if k == 0 else [])
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"curriculum ({mode})", fontsize=10)
    fig.savefig(path, dpi=120)
    return path


def _print_round(rec: dict[str, Any], tasks: list[str]) -> None:
    from rich.console import Console

    probe = rec["probe"]
    worst = sorted(tasks, key=lambda t: probe[t])[:5]
    Console().print(
        f"round {rec['round']}: probe success {np.mean(list(probe.values())):.3f} (weakest: "
        + ", ".join(f"{t.removesuffix('-v3')} {probe[t]:.2f}" for t in worst) + "); trained to "
        f"step {rec['train_until']}")


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"curriculum ({summary['mode']}), {summary['rounds']} rounds")
    table.add_column("round")
    table.add_column("mean probe success", justify="right")
    for r, v in enumerate(summary["probe_success_by_round"]):
        table.add_row(str(r), f"{v:.3f}")
    console = Console()
    console.print(table)
    b = summary["budget"]
    console.print(
        f"evaluation mean success {summary['evaluate']['mean_success']:.3f}; budget: "
        f"{b['demo_episodes']} demos, {b['relabelled_episodes']} relabelled rollouts "
        f"({b['expert_labels']} expert labels), {b['train_steps']} training steps, "
        f"{b['probe_episodes']} probe episodes\nrun: {summary['run']}\nplot: {summary['plot']}")
