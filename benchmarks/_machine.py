"""Machine description and result-file writing shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}){mem}, "
            f"{platform.system()} {platform.release()}, Python {sys.version.split()[0]}")


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes together, in MB (gone ones count 0)."""
    import psutil

    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def write_result(name: str, title: str, body: str, command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    text = (f"# {title}\n\n- Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
            f"- Machine: {machine()}\n- Command: `{command}`\n\n{body.rstrip()}\n")
    path.write_text(text)
    print(text)
    return path
