"""Compiled helpers the whole-row kernels share (quant/fused_*_numba.py): a source row in any of
the stored float formats to float32, float32 to fp16 bits (round to nearest even, as numpy's
astype(float16) and ggml's GGML_FP32_TO_FP16), and fp16 bits back to float32.

Numba has no float16 and no scalar bit cast: f32_bits is one (an LLVM bitcast, free)."""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from tinyconvert.quant.kernels.loader import BF16, F16, F32  # noqa: F401 (the source kinds)


@intrinsic
def f32_bits(typingctx, v):
    """The bits of a float32 as an int32 (C's memcpy from float to int)."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def load_row(src, r, kind, table, buf):
    """Row r of src (float32 values, or fp16 / bf16 bits in uint16) as float32 into buf; table:
    the float32 of every fp16 bit pattern (kernels.half_table). The
    casts keep every branch valid for every source dtype; only one runs."""
    k = src.shape[1]
    if kind == F32:
        for j in range(k):
            buf[j] = np.float32(src[r, j])
    elif kind == F16:
        for j in range(k):
            buf[j] = table[np.int64(src[r, j]) & 0xFFFF]
    else:
        bits = buf.view(np.uint32)
        for j in range(k):
            bits[j] = np.uint32(np.int64(src[r, j]) & 0xFFFF) << 16


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def f16_bits(v):
    """fp16 bits of float32 v, rounded to nearest even (overflow gives inf, NaN keeps its top
    payload bits as numpy's astype does)."""
    f = np.int64(f32_bits(np.float32(v))) & 0xFFFFFFFF
    sign = (f >> 16) & 0x8000
    a = f & 0x7FFFFFFF
    e = a >> 23
    mant = a & 0x7FFFFF
    if e == 255:
        if mant == 0:
            return sign | 0x7C00
        h = 0x7C00 | (mant >> 13)
        return sign | (h + 1 if h == 0x7C00 else h)
    if e >= 143:                            # |v| >= 65536: inf
        return sign | 0x7C00
    if e >= 113:                            # a normal half (the carry may round up to inf)
        h = ((e - 112) << 10) | (mant >> 13)
        rem = mant & 0x1FFF
        if rem > 0x1000 or (rem == 0x1000 and (h & 1)):
            h += 1
        return sign | h
    if e < 102:                             # below half the smallest subnormal: zero
        return sign
    m = mant | 0x800000                     # a subnormal half: shift out 126 - e bits
    shift = 126 - e
    h = m >> shift
    rem = m & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if rem > half or (rem == half and (h & 1)):
        h += 1
    return sign | h


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def put_f16(out, r, at, v):
    """Write float32 v as little-endian fp16 at out[r, at:at+2]; returns the fp16 bits."""
    h = f16_bits(v)
    out[r, at] = np.uint8(h & 0xFF)
    out[r, at + 1] = np.uint8((h >> 8) & 0xFF)
    return h


@njit(nogil=True, cache=True, error_model="numpy")
def f16_bits_array(v):
    """f16_bits over an array (for tests against numpy)."""
    out = np.zeros(v.shape[0], np.uint16)
    for i in range(v.shape[0]):
        out[i] = np.uint16(f16_bits(v[i]))
    return out
