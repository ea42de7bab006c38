"""gguf-py reports problems through `logging` warnings ("no merges found, output may be
non-functional", special token ids out of range, ...). Rather than silencing them globally, the
calls into gguf-py that may warn run inside `gguf_warnings`, which collects each warning as a
note for the command's output (and --json) and leaves every logger as it found it."""
from __future__ import annotations

import contextlib
import logging

LOGGERS = ("gguf", "metadata")      # gguf-py's modules log under gguf.*; its Metadata as "metadata"


class _Collect(logging.Handler):
    def __init__(self, notes: list[str]):
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        self.notes.append(f"gguf-py: {record.getMessage()}")


@contextlib.contextmanager
def gguf_warnings(notes: list[str]):
    """Inside the block, gguf-py's warnings go to `notes` instead of stderr."""
    handler = _Collect(notes)
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate))
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield notes
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
