"""Run with zarr 2 (scripts/setup_interop.sh makes .venv-zarr2): open a store the way
diffusion_policy's ReplayBuffer does, and print what it read as JSON.

diffusion_policy is not on PyPI. With ``DIFFUSION_POLICY_SRC`` naming a checkout of
real-stanford/diffusion_policy, its own ``ReplayBuffer.copy_from_path`` and ``SequenceSampler``
are used (they need numba); otherwise the zarr-2 calls they make on the store: ``zarr.open``
of the path, ``data`` / ``meta`` / ``meta/episode_ends`` looked up, every data array sliced to
``episode_ends[-1]`` (the constructor's check), ``meta`` and every data array copied with
``zarr.copy_store`` into a ``MemoryStore`` (``copy_from_path``'s default path), and windows of
``sequence_length`` rows read back from it.

    .venv-zarr2/bin/python tests/robolearn/data/dp_check.py STORE_DIR
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import zarr


def _real(path: str) -> dict:
    sys.path.insert(0, os.environ["DIFFUSION_POLICY_SRC"])
    from diffusion_policy.common.replay_buffer import ReplayBuffer
    from diffusion_policy.common.sampler import SequenceSampler

    rb = ReplayBuffer.copy_from_path(path, store=zarr.MemoryStore())
    sampler = SequenceSampler(rb, sequence_length=4, pad_before=1, pad_after=3)
    first = sampler.sample_sequence(0)
    return {"reader": "diffusion_policy", "ends": rb.episode_ends[:].tolist(),
            "keys": sorted(rb.keys()), "n_steps": int(rb.n_steps),
            "first_window": {k: v.tolist() for k, v in first.items() if k in ("obs", "action")}}


def _calls(path: str) -> dict:
    group = zarr.open(os.path.expanduser(path), "r")  # create_from_path / copy_from_path
    assert "data" in group and "meta" in group and "episode_ends" in group["meta"]
    ends = group["meta"]["episode_ends"][:]
    for key, value in group["data"].items():  # ReplayBuffer.__init__'s check
        assert value[: ends[-1]].shape[0] == ends[-1], key
    store = zarr.MemoryStore()
    root = zarr.group(store=store)
    zarr.copy_store(source=group.store, dest=store, source_path="/meta", dest_path="/meta",
                    if_exists="replace")
    root.create_group("data", overwrite=True)
    for key in group["data"].keys():
        zarr.copy_store(source=group.store, dest=store, source_path="/data/" + key,
                        dest_path="/data/" + key, if_exists="replace")
    data = root["data"]
    obs = data["obs"]
    # The first window of SequenceSampler(sequence_length=4, pad_before=1): row 0 repeated, 0..2
    window = {"obs": np.concatenate([obs[0:1], obs[0:3]]).tolist(),
              "action": np.concatenate([data["action"][0:1], data["action"][0:3]]).tolist()}
    return {"reader": "zarr2-calls", "ends": root["meta"]["episode_ends"][:].tolist(),
            "keys": sorted(data.keys()), "n_steps": int(ends[-1]), "first_window": window,
            "compressor": str(obs.compressor), "chunks": list(obs.chunks),
            "dtypes": {k: str(v.dtype) for k, v in data.items()},
            "attrs_tasks": dict(group.attrs).get("robolearn", {}).get("tasks")}


def main(path: str) -> None:
    out = _real(path) if os.environ.get("DIFFUSION_POLICY_SRC") else _calls(path)
    out["zarr"] = zarr.__version__
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
