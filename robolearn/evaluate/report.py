"""``robolearn evaluate``: every checkpoint validated first, then evaluated; the report.

Writes into ``cfg.out`` (default the run directory): ``report.json`` (per-task success per
run, mean, IQM, bootstrap 95% CIs when there are >= 2 runs, the evaluation seed, the physics,
the training dataset and collect seed when the checkpoint records them, and the held-out goal
check), ``success_by_task.png`` and, with ``video=true``, ``videos/[run<k>/]<task>_<i>.mp4``.
The report is rewritten after each checkpoint (``"complete": false`` until the last one), so
a failure half-way keeps the finished results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.cluster import cfg_get, ray_session, uses_ray
from robolearn.errors import ReuseError
from robolearn.evaluate import stats
from robolearn.evaluate.config import EvaluateConfig, check_config, checkpoint_list
from robolearn.evaluate.evaluator import (
    DEFAULT_EVAL_SEED,
    evaluate_agent,
    split_tasks,
)
from robolearn.rollout import agent_spec, eval_seeds, load_agent, rollout_pool
from robolearn.rollout.physics import physics_from_config

log = logging.getLogger(__name__)


def run_evaluate(cfg: EvaluateConfig, run_dir: Path) -> dict[str, Any]:
    """``robolearn evaluate``: validates every checkpoint, evaluates each, writes the report.

    Every checkpoint is loaded and its held-out goal check made before the first rollout, so a
    bad one is refused before any time is spent; the report is written after each checkpoint.

    Args:
        cfg: An :class:`~robolearn.evaluate.config.EvaluateConfig`.
        run_dir: The run directory.

    Returns:
        The report dict (as written to ``report.json``).
    """
    import sim

    check_config(cfg)
    checkpoints = checkpoint_list(cfg)
    suite = sim.get_suite(cfg.suite)
    tasks = split_tasks(suite, cfg.split)
    physics = physics_from_config(cfg.params, cfg.randomize, cfg.distribution)
    if hasattr(physics, "check_tasks"):
        physics.check_tasks(tasks)
    out = Path(cfg.out) if cfg.out else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = eval_seeds(cfg.seed, tasks, cfg.episodes_per_task)

    # Validate everything first: each checkpoint loads, knows the tasks, has held-out goals.
    agents, provenance = [], []
    for checkpoint in checkpoints:
        agent = load_agent(checkpoint, cfg.device)
        known = getattr(agent, "tasks", None)
        if known is not None:
            unknown = [t for t in tasks if t not in set(map(str, known))]
            if unknown:
                raise ValueError(
                    f"checkpoint {checkpoint} cannot act on {unknown} of {suite.name} "
                    f"split={cfg.split!r}; it knows {list(known)}. Evaluate a suite/split it was "
                    "trained on"
                )
        train_info = dict(getattr(agent, "train_info", None) or {})
        provenance.append(check_heldout_seeds(cfg.seed, seeds, dataset=train_info.get("dataset"),
                                              collect_seed=train_info.get("collect_seed")))
        agents.append(agent)

    runs: list[dict[str, Any]] = []
    ray_cfg = cfg_get(cfg, "ray")
    with contextlib.ExitStack() as stack:
        if uses_ray(ray_cfg):  # one Ray instance for every checkpoint of the command
            stack.enter_context(ray_session(ray_cfg))
        for k, (checkpoint, agent) in enumerate(zip(checkpoints, agents)):
            log.info("evaluating %s (%d/%d) on %s split=%s, physics %s", checkpoint, k + 1,
                     len(checkpoints), suite.name, cfg.split, physics.describe()["mode"])
            video_dir = None
            if cfg.video:
                video_dir = out / "videos" if len(checkpoints) == 1 else out / "videos" / f"run{k}"
            units = len(tasks) * -(-cfg.episodes_per_task // min(cfg.num_envs,
                                                                 cfg.episodes_per_task))
            spec = agent_spec(checkpoint, device="cpu" if cfg.device == "auto" else cfg.device,
                              ship_files=uses_ray(ray_cfg))
            with rollout_pool(ray_cfg, spec, what="robolearn evaluate", max_workers=units) as pool:
                result = evaluate_agent(
                    agent, suite, episodes_per_task=cfg.episodes_per_task, seed=cfg.seed,
                    split=cfg.split, num_envs=cfg.num_envs, horizon=cfg.horizon, physics=physics,
                    video_dir=video_dir, videos_per_task=cfg.videos_per_task,
                    video_size=cfg.video_size, pool=pool,
                    record_steps=bool(cfg.save_rollouts), fast=cfg.fast,
                    progress=cfg_get(cfg, "progress", True),
                )
                workers = 0 if pool is None else len(pool.actors)
            run = {"checkpoint": checkpoint, "train": provenance[k], "ray_workers": workers,
                   **result.to_dict()}
            if cfg.save_rollouts:
                run["rollouts"] = save_rollouts(cfg.save_rollouts, result.trajectories or [],
                                                cfg.horizon)
            runs.append(run)
            report = _report(cfg, suite.name, tasks, checkpoints, runs, out)
    _print_table(report, _matrix(runs, tasks))
    return report


def save_rollouts(path: str, trajectories: list[Any], horizon: int) -> dict[str, Any]:
    """Appends evaluation rollouts to the episode store at ``path`` (created if missing) with
    ``source=policy``: the commanded actions, what was applied, the chunk each came from and
    Meta-World's per-step info; the episode's TaskParams and goal seed as its metadata."""
    import sim
    from robolearn.data import EpisodeStore
    from robolearn.rollout import RolloutOptions, store_extras, trajectory_rows

    extras = store_extras(RolloutOptions(horizon=horizon, record="steps"), sim.ACTION_DIM)
    out = Path(path)
    if out.exists():
        store = EpisodeStore.open(out, mode="a")
        missing = sorted(set(extras) - set(store.spec))
        if missing:
            store.close()
            raise ValueError(f"save_rollouts={path} is a store without the per-step keys "
                             f"{missing} that policy rollouts keep; give a new path")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        store = EpisodeStore.create(out, sim.OBS_DIM, sim.ACTION_DIM, extras=extras,
                                    attrs={"source": "evaluate"})
    with store:
        first = len(store)
        for t in trajectories:
            store.add_episode(trajectory_rows(t, tuple(extras)), task=t.task, source="policy",
                              params=t.spec.params, seed=t.seed, policy_id=t.policy_id,
                              info={"episode": t.spec.index, "success": t.success,
                                    "first_success": t.first_success})
        return {"store": str(out), "episodes": [first, len(store)]}


def _matrix(runs: list[dict[str, Any]], tasks: Sequence[str]) -> np.ndarray:
    return np.array([[r["success_by_task"][t] for t in tasks] for r in runs])


def _report(cfg: EvaluateConfig, suite: str, tasks: Sequence[str], checkpoints: list[str],
            runs: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """The report of the runs so far, written to report.json and the plot."""
    matrix = _matrix(runs, tasks)
    summary = stats.summarize(matrix)
    report = {
        "suite": suite,
        "split": cfg.split,
        "tasks": list(tasks),
        "episodes_per_task": cfg.episodes_per_task,
        "horizon": cfg.horizon,
        "eval_seed": cfg.seed,
        "goal_seeds": f"robolearn.rollout.episode_seed({cfg.seed}, task, i) for episode i",
        "physics": runs[0]["physics"],
        "checkpoints": checkpoints,
        "complete": len(runs) == len(checkpoints),
        "success_by_task": dict(zip(tasks, summary["per_task_mean"])),
        "success_by_task_per_run": [r["success_by_task"] for r in runs],
        "mean_success": summary["mean"],
        "summary": summary,
        "files": {"report": str(out / "report.json"), "plot": str(out / "success_by_task.png")},
        "runs": runs,
    }
    mode = runs[0]["physics"].get("mode", "default")
    plot_success(matrix, tasks, out / "success_by_task.png",
                 title=f"{suite} ({cfg.split}), {len(runs)} run(s)"
                 + ("" if mode == "default" else f", physics: {mode}"), summary=summary)
    tmp = out / f".report.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(report, indent=2, default=_json_default))
    os.replace(tmp, out / "report.json")
    return report


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def plot_success(
    matrix: np.ndarray,
    tasks: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "",
    summary: dict[str, Any] | None = None,
) -> None:
    """Bar chart of per-task success (mean over runs, std error bars and run dots when R >= 2).

    Args:
        matrix: (R runs, T tasks) success rates.
        tasks: The T task names.
        path: The PNG to write.
        title: Figure title.
        summary: :func:`robolearn.stats.summarize` of ``matrix`` (computed when omitted).
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    summary = summary or stats.summarize(matrix)
    runs, n = matrix.shape
    x = np.arange(n)
    fig = Figure(figsize=(max(4.0, 0.55 * n + 1.5), 3.8), layout="constrained")
    ax = fig.add_subplot()
    yerr = matrix.std(axis=0, ddof=1) if runs >= 2 else None
    ax.bar(x, matrix.mean(axis=0), yerr=yerr, capsize=3, color="#4C72B0",
           label="success (mean ± std over runs)" if runs >= 2 else "success")
    if runs >= 2:
        for r, row in enumerate(matrix):
            ax.plot(x + 0.12, row, "o", color="#DD8452", ms=3, alpha=0.8,
                    label="individual runs" if r == 0 else None)
    label = f"mean {summary['mean']:.2f}, IQM {summary['iqm']:.2f}"
    if summary["iqm_ci"] is not None:
        lo, hi = summary["iqm_ci"]
        label += f" [{lo:.2f}, {hi:.2f}]"
    ax.axhline(summary["mean"], color="#C44E52", ls="--", lw=1.2, label=label)
    ax.set_xticks(x, [t.removesuffix("-v3") for t in tasks], rotation=45, ha="right")
    ax.set_ylim(0, 1.3)  # headroom for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("success rate")
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=3, fontsize=7, frameon=False)
    fig.savefig(path, dpi=120)


