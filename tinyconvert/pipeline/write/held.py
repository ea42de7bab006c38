"""A tensor that can only be produced whole (a transpose needs whole columns; a predictor file
holds both of a layer's matrices) but is written by row chunks: loaded on the first read, then
served by rows, and let go once every row has been served, so a conversion holds one such tensor
at a time instead of all of them until the file is written. Thread-safe: the streamer's workers
read chunks of one tensor in any order."""
from __future__ import annotations

import threading
from typing import Any, Callable


class HeldWhole:
    """load() on first use; dropped after n_rows rows were read (any split, any order). Reading
    more rows than that reloads it: the count only decides when memory is freed, never what a
    read returns."""

    def __init__(self, load: Callable[[], Any], n_rows: int):
        self._load, self._n_rows = load, n_rows
        self._data: Any = None
        self._served = 0
        self._lock = threading.Lock()
        self.loads = 0                      # how often load() ran (tests check it is once)

    @property
    def held(self) -> bool:
        return self._data is not None

    def read(self, pick: Callable[[Any], Any], r0: int, r1: int):
        """pick(data)[r0:r1]; pick selects the matrix (identity for a single tensor)."""
        with self._lock:
            if self._data is None:
                self._data, self._served = self._load(), 0
                self.loads += 1
            out = pick(self._data)[r0:r1]
            self._served += r1 - r0
            if self._served >= self._n_rows:
                self._data = None           # the chunks still being encoded keep their views
        return out

    def reader(self, pick: Callable[[Any], Any] = lambda d: d):
        return lambda r0, r1: self.read(pick, r0, r1)


__all__ = ["HeldWhole"]
