"""Outputs appear only when complete: written to a temporary file in the target folder, then
renamed into place. A failed or interrupted run leaves no partial file and never touches inputs.
The file is fsynced before the rename and the folder after it: without the first, a power cut
can leave the final name on an empty file (the rename reaches the disk before the data); without
the second, the rename itself can be lost."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tinyconvert.formats.errors import InputError


def check_output(out: Path, *inputs: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{out}: the output folder {parent} does not exist")
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give a file name for the output")
    for src in inputs:
        if out.exists() and src.exists() and out.resolve() == src.resolve():
            raise InputError(f"{out}: output would overwrite the input")


def sync_file(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """Makes a rename in the folder durable (POSIX; Windows has no folder handles to sync)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(out: Path):
    """Yields a temporary path next to `out`; renames it to `out` if the block succeeds."""
    parent = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)      # mkstemp makes 0600; give the usual file mode
        sync_file(tmp)
        os.replace(tmp, out)
        sync_folder(parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
