"""T-MAC tensors in the forward pass: a linear layer that multiplies through lookup tables
(tinyconvert.quant.tmac.tmac_lut), never through dequantized weights."""
from __future__ import annotations

import numpy as np
import torch

from tinyconvert.quant.tmac.tmac_lut import LutWeights, matmul


class LutLinear:
    """Stands where a weight tensor [out, in] would; runtime.model.linear calls it."""

    def __init__(self, w: LutWeights, int8: bool = True):
        self.w, self.int8 = w, int8

    @property
    def shape(self) -> tuple[int, int]:
        return self.w.shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out] (float32)."""
        flat = x.reshape(-1, x.shape[-1]).detach().to(torch.float32).numpy()
        y = matmul(self.w, np.ascontiguousarray(flat), self.int8)
        return torch.from_numpy(y).reshape(*x.shape[:-1], y.shape[-1])
