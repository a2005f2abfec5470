"""``robolearn train trainer=ray``: the one :class:`~robolearn.train.Trainer` on Ray Train.

Every Ray Train worker (a ``TorchTrainer`` worker process, ``ray.num_workers`` of them) builds
the same trainer with its rank and world size; with more than one worker the gradients are
averaged across workers by DDP (``torch.nn.parallel.DistributedDataParallel``; gloo on CPU,
NCCL on GPU), with one there is no wrapper and no communication in the step. GPUs are used
when the cluster has any (``ray.use_gpu=null``, unless ``device=cpu``), one per worker by
default; each worker's torch threads are its CPU share.

Batch semantics: ``batch_size`` is *per worker*: one optimiser step averages the gradients of
``num_workers × batch_size`` windows (the global batch). The learning rate is used as given,
never rescaled with the number of workers: scale ``lr=`` yourself if you want to. Both are
logged at the start. Each worker draws its own windows and noise (numpy/torch streams seeded
``seed`` on rank 0, ``[seed, rank]`` elsewhere), so one worker with the same options reproduces
``trainer=local``'s run.

Checkpoints: rank 0 writes the run directory (``out``: metrics.jsonl, TensorBoard,
``checkpoints/step_N`` + the ``checkpoint`` link) exactly as the local trainer does, so
``robolearn.load_policy(out)`` loads either, and reports each checkpoint to Ray Train
(``ray.train.report``), which keeps a copy under ``ray.storage_path`` (default ``<out>/ray``).

Fault tolerance: a worker that dies (a killed process, a lost node) makes Ray Train restart the
worker group, up to ``ray.max_failures`` times; every new worker restores the last reported
checkpoint (``ray.train.get_checkpoint()``), so the run ends with exactly ``steps`` optimiser
steps. Each start of the worker group appends a line to ``<out>/workers.jsonl`` (pids, host,
device, the step it restored). Job resume: the same command with the same ``out`` after the
driver died creates a trainer with the same Ray run name and storage, so it continues from the
newest checkpoint (Ray's copy, or the run directory's when that is newer); a finished run is
refused unless ``overwrite=true`` (:func:`robolearn.train.rundir.plan_run_dir`, shared with
``trainer=local``).

Clusters: ``ray.address=HOST:PORT`` joins a running cluster, else a local instance starts
(:func:`robolearn.cluster.ray_session`). On a cluster of several machines ``out`` and
``ray.storage_path`` must be on storage every node reaches (an NFS path, or a URI such as
``s3://bucket/runs`` for the storage path): rank 0 may run on another machine than the command,
and restarted workers read Ray's copy. When the run directory on this machine lacks the final
checkpoint, the command copies it there from Ray's storage at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robolearn.checkpoint import install_checkpoint, resolve_checkpoint
from robolearn.cluster import check_resources, describe_resources, ray_session
from robolearn.data import EpisodeStore
from robolearn.errors import ResourceError, TrainingError
from robolearn.train.rundir import (
    RunPlan,
    apply_run_plan,
    checkpoint_step,
    finished,
    plan_run_dir,
    record_launch,
)
from robolearn.train.trainer import TrainResult, train_options

log = logging.getLogger(__name__)

WORKERS_LOG = "workers.jsonl"
PROGRESS_EVERY_S = 10.0  # at most one progress line per this many seconds (and at the end)


@dataclass
class Scaling:
    """How many training workers, and what each reserves."""

    workers: int
    cpus: float
    use_gpu: bool
    gpus: float

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))

    def describe(self) -> str:
        gpu = f", {self.gpus:g} GPU" if self.use_gpu else ""
        return f"{self.workers} worker(s) × ({self.cpus:g} CPU{gpu})"


def check_ray_options(cfg: Any) -> None:
    """Option checks that need no cluster (run before Ray starts)."""
    rcfg = cfg.ray
    if str(cfg.device) == "cpu" and rcfg.use_gpu:
        raise ValueError("Got device=cpu and ray.use_gpu=true: drop one of them (with "
                         "trainer=ray each worker uses the GPU Ray assigns it when use_gpu)")
    if rcfg.num_workers is not None and int(rcfg.num_workers) < 1:
        raise ValueError(
            f"Got ray.num_workers={rcfg.num_workers} with trainer=ray, expected >= 1 training "
            "worker (null: one per GPU, else 1); use trainer=local to train in this process"
        )
    if float(rcfg.cpus_per_worker) < 0 or float(rcfg.gpus_per_worker) <= 0:
        raise ValueError(
            f"Got ray.cpus_per_worker={rcfg.cpus_per_worker}, ray.gpus_per_worker="
            f"{rcfg.gpus_per_worker}; expected cpus >= 0 (0: the cluster's CPUs / workers) and "
            "gpus > 0"
        )
    if int(rcfg.max_failures) < -1:
        raise ValueError(f"Got ray.max_failures={rcfg.max_failures}, expected >= 0 (-1: no limit)")


def _placeable(nodes: list[dict[str, float]], cpus: float, gpus: float) -> int:
    """How many workers of (cpus, gpus) fit on these nodes (a worker lives on one node)."""
    total = 0
    for res in nodes:
        per_node = [res.get("CPU", 0.0) / cpus if cpus else math.inf]
        if gpus:
            per_node.append(res.get("GPU", 0.0) / gpus)
        fit = min(per_node)
        total += int(fit + 1e-9) if math.isfinite(fit) else 1 << 30
    return total


def alive_nodes() -> list[dict[str, float]]:
    """Each live node's resources (CPU, GPU, ...) in the connected cluster."""
    import ray

    return [{k: float(v) for k, v in n.get("Resources", {}).items()}
            for n in ray.nodes() if n.get("Alive")]


