"""Compiled (numba) Q8_0, Q4_0 and Q5_0 blocks: the same statements as ggml-quants.c's
quantize_row_q8_0_ref, _q4_0_ref and _q5_0_ref, one block at a time in float32, writing the
block bytes but the fp16 scale (numpy rounds that, as in legacy.py). The vectorised numpy
versions stay the reference; tests hold both to llama.cpp's bytes. One pass over the weights
instead of numpy's dozen temporaries is what makes quantize as fast as llama.cpp's quantizer.
Imported on first use (tinyconvert.quant.kernels.compiled); functions release the GIL."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

F = np.float32


@njit(nogil=True, cache=True)
def _roundf(v):
    """C roundf (halves away from zero): floor(|v| + 0.5) is exact in float64 for a float32 v."""
    r = math.floor(abs(np.float64(v)) + 0.5)
    return -r if v < 0 else r


@njit(nogil=True, cache=True)
def q8_0(x, out):
    """x float32 [nb, 32] -> out uint8 [nb, 34] (bytes 2: the codes); returns d float32 [nb]."""
    nb = x.shape[0]
    d = np.zeros(nb, np.float32)
    for b in range(nb):
        amax = np.float32(0)
        for j in range(32):
            amax = max(amax, abs(x[b, j]))
        db = np.float32(amax / np.float32(127))
        inv = np.float32(np.float32(1) / db) if db != 0 else np.float32(0)
        d[b] = db
        for j in range(32):
            out[b, 2 + j] = np.uint8(np.int8(_roundf(np.float32(x[b, j] * inv))) & 0xFF)
    return d


@njit(nogil=True, cache=True)
def _signed_max(row):
    amax = np.float32(0)
    mx = np.float32(0)
    for j in range(row.shape[0]):
        if abs(row[j]) > amax:
            amax = abs(row[j])
            mx = row[j]
    return mx


@njit(nogil=True, cache=True)
def q4_0(x, out):
    """x float32 [nb, 32] -> out uint8 [nb, 18] (bytes 2..17: nibbles); returns d [nb]."""
    nb = x.shape[0]
    d = np.zeros(nb, np.float32)
    for b in range(nb):
        db = np.float32(_signed_max(x[b]) / np.float32(-8))
        inv = np.float32(np.float32(1) / db) if db != 0 else np.float32(0)
        d[b] = db
        for j in range(16):
            lo = min(15, int(np.float32(np.float32(x[b, j] * inv) + np.float32(8.5))))
            hi = min(15, int(np.float32(np.float32(x[b, j + 16] * inv) + np.float32(8.5))))
            out[b, 2 + j] = np.uint8((lo & 15) | ((hi & 15) << 4))
    return d


@njit(nogil=True, cache=True)
def q5_0(x, out):
    """x float32 [nb, 32] -> out uint8 [nb, 22] (bytes 2..5: qh, 6..21: nibbles); returns d."""
    nb = x.shape[0]
    d = np.zeros(nb, np.float32)
    for b in range(nb):
        db = np.float32(_signed_max(x[b]) / np.float32(-16))
        inv = np.float32(np.float32(1) / db) if db != 0 else np.float32(0)
        d[b] = db
        qh = 0
        for j in range(16):
            lo = min(31, int(np.float32(np.float32(x[b, j] * inv) + np.float32(16.5))))
            hi = min(31, int(np.float32(np.float32(x[b, j + 16] * inv) + np.float32(16.5))))
            out[b, 6 + j] = np.uint8((lo & 15) | ((hi & 15) << 4))
            qh |= ((lo >> 4) & 1) << j
            qh |= ((hi >> 4) & 1) << (j + 16)
        for k in range(4):
            out[b, 2 + k] = np.uint8((qh >> (8 * k)) & 0xFF)
    return d
