"""Rows of one tensor (numpy, source dtype) to the bytes of its GGUF type."""
from __future__ import annotations

import numpy as np

from tinyconvert.quant import QuantType
from tinyconvert.quant.kernels.fused import quantize_rows
from tinyconvert.quant.floats import bf16_bits_to_f32
from tinyconvert.quant.tmac.tmac_types import TmacType


def to_f32(rows: np.ndarray, src_dtype: str) -> np.ndarray:
    if src_dtype == "BF16":
        return bf16_bits_to_f32(rows).reshape(rows.shape)
    return rows.astype(np.float32, copy=False)


def encode_rows(rows, src_dtype: str, qtype: QuantType | TmacType):
    """rows: [n, row_len] in the source dtype -> uint8 [n, row_bytes]. src_dtype "RAW": rows are
    already the target type's bytes (a tensor copied unchanged); "I8": int8 codes.
    T-MAC types give (code bytes, tail sections) instead (see TmacType.pack); their rows may also
    be "TMAC": already quantized TmacWeights (GPTQ import), packed as they are."""
    if isinstance(qtype, TmacType):
        t = rows if src_dtype == "TMAC" else qtype.quantize_rows(to_f32(rows, src_dtype))
        return qtype.pack(t)
    if src_dtype in ("RAW", "I8"):
        out = rows
    elif qtype.name == "f16" and src_dtype == "F16":
        out = rows
    elif qtype.name == "bf16" and src_dtype == "BF16":
        # already bf16: keep the bits, but quiet NaNs as ggml's f32 -> bf16 would
        is_nan = (rows & 0x7FFF) > 0x7F80
        out = np.where(is_nan, rows | 64, rows).astype(np.uint16) if is_nan.any() else rows
    elif src_dtype in ("F16", "BF16") and (fast := quantize_rows(qtype.name, rows, src_dtype)) \
            is not None:                     # converted block by block inside the kernel
        return fast
    else:
        return qtype.quantize(to_f32(rows, src_dtype))
    return np.ascontiguousarray(out).view(np.uint8).reshape(rows.shape[0], -1)
