"""Tensor source records: what a checkpoint reader yields for each tensor, before reading it.

Every tensor is seen as a 2-D array of rows: [prod(shape[:-1]), shape[-1]], and a 1-D tensor as
[n, 1] (one element per row), so that readers, transforms and encoders can all stream in row
chunks. BF16 data travels as its uint16 bit patterns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class TensorRecord:
    name: str
    shape: tuple[int, ...]
    dtype: str                                       # "F32", "F16", "BF16", ... (safetensors names)
    read_rows: Callable[[int, int], np.ndarray]      # rows [r0, r1) as [r1 - r0, row_len]
    source: str = ""                                 # file it comes from, for error messages

    @property
    def n_rows(self) -> int:
        return rows_and_len(self.shape)[0]

    @property
    def row_len(self) -> int:
        return rows_and_len(self.shape)[1]

    def load(self) -> np.ndarray:
        """The whole tensor in its source dtype (BF16 as uint16 bits)."""
        return self.read_rows(0, self.n_rows).reshape(self.shape)


def rows_and_len(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], 1
    return math.prod(shape[:-1]), shape[-1]          # exact integers: sizes from files never wrap
