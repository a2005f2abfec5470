"""One trainer for every policy and objective (``robolearn train``).

It trains any `policies` policy on any episode store: the observation/action sizes and the task
list come from the store, the policy's own fields from the ``policy`` config group. The loop is
plain: sample windows → ``objective(policy, batch)`` (behaviour cloning by default:
:mod:`robolearn.train.objectives`) → AdamW step → EMA update; validation losses (the policy's
own loss) on held-out episodes; checkpoints (safetensors + JSON, recording the objective) that
:func:`robolearn.load_policy` loads; exact resume (weights, EMA, optimiser, scheduler, step and
every RNG).

``trainer=local`` runs it in this process; ``trainer=ray`` runs the same :class:`Trainer` in
every worker of a Ray Train ``TorchTrainer`` (:mod:`robolearn.train.ray`): the trainer knows its
rank and world size, all-reduces gradients (DDP) when there is more than one worker, and calls
``on_checkpoint`` after each checkpoint so Ray can keep a copy.

Batch size semantics: ``batch_size`` windows per optimiser step *per process*; with ``W`` Ray
workers an optimiser step sees ``W × batch_size`` windows (gradients averaged across workers).
The learning rate is used as given, never rescaled.

Run directories (:mod:`robolearn.train.rundir`, the same for both trainers): a new ``out``
starts a run; the same command again after a crash resumes from the newest checkpoint; other
run-defining settings are refused.

What rank 0 reports while training: metrics to ``metrics.jsonl`` and TensorBoard (``tb/``), and
to Weights & Biases with ``wandb.enable=true`` (:mod:`robolearn.train.tracking`); progress lines
to ``log.txt``; every ``eval_every`` steps the success rate on a small probe of held-out goals
(``eval/success``, ``eval/success/<task>``; :mod:`robolearn.train.probe`), run without touching
the training RNG streams, and with ``keep_best`` the best probe's weights in ``<out>/best``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from policies import EMA, config_to_dict, make_config, make_policy_from_config
from robolearn.checkpoint import (
    optimizer_from_flat,
    optimizer_to_flat,
    read_training_state,
    resolve_checkpoint,
    save_checkpoint,
)
from robolearn.data import EpisodeStore, SequenceSampler, split_episodes
from robolearn.devices import resolve_device, to_device
from robolearn.errors import ConfigError
from robolearn.train.config import TrainOptions, check_options
from robolearn.train.objectives import Objective, ObjectiveModule, make_objective
from robolearn.train.probe import ProbeResult, SuccessProbe, probe_suite
from robolearn.train.tracking import ProgressLog, WandbRun, eta

log = logging.getLogger(__name__)

# on_checkpoint(step, checkpoint dir (rank 0; None on the other ranks), metrics): every rank
# calls it at the same steps, so it may synchronise (Ray's report is a barrier).
CheckpointHook = Callable[[int, "Path | None", dict[str, float]], None]
# on_log(step, metrics): rank 0, every log_every steps.
LogHook = Callable[[int, dict[str, float]], None]


def lr_lambda(warmup: int, total: int, min_ratio: float):
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    steps: int
    seconds: float
    steps_per_s: float  # training steps per second (probe time excluded)
    final_train_loss: float
    final_val_loss: float | None
    resumed_from: int | None = None  # the step this command resumed from (None: a fresh start)
    restarts: int = 0  # worker failures survived (trainer=ray), each resumed from a checkpoint
    eval_success: float | None = None  # the last probe's eval/success (None: no probe ran)
    eval_seconds: float = 0.0  # time spent in probes (part of `seconds`)
    best: str | None = None  # <out>/best (keep_best), when a probe has saved one

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["run_dir"], d["checkpoint"] = str(self.run_dir), str(self.checkpoint)
        return d


class MetricsLog:
    """metrics.jsonl always; TensorBoard events too when enabled, and W&B when given.
    Namespaced train/…, val/…, eval/…."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool,
                 wandb: WandbRun | None = None):
        self._wandb = wandb
        self.path = run_dir / "metrics.jsonl"
        if self.path.exists():  # drop lines past the checkpoint we resume from
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        self._fh = self.path.open("a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step or None)
            except ImportError:
                log.warning("tensorboard is not installed: `pip install tensorboard`; "
                            "metrics go to metrics.jsonl only")

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self._fh.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(step, metrics)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.close()


class _NoMetrics:
    """What ranks other than 0 log: nothing (rank 0 writes the run directory)."""

    def write(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def policy_fields(cfg: Any) -> dict[str, Any]:
    """The ``policy`` group of a train config as a plain dict (``name`` + its fields)."""
    from omegaconf import DictConfig, OmegaConf

    policy = cfg.policy
    if isinstance(policy, DictConfig):
        policy = OmegaConf.to_container(policy, resolve=True)
    return json.loads(json.dumps(dict(policy)))


def policy_config_for(cfg: Any, store: EpisodeStore) -> Any:
    """The policy config a train config gives on ``store`` (sizes and task count from it)."""
    fields = policy_fields(cfg)
    name = fields.pop("name")
    try:
        return make_config(name, obs_dim=store.obs_dim, action_dim=store.action_dim,
                           num_tasks=len(store.tasks), **fields)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"policy={name}: {e}") from None


def train_options(cfg: Any) -> dict[str, Any]:
    """The train config as plain JSON-able data (what checkpoints and launches record)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        data = OmegaConf.to_container(cfg, resolve=True)
    else:
        data = dataclasses.asdict(cfg)
    data.pop("defaults", None)
    return json.loads(json.dumps(data, default=str))


def resolve_episode_weights(cfg: Any, store: EpisodeStore, episodes: np.ndarray,
                    extra: np.ndarray | None = None) -> np.ndarray | None:
    """Per-episode weights of ``episodes`` from ``weights.task``, ``weights.episodes`` (a .npy
    of one weight per store episode) and ``extra`` (the same, given in code); None: uniform."""
    weights = np.ones(len(store), dtype=np.float64)
    used = False
    task_w = dict(cfg.weights.task)
    if task_w:
        unknown = sorted(set(task_w) - set(store.tasks))
        if unknown:
            raise ConfigError(f"Got weights.task for {unknown}, which {store.path} does not "
                              f"hold; its tasks: {store.tasks}")
        tasks = store.meta("task")
        weights *= np.array([float(task_w.get(str(t), 1.0)) for t in tasks])
        used = True
    for source, values in (("weights.episodes", cfg.weights.episodes), ("episode_weights", extra)):
        if values is None or (isinstance(values, str) and not values):
            continue
        arr = np.load(values) if isinstance(values, str) else np.asarray(values)
        arr = np.asarray(arr, dtype=np.float64).reshape(-1)
        if arr.shape != (len(store),) or not np.isfinite(arr).all() or (arr < 0).any():
            raise ConfigError(f"{source}: expected {len(store)} finite weights >= 0 (one per "
                              f"episode of {store.path}), got shape {arr.shape}")
        weights *= arr
        used = True
    if not used:
        return None
    selected = weights[episodes]
    if not selected.sum() > 0:
        raise ConfigError("the episode weights are all zero on the training episodes")
    return selected


class Trainer:
    """Builds the policy, data and optimiser from a train config; :meth:`run` trains.

    One instance per process. Under Ray Train each worker builds one with its ``rank`` and
    ``world_size``: the weights start equal on every rank (same seed), each rank samples its own
    windows (numpy stream ``seed`` on rank 0, ``[seed, rank]`` elsewhere; the flow/diffusion
    noise likewise), gradients are averaged across ranks by DDP, and only rank 0 writes the run
    directory (metrics, TensorBoard, checkpoints in the one format). Checkpoints hold every
    rank's RNG state, so a restart continues each rank's streams.

    Args:
        cfg: A train config (:class:`~robolearn.train.config.TrainConfig`).
        run_dir: The run directory (rank 0 writes it).
        objective: What to minimise (default: ``make_objective(cfg.objective)``, behaviour
            cloning); its frozen :meth:`~robolearn.train.objectives.Objective.modules` are
            moved to the device.
        episode_weights: One weight per store episode (multiplies ``cfg.weights``): windows
            are drawn ∝ weight (``weights.mode=sample``) or the loss is weighted (``loss``).
        batches: Where training batches come from instead of the store's windows: anything
            with ``sample(batch_size, rng) -> dict`` of arrays/tensors (nested dicts allowed),
            e.g. preference pairs for :mod:`robolearn.align`; the store still gives the
            normalisers and the validation batches.
        init_weights: A checkpoint whose (inference) weights the policy starts from: a
            fine-tuning warm start (a resumed run restores its own state instead).
        rank, world_size, device, on_checkpoint, on_log: set by Ray Train's workers.

    Example:
        >>> cfg = robolearn.cli.compose("train", ["dataset=demos.zarr", "steps=1000"])
        >>> result = Trainer(cfg, Path("runs/demo")).run()
    """

    def __init__(self, cfg: TrainOptions, run_dir: Path, *, objective: Objective | None = None,
                 episode_weights: np.ndarray | None = None, batches: Any = None,
                 init_weights: str | Path | None = None, rank: int = 0, world_size: int = 1,
                 device: torch.device | str | None = None,
                 on_checkpoint: CheckpointHook | None = None, on_log: LogHook | None = None):
        check_options(cfg)
        self.cfg = cfg
        self.objective = objective or make_objective(cfg.objective)
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = int(rank), int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"Got rank={rank}, world_size={world_size}; expected 0 <= rank < "
                             "world_size")
        self.is_writer = self.rank == 0  # rank 0 alone writes the run directory
        self.on_checkpoint, self.on_log = on_checkpoint, on_log
        self.device = torch.device(device) if device is not None else resolve_device(cfg.device)
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.rng = np.random.default_rng(self._rank_seed())

        self.store = EpisodeStore.open(cfg.dataset, mode="r")
        # A deployment that faulted keeps its last episode, marked incomplete, for the
        # post-mortem: training uses the complete ones only.
        usable = self.store.complete_episodes()
        if len(usable) == 0:
            raise ValueError(f"{cfg.dataset} has no complete committed episodes to train on")
        self.policy_config = policy_config_for(cfg, self.store)
        pc = self.policy_config
        self.train_eps, self.val_eps = split_episodes(self.store.task_ids(), cfg.val_fraction,
                                                      seed=cfg.seed, episodes=usable)
        arrays = self.store.load(["obs", "action"])  # one bulk read for samplers and normalisers
        weights = resolve_episode_weights(cfg, self.store, self.train_eps,
                                          extra=episode_weights)
        sampler_kw = ({} if weights is None else
                      {"episode_weights": weights, "weighting": cfg.weights.mode})
        self.sampler = batches if batches is not None else SequenceSampler(
            self.store, pc.obs_horizon, pc.action_horizon, self.train_eps, arrays=arrays,
            **sampler_kw)
        self.val_batches = []
        if len(self.val_eps) and self.is_writer:
            val_sampler = SequenceSampler(self.store, pc.obs_horizon, pc.action_horizon,
                                          self.val_eps, arrays=arrays)
            val_rng = np.random.default_rng(cfg.seed + 1)
            self.val_batches = [val_sampler.sample(cfg.batch_size, val_rng)
                                for _ in range(cfg.val_batches)]

        self.policy = make_policy_from_config(pc)
        rows = _episode_rows(self.store.episode_ends, self.train_eps)
        self.policy.fit_normalizers(arrays["obs"][rows], arrays["action"][rows])
        if init_weights is not None:
            self._load_init_weights(Path(init_weights))
        self.policy.to(self.device)
        for module in self.objective.modules().values():
            module.to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.policy.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay,
            foreach=True,  # one kernel per op over all tensors, also on CPU (2x faster here)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.warmup_steps, cfg.steps, cfg.lr_min_ratio)
        )
        self.ema = EMA(self.policy, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.step = 0
        # The loss every rank backpropagates: the objective's (one process), or through DDP,
        # whose backward hooks all-reduce (average) the gradients across ranks.
        self.compute_loss: Callable[[dict[str, torch.Tensor]], Any] = (
            lambda batch: self.objective(self.policy, batch))
        if self.world_size > 1:
            self._init_distributed()
        self.probe = self._make_probe() if self.is_writer else None

    def _make_probe(self) -> SuccessProbe | None:
        """The success probe (``eval_every > 0`` on a store collected in sim), or None."""
        if self.cfg.eval_every <= 0 or self.cfg.steps < self.cfg.eval_every:
            return None  # off, or no probe step in this run (spares the simulator's import)
        suite = probe_suite(self.cfg, self.store.attrs)
        if suite is None:
            log.info("eval probe off: %s records no simulator suite (it was not made by "
                     "`robolearn collect`); pass eval_suite=<suite> to probe anyway, or "
                     "eval_every=0 to silence this", self.cfg.dataset)
            return None
        return SuccessProbe(self.cfg, self.store.tasks, suite, self.cfg.dataset, self.run_dir)

    def _load_init_weights(self, path: Path) -> None:
        """Start from a checkpoint's inference weights (normalisers included): the same policy
        config is required, so a warm start can never silently mix architectures."""
        from policies import config_to_dict
        from robolearn.checkpoint import read_config, read_weights, resolve_checkpoint
        from robolearn.errors import CheckpointError

        ckpt = resolve_checkpoint(path)
        have = read_config(ckpt)["policy"]
        want = json.loads(json.dumps(config_to_dict(self.policy_config)))
        if have != want:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise CheckpointError(f"init_weights={ckpt} has another policy config (differs in "
                                  f"{', '.join(diff)}) than this run")
        self.policy.load_state_dict(read_weights(ckpt))
        log.info("starting from the weights of %s", ckpt)

    def _rank_seed(self) -> int | list[int]:
        return self.cfg.seed if self.rank == 0 else [self.cfg.seed, self.rank]

    def _init_distributed(self) -> None:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if not dist.is_initialized() or dist.get_world_size() != self.world_size:
            raise RuntimeError(
                f"Trainer(world_size={self.world_size}) needs an initialised torch.distributed "
                "process group of that size; use trainer=ray (Ray Train sets it up)"
            )
        ids = [self.device.index] if self.device.type == "cuda" else None
        # No buffer sync before every forward: the normalisers are fit identically on every
        # rank (torch >= 2.13 names it forward_sync_buffers, older ones broadcast_buffers).
        no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in
                   inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers")
        self.ddp = DistributedDataParallel(ObjectiveModule(self.policy, self.objective),
                                           device_ids=ids,
                                           **{no_sync: False})
        self.compute_loss = self.ddp
        # Each rank its own flow/diffusion noise (the initial weights were drawn before this).
        torch.manual_seed(int(np.random.SeedSequence(self._rank_seed()).generate_state(1)[0]))

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_config(self) -> dict[str, Any]:
        attrs = self.store.attrs.get("user", {})
        return {
            "policy": config_to_dict(self.policy_config),
            "tasks": self.store.tasks,
            "obs_dim": self.store.obs_dim,
            "action_dim": self.store.action_dim,
            "ema": self.ema is not None,
            "dataset": str(Path(self.cfg.dataset).resolve()),
            "collect_seed": attrs.get("collect_seed"),
            "suite": attrs.get("suite"),
            "dataset_episodes": len(self.store),
            "objective": self.objective.describe(),
            "train": train_options(self.cfg),
        }

    def inference_state(self) -> dict[str, torch.Tensor]:
        """The weights users run: EMA parameters when enabled, the live buffers (normalisers)."""
        state = dict(self.policy.state_dict())
        if self.ema is not None:
            for name, t in self.ema.shadow.items():
                state[name] = t
        return state

    def rng_state(self) -> dict[str, Any]:
        """This process's RNG streams (torch CPU, CUDA, numpy sampler)."""
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
                "numpy": self.rng.bit_generator.state}

    def gather_rng_states(self) -> list[dict[str, Any]]:
        """Every rank's :meth:`rng_state`, on every rank (a collective when world_size > 1).

        With several ranks it also checks that their weights are still identical (what DDP's
        gradient all-reduce guarantees): replicas that diverged stop the run here, on every
        rank, instead of training on silently.
        """
        mine = self.rng_state()
        if self.world_size == 1:
            return [mine]
        import torch.distributed as dist

        with torch.no_grad():
            mine["weights_sum"] = float(sum(p.double().sum() for p in self.policy.parameters()))
        everyone: list[Any] = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        sums = [st.pop("weights_sum") for st in everyone]
        if len(set(sums)) != 1:
            raise RuntimeError(
                f"the {self.world_size} training processes hold different weights at step "
                f"{self.step} (sums {sums}): the gradient all-reduce did not keep them in step. "
                "Report this as a bug; trainer=local is not affected"
            )
        return everyone

    def save(self, rng_states: list[dict[str, Any]] | None = None) -> Path:
        """Write a checkpoint of the current step (rank 0's job); ``rng_states``: every rank's
        streams from :meth:`gather_rng_states` (default: this process's only)."""
        rng_states = rng_states or [self.rng_state()]
        tensors = {f"model.{k}": v for k, v in self.policy.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        opt_tensors, opt_meta = optimizer_to_flat(self.optimizer)
        tensors.update(opt_tensors)
        numpy_states = {}
        for r, st in enumerate(rng_states):  # rank 0 under the keys the local trainer uses
            suffix = "" if r == 0 else f".rank{r}"
            tensors[f"rng.torch{suffix}"] = st["torch"]
            if st["cuda"] is not None:
                tensors[f"rng.cuda{suffix}"] = st["cuda"]
            if r:
                numpy_states[str(r)] = st["numpy"]
        meta = {
            "step": self.step,
            "optimizer": opt_meta,
            "scheduler": self.scheduler.state_dict(),
            "rng_numpy": rng_states[0]["numpy"],
            "world_size": len(rng_states),
        }
        if numpy_states:
            meta["rng_numpy_ranks"] = numpy_states
        return save_checkpoint(
            self.run_dir, self.step, self.inference_state(), self.checkpoint_config(),
            training_tensors=tensors, training_json=meta, keep=self.cfg.keep_checkpoints,
        )

    def restore(self, ckpt: Path) -> None:
        """Continue from a checkpoint: weights, EMA, optimiser, scheduler, step, and this rank's
        RNG streams (a rank the checkpoint has none for, after a change of world size, gets fresh
        streams seeded from (seed, rank, step))."""
        tensors, meta = read_training_state(ckpt)
        model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        self.policy.load_state_dict(model)
        if self.ema is not None:
            self.ema.load_state_dict(
                {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
            )
        optimizer_from_flat(self.optimizer, tensors, meta["optimizer"])
        self.scheduler.load_state_dict(meta["scheduler"])
        self.step = int(meta["step"])
        suffix = "" if self.rank == 0 else f".rank{self.rank}"
        numpy_state = (meta["rng_numpy"] if self.rank == 0
                       else meta.get("rng_numpy_ranks", {}).get(str(self.rank)))
        if f"rng.torch{suffix}" in tensors and numpy_state is not None:
            torch.set_rng_state(tensors[f"rng.torch{suffix}"])
            if f"rng.cuda{suffix}" in tensors and torch.cuda.is_available():
                torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"])
            self.rng.bit_generator.state = numpy_state
        else:
            log.warning("%s has no RNG state for rank %d (written with world_size=%s); this rank "
                        "draws fresh streams", ckpt, self.rank, meta.get("world_size", 1))
            seq = np.random.SeedSequence([self.cfg.seed, self.rank, self.step])
            torch.manual_seed(int(seq.generate_state(1)[0]))
            self.rng = np.random.default_rng(seq)
        log.info("resumed %s at step %d", ckpt, self.step)

    # ------------------------------------------------------------------ the loop
    def validation_loss(self) -> float | None:
        if not self.val_batches:
            return None
        self.policy.eval()
        losses = []
        # Its own RNG stream (flow/diffusion noise), so validating never changes training.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(self.cfg.seed + 2)
            ctx = self.ema.average_parameters() if self.ema is not None else nullcontext()
            with ctx:
                for batch in self.val_batches:
                    loss, _ = self.policy.compute_loss(to_device(batch, self.device))
                    losses.append(float(loss))
        self.policy.train()
        return float(np.mean(losses))

    def run_probe(self) -> ProbeResult | None:
        """Evaluate the current (EMA) weights on the probe now; None without a probe."""
        if self.probe is None:
            return None
        return self.probe.run(self.policy, self.store.tasks, self.step, ema=self.ema,
                              device=self.device)

    def _mean_over_ranks(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss averaged over ranks (for logging and the finiteness check every rank makes
        alike: a NaN on one rank is a NaN on all, so they stop together)."""
        if self.world_size == 1:
            return loss
        import torch.distributed as dist

        mean = loss.detach().clone()
        dist.all_reduce(mean, op=dist.ReduceOp.SUM)
        return mean / self.world_size

    def run(self, until_step: int | None = None) -> TrainResult:
        """Train to ``cfg.steps`` (or stop early at ``until_step``, e.g. a time-boxed slice of a
        preemptible job; the LR schedule always spans ``cfg.steps``)."""
        cfg = self.cfg
        stop = cfg.steps if until_step is None else min(until_step, cfg.steps)
        show_bar = cfg.progress and self.is_writer and not self.on_log
        progress = ProgressLog(self.run_dir, to_terminal=not show_bar) if self.is_writer else None
        wandb_run = None
        if self.is_writer and cfg.wandb.enable:
            wandb_run = WandbRun(cfg, self.run_dir, train_options(cfg))
        metrics = (MetricsLog(self.run_dir, self.step, cfg.tensorboard, wandb=wandb_run)
                   if self.is_writer else _NoMetrics())
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.amp == "bf16" else None
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train {self.policy_config_name}",
                   unit="step", disable=not show_bar)
        self.policy.train()
        t0 = time.perf_counter()
        t_window, steps_window = t0, 0
        start_step = self.step
        train_loss = float("nan")
        val_loss = None
        ckpt = None
        probe: ProbeResult | None = None
        eval_seconds = 0.0
        best = None
        if progress is not None:
            progress.info("%s %s on %s: steps %d..%d, %d train / %d val episodes, batch %d, "
                          "device %s%s", "resuming" if start_step else "training",
                          self.policy_config_name, cfg.dataset, start_step, stop,
                          len(self.train_eps), len(self.val_eps), cfg.batch_size,
                          self.device, f", eval probe every {cfg.eval_every} steps"
                          if self.probe is not None else "")
        try:
            while self.step < stop:
                batch = to_device(self.sampler.sample(cfg.batch_size, self.rng), self.device)
                if amp is not None:
                    with amp:
                        loss, info = self.compute_loss(batch)
                else:
                    loss, info = self.compute_loss(batch)
                mean_loss = self._mean_over_ranks(loss)
                if not torch.isfinite(mean_loss):
                    raise FloatingPointError(
                        f"training loss became {float(mean_loss)} at step {self.step}; lower lr= "
                        f"(now {cfg.lr}) or check the dataset for outliers"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = (torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
                             if cfg.grad_clip > 0 else None)
                self.optimizer.step()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update()
                self.step += 1
                steps_window += 1
                train_loss = mean_loss.item()
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    rate = steps_window / max(now - t_window, 1e-9)
                    t_window, steps_window = now, 0
                    m = {"train/loss": train_loss, "train/lr": self.scheduler.get_last_lr()[0],
                         "train/steps_per_s": rate}
                    if grad_norm is not None:
                        m["train/grad_norm"] = float(grad_norm)
                    m.update({f"train/{k}": float(v) for k, v in info.items() if k != "loss"})
                    metrics.write(self.step, m)
                    bar.set_postfix(loss=f"{train_loss:.4f}", steps_s=f"{rate:.1f}", refresh=False)
                    if progress is not None:
                        progress.info("step %d/%d loss %.4f lr %.2e %.1f steps/s eta %s",
                                      self.step, cfg.steps, train_loss, m["train/lr"], rate,
                                      eta((stop - self.step) / max(rate, 1e-9)))
                    if self.on_log is not None and self.is_writer:
                        self.on_log(self.step, m)
                if self.is_writer and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                    val_loss = self.validation_loss()
                    if val_loss is not None:
                        metrics.write(self.step, {"val/loss": val_loss})
                        if progress is not None:
                            progress.info("step %d val/loss %.4f", self.step, val_loss)
                if self.probe is not None and self.step % cfg.eval_every == 0:
                    probe = self.run_probe()
                    assert probe is not None
                    eval_seconds += probe.seconds
                    t_window += probe.seconds  # steps/s counts training, not the probe
                    metrics.write(self.step, probe.metrics())
                    line = probe.line()
                    if self.probe.keep_best and self.probe.is_best(probe):
                        best = self.probe.save_best(probe, self.inference_state(),
                                                    self.checkpoint_config())
                        line += f"; best so far, saved to {best}"
                    if progress is not None:
                        progress.info("%s", line)
                if self.step % cfg.checkpoint_every == 0 or self.step == stop:
                    rng_states = self.gather_rng_states()  # every rank takes part
                    saved = self.save(rng_states) if self.is_writer else None
                    ckpt = saved or ckpt
                    if self.on_checkpoint is not None:
                        seconds = time.perf_counter() - t0
                        info_ = {"step": self.step, "train/loss": train_loss,
                                 "attempt_steps": self.step - start_step,
                                 "attempt_seconds": seconds}
                        if val_loss is not None:
                            info_["val/loss"] = val_loss
                        self.on_checkpoint(self.step, saved, info_)
        finally:
            bar.close()
            metrics.close()
            if progress is not None:
                progress.close()
        seconds = time.perf_counter() - t0
        done = self.step - start_step
        if ckpt is None and self.is_writer:
            ckpt = resolve_checkpoint(self.run_dir)
        if best is None and self.probe is not None and self.probe.keep_best and \
                self.probe.best_dir.exists():
            best = self.probe.best_dir  # saved by an earlier launch of this run
        return TrainResult(
            run_dir=self.run_dir, checkpoint=ckpt, steps=self.step, seconds=seconds,
            steps_per_s=done / (seconds - eval_seconds) if seconds > eval_seconds else 0.0,
            final_train_loss=train_loss, final_val_loss=val_loss,
            resumed_from=start_step or None,
            eval_success=probe.success if probe is not None else None,
            eval_seconds=eval_seconds, best=str(best) if best is not None else None,
        )

    @property
    def policy_config_name(self) -> str:
        from policies import policy_name

        return policy_name(self.policy_config)


def _episode_rows(ends: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], ends[:-1]])
    return np.concatenate([np.arange(starts[e], ends[e]) for e in episodes])


