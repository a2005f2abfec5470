"""robomimic's BC-RNN as a peer baseline: trained by robomimic's own code, evaluated by ours.

BC-RNN (Mandlekar et al., "What Matters in Learning from Offline Human Demonstrations for Robot
Manipulation", CoRL 2021) is a 2-layer LSTM over windows of 10 observations with a 5-mode GMM
action head. Here nothing of it is re-implemented:

1. :func:`train_bc_rnn` exports an episode store to robomimic HDF5
   (:func:`robolearn.data.robomimic.export_robomimic`: obs keys ``state`` and ``task_onehot``,
   masks ``train``/``valid``), writes a robomimic config (:func:`bc_rnn_config`) and runs
   ``python -m robomimic.scripts.train --config <json>`` in the robomimic venv.
2. :class:`RobomimicAgent` loads the resulting ``.pth`` with robomimic's
   ``FileUtils.policy_from_checkpoint`` and puts it behind the evaluator's ``Agent`` protocol,
   so ``robolearn evaluate checkpoint=robomimic:<model.pth>`` scores it like our policies.

robomimic 0.3.0's algorithms import torchvision, which has no wheel for the CPU torch of
``.venv``: both steps run in ``.venv-robomimic`` (``bash scripts/setup_robomimic.sh``). This
module imports robomimic only inside the functions that need it.

Example (in ``.venv-robomimic``):
    >>> ckpt = train_bc_rnn("data/mt10_demos.zarr", "runs/bc_rnn_mt10", epochs=60)
    >>> agent = RobomimicAgent(ckpt)
    >>> from robolearn.evaluate import evaluate_agent
    >>> evaluate_agent(agent, "MT10", episodes_per_task=20).mean_success
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.data.robomimic import STATE_KEY, TASK_KEY, export_robomimic

log = logging.getLogger(__name__)

ROBOMIMIC_PREFIX = "robomimic:"
"""``load_agent`` checkpoint prefix: ``robomimic:<path to .pth>`` loads a :class:`RobomimicAgent`."""
VENV = ".venv-robomimic"
INSTALL_HINT = (
    "create the robomimic venv with `bash scripts/setup_robomimic.sh` and run inside it "
    f"(`. {VENV}/bin/activate`, or `{VENV}/bin/robolearn evaluate ...`)"
)
TRAIN_INFO = "robolearn_train.json"
"""Written by :func:`train_bc_rnn` next to robomimic's run: the dataset and collect seed."""
OBS_KEYS = (STATE_KEY, TASK_KEY)
_FAILED = "run failed with error"  # robomimic's train script prints this and still exits 0


