"""Q8_0: blocks of 32 weights with one fp16 scale.

Block layout (34 bytes):

    +--------+---------------------------+
    | d: f16 | qs: int8[32]              |
    +--------+---------------------------+

x = d * q. Bit-exact port of ggml's quantize_row_q8_0_ref (ggml-quants.c).
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.registry import QuantType, register
from tinyconvert.quant.kernels.fused import quantize_rows
from tinyconvert.quant.rounding import roundf

QK8_0 = 32
BLOCK_BYTES = 2 + QK8_0


def quantize(rows: np.ndarray, imatrix=None) -> np.ndarray:
    n_rows, k = rows.shape
    if (fast := quantize_rows("q8_0", rows)) is not None:       # C or numba
        return fast
    x = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, QK8_0)   # [nb, 32]
    amax = np.abs(x).max(axis=1, keepdims=True)                          # [nb, 1]
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = roundf(x * inv).astype(np.int8)                                  # [nb, 32]
    out = np.empty((x.shape[0], BLOCK_BYTES), dtype=np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8)
    out[:, 2:] = q.view(np.uint8)
    return out.reshape(n_rows, -1)


def dequantize(data: np.ndarray) -> np.ndarray:
    n_rows = data.shape[0]
    b = np.ascontiguousarray(data).reshape(-1, BLOCK_BYTES)
    d = b[:, :2].copy().view(np.float16).astype(np.float32)              # [nb, 1]
    q = b[:, 2:].view(np.int8).astype(np.float32)                        # [nb, 32]
    return (d * q).reshape(n_rows, -1)


Q8_0 = register(QuantType("q8_0", 8, QK8_0, BLOCK_BYTES, quantize, dequantize))
