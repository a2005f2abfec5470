"""One trainer for every policy (``robolearn train``).

It trains any `policies` policy on any episode store: the observation/action sizes and the task
list come from the store, the policy's own fields from the ``policy`` config group. The loop is
plain: sample windows → ``policy.compute_loss`` → AdamW step → EMA update; validation losses on
held-out episodes; checkpoints (safetensors + JSON) that :func:`robolearn.load_policy` loads;
exact resume (weights, EMA, optimiser, scheduler, step and every RNG).

Batch size semantics: ``batch_size`` windows per optimiser step in this process. The learning
rate is used as given, never rescaled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from policies import EMA, config_to_dict, make_config, make_policy_from_config
from robolearn.checkpoint import (
    LATEST,
    CheckpointError,
    optimizer_from_flat,
    optimizer_to_flat,
    read_training_state,
    resolve_checkpoint,
    save_checkpoint,
)
from robolearn.data import EpisodeStore, SequenceSampler, split_episodes

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Got device={device!r}, but this machine has no CUDA GPU; use auto or cpu")
    return dev


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Numpy batch → tensors on ``device`` (the one place batches cross to torch)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
            for k, v in batch.items()}


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
    steps_per_s: float
    final_train_loss: float
    final_val_loss: float | None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["run_dir"], d["checkpoint"] = str(self.run_dir), str(self.checkpoint)
        return d


class MetricsLog:
    """metrics.jsonl always; TensorBoard events too when enabled. Namespaced train/…, val/…."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool):
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

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


class Trainer:
    """Builds the policy, data and optimiser from a train config; :meth:`run` trains.

    Example:
        >>> cfg = robolearn.cli.compose("train", ["dataset=demos.zarr", "steps=1000"])
        >>> result = Trainer(cfg, Path("runs/demo")).run()
    """

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = resolve_device(cfg.device)
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        if cfg.amp not in ("none", "bf16"):
            raise ValueError(f"Got amp={cfg.amp!r}, expected 'none' or 'bf16'")
        if cfg.steps < 1 or cfg.batch_size < 1:
            raise ValueError(f"Got steps={cfg.steps}, batch_size={cfg.batch_size}; both must be >= 1")
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)

        self.store = EpisodeStore.open(cfg.dataset, mode="r")
        if len(self.store) == 0:
            raise ValueError(f"{cfg.dataset} has no committed episodes to train on")
        policy_fields = OmegaConf.to_container(cfg.policy, resolve=True)
        name = policy_fields.pop("name")
        self.policy_config = make_config(
            name, obs_dim=self.store.obs_dim, action_dim=self.store.action_dim,
            num_tasks=len(self.store.tasks), **policy_fields,
        )
        pc = self.policy_config
        self.train_eps, self.val_eps = split_episodes(
            self.store.task_ids(), cfg.val_fraction, seed=cfg.seed
        )
        arrays = self.store.load(["obs", "action"])  # one bulk read for samplers and normalisers
        self.sampler = SequenceSampler(self.store, pc.obs_horizon, pc.action_horizon, self.train_eps,
                                       arrays=arrays)
        self.val_batches = []
        if len(self.val_eps):
            val_sampler = SequenceSampler(self.store, pc.obs_horizon, pc.action_horizon,
                                          self.val_eps, arrays=arrays)
            val_rng = np.random.default_rng(cfg.seed + 1)
            self.val_batches = [val_sampler.sample(cfg.batch_size, val_rng)
                                for _ in range(cfg.val_batches)]

        self.policy = make_policy_from_config(pc)
        rows = _episode_rows(self.store.episode_ends, self.train_eps)
        self.policy.fit_normalizers(arrays["obs"][rows], arrays["action"][rows])
        self.policy.to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.policy.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay,
            foreach=True,  # one kernel per op over all tensors, also on CPU (2x faster here)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.warmup_steps, cfg.steps, cfg.lr_min_ratio)
        )
        self.ema = EMA(self.policy, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.step = 0

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
            "train": OmegaConf.to_container(self.cfg, resolve=True),
        }

    def inference_state(self) -> dict[str, torch.Tensor]:
        """The weights users run: EMA parameters when enabled, the live buffers (normalisers)."""
        state = dict(self.policy.state_dict())
        if self.ema is not None:
            for name, t in self.ema.shadow.items():
                state[name] = t
        return state

    def save(self) -> Path:
        tensors = {f"model.{k}": v for k, v in self.policy.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        opt_tensors, opt_meta = optimizer_to_flat(self.optimizer)
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        meta = {
            "step": self.step,
            "optimizer": opt_meta,
            "scheduler": self.scheduler.state_dict(),
            "rng_numpy": self.rng.bit_generator.state,
        }
        return save_checkpoint(
            self.run_dir, self.step, self.inference_state(), self.checkpoint_config(),
            training_tensors=tensors, training_json=meta, keep=self.cfg.keep_checkpoints,
        )

    def restore(self, ckpt: Path) -> None:
        tensors, meta = read_training_state(ckpt)
        model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        self.policy.load_state_dict(model)
        if self.ema is not None:
            self.ema.load_state_dict(
                {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
            )
        optimizer_from_flat(self.optimizer, tensors, meta["optimizer"])
        self.scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        self.rng.bit_generator.state = meta["rng_numpy"]
        self.step = int(meta["step"])
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

    def run(self, until_step: int | None = None) -> TrainResult:
        """Train to ``cfg.steps`` (or stop early at ``until_step``, e.g. a time-boxed slice of a
        preemptible job; the LR schedule always spans ``cfg.steps``)."""
        cfg = self.cfg
        stop = cfg.steps if until_step is None else min(until_step, cfg.steps)
        metrics = MetricsLog(self.run_dir, self.step, cfg.tensorboard)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.amp == "bf16" else None
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train {self.policy_config_name}",
                   unit="step", disable=not cfg.progress)
        self.policy.train()
        t0 = time.perf_counter()
        t_window, steps_window = t0, 0
        start_step = self.step
        train_loss = float("nan")
        val_loss = None
        ckpt = None
        try:
            while self.step < stop:
                batch = to_device(self.sampler.sample(cfg.batch_size, self.rng), self.device)
                if amp is not None:
                    with amp:
                        loss, info = self.policy.compute_loss(batch)
                else:
                    loss, info = self.policy.compute_loss(batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss became {float(loss)} at step {self.step}; lower lr= "
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
                train_loss = loss.item()
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
                if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                    val_loss = self.validation_loss()
                    if val_loss is not None:
                        metrics.write(self.step, {"val/loss": val_loss})
                if self.step % cfg.checkpoint_every == 0 or self.step == stop:
                    ckpt = self.save()
        finally:
            bar.close()
            metrics.close()
        seconds = time.perf_counter() - t0
        done = self.step - start_step
        if ckpt is None:
            ckpt = resolve_checkpoint(self.run_dir)
        return TrainResult(
            run_dir=self.run_dir, checkpoint=ckpt, steps=self.step, seconds=seconds,
            steps_per_s=done / seconds if seconds > 0 else 0.0,
            final_train_loss=train_loss, final_val_loss=val_loss,
        )

    @property
    def policy_config_name(self) -> str:
        from policies import policy_name

        return policy_name(self.policy_config)


def _episode_rows(ends: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], ends[:-1]])
    return np.concatenate([np.arange(starts[e], ends[e]) for e in episodes])


