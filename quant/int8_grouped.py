"""tinyconvert's grouped INT8 layout (-b 8 --group-size G, G in 64/128/256): llama.cpp cannot
run it; the bundled runtime and verify can.

For a weight W [rows, cols] the file holds two tensors:
    NAME          I8  [rows, cols]      q = clamp(roundf(w / s), -127, 127)
    NAME.scale    F16 [rows, cols / G]  s = max|w| over the group / 127 (fp16)
and the key tinyconvert.int8.group_size = G. Symmetric, one scale per G consecutive weights of a
row; w = s * q.
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.rounding import roundf

GROUP_SIZES = (64, 128, 256)
SCALE_SUFFIX = ".scale"
GROUP_KEY = "tinyconvert.int8.group_size"


def quantize(rows: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """rows f32 [n, k] -> (codes int8 [n, k], scales f16 [n, k/group])."""
    n, k = rows.shape
    g = np.ascontiguousarray(rows, dtype=np.float32).reshape(n, k // group, group)
    s = (np.abs(g).max(-1) / np.float32(127)).astype(np.float16)            # [n, k/group]
    s32 = s.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s32[..., None] > 0, roundf(g / s32[..., None]), 0)
    return np.clip(q, -127, 127).astype(np.int8).reshape(n, k), s


def dequantize(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    n, k = codes.shape
    group = k // scales.shape[1]
    out = codes.reshape(n, -1, group).astype(np.float32) * scales.astype(np.float32)[..., None]
    return out.reshape(n, k)
