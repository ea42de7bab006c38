"""The one default for --threads: the cores this process may run on (its CPU affinity, which
containers and taskset narrow; os.cpu_count() counts the whole machine). Every command that
computes takes its thread count through resolve_threads, so the library and the CLI agree."""
from __future__ import annotations

import os

from tinyconvert.formats.errors import InputError

THREADS_HELP = "worker threads (default: this machine's cores)"


def machine_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # no affinity API (macOS)
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """None: the machine's cores; otherwise at least 1."""
    if threads is None:
        return machine_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"--threads must be a whole number of at least 1, got {threads!r}")
    return threads


def use_torch_threads(threads: int | None) -> int:
    """The same count for torch's intra-op pool (verify, run, train-predictor, the check that
    ends a conversion); imports torch, so only commands that run a model call it."""
    n = resolve_threads(threads)
    import torch
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


__all__ = ["THREADS_HELP", "machine_threads", "resolve_threads", "use_torch_threads"]
