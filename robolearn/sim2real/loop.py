"""The real-grounded sim-to-real loop (``robolearn curriculum``).

Cycle ``k`` (``k = 0 .. cycles - 1``), with π_0 = ``checkpoint`` and p_0 = ``distribution`` (or
nominal physics):

1. **deploy** π_k on the robot through the deploy runner (:func:`robolearn.deploy.run_deploy`:
   the safety layer, the fixed rate, ``source=real`` recordings), ``episodes_per_task`` per task,
   into ``cycle_<k>/real.zarr``;
2. **ingest** each task's complete episodes: their initial conditions and a system
   identification (:func:`curricula.fit_sysid`: latency, gain, noise stds in closed form;
   friction, mass, damping by the replay likelihood), reading nothing but the recorded
   observations and sent actions (the robot's parameters are never asked for);
3. **update**: p_{k+1} = mixture of the fits (share ``fit_weight`` of each deployed task) and
   p_k (:func:`curricula.update_distribution`), saved as ``distributions/p_<k+1>.json`` with
   provenance (cycle, real episodes, fit diagnostics);
4. **retrain**: scripted-expert demos under p_{k+1} (``robolearn collect distribution=``, into
   ``cycle_<k>/demos.zarr``), fine-tune π_k with the one trainer (warm start:
   ``init_weights``; ``cycle_<k>/train`` is π_{k+1}), evaluate π_{k+1} in sim under p_{k+1} and
   under nominal physics.

After the last cycle π_cycles is deployed once more (``cycle_<cycles>``), so the plot of robot
success against cumulative real episodes ends with the loop's final policy.

Everything is in ``out``: ``curriculum.json`` (the settings and, per cycle, which steps are
done and what they found), the stores, the checkpoints, the distributions, per-cycle
``report.json`` / ``report.md``, ``curriculum.png`` and ``summary.json``. Re-running the same
command after a crash (or a robot fault) continues where it stopped: the robot episodes already
recorded are kept and only the missing ones are run; collection and training resume their own
stores and checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.errors import ConfigError, DeployFault, ReuseError
from robolearn.sim2real.config import DEMO_SEED, EVAL_SEED, ROBOT_SEED, Sim2RealConfig

log = logging.getLogger(__name__)

STATE = "curriculum.json"
STEPS = ("deploy", "ingest", "collect", "train", "evaluate")


# ----------------------------------------------------------------------------- state
class LoopState:
    """``curriculum.json``: the settings and one record per cycle; written atomically."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path = path
        self.settings = settings
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("settings") != settings:
                old = data.get("settings", {})
                diff = sorted(k for k in set(settings) | set(old) if settings.get(k) != old.get(k))
                raise ReuseError(
                    f"{path.parent} holds a curriculum loop made with other settings "
                    f"({', '.join(diff)}). Use another out=, or the settings it was made with")
            self.cycles: list[dict[str, Any]] = data["cycles"]
        else:
            self.cycles = []

    def cycle(self, k: int) -> dict[str, Any]:
        while len(self.cycles) <= k:
            self.cycles.append({"cycle": len(self.cycles), "done": []})
        return self.cycles[k]

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"settings": self.settings, "cycles": self.cycles}, indent=2,
                                  default=_json_default))
        os.replace(tmp, self.path)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def _dump(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the loop
def run_sim2real(cfg: Sim2RealConfig, run_dir: Path) -> dict[str, Any]:
    """The loop (see the module docstring); returns the summary (also ``out/summary.json``).

    Raises:
        DeployFault: The robot faulted during a cycle's deployment; the recorded episodes are
            kept and re-running the same command continues the cycle.
        ConfigError: π_0 was not trained on ``suite``, or a cycle's recording cannot be fitted
            (too few episodes, another task or robot spec).
        ReuseError: ``out`` holds a loop made with other settings.
    """
    from robolearn.checkpoint import read_config, resolve_checkpoint

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distributions").mkdir(exist_ok=True)
    tasks = cfg.deployed_tasks()
    base = resolve_checkpoint(cfg.checkpoint)
    _check_policy_suite(cfg, read_config(base))
    state = LoopState(out / STATE, json.loads(json.dumps(cfg.settings(), default=str)))
    p0 = out / "distributions" / "p_0.json"
    if not p0.exists():
        _initial_distribution(cfg).save(p0)
    t_start = time.perf_counter()
    policy = base
    for k in range(cfg.cycles + 1):
        rec = state.cycle(k)
        cdir = out / f"cycle_{k}"
        cdir.mkdir(exist_ok=True)
        rec["policy"] = str(policy)
        rec["distribution"] = str(out / "distributions" / f"p_{k}.json")
        secs = rec.setdefault("seconds", {})
        if k == 0 and "sim" not in rec:  # π_0 under p_0: the baseline of the sim columns
            t0 = time.perf_counter()
            rec["sim"] = _evaluate(cfg, policy, Path(rec["distribution"]))
            secs["evaluate_pi0"] = round(time.perf_counter() - t0, 2)
            state.save()
        if "deploy" not in rec["done"]:
            t0 = time.perf_counter()
            safety = _safety_for(cfg, state.cycles[k - 1] if k else None)
            rec["safety"] = {"gain": safety.gain, "tracking_lag_steps": safety.tracking_lag_steps}
            rec["robot"] = _deploy(cfg, policy, cdir / "real.zarr", tasks, k, safety)
            secs["deploy"] = round(time.perf_counter() - t0, 2)
            rec["done"].append("deploy")
            state.save()
        if k == cfg.cycles:  # the final policy, measured on the robot: no retraining
            _write_report(cfg, state, k, cdir)
            state.save()
            break
        nxt = out / "distributions" / f"p_{k + 1}.json"
        if "ingest" not in rec["done"]:
            t0 = time.perf_counter()
            rec["fits"] = _ingest(cfg, cdir, tasks, k, Path(rec["distribution"]), nxt)
            secs["ingest"] = round(time.perf_counter() - t0, 2)
            rec["done"].append("ingest")
            state.save()
        demos = cdir / "demos.zarr"
        if "collect" not in rec["done"]:
            t0 = time.perf_counter()
            _collect(cfg, demos, nxt, k)
            secs["collect"] = round(time.perf_counter() - t0, 2)
            rec["done"].append("collect")
            state.save()
        if "train" not in rec["done"]:
            t0 = time.perf_counter()
            rec["trained"] = str(_train(cfg, policy, demos, cdir / "train", k))
            secs["train"] = round(time.perf_counter() - t0, 2)
            rec["done"].append("train")
            state.save()
        nrec = state.cycle(k + 1)
        if "evaluate" not in rec["done"]:
            t0 = time.perf_counter()
            nrec["sim"] = _evaluate(cfg, Path(rec["trained"]), nxt)
            secs["evaluate"] = round(time.perf_counter() - t0, 2)
            rec["done"].append("evaluate")
            state.save()
        _write_report(cfg, state, k, cdir)
        policy = Path(rec["trained"])
    plot = plot_loop(state.cycles, tasks, out / "curriculum.png")
    summary = _summary(cfg, state, tasks, plot, time.perf_counter() - t_start)
    _dump(out / "summary.json", summary)
    _print_summary(summary)
    return summary


def _check_policy_suite(cfg: Sim2RealConfig, base_cfg: dict[str, Any]) -> None:
    import sim

    want = list(sim.get_suite(cfg.suite).train_tasks)
    have = list(base_cfg.get("tasks") or [])
    if have and have != want:
        raise ConfigError(
            f"checkpoint={cfg.checkpoint} was trained on tasks {have}, but suite={cfg.suite} has "
            f"{want}; the loop re-collects the suite's demos to fine-tune it, so pass the suite "
            "it was trained on")


def _initial_distribution(cfg: Sim2RealConfig) -> Any:
    """p_0: the given distribution file, or nominal physics on the suite's tasks."""
    import sim
    from curricula import Component, CurriculumError, Provenance, TaskDistribution

    tasks = list(sim.get_suite(cfg.suite).train_tasks)
    if cfg.distribution:
        try:
            dist = TaskDistribution.load(cfg.distribution)
        except (CurriculumError, OSError) as e:
            raise ConfigError(f"distribution={cfg.distribution}: {e}") from None
        missing = [t for t in tasks if t not in dist.task_names]
        if missing:
            raise ConfigError(f"distribution={cfg.distribution} has no components for {missing} "
                              f"of suite {cfg.suite}; p_0 must cover every task retrained")
        return dist
    return TaskDistribution(tasks, [Component("nominal", provenance=Provenance(
        source="sim", cycle=0, note="p_0: the nominal physics π_0 was trained under"))],
        description="p_0: nominal")


# ----------------------------------------------------------------------------- 1. deploy
def _safety_for(cfg: Sim2RealConfig, prev: dict[str, Any] | None) -> Any:
    """The safety options of a cycle's deploy, calibrated by the previous cycle's fit: the
    workspace check dead-reckons the arm at ``safety.gain`` × 1 cm per unit action (the largest
    fitted actuator gain: an arm that moves more is the unsafe side), and its lead bound must
    cover the robot's action latency (commands sent, not executed yet):
    ``safety.tracking_lag_steps`` (the arm's tracking lag) + the largest fitted latency.
    Cycle 0 keeps the configured values; so does an unbounded check (0) its bound."""
    fits = (prev or {}).get("fits") or {}

    def fitted(name: str) -> list[float]:
        return [float(f["estimates"][name]["value"]) for f in fits.values()
                if name in f.get("estimates", {})]

    latency, gain = fitted("action_latency"), fitted("actuator_gain_scale")
    safety = cfg.safety
    if gain:
        safety = dataclasses.replace(safety, gain=max(gain))
    if safety.tracking_lag_steps and latency:
        safety = dataclasses.replace(
            safety, tracking_lag_steps=safety.tracking_lag_steps + math.ceil(max(latency)))
    return safety


def _deploy(cfg: Sim2RealConfig, policy: Path, store: Path, tasks: list[str],
            k: int, safety: Any) -> dict[str, Any]:
    """Runs the missing robot episodes of every task; returns what the store holds per task."""
    from robolearn.deploy import DeployConfig, run_deploy

    for task in tasks:
        have = len(_real_episodes(store, task))
        missing = cfg.episodes_per_task - have
        if missing <= 0:
            continue
        log.info("curriculum cycle %d: %d episode(s) of %s on the robot (%s)", k, missing, task,
                 cfg.robot)
        dc = DeployConfig(checkpoint=str(policy), robot=cfg.robot, task=task, episodes=missing,
                          max_steps=cfg.max_steps, seed=ROBOT_SEED + cfg.seed + 1000 * k + have,
                          rate_hz=cfg.rate_hz, out=str(store), device=cfg.device,
                          twin=cfg.twin, remote=cfg.remote, safety=safety)
        try:
            run_deploy(dc, store.parent, progress=False)
        except DeployFault as e:
            kept = len(_real_episodes(store, task))
            raise DeployFault(
                f"curriculum cycle {k} stopped: the robot faulted while running {task}: {e}. "
                f"{kept} of its {cfg.episodes_per_task} episodes are recorded and kept; fix the "
                "robot and re-run the same command: the cycle continues with the missing "
                "episodes") from None
    return {t: _robot_metrics(store, t) for t in tasks}


def _real_episodes(store: Path, task: str) -> list[Any]:
    """The complete recorded episodes of ``task`` (an interrupted one is not counted)."""
    from robolearn.data import EpisodeStore

    if not store.exists():
        return []
    with EpisodeStore.open(store, mode="r") as s:
        idx = [int(i) for i in s.complete_episodes()]
        tasks = s.meta("task")
        return [s.episode(i) for i in idx if str(tasks[i]) == task]


def _robot_metrics(store: Path, task: str) -> dict[str, Any]:
    eps = _real_episodes(store, task)
    success = [bool(e.info.get("success", False)) for e in eps]
    interventions = int(sum(int(np.asarray(e.data["interventions"]).sum()) for e in eps))
    missed = int(sum(int(np.asarray(e.data["missed_deadline"]).sum()) for e in eps))
    return {"episodes": len(eps), "success": float(np.mean(success)) if success else None,
            "interventions": interventions, "missed_deadlines": missed,
            "steps": int(sum(len(e) for e in eps))}


# ----------------------------------------------------------------------------- 2-3. ingest, update
def _ingest(cfg: Sim2RealConfig, cdir: Path, tasks: list[str], k: int, prev_path: Path,
            next_path: Path) -> dict[str, Any]:
    """Fits every task's recording, writes p_{k+1}; returns the fits' estimates."""
    from curricula import CurriculumError, TaskDistribution, fit_sysid, update_distribution

    fits, comps = {}, []
    for task in tasks:
        eps = _real_episodes(cdir / "real.zarr", task)
        rows = [{"obs": e.data["obs"], "action": e.data["action"], "task": e.task} for e in eps]
        t0 = time.perf_counter()
        try:
            fit = fit_sysid(rows, task, prior=cfg.prior_box(), replay=cfg.sysid.replay,
                            replay_budget=cfg.sysid.replay_budget,
                            replay_episodes=cfg.sysid.replay_episodes,
                            min_log_std=cfg.sysid.min_log_std,
                            replay_min_log_std=cfg.sysid.replay_min_log_std,
                            min_episodes=cfg.sysid.min_episodes, seed=cfg.seed + k)
        except CurriculumError as e:
            raise ConfigError(f"curriculum cycle {k}: the recording of {task} in "
                              f"{cdir / 'real.zarr'} cannot be fitted: {e}") from None
        seconds = time.perf_counter() - t0
        comps.append(fit.component(cycle=k, name=f"real-{k}-{task}",
                                   note=f"curriculum cycle {k}, {len(eps)} robot episodes"))
        fits[task] = {"episodes": len(eps), "seconds": round(seconds, 2),
                      "estimates": {n: _estimate_row(e, fit, n)
                                    for n, e in fit.estimates.items()},
                      "prior_kept": {n: list(fit.interval(n)) for n in fit.prior
                                     if n not in fit.estimates},
                      "summary": fit.summary()}
        _dump(cdir / f"sysid_{task}.json", {"task": task, "cycle": k, **fits[task],
                                            "diagnostics": fit.diagnostics})
    prev = TaskDistribution.load(prev_path)
    nxt = update_distribution(prev, comps, cfg.fit_weight,
                              description=f"curriculum cycle {k}: fits of {', '.join(tasks)} "
                                          f"mixed in at {cfg.fit_weight:g}")
    nxt.save(next_path)
    return fits


def _estimate_row(est: Any, fit: Any, name: str) -> dict[str, Any]:
    lo, hi = fit.interval(name)
    return {"value": est.value, "low": lo, "high": hi, "identified": est.identified,
            "log_std": est.log_std, **({"note": est.note} if est.note else {}),
            **({"outside_prior": outside} if (outside := fit.diagnostics.get(
                "outside_prior", {}).get(name)) else {})}


# ----------------------------------------------------------------------------- 4. retrain
def _collect(cfg: Sim2RealConfig, demos: Path, dist: Path, k: int) -> None:
    from robolearn.cluster import RayConfig
    from robolearn.collect import CollectConfig, collect

    cc = CollectConfig(suite=cfg.suite, episodes_per_task=cfg.demos_per_task, out=str(demos),
                       seed=DEMO_SEED + cfg.seed + k, distribution=str(dist),
                       expert_sees=cfg.expert_sees, background_writer=False,
                       ray=RayConfig(num_workers=0))
    collect(cc, progress=False)


def _train(cfg: Sim2RealConfig, base: Path, demos: Path, run: Path, k: int) -> Path:
    """Fine-tunes ``base`` on ``demos`` (warm start); a crash resumes from its checkpoint."""
    from robolearn.checkpoint import LATEST, read_config, resolve_checkpoint
    from robolearn.train import Trainer, restore_or_explain
    from robolearn.train.config import TrainOptions, train_config_from

    base_cfg = read_config(resolve_checkpoint(base))
    policy = {"name": base_cfg["policy"]["policy"], **{
        key: v for key, v in base_cfg["policy"].items()
        if key not in ("policy", "obs_dim", "action_dim", "num_tasks")}}
    base_train = base_cfg.get("train") or {}
    steps = cfg.train_steps
    options = TrainOptions(dataset=str(demos), out=str(run), steps=steps,
                           batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=0,
                           lr_min_ratio=1.0, ema_decay=float(base_train.get("ema_decay", 0.999)),
                           val_every=steps, log_every=max(1, min(100, steps)),
                           checkpoint_every=max(1, min(500, steps)), keep_checkpoints=1,
                           seed=cfg.seed + k, device=cfg.device, tensorboard=False,
                           progress=False, eval_every=0)
    tc = train_config_from(options, policy)
    done = int(read_config(resolve_checkpoint(run))["step"]) if (run / LATEST).exists() else 0
    if done >= steps:
        return resolve_checkpoint(run)
    trainer = Trainer(tc, run, init_weights=resolve_checkpoint(base))
    if done:
        restore_or_explain(trainer, resolve_checkpoint(run))
    return Path(trainer.run().checkpoint)


def _evaluate(cfg: Sim2RealConfig, checkpoint: Path, dist: Path) -> dict[str, Any]:
    """Sim success of ``checkpoint`` under ``dist`` and under nominal physics."""
    from robolearn.evaluate import evaluate_agent
    from robolearn.rollout import load_agent
    from robolearn.rollout.physics import load_distribution

    device = "cpu" if cfg.device == "auto" else cfg.device
    agent = load_agent(str(checkpoint), device)
    out = {}
    for name, physics in (("distribution", load_distribution(str(dist))), ("nominal", None)):
        r = evaluate_agent(agent, cfg.suite, episodes_per_task=cfg.eval_episodes,
                           seed=EVAL_SEED + cfg.seed, num_envs=min(cfg.num_envs,
                                                                   cfg.eval_episodes),
                           horizon=cfg.eval_horizon, physics=physics, progress=False)
        out[name] = {"success": float(r.mean_success),
                     "success_by_task": {t: float(x) for t, x in r.success_by_task.items()}}
    out["checkpoint"] = str(checkpoint)
    out["under"] = str(dist)
    return out


# ----------------------------------------------------------------------------- reports
def _write_report(cfg: Sim2RealConfig, state: LoopState, k: int, cdir: Path) -> None:
    rec = state.cycles[k]
    prev = state.cycles[k - 1] if k else None
    report = {"cycle": k, "policy": rec["policy"], "distribution": rec["distribution"],
              "robot": rec.get("robot"), "sim": rec.get("sim"), "fits": {}}
    lines = [f"# Curriculum cycle {k}", "", f"- policy π_{k}: `{rec['policy']}`",
             f"- trained under p_{k}: `{rec['distribution']}`", ""]
    lines += ["| task | robot episodes | robot success | interventions | missed deadlines |",
              "|---|---|---|---|---|"]
    for t, m in (rec.get("robot") or {}).items():
        s = "-" if m["success"] is None else f"{m['success']:.2f}"
        lines.append(f"| {t} | {m['episodes']} | {s} | {m['interventions']} | "
                     f"{m['missed_deadlines']} |")
    sim_ = rec.get("sim")
    if rec.get("seconds"):
        lines += ["", "Wall seconds by step (the last run of each step): " + ", ".join(
            f"{n} {v:g}" for n, v in rec["seconds"].items())]
    if sim_:
        lines += ["", f"Sim success of π_{k}: {sim_['distribution']['success']:.2f} under p_{k}, "
                      f"{sim_['nominal']['success']:.2f} under nominal physics."]
    for t, fit in (rec.get("fits") or {}).items():
        before = ((prev or {}).get("fits") or {}).get(t, {}).get("estimates", {})
        report["fits"][t] = {n: dict(e, previous=before.get(n, {}).get("value"))
                             for n, e in fit["estimates"].items()}
        lines += ["", f"## Fit of {t} ({fit['episodes']} episodes, {fit['seconds']} s)", "",
                  "| field | value | ±2σ | identified | previous cycle |", "|---|---|---|---|---|"]
        for n, e in fit["estimates"].items():
            p = before.get(n, {}).get("value")
            lines.append(f"| {n} | {_num(e['value'])} | [{_num(e['low'])}, {_num(e['high'])}] | "
                         f"{'yes' if e['identified'] else 'no (prior kept)'} | "
                         f"{'-' if p is None else _num(p)} |")
        for n, (lo, hi) in fit.get("prior_kept", {}).items():
            lines.append(f"| {n} | not fitted | [{_num(lo)}, {_num(hi)}] | no (prior kept) | - |")
        notes = [f"- {n}: {e['note']}" for n, e in fit["estimates"].items()
                 if e.get("outside_prior")]
        lines += ["", *notes] if notes else []
    _dump(cdir / "report.json", report)
    (cdir / "report.md").write_text("\n".join(lines) + "\n")


def _num(x: Any) -> str:
    return str(x) if isinstance(x, int) else f"{float(x):.4g}"


def plot_loop(cycles: list[dict[str, Any]], tasks: list[str], path: Path) -> Path:
    """Robot success against cumulative real episodes (per task and mean), one point per cycle."""
    from matplotlib.figure import Figure

    xs, mean, per = [], [], {t: [] for t in tasks}
    total = 0
    for rec in cycles:
        robot = rec.get("robot")
        if not robot:
            continue
        total += sum(int(m["episodes"]) for m in robot.values())
        xs.append(total)
        vals = [robot[t]["success"] for t in tasks if robot.get(t, {}).get("success") is not None]
        mean.append(float(np.mean(vals)) if vals else math.nan)
        for t in tasks:
            s = robot.get(t, {}).get("success")
            per[t].append(math.nan if s is None else float(s))
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    if len(tasks) > 1:
        for t in tasks:
            ax.plot(xs, per[t], marker=".", lw=1, alpha=0.6, label=t.removesuffix("-v3"))
    ax.plot(xs, mean, marker="o", lw=2, color="black", label="mean" if len(tasks) > 1 else tasks[0])
    for i, (x, y) in enumerate(zip(xs, mean)):
        ax.annotate(f"π_{i}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("cumulative real episodes")
    ax.set_ylabel("success on the robot")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("real-grounded curriculum", fontsize=10)
    fig.savefig(path, dpi=120)
    return path


def _summary(cfg: Sim2RealConfig, state: LoopState, tasks: list[str], plot: Path,
             seconds: float) -> dict[str, Any]:
    rows, total = [], 0
    for rec in state.cycles:
        robot = rec.get("robot") or {}
        total += sum(int(m["episodes"]) for m in robot.values())
        vals = [m["success"] for m in robot.values() if m["success"] is not None]
        sim_ = rec.get("sim") or {}
        rows.append({
            "cycle": rec["cycle"], "policy": rec["policy"], "distribution": rec["distribution"],
            "robot_success": float(np.mean(vals)) if vals else None,
            "robot_success_by_task": {t: m["success"] for t, m in robot.items()},
            "cumulative_real_episodes": total,
            "interventions": int(sum(m["interventions"] for m in robot.values())),
            "missed_deadlines": int(sum(m["missed_deadlines"] for m in robot.values())),
            "sim_success": (sim_.get("distribution") or {}).get("success"),
            "sim_nominal_success": (sim_.get("nominal") or {}).get("success"),
            "fits": {t: {n: e["value"] for n, e in f["estimates"].items()}
                     for t, f in (rec.get("fits") or {}).items()},
            "seconds_by_step": rec.get("seconds", {}),
        })
    return {"out": str(cfg.out), "tasks": tasks, "cycles": rows, "plot": str(plot),
            "final_policy": state.cycles[-1]["policy"],
            "final_distribution": state.cycles[-1]["distribution"],
            "real_episodes": total, "seconds_this_invocation": round(seconds, 1)}


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="robolearn curriculum: success on the robot per cycle")
    for col in ("cycle", "real episodes (cum.)", "robot success", "sim success (p_k)",
                "sim nominal", "interventions", "missed deadlines"):
        table.add_column(col, justify="right")

    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.2f}"

    for r in summary["cycles"]:
        table.add_row(str(r["cycle"]), str(r["cumulative_real_episodes"]), f(r["robot_success"]),
                      f(r["sim_success"]), f(r["sim_nominal_success"]), str(r["interventions"]),
                      str(r["missed_deadlines"]))
    console = Console()
    console.print(table)
    console.print(f"final policy: {summary['final_policy']}\nplot: {summary['plot']}")


__all__ = ["STATE", "LoopState", "plot_loop", "run_sim2real"]