# ----------------------------------------------------------------------------- config
def bc_rnn_config(
    hdf5: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    epochs: int,
    steps_per_epoch: int = 100,
    batch_size: int = 100,
    lr: float = 1e-4,
    horizon: int = 10,
    hidden_dim: int = 400,
    num_layers: int = 2,
    gmm: bool = True,
    gmm_modes: int = 5,
    validate: bool = True,
    save_every_n_epochs: int | None = 50,
    seed: int = 1,
    cuda: bool = False,
    num_data_workers: int = 0,
    name: str = "bc_rnn",
) -> dict[str, Any]:
    """robomimic's low-dim BC-RNN config for our HDF5 export, as a JSON-ready dict.

    The dict holds only what differs from robomimic's ``config_factory("bc")`` defaults (plus a
    few settings spelled out for the reader); robomimic's train script starts from those
    defaults and applies it with ``config.update`` on locked keys, so a key robomimic does not
    know is an error there. The algorithm settings are those of robomimic's
    ``scripts/generate_paper_configs.py`` for low-dim BC-RNN on proficient demonstrations
    (``modify_bc_rnn_config_for_dataset``): LSTM 2 x 400, sequences of 10, no MLP after the RNN,
    GMM head with 5 modes, Adam lr 1e-4 constant, batch 100, 100 gradient steps per epoch.
    Rollouts are off (robomimic cannot build Meta-World envs; our evaluator scores the
    checkpoint) and the checkpoint of the last epoch is always saved.

    Args:
        hdf5: The robomimic HDF5 file (our export; masks ``train`` and ``valid``).
        out_dir: robomimic's ``train.output_dir``; the run goes to ``<out_dir>/<name>/<time>/``.
        epochs: Training epochs (``train.num_epochs``); total gradient steps are
            ``epochs * steps_per_epoch``.
        steps_per_epoch: ``experiment.epoch_every_n_steps``.
        batch_size: Sequences per gradient step.
        lr: Adam learning rate (constant).
        horizon: RNN unroll length = training sequence length (``train.seq_length``); at
            rollout robomimic resets the hidden state every ``horizon`` steps, as in training.
        hidden_dim: LSTM hidden size.
        num_layers: Stacked LSTM layers.
        gmm: GMM action head (robomimic's setting for human and scripted-proficient data);
            False gives a deterministic MSE head (its setting for machine-generated data).
        gmm_modes: GMM modes.
        validate: Validation loss on the ``valid`` mask each epoch (10 batches).
        save_every_n_epochs: Also save a checkpoint every that many epochs (None: last only).
        seed: ``train.seed`` (numpy and torch).
        cuda: Train on the GPU when there is one.
        num_data_workers: DataLoader worker processes (robomimic's low-dim setting: 0).
        name: ``experiment.name`` (the run's folder under ``out_dir``).

    Returns:
        The config dict; ``json.dump`` it and pass it to ``robomimic.scripts.train --config``.

    Raises:
        ValueError: A non-positive size or count.
    """
    for field, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch),
                         ("batch_size", batch_size), ("horizon", horizon),
                         ("hidden_dim", hidden_dim), ("num_layers", num_layers),
                         ("gmm_modes", gmm_modes)):
        if int(value) < 1:
            raise ValueError(f"Got bc_rnn_config({field}={value}), expected >= 1")
    if not lr > 0:
        raise ValueError(f"Got bc_rnn_config(lr={lr}), expected > 0")
    if save_every_n_epochs is not None and save_every_n_epochs < 1:
        raise ValueError(
            f"Got bc_rnn_config(save_every_n_epochs={save_every_n_epochs}), expected >= 1 or None"
        )
    no_modality = {"low_dim": [], "rgb": [], "depth": [], "scan": []}
    return {
        "algo_name": "bc",
        "experiment": {
            "name": name,
            "validate": bool(validate),
            "logging": {"terminal_output_to_txt": False, "log_tb": True, "log_wandb": False},
            "save": {
                "enabled": True,
                "every_n_seconds": None,
                "every_n_epochs": save_every_n_epochs,
                "epochs": [int(epochs)],
                "on_best_validation": False,
                "on_best_rollout_return": False,
                "on_best_rollout_success_rate": False,
            },
            "epoch_every_n_steps": int(steps_per_epoch),
            "validation_epoch_every_n_steps": 10,
            "env": None,
            "additional_envs": None,
            "render": False,
            "render_video": False,
            "rollout": {"enabled": False},
        },
        "train": {
            "data": str(Path(hdf5).resolve()),
            "output_dir": str(Path(out_dir).resolve()),
            "num_data_workers": int(num_data_workers),
            "hdf5_cache_mode": "all",
            "hdf5_load_next_obs": False,
            "hdf5_normalize_obs": False,
            "hdf5_filter_key": "train",
            "hdf5_validation_filter_key": "valid" if validate else None,
            "seq_length": int(horizon),
            "pad_seq_length": True,
            "frame_stack": 1,
            "pad_frame_stack": True,
            "dataset_keys": ["actions", "rewards", "dones"],
            "goal_mode": None,
            "cuda": bool(cuda),
            "batch_size": int(batch_size),
            "num_epochs": int(epochs),
            "seed": int(seed),
        },
        "algo": {
            "optim_params": {"policy": {
                "optimizer_type": "adam",
                "learning_rate": {"initial": float(lr), "decay_factor": 0.1,
                                  "epoch_schedule": [], "scheduler_type": "multistep"},
                "regularization": {"L2": 0.0},
            }},
            "loss": {"l2_weight": 1.0, "l1_weight": 0.0, "cos_weight": 0.0},
            "actor_layer_dims": [],
            "gaussian": {"enabled": False},
            "gmm": {"enabled": bool(gmm), "num_modes": int(gmm_modes), "min_std": 0.0001,
                    "std_activation": "softplus", "low_noise_eval": True},
            "vae": {"enabled": False},
            "rnn": {"enabled": True, "horizon": int(horizon), "hidden_dim": int(hidden_dim),
                    "rnn_type": "LSTM", "num_layers": int(num_layers), "open_loop": False},
            "transformer": {"enabled": False},
        },
        "observation": {
            "modalities": {
                "obs": {**no_modality, "low_dim": list(OBS_KEYS)},
                "goal": dict(no_modality),
            },
        },
    }


