"""One output tensor of a plan (tinyconvert.pipeline.plan decides them from a checkpoint;
quantize from a GGUF). Kept apart from plan.py so that quantize, which never reads a checkpoint,
does not import the architecture tables and gguf-py at start-up."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tinyconvert.formats.records import rows_and_len
from tinyconvert.quant import QuantType


@dataclass(frozen=True)
class PlannedTensor:
    name: str                     # GGUF name
    shape: tuple[int, ...]        # numpy/torch order (outermost first)
    qtype: QuantType
    read_rows: Callable[[int, int], np.ndarray]   # output rows [r0, r1), transforms applied
    src_dtype: str                # "F32", "F16" or "BF16" (uint16 bits)
    align: int = 1                # chunks start and end on multiples of this many rows
    fallback_from: str | None = None   # requested type that could not hold this row length
    # [n_mat, n_per_row] importance matrix its quantizer gets (tinyconvert.imatrix.apply)
    imatrix: np.ndarray | None = field(default=None, compare=False)
    # produced whole (a HeldWhole: PowerInfer's transposed ffn_down, a predictor): the writer
    # loads it only after the tensors before it are done, so two are never held at once
    whole: bool = False

    @property
    def n_rows(self) -> int:
        return rows_and_len(self.shape)[0]