def _print_table(report: dict[str, Any], matrix: np.ndarray) -> None:
    from rich.console import Console
    from rich.table import Table

    runs = report["runs"]
    table = Table(title=f"{report['suite']} ({report['split']})")
    table.add_column("task")
    if len(runs) > 1:
        for k in range(len(runs)):
            table.add_column(f"run{k}", justify="right")
    table.add_column("success", justify="right")
    for t, task in enumerate(report["tasks"]):
        cells = [f"{v:.2f}" for v in matrix[:, t]] if len(runs) > 1 else []
        table.add_row(task, *cells, f"{matrix[:, t].mean():.2f}")
    s = report["summary"]
    per_run = [f"{v:.3f}" for v in s["per_run_mean"]] if len(runs) > 1 else []
    table.add_row("mean", *per_run, f"{s['mean']:.3f}{_ci(s['mean_ci'])}", style="bold")
    table.add_row("IQM", *([""] * len(per_run)), f"{s['iqm']:.3f}{_ci(s['iqm_ci'])}")
    console = Console()
    physics = report.get("physics", {})
    where = "" if physics.get("mode", "default") == "default" else f", physics {physics}"
    console.print(
        f"robolearn evaluate: {report['episodes_per_task']} episodes per task, horizon "
        f"{report['horizon']}, goal seeds episode_seed({report['eval_seed']}, task, i){where}"
    )
    console.print(table)
    if len(runs) > 1:
        for k, r in enumerate(runs):
            console.print(f"run{k}: {r['checkpoint']}")
    steps = sum(r["env_steps"] for r in runs)
    secs = sum(r["seconds"] for r in runs)
    workers = runs[0].get("ray_workers", 0)
    where = f"on {workers} Ray actors" if workers else "in this process"
    console.print(f"{steps} env steps in {secs:.1f} s ({steps / max(secs, 1e-9):.0f} steps/s "
                  f"{where})")
    console.print(f"report: {report['files']['report']}")
    console.print(f"plot:   {report['files']['plot']}")
    videos = [v for r in runs for v in r["videos"]]
    if videos:
        console.print(f"videos: {len(videos)} in {Path(videos[0]).parent}")