# ----------------------------------------------------------------------------- training
class RobomimicTrainError(RuntimeError):
    """robomimic's training script failed; the message ends with its log tail."""


def robomimic_python(python: str | os.PathLike | None = None) -> str:
    """The interpreter that runs robomimic's training script.

    In order: ``python``; ``$ROBOLEARN_ROBOMIMIC_PYTHON``; ``<repo>/.venv-robomimic/bin/python``
    when it exists; this interpreter.
    """
    if python:
        return str(python)
    if os.environ.get("ROBOLEARN_ROBOMIMIC_PYTHON"):
        return os.environ["ROBOLEARN_ROBOMIMIC_PYTHON"]
    venv = Path(__file__).resolve().parents[2] / VENV / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def train_bc_rnn(
    dataset_store: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    epochs: int,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    python: str | os.PathLike | None = None,
    overwrite: bool = False,
    **config: Any,
) -> Path:
    """Trains BC-RNN on an episode store with robomimic's own training script.

    Writes into ``out_dir``: ``demos.hdf5`` (the export), ``bc_rnn_config.json``,
    ``robomimic_train.log`` (robomimic's whole output), ``robolearn_train.json`` (dataset,
    collect seed, tasks, command, wall time: read back by :class:`RobomimicAgent` as its
    ``train_info``) and robomimic's run folder ``<name>/<time>/{models,logs}``.

    Args:
        dataset_store: The episode store (zarr).
        out_dir: The run directory.
        epochs: Training epochs (of ``steps_per_epoch`` gradient steps each, default 100).
        val_fraction: Episodes per task held out for the ``valid`` mask.
        split_seed: Seed of the train/valid split of the export.
        python: Interpreter with robomimic and torchvision (default: :func:`robomimic_python`).
        overwrite: Replace an earlier run of the same name in ``out_dir``.
        **config: More :func:`bc_rnn_config` keywords (``steps_per_epoch``, ``gmm``, ``seed``...).

    Returns:
        The checkpoint of the last epoch, ``<out_dir>/<name>/<time>/models/model_epoch_<epochs>.pth``.

    Raises:
        FileExistsError: The run exists and ``overwrite`` is false.
        RobomimicTrainError: robomimic's script failed (its log tail is in the message).
    """
    out = Path(out_dir).resolve()
    name = config.get("name", "bc_rnn")
    run_root = out / name
    if run_root.exists():
        if not overwrite:
            raise FileExistsError(
                f"{run_root} exists (an earlier BC-RNN run); pass overwrite=True to replace it "
                "or choose another out_dir"
            )
        shutil.rmtree(run_root)  # robomimic would otherwise prompt on stdin
    out.mkdir(parents=True, exist_ok=True)
    hdf5 = out / "demos.hdf5"
    exported = export_robomimic(dataset_store, hdf5, val_fraction=val_fraction, seed=split_seed,
                                overwrite=True)
    cfg = bc_rnn_config(hdf5, out, epochs=epochs, **config)
    cfg_path = out / "bc_rnn_config.json"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    python = robomimic_python(python)
    cmd = [python, "-m", "robomimic.scripts.train", "--config", str(cfg_path)]
    info = _store_info(dataset_store)
    info.update(export=exported, config=str(cfg_path), command=" ".join(cmd), epochs=int(epochs))
    (out / TRAIN_INFO).write_text(json.dumps(info, indent=2))

    log_path = out / "robomimic_train.log"
    log.info("training BC-RNN with robomimic: %s (log: %s)", " ".join(cmd), log_path)
    env = dict(os.environ, TQDM_MININTERVAL="30")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see robolearn/cli.py: 2-core machines
    tail: deque[str] = deque(maxlen=40)
    failed = False
    t0 = time.perf_counter()
    with open(log_path, "w") as f, subprocess.Popen(
        cmd, cwd=out, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            f.flush()
            tail.append(line.rstrip("\n"))
            failed = failed or line.startswith(_FAILED)
            if line.startswith("Train Epoch"):
                log.info("robomimic: %s/%d (%.0f s)", line.strip(), epochs,
                         time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    ckpts = sorted(run_root.glob(f"*/models/model_epoch_{int(epochs)}.pth"))
    if proc.returncode != 0 or failed or not ckpts:
        why = (f"exit status {proc.returncode}" if proc.returncode
               else "it reported a failure" if failed else "no final checkpoint was written")
        hint = ""
        if any("ModuleNotFoundError" in t or "ImportError" in t for t in tail):
            hint = f"\n{python} lacks robomimic's dependencies: {INSTALL_HINT}"
        raise RobomimicTrainError(
            f"robomimic's BC-RNN training failed ({why}); full log: {log_path}\n"
            f"--- last lines ---\n" + "\n".join(tail) + hint
        )
    info.update(checkpoint=str(ckpts[-1]), train_seconds=round(seconds, 1))
    (out / TRAIN_INFO).write_text(json.dumps(info, indent=2))
    log.info("BC-RNN trained in %.0f s: %s", seconds, ckpts[-1])
    return ckpts[-1]


def _store_info(dataset_store: str | os.PathLike) -> dict[str, Any]:
    from robolearn.data import EpisodeStore

    with EpisodeStore.open(dataset_store, mode="r") as store:
        user = store.attrs.get("user", {})
        return {"dataset": str(Path(dataset_store).resolve()),
                "collect_seed": user.get("collect_seed"), "tasks": list(store.tasks),
                "episodes": len(store), "steps": int(store.num_steps)}


# ----------------------------------------------------------------------------- the agent
class RobomimicAgent:
    """A robomimic checkpoint behind the evaluator's ``Agent`` protocol.

    The checkpoint is robomimic's own format, a pickled torch dict, loaded by robomimic's
    ``FileUtils.policy_from_checkpoint``. Our checkpoints are safetensors + JSON and never
    unpickled; this exception is made for this peer baseline only: load ``.pth`` files you
    trained yourself.

    Each call builds robomimic's observation dict from our batch: ``state`` = the (B, Do)
    observations and ``task_onehot`` = the task's one-hot over the checkpoint's task list (the
    HDF5's ``env_args.env_kwargs.tasks``, which robomimic copies into the checkpoint's
    ``env_metadata``). robomimic's ``RolloutPolicy.__call__`` serves a single env, but the
    algorithm under it (``BC_RNN.get_action``) keeps a batched LSTM state, so one policy serves
    all B slots: :meth:`reset` starts every slot together (the evaluator's lock-step batches),
    and the state is re-initialised every ``rnn.horizon`` steps, as robomimic does at rollout.
    GMM sampling draws from a torch generator state private to the agent (seeded by ``seed``).

    Attributes:
        tasks: The task names, in one-hot order.
        train_info: ``robolearn_train.json`` of the run when found beside the checkpoint
            (dataset, collect seed), for the evaluator's held-out goal check.

    Example:
        >>> agent = RobomimicAgent("runs/bc_rnn/bc_rnn/2026.../models/model_epoch_60.pth")
        >>> agent.reset()
        >>> agent.act(obs, task="push-v3")            # (B, 39) -> (B, 4)
    """

    def __init__(self, path: str | os.PathLike, device: str = "auto", *, seed: int = 0) -> None:
        """Loads a robomimic checkpoint.

        Args:
            path: The ``.pth`` written by robomimic's training script.
            device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
            seed: Seed of the agent's sampling generator (GMM mode choice).

        Raises:
            FileNotFoundError: No file at ``path``.
            ImportError: robomimic (with torchvision) is not importable here; says how to fix.
            ValueError: A checkpoint without a task list, or with observation keys we cannot
                supply.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no robomimic checkpoint at {path}; give the .pth that robomimic's training "
                "wrote, e.g. robomimic:<run>/bc_rnn/<time>/models/model_epoch_<N>.pth"
            )
        file_utils = _import_file_utils()
        policy, ckpt = file_utils.policy_from_checkpoint(
            ckpt_path=str(path), device=_torch_device(device), verbose=False
        )
        tasks = (ckpt.get("env_metadata") or {}).get("env_kwargs", {}).get("tasks")
        if not tasks:
            raise ValueError(
                f"{path}: the checkpoint's env_metadata records no env_kwargs.tasks; it was not "
                "trained on a robolearn export (robolearn export ... format=robomimic)"
            )
        self._setup(policy, tasks, ckpt["shape_metadata"]["all_shapes"], seed=seed)
        self.train_info = _find_train_info(path)
        self.checkpoint = str(path)

    @classmethod
    def from_policy(
        cls,
        policy: Any,
        tasks: Sequence[str],
        obs_shapes: Mapping[str, Sequence[int]],
        *,
        seed: int = 0,
    ) -> RobomimicAgent:
        """Wraps an already loaded robomimic ``RolloutPolicy`` (or a stand-in with
        ``start_episode()``, ``obs_normalization_stats`` and ``policy.get_action(obs_dict)``
        and ``policy.device``)."""
        agent = cls.__new__(cls)
        agent._setup(policy, tasks, obs_shapes, seed=seed)
        agent.train_info = {}
        agent.checkpoint = None
        return agent

    def _setup(self, policy: Any, tasks: Sequence[str], obs_shapes: Mapping[str, Sequence[int]],
               *, seed: int) -> None:
        import torch

        self._policy = policy
        self._tasks = tuple(str(t) for t in tasks)
        shapes = {k: tuple(int(d) for d in v) for k, v in obs_shapes.items()}
        unknown = sorted(set(shapes) - set(OBS_KEYS))
        if unknown or STATE_KEY not in shapes:
            raise ValueError(
                f"the robomimic policy expects observation keys {sorted(shapes)}; "
                f"RobomimicAgent supplies {list(OBS_KEYS)} (train on our export's "
                f"low_dim keys {list(OBS_KEYS)} only)"
            )
        if TASK_KEY in shapes and shapes[TASK_KEY] != (len(self._tasks),):
            raise ValueError(
                f"the policy's {TASK_KEY} has shape {shapes[TASK_KEY]}, but the checkpoint "
                f"lists {len(self._tasks)} tasks: {list(self._tasks)}"
            )
        self._shapes = shapes
        self.obs_dim = int(np.prod(shapes[STATE_KEY]))
        self._device = torch.device(getattr(policy.policy, "device", "cpu"))
        gen = torch.Generator().manual_seed(int(seed))
        self._rng_cpu = gen.get_state()
        self._rng_cuda = None
        if self._device.type == "cuda":
            with torch.random.fork_rng(devices=[self._device]):
                torch.cuda.manual_seed(int(seed))
                self._rng_cuda = torch.cuda.get_rng_state(self._device)
        self._batch: int | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this policy was trained on, in one-hot order."""
        return self._tasks

    def reset(self) -> None:
        """Starts new episodes in every batch slot (clears the LSTM state)."""
        self._policy.start_episode()
        self._batch = None

    def obs_dict(self, obs: np.ndarray, task: str) -> dict[str, np.ndarray]:
        """robomimic's observation dict for a batch.

        Args:
            obs: (B, Do) observations.
            task: The batch's task, one of :attr:`tasks`.

        Returns:
            ``{"state": (B, Do) float32, "task_onehot": (B, T) float32}`` (the keys the policy
            was trained on).
        """
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(
                f"RobomimicAgent expects observations of shape (B, {self.obs_dim}); got "
                f"{obs.shape}"
            )
        if task not in self._tasks:
            close = difflib.get_close_matches(str(task), self._tasks, n=3)
            raise ValueError(
                f"task {task!r} is not one of the policy's {len(self._tasks)} tasks"
                + (f"; did you mean {close}?" if close else f": {list(self._tasks)}")
            )
        out = {STATE_KEY: obs.reshape((len(obs), *self._shapes[STATE_KEY]))}
        if TASK_KEY in self._shapes:
            onehot = np.zeros((len(obs), len(self._tasks)), np.float32)
            onehot[:, self._tasks.index(task)] = 1.0
            out[TASK_KEY] = onehot
        return out

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        """Actions for a batch: obs (B, Do) (or (Do,)) → (B, Da) (or (Da,)), clipped to [-1, 1].

        The batch size is fixed between two :meth:`reset` calls (the LSTM state has B rows).
        """
        import torch

        single = np.ndim(obs) == 1
        batch = self.obs_dict(np.atleast_2d(obs), task)
        size = len(batch[STATE_KEY])
        if self._batch is None:
            self._batch = size
        elif size != self._batch:
            raise ValueError(
                f"RobomimicAgent.act got a batch of {size} after {self._batch} since the last "
                "reset(); the LSTM keeps one state per slot, so call reset() before changing B"
            )
        stats = getattr(self._policy, "obs_normalization_stats", None)
        if stats is not None:
            import robomimic.utils.obs_utils as obs_utils

            batch = obs_utils.normalize_obs(batch, obs_normalization_stats=stats)
        tensors = {k: torch.as_tensor(v, dtype=torch.float32, device=self._device)
                   for k, v in batch.items()}
        with torch.no_grad(), self._own_rng():
            action = self._policy.policy.get_action(obs_dict=tensors)
        action = np.clip(action.detach().cpu().numpy().astype(np.float32), -1.0, 1.0)
        return action[0] if single else action

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Runs the block on the agent's generator states, leaving the global ones untouched."""
        import torch

        cuda = self._device.type == "cuda"
        with torch.random.fork_rng(devices=[self._device] if cuda else []):
            torch.set_rng_state(self._rng_cpu)
            if cuda:
                torch.cuda.set_rng_state(self._rng_cuda, self._device)
            yield
            self._rng_cpu = torch.get_rng_state()
            if cuda:
                self._rng_cuda = torch.cuda.get_rng_state(self._device)


def _import_file_utils() -> Any:
    try:
        import robomimic.utils.file_utils as file_utils
    except ImportError as e:
        raise ImportError(
            f"robomimic checkpoints need robomimic==0.3.0 with torchvision, which this "
            f"environment ({sys.executable}) cannot import ({e}); {INSTALL_HINT}"
        ) from e
    return file_utils


def _torch_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _find_train_info(path: Path) -> dict[str, Any]:
    """``robolearn_train.json`` from the checkpoint's folder or up to 4 folders above it."""
    for folder in list(path.resolve().parents)[:5]:
        candidate = folder / TRAIN_INFO
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return {}
