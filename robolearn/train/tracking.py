"""Where a training run's progress goes besides metrics.jsonl and TensorBoard.

- :class:`ProgressLog`: one line per ``log_every`` steps (loss, lr, steps/s, ETA), per
  validation and per success probe, into ``<out>/log.txt`` (the file ``robolearn train``'s run
  record already writes its log to). While the terminal shows the progress bar the lines go to
  the file only, so they never tear the bar; without the bar they go to the terminal too.
- :class:`WandbRun`: Weights & Biases, opt-in (``wandb.enable=true``). ``wandb.mode=offline``
  (the default) writes the run under ``<out>/wandb/`` with no network (``wandb sync`` uploads
  it later); ``online`` streams it. The run id is made once per run directory and kept in
  ``<out>/wandb_run.json``, so every launch of a resumed run logs to the same W&B run.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from robolearn.errors import ConfigError

log = logging.getLogger(__name__)

PROGRESS_LOGGER = "robolearn.train.progress"
LOG_FILE = "log.txt"
WANDB_RUN = "wandb_run.json"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the CLI's log.txt format


class ProgressLog:
    """Progress lines of one training run (rank 0), to ``<run_dir>/log.txt``.

    Args:
        run_dir: the run directory.
        to_terminal: also show the lines on the terminal (when no progress bar is drawn).
    """

    def __init__(self, run_dir: Path, *, to_terminal: bool):
        self.logger = logging.getLogger(PROGRESS_LOGGER)
        self.logger.setLevel(logging.INFO)
        self._handler: logging.Handler | None = None
        path = (Path(run_dir) / LOG_FILE).resolve()
        # A handler of the root logger that already writes this file (the CLI's run record)
        # gets the lines whenever they propagate.
        root_writes = any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path
                          for h in logging.getLogger().handlers)
        self._saved_propagate = self.logger.propagate
        self.logger.propagate = to_terminal
        if not (to_terminal and root_writes):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handler = logging.FileHandler(path, delay=True)
            self._handler.setFormatter(logging.Formatter(_FORMAT))
            self.logger.addHandler(self._handler)

    def info(self, msg: str, *args: Any) -> None:
        self.logger.info(msg, *args)

    def close(self) -> None:
        if self._handler is not None:
            self.logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        self.logger.propagate = self._saved_propagate


def eta(seconds: float) -> str:
    """``1h02m``, ``5m07s``, ``12s``."""
    s = int(max(0, seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class WandbRun:
    """A W&B run for one launch of a training run (rank 0); :meth:`log` takes the metrics the
    trainer writes to metrics.jsonl.

    Args:
        cfg: the train options (``wandb.*``, and the rest as the W&B config).
        run_dir: the run directory (``wandb/`` and ``wandb_run.json`` live there).
        config: the train options as plain data.
    """

    def __init__(self, cfg: Any, run_dir: Path, config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise ConfigError("wandb.enable=true needs the wandb package: pip install "
                              "'robolearn[wandb]' (or pass wandb.enable=false)") from None
        wb = cfg.wandb
        self.run_dir = Path(run_dir)
        run_id = wb.run_id or self._saved_id() or uuid.uuid4().hex[:12]
        self._save_id(run_id, wb)
        os.environ.setdefault("WANDB_SILENT", "true")  # its banner would tear the progress bar
        try:
            self.run = wandb.init(
                project=wb.project, entity=wb.entity or None, id=run_id, resume="allow",
                mode=wb.mode, dir=str(self.run_dir), name=self.run_dir.name, config=config,
                settings=wandb.Settings(console="off", x_disable_stats=True),
            )
        except Exception as e:  # noqa: BLE001 - wandb raises its own kinds (auth, network, ...)
            hint = (" (online mode needs `wandb login` or WANDB_API_KEY; wandb.mode=offline "
                    "needs no network)" if wb.mode == "online" else "")
            raise ConfigError(f"wandb.init failed: {type(e).__name__}: {e}{hint}") from None
        self.id = run_id
        log.info("W&B run %s (%s, project %s) under %s", run_id, wb.mode, wb.project,
                 self.run_dir / "wandb")

    def _saved_id(self) -> str | None:
        path = self.run_dir / WANDB_RUN
        try:
            return str(json.loads(path.read_text())["id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_id(self, run_id: str, wb: Any) -> None:
        path = self.run_dir / WANDB_RUN
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{WANDB_RUN}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"id": run_id, "project": wb.project, "entity": wb.entity}))
        os.replace(tmp, path)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def close(self) -> None:
        import wandb

        self.run.finish()
        # finish() can return before wandb's service process has written the run's records
        # (offline mode: the .wandb file); shutting the service down waits for that. Only when
        # no other run of this process still uses it.
        if wandb.run is None:
            wandb.teardown()
