"""Several outputs that appear together or not at all (the shards of a split model, the files of
a quant ladder): each is
written to its own temporary file in its target folder (as tinyconvert.io.atomic does for one),
and only when every one is complete and synced are they renamed into place. A failure before
that removes every temporary file; a failure while renaming removes the shards already renamed,
so no part of a broken set is left behind."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tinyconvert.io.atomic import sync_file, sync_folder


def _folder(out: Path) -> Path:
    return out.parent if str(out.parent) else Path(".")


@contextlib.contextmanager
def atomic_outputs(outs: list[Path]):
    """Yields one temporary path per output; renames them all if the block succeeds."""
    temps: list[Path] = []
    renamed: list[Path] = []
    try:
        for out in outs:
            fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=_folder(out))
            os.close(fd)
            temps.append(Path(tmp))
        yield list(temps)
        umask = os.umask(0)
        os.umask(umask)
        for tmp in temps:
            os.chmod(tmp, 0o666 & ~umask)      # mkstemp makes 0600; give the usual file mode
            sync_file(tmp)
        for tmp, out in zip(temps, outs):
            os.replace(tmp, out)
            renamed.append(out)
        for folder in {_folder(out) for out in outs}:
            sync_folder(folder)
    except BaseException:
        for p in temps + renamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        raise
