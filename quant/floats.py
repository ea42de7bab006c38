"""Float tensor types: F32, F16 and BF16, encoded exactly as ggml does."""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.registry import QuantType, register


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), mirroring ggml_compute_fp32_to_bf16:
    NaNs are forced quiet (bit 6 of the upper half set), everything else rounds to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    is_nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (u.astype(np.uint64) + (0x7FFF + ((u >> 16) & 1))) >> 16
    quiet = (u >> 16) | np.uint32(64)
    return np.where(is_nan, quiet, rounded).astype(np.uint16)


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(bits).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _as_bytes(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint8).reshape(a.shape[0], -1)


def _q_f32(rows: np.ndarray, imatrix=None) -> np.ndarray:
    return _as_bytes(rows.astype(np.float32, copy=False))


def _q_f16(rows: np.ndarray, imatrix=None) -> np.ndarray:
    return _as_bytes(rows.astype(np.float16))


def _q_bf16(rows: np.ndarray, imatrix=None) -> np.ndarray:
    return _as_bytes(f32_to_bf16_bits(rows))


def _dq_f32(data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data).view(np.float32).reshape(data.shape[0], -1)


def _dq_f16(data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data).view(np.float16).astype(np.float32).reshape(data.shape[0], -1)


def _dq_bf16(data: np.ndarray) -> np.ndarray:
    return bf16_bits_to_f32(data).reshape(data.shape[0], -1)


F32 = register(QuantType("f32", 0, 1, 4, _q_f32, _dq_f32))
F16 = register(QuantType("f16", 1, 1, 2, _q_f16, _dq_f16))
BF16 = register(QuantType("bf16", 30, 1, 2, _q_bf16, _dq_bf16))
I8 = register(QuantType("i8", 24, 1, 1, lambda rows, imatrix=None: _as_bytes(rows.astype(np.int8)),
                        lambda data: np.ascontiguousarray(data).view(np.int8).astype(np.float32)))
