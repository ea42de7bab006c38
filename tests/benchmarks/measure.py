"""Wall time and peak RSS of one command, run inside its own small wrapper process (so the
wrapper's RUSAGE_CHILDREN holds exactly that command's peak)."""
from __future__ import annotations

import subprocess
import sys
import time

WRAP = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(fn) -> float:
    """Seconds one call of fn takes (in this process)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MiB)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True,
                          env=env, check=True)
    return time.perf_counter() - t, int(proc.stdout.strip()) / 1024


CPU_WRAP = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
            "capture_output=True); r = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(r.ru_maxrss, r.ru_utime + r.ru_stime)")


def measure_cpu(cmd: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """(seconds, peak RSS in MiB, CPU seconds user + system): on a shared, loaded machine the
    CPU time is the steadier measure of the work a command does."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CPU_WRAP, *cmd], capture_output=True, text=True,
                          env=env, check=True)
    rss, cpu = proc.stdout.split()
    return time.perf_counter() - t, int(rss) / 1024, float(cpu)
