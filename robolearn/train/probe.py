"""Success rates during training: the evaluator on a small probe of held-out goals.

Every ``eval_every`` steps the trainer (rank 0) runs :func:`robolearn.evaluate.evaluate_agent`
on the weights a checkpoint would hold (the EMA weights when EMA is on), ``eval_episodes``
goals per task from ``eval_seed``, in this process (no Ray: cheap and deterministic), and logs
``eval/success`` and ``eval/success/<task>``. The goals are checked to be held out from the
training store (:func:`robolearn.evaluate.check_heldout_seeds`); ``eval_seed`` defaults to 500,
which is neither the collection seed (0) nor ``robolearn evaluate``'s (1000), so choosing the
best checkpoint on the probe does not select on the final evaluation's goals.

The probe never changes training: it runs under ``torch.random.fork_rng`` with numpy's and
Python's global states restored, and the policy samples its noise from the runner's own
generator. With ``keep_best`` the best probe's weights are kept in ``<out>/best/`` (a
checkpoint directory :func:`robolearn.load_policy` loads; ``best.json`` says which step and
success), across resumes of the same run.

The probe needs the simulator suite the store was collected on (``robolearn collect`` records
it); a store without one (a real robot's log, synthetic data) trains without the probe unless
``eval_suite`` names a suite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robolearn.errors import ConfigError

log = logging.getLogger(__name__)

BEST = "best"
BEST_INFO = "best.json"


@dataclasses.dataclass
class ProbeResult:
    """One probe: mean and per-task success of ``episodes`` episodes at ``step``."""

    step: int
    success: float
    by_task: dict[str, float]
    episodes: int
    seconds: float

    def metrics(self) -> dict[str, float]:
        """The metrics logged for it (``eval/…``)."""
        m = {"eval/success": self.success, "eval/seconds": self.seconds}
        m.update({f"eval/success/{t}": v for t, v in self.by_task.items()})
        return m

    def line(self) -> str:
        tasks = ", ".join(f"{t} {v:.2f}" for t, v in self.by_task.items())
        return (f"step {self.step} eval/success {self.success:.3f} over {self.episodes} episodes "
                f"in {self.seconds:.1f} s ({tasks})")


@contextlib.contextmanager
def rng_guard(device: torch.device) -> Iterator[None]:
    """Run a block without touching the global RNG streams training reads (torch CPU and CUDA,
    numpy's and Python's global generators): they are restored afterwards."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class SuccessProbe:
    """The probe of one training run (built by the trainer when ``eval_every > 0``).

    Args:
        cfg: the train options (``eval_every``, ``eval_episodes``, ``eval_seed``,
            ``eval_suite``, ``keep_best``).
        tasks: the store's task list (the policy's task ids).
        suite_name: the suite to evaluate on (the store's, or ``eval_suite``).
        dataset: the training store, for the held-out goal check.
        run_dir: the run directory (``best/`` lives there).
    """

    def __init__(self, cfg: Any, tasks: list[str], suite_name: str, dataset: str | os.PathLike,
                 run_dir: Path):
        import sim
        from robolearn.evaluate import check_heldout_seeds, eval_seeds

        self.episodes = int(cfg.eval_episodes)
        self.seed = int(cfg.eval_seed)
        self.keep_best = bool(cfg.keep_best)
        self.run_dir = Path(run_dir)
        try:
            suite = sim.get_suite(suite_name)
        except ValueError as e:
            raise ConfigError(f"eval_suite: {e}") from None
        missing = [t for t in tasks if t not in suite.tasks]
        try:  # exactly the policy's tasks, observed as the suite observes them
            self.suite = sim.Suite(f"probe:{suite_name}", tuple(tasks), tuple(tasks),
                                   suite.goal_observable)
        except ValueError as e:
            raise ConfigError(f"the eval probe cannot run on {dataset}'s tasks: {e}; set "
                              "eval_every=0 to train without it") from None
        if missing:
            log.info("eval probe: tasks %s are not in suite %s; probing them with its "
                     "observation settings", missing, suite_name)
        try:
            self.checked = check_heldout_seeds(self.seed, eval_seeds(self.seed, tasks,
                                                                     self.episodes),
                                               dataset=dataset)
        except ValueError as e:
            raise ConfigError(f"eval_seed={self.seed}: {e}. Pass another eval_seed= (the probe's "
                              "goals must be held out from the training episodes)") from None
        self.settings = {"suite": suite_name, "tasks": list(tasks), "episodes": self.episodes,
                         "seed": self.seed}
        self.best_success = self._load_best()

    def run(self, policy: torch.nn.Module, tasks: list[str], step: int, *, ema: Any = None,
            device: torch.device) -> ProbeResult:
        """Evaluate ``policy`` (its EMA weights when ``ema`` is given) on the probe's goals."""
        from robolearn.evaluate import evaluate_agent
        from robolearn.runtime import PolicyRunner

        t0 = time.perf_counter()
        was_training = policy.training
        with rng_guard(device):
            ctx = ema.average_parameters() if ema is not None else contextlib.nullcontext()
            with ctx:
                runner = PolicyRunner(policy, tasks)
                result = evaluate_agent(runner, self.suite, episodes_per_task=self.episodes,
                                        seed=self.seed, num_envs=min(self.episodes, 10),
                                        progress=False)
        policy.train(was_training)
        return ProbeResult(step=step, success=result.mean_success,
                           by_task=result.success_by_task, episodes=len(result.episodes),
                           seconds=time.perf_counter() - t0)

    # ------------------------------------------------------------------ the best checkpoint
    @property
    def best_dir(self) -> Path:
        return self.run_dir / BEST

    def _load_best(self) -> float | None:
        path = self.best_dir / BEST_INFO
        if not self.keep_best or not path.exists():
            return None
        try:
            info = json.loads(path.read_text())
        except ValueError:
            log.warning("%s is not valid JSON; the best checkpoint is tracked afresh", path)
            return None
        if info.get("probe") != self.settings:
            log.warning("%s was chosen with other probe settings (%s, now %s); the best "
                        "checkpoint is tracked afresh", self.best_dir, info.get("probe"),
                        self.settings)
            return None
        return float(info["success"])

    def is_best(self, result: ProbeResult) -> bool:
        """Does ``result`` beat the best so far (ties keep the earlier one)?"""
        return self.best_success is None or result.success > self.best_success

    def save_best(self, result: ProbeResult, weights: dict[str, torch.Tensor],
                  config: dict[str, Any]) -> Path:
        """Write ``<out>/best`` (weights + config.json + best.json), replacing the previous one
        only once the new one is complete."""
        from safetensors.torch import save_file

        from robolearn.checkpoint import CONFIG, FORMAT, FORMAT_VERSION, WEIGHTS

        tmp = self.run_dir / f".{BEST}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.detach().to("cpu").contiguous() for k, v in weights.items()},
                  str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(
            {"format": FORMAT, "version": FORMAT_VERSION, "step": result.step, **config},
            indent=2))
        (tmp / BEST_INFO).write_text(json.dumps(
            {"step": result.step, "success": result.success, "by_task": result.by_task,
             "probe": self.settings}, indent=2))
        old = self.run_dir / f".{BEST}.old{os.getpid()}"
        if self.best_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(self.best_dir, old)
        os.rename(tmp, self.best_dir)
        shutil.rmtree(old, ignore_errors=True)
        self.best_success = result.success
        return self.best_dir


def probe_suite(cfg: Any, store_attrs: dict[str, Any]) -> str | None:
    """The suite the probe evaluates on: ``eval_suite``, else the one the store was collected
    on (``robolearn collect`` records it), else None (no probe)."""
    if cfg.eval_suite:
        return str(cfg.eval_suite)
    suite = store_attrs.get("user", {}).get("suite")
    return str(suite) if suite else None