def default_run_dir(cfg: DictConfig) -> Path:
    return Path("runs") / f"{cfg.policy.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(cfg: DictConfig) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint to resume from (None: a fresh start).

    Refuses to clobber: a run dir with checkpoints needs ``resume=true`` (continue) or
    ``overwrite=true`` (start over).
    """
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    has_ckpt = (run_dir / LATEST).exists()
    if cfg.resume:
        if not has_ckpt:
            raise FileNotFoundError(
                f"resume=true but {run_dir} has no checkpoint to resume from; drop resume=true "
                "to start a new run there"
            )
        return run_dir, resolve_checkpoint(run_dir)
    if has_ckpt:
        if not cfg.overwrite:
            step = json.loads((resolve_checkpoint(run_dir) / "config.json").read_text())["step"]
            raise FileExistsError(
                f"{run_dir} already holds a run (checkpoint at step {step}); pass resume=true to "
                "continue it or overwrite=true to start it over"
            )
        for sub in ("checkpoints", LATEST, "metrics.jsonl", "tb"):
            p = run_dir / sub
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, None


def train(cfg: DictConfig) -> TrainResult:
    """Train per ``cfg`` (a composed ``train`` config); returns where the checkpoint is."""
    run_dir, resume_from = prepare_run_dir(cfg)
    trainer = Trainer(cfg, run_dir)
    if resume_from is not None:
        try:
            trainer.restore(resume_from)
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(
                f"cannot resume from {resume_from}: {e}. Was it written with a different policy "
                "config or dataset?"
            ) from None
        if trainer.step >= cfg.steps:
            log.info("%s already finished (%d/%d steps); nothing to do", run_dir, trainer.step,
                     cfg.steps)
    return trainer.run()
