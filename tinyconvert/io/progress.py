"""A rich progress bar over tensors and bytes; silent with --quiet or when not on a terminal."""
from __future__ import annotations

import sys


class TensorProgress:
    def __init__(self, n_tensors: int, n_bytes: int, quiet: bool = False):
        self.n_tensors, self.n_bytes = n_tensors, n_bytes
        self.enabled = not quiet and sys.stderr.isatty()
        self._progress = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                       TimeRemainingColumn, TransferSpeedColumn)
            self._progress = Progress(TextColumn("{task.description:<28}"), BarColumn(),
                                      TextColumn("{task.fields[done]}/{task.fields[n]} tensors"),
                                      DownloadColumn(), TransferSpeedColumn(),
                                      TimeRemainingColumn(), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("writing", total=self.n_bytes, done=0,
                                                 n=self.n_tensors)
        return self

    def advance(self, name: str, n_bytes: int) -> None:
        if self._progress is not None:
            task = self._progress.tasks[0]
            self._progress.update(self._task, advance=n_bytes, description=name[:28],
                                  done=task.fields["done"] + 1)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False
