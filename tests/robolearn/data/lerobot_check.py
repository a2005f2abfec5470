"""Run in the LeRobot side venv (scripts/setup_interop.sh): LeRobot's own ``LeRobotDataset``
opens a dataset directory and a torch DataLoader batches it; prints what it read as JSON.

    .venv-robomimic/bin/python tests/robolearn/data/lerobot_check.py DATASET_DIR
"""

from __future__ import annotations

import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # a local dataset: LeRobot must not try the hub

import torch  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402


def plain(x):
    return x.tolist() if isinstance(x, torch.Tensor) else x


def main(root: str) -> None:
    probe = LeRobotDataset("robolearn/export", root=root)
    fps = probe.fps
    ds = LeRobotDataset("robolearn/export", root=root, delta_timestamps={
        "observation.state": [-1 / fps, 0.0], "action": [i / fps for i in range(4)]})
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False, num_workers=0)
    batch = next(iter(loader))
    items = {str(i): {k: plain(v) for k, v in ds[i].items()} for i in (0, 1, len(ds) - 1)}
    print("RESULT " + json.dumps({
        "codebase_version": ds.meta.info["codebase_version"],
        "len": len(ds), "episodes": ds.num_episodes, "fps": fps,
        "tasks": [str(t) for t in ds.meta.tasks.index],
        "features": sorted(ds.features),
        "episode_lengths": [int(ep["length"]) for ep in ds.meta.episodes],
        "stats_obs_mean": plain(torch.as_tensor(ds.meta.stats["observation.state"]["mean"])),
        "batch": {k: list(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)},
        "items": items,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