def _ci(interval: list[float] | None) -> str:
    return f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def check_heldout_seeds(
    eval_seed: int,
    seeds: dict[str, list[int]],
    *,
    dataset: str | os.PathLike | None = None,
    collect_seed: int | None = None,
) -> dict[str, Any]:
    """Checks that no evaluation goal was a training goal; raises if one was.

    A goal is the pair (task, goal seed): the same seed on another task is a different goal.

    Args:
        eval_seed: The evaluation goal seed.
        seeds: ``{task: [goal seeds]}`` of the evaluation (:func:`eval_seeds`).
        dataset: The training episode store, if known; its ``meta/seed`` and ``meta/task``
            are compared with ``seeds``. A store that is missing here is skipped with a warning.
        collect_seed: The collection seed, if known (else the store's ``collect_seed``
            attribute is used); equal to ``eval_seed`` it would reproduce the training goals.

    Returns:
        What was checked: ``{"dataset", "collect_seed", "seed_overlap_check"}``.

    Raises:
        ValueError: ``collect_seed == eval_seed``, or a (task, seed) pair of the evaluation
            occurs in the store.
    """
    info: dict[str, Any] = {"dataset": None if dataset is None else str(dataset)}
    pairs: set[tuple[str, int]] = set()
    checked = "no training dataset recorded; not checked"
    if dataset is not None:
        from robolearn.data import EpisodeStore

        if not Path(dataset).exists():
            checked = f"training dataset {dataset} not found here; not checked"
            log.warning("cannot check held-out goals: %s", checked)
        else:
            with EpisodeStore.open(dataset) as store:
                pairs = {
                    (str(t), int(s))
                    for t, s in zip(store.meta("task"), store.meta("seed"))
                    if int(s) >= 0
                }
                if collect_seed is None:
                    collect_seed = store.attrs.get("user", {}).get("collect_seed")
    info["collect_seed"] = None if collect_seed is None else int(collect_seed)
    if collect_seed is not None and int(collect_seed) == int(eval_seed):
        raise ReuseError(
            f"evaluation seed={eval_seed} equals the training data's collect seed "
            f"{collect_seed}: the evaluation goals would be the training goals. Pick another "
            f"seed=, e.g. seed={DEFAULT_EVAL_SEED if eval_seed != DEFAULT_EVAL_SEED else 2000}"
        )
    if dataset is not None and Path(dataset).exists():
        overlap = sorted((t, s) for t, ss in seeds.items() for s in ss if (t, s) in pairs)
        if overlap:
            raise ReuseError(
                f"{len(overlap)} evaluation goal(s) of seed={eval_seed} are training episodes in "
                f"{dataset} (task, goal seed): {overlap[:5]}. Evaluate with another seed= "
                "so the goals are held out"
            )
        n = sum(len(ss) for ss in seeds.values())
        checked = f"passed: none of {n} evaluation goals among {len(pairs)} training episodes"
    info["seed_overlap_check"] = checked
    return info
