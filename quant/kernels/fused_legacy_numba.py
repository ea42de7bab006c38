"""Whole-row Q8_0, Q4_0 and Q5_0 kernels: source rows (float32, fp16 or bf16 bits) straight to
the finished block bytes, fp16 scale included, in one compiled pass with no temporaries. The
statements are ggml-quants.c's quantize_row_q8_0_ref, _q4_0_ref and _q5_0_ref, in float32 (the
numpy ports in q8_0.py / legacy.py stay the reference; tests hold both to llama.cpp's bytes).

Each kernel: (src [n, k], kind, table, out uint8 [n, k/32*block]) -> None; kind and table as in
numba_rows.load_row. They release the GIL, so the writer's threads run chunks in parallel."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from tinyconvert.quant.kernels.numba_rows import load_row, put_f16


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _roundf(v):
    """C roundf (halves away from zero): floor(|v| + 0.5) is exact in float64 for a float32 v."""
    r = math.floor(abs(np.float64(v)) + 0.5)
    return -r if v < 0 else r


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _signed_max(buf, j0):
    """The first value of largest magnitude in buf[j0:j0+32] (C keeps it on a strict >)."""
    amax = np.float32(0)
    mx = np.float32(0)
    for j in range(j0, j0 + 32):
        a = abs(buf[j])
        if a > amax:
            amax = a
            mx = buf[j]
    return mx


@njit(nogil=True, cache=True, error_model="numpy")
def q8_0_rows(src, kind, table, out):
    n, k = src.shape
    buf = np.empty(k, np.float32)
    for r in range(n):
        load_row(src, r, kind, table, buf)
        for b in range(k // 32):
            j0 = 32 * b
            o = 34 * b
            amax = np.float32(0)
            for j in range(j0, j0 + 32):
                amax = max(amax, abs(buf[j]))
            d = np.float32(amax / np.float32(127))
            inv = np.float32(np.float32(1) / d) if d != 0 else np.float32(0)
            put_f16(out, r, o, d)
            for j in range(32):
                q = np.int64(_roundf(np.float32(buf[j0 + j] * inv)))
                out[r, o + 2 + j] = np.uint8(q & 0xFF)


@njit(nogil=True, cache=True, error_model="numpy")
def q4_0_rows(src, kind, table, out):
    n, k = src.shape
    buf = np.empty(k, np.float32)
    for r in range(n):
        load_row(src, r, kind, table, buf)
        for b in range(k // 32):
            j0 = 32 * b
            o = 18 * b
            d = np.float32(_signed_max(buf, j0) / np.float32(-8))
            inv = np.float32(np.float32(1) / d) if d != 0 else np.float32(0)
            put_f16(out, r, o, d)
            for j in range(16):
                lo = min(15, int(np.float32(np.float32(buf[j0 + j] * inv) + np.float32(8.5))))
                hi = min(15, int(np.float32(np.float32(buf[j0 + j + 16] * inv)
                                            + np.float32(8.5))))
                out[r, o + 2 + j] = np.uint8((lo & 15) | ((hi & 15) << 4))


@njit(nogil=True, cache=True, error_model="numpy")
def q5_0_rows(src, kind, table, out):
    n, k = src.shape
    buf = np.empty(k, np.float32)
    for r in range(n):
        load_row(src, r, kind, table, buf)
        for b in range(k // 32):
            j0 = 32 * b
            o = 22 * b
            d = np.float32(_signed_max(buf, j0) / np.float32(-16))
            inv = np.float32(np.float32(1) / d) if d != 0 else np.float32(0)
            put_f16(out, r, o, d)
            qh = 0
            for j in range(16):
                lo = min(31, int(np.float32(np.float32(buf[j0 + j] * inv) + np.float32(16.5))))
                hi = min(31, int(np.float32(np.float32(buf[j0 + j + 16] * inv)
                                            + np.float32(16.5))))
                out[r, o + 6 + j] = np.uint8((lo & 15) | ((hi & 15) << 4))
                qh |= ((lo >> 4) & 1) << j
                qh |= ((hi >> 4) & 1) << (j + 16)
            for i in range(4):
                out[r, o + 2 + i] = np.uint8((qh >> (8 * i)) & 0xFF)
