"""The 32-weight block types Q4_0, Q4_1, Q5_0, Q5_1: bit-exact ports of ggml-quants.c's
quantize_row_q4_0_ref, _q4_1_ref, _q5_0_ref and _q5_1_ref (what llama.cpp's quantizer runs when
there is no importance matrix), vectorised over blocks. float32 throughout, as in C.

    Q4_0 (18 B): | d: f16 | qs[16]: weight j in the low nibble, j+16 in the high |   x = d(q-8)
    Q4_1 (20 B): | d: f16 | m: f16 | qs[16] |                                     x = d q + m
    Q5_0 (22 B): | d: f16 | qh: u32, bit i = bit 4 of weight i | qs[16] |         x = d(q-16)
    Q5_1 (24 B): | d: f16 | m: f16 | qh: u32 | qs[16] |                           x = d q + m
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kernels.fused import quantize_rows
from tinyconvert.quant.registry import QuantType, register

QK = 32
F = np.float32


def _blocks(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows, dtype=F).reshape(-1, QK)              # [nb, 32]


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d != 0, F(1) / d, F(0)).astype(F)


def _signed_max(x: np.ndarray) -> np.ndarray:
    """The first value of largest magnitude in each block (C keeps it on a strict >)."""
    return np.take_along_axis(x, np.abs(x).argmax(1)[:, None], 1)            # [nb, 1]


def _trunc_u8(v: np.ndarray) -> np.ndarray:
    return np.trunc(v).astype(np.int32)


def _nibbles(q: np.ndarray) -> np.ndarray:
    return ((q[:, :16] & 15) | ((q[:, 16:] & 15) << 4)).astype(np.uint8)    # [nb, 16]


def _high_bits(q: np.ndarray) -> np.ndarray:
    qh = (((q >> 4) & 1).astype(np.uint64) << np.arange(32, dtype=np.uint64)).sum(1)
    return qh.astype("<u4").view(np.uint8).reshape(-1, 4)                    # [nb, 4]


def _f16(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float16).view(np.uint8).reshape(-1, 2)


def _out(n_rows: int, *parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts, axis=1).reshape(n_rows, -1)


def quantize_q4_0(rows, imatrix=None):
    if imatrix is not None:
        from tinyconvert.quant.legacy_imatrix import quantize_q4_0_imatrix
        return quantize_q4_0_imatrix(rows, imatrix)
    if (fast := quantize_rows("q4_0", rows)) is not None:       # C or numba
        return fast
    x = _blocks(rows)
    d = (_signed_max(x) / F(-8)).astype(F)
    q = np.minimum(15, _trunc_u8(x * _inverse(d) + F(8.5)))
    return _out(rows.shape[0], _f16(d), _nibbles(q))


def quantize_q4_1(rows, imatrix=None):
    if imatrix is not None:
        from tinyconvert.quant.legacy_imatrix import quantize_q4_1_imatrix
        return quantize_q4_1_imatrix(rows, imatrix)
    x = _blocks(rows)
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    d = ((hi - lo) / F(15)).astype(F)
    q = np.minimum(15, _trunc_u8((x - lo) * _inverse(d) + F(0.5)))
    return _out(rows.shape[0], _f16(d), _f16(lo), _nibbles(q))


def quantize_q5_0(rows, imatrix=None):
    if imatrix is not None:
        from tinyconvert.quant.legacy_imatrix import quantize_q5_0_imatrix
        return quantize_q5_0_imatrix(rows, imatrix)
    if (fast := quantize_rows("q5_0", rows)) is not None:
        return fast
    x = _blocks(rows)
    d = (_signed_max(x) / F(-16)).astype(F)
    q = np.minimum(31, _trunc_u8(x * _inverse(d) + F(16.5)))
    return _out(rows.shape[0], _f16(d), _high_bits(q), _nibbles(q))


def quantize_q5_1(rows, imatrix=None):
    if imatrix is not None:
        from tinyconvert.quant.legacy_imatrix import quantize_q5_1_imatrix
        return quantize_q5_1_imatrix(rows, imatrix)
    x = _blocks(rows)
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    d = ((hi - lo) / F(31)).astype(F)
    q = _trunc_u8((x - lo) * _inverse(d) + F(0.5)) & 0xFF
    return _out(rows.shape[0], _f16(d), _f16(lo), _high_bits(q), _nibbles(q))


def _split(data: np.ndarray, *widths: int) -> list[np.ndarray]:
    b = np.ascontiguousarray(data).reshape(-1, sum(widths))
    out, at = [], 0
    for w in widths:
        out.append(b[:, at:at + w])
        at += w
    return out


def _scalar(raw: np.ndarray) -> np.ndarray:
    return raw.copy().view(np.float16).astype(F)                             # [nb, 1]


def _unpack(qs: np.ndarray, qh: np.ndarray | None) -> np.ndarray:
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32)         # [nb, 32]
    if qh is not None:
        bits = qh.copy().view("<u4").astype(np.uint64)                       # [nb, 1]
        q |= (((bits >> np.arange(32, dtype=np.uint64)) & 1) << 4).astype(np.int32)
    return q


def dequantize_q4_0(data):
    d, qs = _split(data, 2, 16)
    return (_scalar(d) * (_unpack(qs, None) - 8)).astype(F).reshape(data.shape[0], -1)


def dequantize_q4_1(data):
    d, m, qs = _split(data, 2, 2, 16)
    return (_scalar(d) * _unpack(qs, None) + _scalar(m)).astype(F).reshape(data.shape[0], -1)


def dequantize_q5_0(data):
    d, qh, qs = _split(data, 2, 4, 16)
    return (_scalar(d) * (_unpack(qs, qh) - 16)).astype(F).reshape(data.shape[0], -1)


def dequantize_q5_1(data):
    d, m, qh, qs = _split(data, 2, 2, 4, 16)
    return (_scalar(d) * _unpack(qs, qh) + _scalar(m)).astype(F).reshape(data.shape[0], -1)


Q4_0 = register(QuantType("q4_0", 2, QK, 18, quantize_q4_0, dequantize_q4_0))
Q4_1 = register(QuantType("q4_1", 3, QK, 20, quantize_q4_1, dequantize_q4_1))
Q5_0 = register(QuantType("q5_0", 6, QK, 22, quantize_q5_0, dequantize_q5_0))
Q5_1 = register(QuantType("q5_1", 7, QK, 24, quantize_q5_1, dequantize_q5_1))