def resolve_scaling(rcfg: Any, nodes: list[dict[str, float]], device: str = "auto") -> Scaling:
    """``ray.*`` → workers and per-worker resources on a cluster of ``nodes`` (resource dicts).

    GPUs are used when ``ray.use_gpu=true``, or when it is null and ``device`` is ``cuda…``,
    or ``auto`` on a cluster with GPUs. Ray assigns each worker its GPU (``ray.train.torch.
    get_device()``); a device index in ``device`` is not used. ``ray.cpus_per_worker=0`` gives
    each worker the most whole CPUs with which all of them still fit on the nodes.
    """
    gpus_total = sum(n.get("GPU", 0.0) for n in nodes)
    if rcfg.use_gpu is not None:
        use_gpu = bool(rcfg.use_gpu)
    elif str(device).startswith("cuda"):
        use_gpu = True  # asked for; a cluster without GPUs fails the resource check
    else:
        use_gpu = gpus_total > 0 and str(device) != "cpu"
    gpus = float(rcfg.gpus_per_worker) if use_gpu else 0.0
    if rcfg.num_workers is not None:
        workers = int(rcfg.num_workers)
    else:
        workers = max(1, int(gpus_total // gpus)) if use_gpu else 1
    cpus = float(rcfg.cpus_per_worker)
    if not cpus:
        cpus_total = sum(n.get("CPU", 0.0) for n in nodes)
        cpus = float(max(1, int(cpus_total // workers)))
        while cpus > 1 and _placeable(nodes, cpus, gpus) < workers:
            cpus -= 1
    return Scaling(workers, cpus, use_gpu, gpus)


def check_fits(scaling: Scaling, nodes: list[dict[str, float]],
               what: str = "train trainer=ray") -> None:
    """Fail fast, saying what was asked and what exists, when the workers do not fit: in total
    (:func:`check_resources`) and node by node (a worker cannot span two machines)."""
    import ray

    check_resources(what, scaling.workers, scaling.cpus, scaling.gpus)
    if _placeable(nodes, scaling.cpus, scaling.gpus) < scaling.workers:
        biggest = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
        raise ResourceError(
            f"{what} asked for {scaling.describe()}, but they do not fit: each worker needs "
            f"its resources on one node and the largest node has {biggest:g} CPU "
            f"({describe_resources()}). Lower ray.cpus_per_worker= / ray.num_workers=, or add "
            "nodes"
        )
    free = ray.available_resources()
    if free.get("CPU", 0.0) + 1e-9 < scaling.workers * scaling.cpus or (
            free.get("GPU", 0.0) + 1e-9 < scaling.workers * scaling.gpus):
        log.warning("the cluster has %g CPU, %g GPU free right now (others are in use): training "
                    "starts when %s are free", free.get("CPU", 0.0), free.get("GPU", 0.0),
                    scaling.describe())


def experiment_name(run_dir: Path) -> str:
    """Ray Train's run name for ``out``: stable across re-runs of the same command (job resume),
    distinct for different run directories sharing one storage path."""
    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:8]
    return f"{run_dir.name}-{digest}"


def storage_root(cfg: Any, run_dir: Path) -> str:
    path = str(cfg.ray.storage_path or "")
    if not path:
        return str((run_dir / "ray").resolve())
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _storage_fs(storage: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" in storage:
        return pafs.FileSystem.from_uri(storage)
    return pafs.LocalFileSystem(), storage


def clear_experiment(storage: str, name: str) -> None:
    """Remove Ray Train's state of a previous run under this name (a fresh start must not
    inherit its checkpoints)."""
    import pyarrow.fs as pafs

    fs, root = _storage_fs(storage)
    path = f"{root.rstrip('/')}/{name}"
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        log.info("removing Ray Train's state of the previous run at %s", path)
        fs.delete_dir(path)


# ------------------------------------------------------------------------- in each worker
def _worker_loop(config: dict[str, Any]) -> None:
    """The training function each Ray Train worker runs (rank and world size from Ray)."""
    import ray.train
    import torch

    from robolearn.train.config import TrainConfig
    from robolearn.train.rundir import restore_or_explain
    from robolearn.train.trainer import Trainer

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = config_from_dict(config["cfg"], TrainConfig)
    run_dir = Path(config["run_dir"])
    # torch gets the worker's CPU share (Ray may start workers with OMP_NUM_THREADS=1).
    torch.set_num_threads(int(cfg.num_threads) if cfg.num_threads > 0 else config["threads"])
    device = torch.device("cpu")
    if config["use_gpu"]:
        import ray.train.torch

        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    progress = _ProgressLines(int(cfg.steps)) if cfg.progress else None
    trainer = Trainer(cfg, run_dir, rank=rank, world_size=world, device=device,
                      on_checkpoint=_report_checkpoint,
                      on_log=progress.log if progress is not None else None)

    restored, source = None, None
    ray_ckpt = ray.train.get_checkpoint()
    if ray_ckpt is not None:
        with ray_ckpt.as_directory() as d:
            step = checkpoint_step(Path(d))
            if config["resume_step"] is None or step >= config["resume_step"]:
                restore_or_explain(trainer, Path(d))
                restored, source = step, "ray"
    if restored is None and config["resume_from"]:
        restore_or_explain(trainer, Path(config["resume_from"]))
        restored, source = trainer.step, "run_dir"
    me = {"rank": rank, "pid": os.getpid(), "host": socket.gethostname(), "device": str(device),
          "threads": torch.get_num_threads()}
    everyone = [me]
    if world > 1:
        import torch.distributed as dist

        everyone = [None] * world
        dist.all_gather_object(everyone, me)
    if rank == 0:
        line = {"launch": config["launch"], "time": time.time(), "world_size": world,
                "restored_from_step": restored, "restored_from": source, "workers": everyone}
        with (run_dir / WORKERS_LOG).open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        log.info("%d worker(s) up (rank 0: pid %d on %s, %s, %d threads); %s", world, me["pid"],
                 me["host"], me["device"], me["threads"],
                 f"restored step {restored} from {'Ray storage' if source == 'ray' else run_dir}"
                 if restored is not None else "fresh start")
    trainer.run()


def _report_checkpoint(step: int, ckpt: Path | None, metrics: dict[str, float]) -> None:
    """Trainer's on_checkpoint under Ray: every rank reports (a barrier), rank 0 with the
    checkpoint directory it just wrote; Ray copies it to its storage."""
    import ray.train

    checkpoint = ray.train.Checkpoint.from_directory(str(ckpt)) if ckpt is not None else None
    ray.train.report({k: float(v) for k, v in metrics.items()}, checkpoint=checkpoint,
                     checkpoint_dir_name=f"step_{step:07d}")


class _ProgressLines:
    """Rank 0's progress as log lines (Ray forwards worker logs to the command's terminal, where
    a redrawn bar would not work; a ``print`` would be shown twice by Ray Train)."""

    def __init__(self, total: int):
        self.total = total
        self.last = 0.0

    def log(self, step: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and step != self.total:
            return
        self.last = now
        rate = metrics.get("train/steps_per_s", 0.0)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        log.info("step %d/%d (%.0f%%) loss %.4f lr %.2e, %.1f steps/s, eta %.0f s", step,
                 self.total, 100 * step / self.total, metrics["train/loss"], metrics["train/lr"],
                 rate, eta)


# ------------------------------------------------------------------------- the driver
def config_from_dict(data: dict[str, Any], cls: type) -> Any:
    """A config dataclass back from :func:`~robolearn.train.trainer.train_options` data (what
    the driver ships to its workers; validated again there)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))


def train_on_ray(cfg: Any, overrides: list[str] | None = None) -> TrainResult:
    """``robolearn train trainer=ray``: plan the run directory, join/start Ray, check the
    resources, run the TorchTrainer, and return the same :class:`TrainResult` as local."""
    check_ray_options(cfg)
    # Mistakes a worker would hit (and Ray Train would retry ray.max_failures times) are
    # refused here, before Ray starts: a missing or empty dataset, a finished run, resume=true
    # with nothing to resume, a checkpoint of another policy config. A finished run with
    # resume=true starts no Ray either.
    with EpisodeStore.open(cfg.dataset, mode="r") as store:
        if len(store) == 0:
            raise ValueError(f"{cfg.dataset} has no committed episodes to train on")
    plan = plan_run_dir(cfg)
    if plan.finished:
        return finished(plan)
    t0 = time.perf_counter()
    with ray_session(cfg.ray):
        nodes = alive_nodes()
        scaling = resolve_scaling(cfg.ray, nodes, cfg.device)
        check_fits(scaling, nodes)
        apply_run_plan(plan)
        record_launch(plan, cfg, overrides)
        result, launch = _fit(cfg, plan, scaling)
    wall = time.perf_counter() - t0
    return _summarise(cfg, plan, scaling, result, launch, wall)


def _fit(cfg: Any, plan: RunPlan, scaling: Scaling) -> tuple[Any, str]:
    import ray.train
    from ray.train import (
        CheckpointConfig,
        FailureConfig,
        LoggingConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchTrainer

    run_dir = plan.run_dir.resolve()
    storage, name = storage_root(cfg, run_dir), experiment_name(run_dir)
    if plan.resume_from is None:
        clear_experiment(storage, name)
    launch = uuid.uuid4().hex[:12]
    global_batch = cfg.batch_size * scaling.workers
    log.info("Ray Train: %s on %s; batch_size=%d per worker → %d windows per optimiser step; "
             "lr=%g as given (never rescaled with workers); Ray's checkpoint copies in %s/%s",
             scaling.describe(), describe_resources(), cfg.batch_size, global_batch, cfg.lr,
             storage, name)
    resources = {"CPU": scaling.cpus}
    if scaling.use_gpu:
        resources["GPU"] = scaling.gpus
    worker_cfg = train_options(cfg)
    # Ray Train runs each worker in its own working directory: paths must be absolute.
    worker_cfg["dataset"] = str(Path(cfg.dataset).expanduser().resolve())
    worker_cfg["out"] = str(run_dir)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "cfg": worker_cfg,
            "run_dir": str(run_dir),
            "resume_from": str(plan.resume_from) if plan.resume_from is not None else None,
            "resume_step": plan.resume_step,
            "threads": scaling.threads,
            "use_gpu": scaling.use_gpu,
            "launch": launch,
        },
        scaling_config=ScalingConfig(num_workers=scaling.workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=storage,
            failure_config=FailureConfig(max_failures=int(cfg.ray.max_failures)),
            checkpoint_config=CheckpointConfig(num_to_keep=int(cfg.keep_checkpoints)),
            # Ray Train's own INFO lines (every report) would drown the progress lines.
            logging_config=LoggingConfig(log_level="WARNING"),
            # A local instance's workers inherit this process's environment; a cluster's do not.
            # OpenMP spin-waiting slows torch down on a busy machine (robolearn.cli sets it).
            worker_runtime_env={"env_vars": {
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}}
            if cfg.ray.address else None,
        ),
    )
    try:
        with _ray_train_env(local=not cfg.ray.address):
            return trainer.fit(), launch
    except ray.train.TrainingFailedError as e:
        raise _explain_failure(e, cfg, plan.run_dir) from None


@contextlib.contextmanager
def _ray_train_env(local: bool) -> Iterator[None]:
    """Ray Train settings it reads from the environment of the command (and passes on to its
    controller and workers), for the duration of one fit; a value set by the user wins.

    - The controller polls workers every second (Ray's default: 2 s): a failed worker is noticed
      sooner and ``ray.train.report`` waits at most that long for the previous report.
    - On a local instance: no preemption watcher and no Prometheus metrics (nothing preempts a
      single machine and no dashboard reads them): two fewer processes on a small machine.
    """
    values = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1"}
    if local:
        values |= {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0"}
    added = [k for k in values if k not in os.environ]
    for k in added:
        os.environ[k] = values[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _explain_failure(e: Exception, cfg: Any, run_dir: Path) -> Exception:
    """A failed fit as the error the local trainer would raise, plus where the run stands."""
    failures = getattr(e, "worker_failures", None) or {}
    cause = failures.get(0) or next(iter(failures.values()), None) or getattr(
        e, "controller_failure", None) or e
    try:
        where = f"its newest checkpoint is at step {checkpoint_step(resolve_checkpoint(run_dir))}"
    except (FileNotFoundError, ValueError):
        where = "it has no checkpoint yet"
    msg = (f"training on Ray failed ({type(cause).__name__}: {cause}); Ray Train restarts "
           f"failed workers up to ray.max_failures={cfg.ray.max_failures} times. {run_dir}: "
           f"{where}; fix the cause and run the same command again to resume from it")
    if isinstance(cause, (ValueError, FileNotFoundError, FileExistsError, KeyError,
                          FloatingPointError)):
        return type(cause)(msg) if not isinstance(cause, KeyError) else ValueError(msg)
    return TrainingError(msg)


def _summarise(cfg: Any, plan: RunPlan, scaling: Scaling, result: Any, launch: str,
               wall: float) -> TrainResult:
    run_dir = plan.run_dir
    metrics = dict(result.metrics or {})
    final_step = int(metrics.get("step", 0))
    if result.checkpoint is not None:
        _materialise(result.checkpoint, run_dir)
    ckpt = resolve_checkpoint(run_dir)
    final_step = final_step or checkpoint_step(ckpt)
    attempts = _attempts(run_dir, launch)
    steps_done = metrics.get("attempt_steps", 0.0)
    seconds = metrics.get("attempt_seconds", 0.0)
    rate = steps_done / seconds if seconds > 0 else 0.0
    restarts = max(0, len(attempts) - 1)
    restored = [a.get("restored_from_step") for a in attempts[1:]]
    log.info(
        "Ray Train finished %s at step %d/%d on %s: %s%s; the last worker group ran %d steps in "
        "%.1f s (%.1f steps/s); %.1f s in all with Ray's start-up. Checkpoint %s (Ray's copy "
        "under %s)", run_dir, final_step, cfg.steps, scaling.describe(),
        f"resumed from step {plan.resume_step}" if plan.resume_step else "fresh start",
        f", {restarts} restart(s) from step(s) {restored}" if restarts else "", steps_done,
        seconds, rate, wall, ckpt, storage_root(cfg, run_dir.resolve()),
    )
    val = metrics.get("val/loss")
    return TrainResult(
        run_dir=run_dir, checkpoint=ckpt, steps=final_step, seconds=seconds,
        steps_per_s=rate, final_train_loss=float(metrics.get("train/loss", math.nan)),
        final_val_loss=float(val) if val is not None else None,
        resumed_from=plan.resume_step, restarts=restarts,
    )


def _attempts(run_dir: Path, launch: str) -> list[dict[str, Any]]:
    """This command's worker-group starts, from workers.jsonl (empty where rank 0 wrote it on
    another machine)."""
    path = run_dir / WORKERS_LOG
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [x for x in lines if x.get("launch") == launch]


def _materialise(checkpoint: Any, run_dir: Path) -> None:
    """Make ``run_dir/checkpoint`` the run's final checkpoint: already so when rank 0 wrote this
    run directory (one machine, or a shared filesystem); else copied from Ray's storage."""
    with checkpoint.as_directory() as d:
        step = checkpoint_step(Path(d))
        try:
            if checkpoint_step(resolve_checkpoint(run_dir)) >= step:
                return
        except (FileNotFoundError, ValueError):
            pass
        log.info("copying the final checkpoint (step %d) from Ray's storage into %s", step,
                 run_dir)
        ckpts = run_dir / "checkpoints"
        ckpts.mkdir(parents=True, exist_ok=True)
        final, tmp = ckpts / f"step_{step:07d}", ckpts / f".tmp_step_{step:07d}_{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(d, tmp)
    install_checkpoint(run_dir, tmp, final)
