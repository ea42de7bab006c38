"""Refuse to start writing what cannot fit: outputs are first written whole as temporary files
next to their targets, so the free space they need is their full size."""
from __future__ import annotations

import shutil
from pathlib import Path

from tinyconvert.formats.errors import InputError


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free        # looked up on each call (tests monkeypatch it)


def check_free_space(folder: Path, needed: int, what: str) -> None:
    folder = Path(folder) if str(folder) else Path(".")
    free = free_bytes(folder)
    if needed > free:
        raise InputError(f"{folder}: not enough free space for {what}: it needs {human(needed)}, "
                         f"{human(free)} is free; nothing was written")
