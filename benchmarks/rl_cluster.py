"""``robolearn finetune`` on an existing loopback cluster (``ray start --head``) vs its own
local Ray instance: the same job, the same settings, env steps/s of each.

The head is started here (token authentication on, 127.0.0.1 only, ``--block`` so stopping
this process group stops it, as tests/robolearn/test_ray_cluster.py does) and stopped at the
end; nothing else on the machine is touched. Each job runs ``--iterations`` PPO iterations of
``--batch`` env steps in a fresh output directory, without evaluation.

    python benchmarks/rl_cluster.py --checkpoint /tmp/fresh/runs/mt10_flow_matching \
        --task peg-insert-side-v3 --iterations 3 --batch 4000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_result  # noqa: E402


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "OMP_WAIT_POLICY": "PASSIVE", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(temp: str) -> tuple[subprocess.Popen, int]:
    ray_bin = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray_bin, "get-auth-token", "--generate"], env=_env(), check=True,
                   stdout=subprocess.DEVNULL)
    port = _free_port()
    log = open(Path(temp) / "head.log", "w")  # noqa: SIM115 (kept open while the head runs)
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}",
         "--disable-usage-stats", "--block"],
        env=_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.monotonic() + 180
    while "Ray runtime started" not in (Path(temp) / "head.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("ray start --head did not come up:\n"
                               + (Path(temp) / "head.log").read_text()[-2000:])
        time.sleep(0.5)
    return proc, port


def stop_head(proc: subprocess.Popen, temp: str) -> None:
    import psutil

    proc.terminate()  # `ray start --block` stops the head's processes on SIGTERM
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    left = [p for p in psutil.process_iter(["cmdline"])
            if any(temp in part for part in (p.info["cmdline"] or []))]
    for p in left:  # what the head left behind, found by its own temp dir
        p.kill()
    psutil.wait_procs(left, timeout=10)


def run_job(args: argparse.Namespace, out: Path, address: str | None) -> dict:
    cmd = [sys.executable, "-m", "robolearn", "finetune", f"checkpoint={args.checkpoint}",
           f"suite=MT1:{args.task}", f"out={out}", f"run_dir={out}_rd",
           f"env_steps={args.iterations * args.batch}", f"ppo.train_batch_size={args.batch}",
           "eval_episodes=0", "progress=false", "tensorboard=false", "ray.num_workers=1"]
    if address:
        cmd.append(f"ray.address={address}")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = lines[-1]["env_steps"]
    train_s = sum(x["rl/iteration_s"] for x in lines)
    return {"command": " ".join(cmd[2:]), "iterations": len(lines), "env_steps": steps,
            "train_s": train_s, "steps_per_s": steps / train_s, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--task", default="peg-insert-side-v3")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rl_cluster_"))
    temp = tempfile.mkdtemp(prefix="rlray_", dir="/tmp")  # short: Ray's unix sockets live here
    try:
        local = run_job(args, work / "local", None)
        proc, port = start_head(temp)
        try:
            joined = run_job(args, work / "cluster", f"127.0.0.1:{port}")
        finally:
            stop_head(proc, temp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)
    rows = ["| Ray | iterations | env steps | training s | env steps/s | command wall s |",
            "|---|---|---|---|---|---|"]
    for name, r in (("local instance (started by the command)", local),
                    ("existing loopback cluster (`ray start --head`, ray.address=)", joined)):
        rows.append(f"| {name} | {r['iterations']} | {r['env_steps']} | {r['train_s']:.1f} | "
                    f"{r['steps_per_s']:.0f} | {r['wall_s']:.0f} |")
    body = "\n".join(rows) + (
        f"\n\n- Ratio cluster / local (env steps/s): **{joined['steps_per_s'] / local['steps_per_s']:.2f}**."
        f"\n- Both: 1 env runner × 4 sub-envs, learner in the driver (CPU), no evaluation; the "
        f"cluster run ships the base checkpoint's files to its env runners (ray.address set)."
        f"\n- Commands: `{local['command']}` and the same with "
        f"`ray.address=127.0.0.1:<port>` after `RAY_AUTH_MODE=token ray start --head "
        f"--node-ip-address=127.0.0.1 --port=<port> --num-cpus=2`."
        f"\n- Load average at the end: {os.getloadavg()[0]:.1f} (2 cores, shared).")
    write_result("rl_cluster", "robolearn finetune on an existing loopback Ray cluster", body,
                 "python benchmarks/rl_cluster.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
