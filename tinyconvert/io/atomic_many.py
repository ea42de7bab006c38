"""Several outputs that appear together or not at all (a quant ladder): each is written to a
temporary file beside its target, and only when every one is complete are they renamed into
place. A failure while writing leaves none of them; a rename that fails half-way removes the
outputs already renamed, so the folder never holds part of a ladder."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tinyconvert.io.atomic import sync_file, sync_folder


def _remove(paths) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


@contextlib.contextmanager
def atomic_outputs(outs: list[Path]):
    """Yields one temporary path per output; renames them all when the block succeeds."""
    tmps: list[Path] = []
    done: list[Path] = []
    try:
        for out in outs:
            fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield list(tmps)
        umask = os.umask(0)
        os.umask(umask)
        for tmp in tmps:
            os.chmod(tmp, 0o666 & ~umask)      # mkstemp makes 0600; give the usual file mode
            sync_file(tmp)
        for tmp, out in zip(tmps, outs):
            os.replace(tmp, out)
            done.append(out)
        for folder in {out.parent for out in outs}:
            sync_folder(folder)
    except BaseException:
        _remove(tmps)
        _remove(done)
        raise
