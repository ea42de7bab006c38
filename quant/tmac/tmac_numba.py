"""Compiled LUT matrix product for quant/tmac/tmac_lut.py (imported on first use; needs numba).

For each output row m (rows split across threads) and weight group g:
    for bit plane b:  c_b[n] = sum over activation groups a in g of
                               lut_scale[a, n] * sum_{j in a} QT[j, idx_b[m, j], n]
                      + lut_bias sum over g, plane 0 only
    y[n, m] += scales[m, g] * sum_b alpha_b c_b[n]  +  zf[m, g] * lut_bias sum over g
The innermost loop runs over the N activation rows, contiguous in QT, so one lookup index serves
the whole batch as a vector add.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

ALPHA = np.array([0.5, 1.0, 2.0, 4.0], np.float32)


@njit(parallel=True, nogil=True, cache=True)
def lut_matmul(idx, scales, zf, has_zf, QT, lut_s, lut_b, acts_per_group, tabs_per_act, out):
    M, K8, nbits = idx.shape
    N = QT.shape[2]
    ng = scales.shape[1]
    for m in prange(M):
        y = np.zeros(N, np.float32)
        acc = np.zeros(N, np.float32)      # exact: sums of int8 entries stay < 2^24
        cb = np.zeros(N, np.float32)
        bsum = np.zeros(N, np.float32)
        for g in range(ng):
            a0 = g * acts_per_group
            bsum[:] = 0
            for a in range(a0, a0 + acts_per_group):
                for n in range(N):
                    bsum[n] += lut_b[a, n]
            for b in range(nbits):
                cb[:] = 0
                for a in range(a0, a0 + acts_per_group):
                    acc[:] = 0
                    j0 = a * tabs_per_act
                    for jj in range(j0 // 2, (j0 + tabs_per_act) // 2):
                        byte = idx[m, jj, b]
                        lo, hi = byte & 15, byte >> 4
                        for n in range(N):
                            acc[n] += np.float32(QT[2 * jj, lo, n]) + np.float32(QT[2 * jj + 1, hi, n])
                    for n in range(N):
                        cb[n] += acc[n] * lut_s[a, n]
                if b == 0:
                    for n in range(N):
                        cb[n] += bsum[n]
                s = scales[m, g] * ALPHA[b]
                for n in range(N):
                    y[n] += s * cb[n]
            if has_zf:
                for n in range(N):
                    y[n] += zf[m, g] * bsum[n]
        for n in range(N):
            out[n, m] = y[n]


@njit(parallel=True, nogil=True, cache=True)
def lut_gemv(idx, scales, zf, has_zf, QP, lut_s, lut_b, acts_per_group, tabs_per_act, out):
    """lut_matmul for one activation row (N = 1). QP [K/8, 256] int16: the sums of two adjacent
    tables for every byte of indices (QP[jj, hi 16 + lo] = QT[2jj, lo] + QT[2jj+1, hi]), so one
    lookup serves both nibbles of a weight byte (the integer sums are the same). The bit planes of
    one index byte sit together (idx [M, K/8, bits]) and each has its own register accumulator."""
    M, K8, nbits = idx.shape
    ng = scales.shape[1]
    half = tabs_per_act // 2
    for m in prange(M):
        y = np.float32(0)
        for g in range(ng):
            a0 = g * acts_per_group
            bsum = np.float32(0)
            for a in range(a0, a0 + acts_per_group):
                bsum += lut_b[a]
            c0, c1, c2, c3 = np.float32(0), np.float32(0), np.float32(0), np.float32(0)
            for a in range(a0, a0 + acts_per_group):
                s0, s1, s2, s3 = np.int32(0), np.int32(0), np.int32(0), np.int32(0)
                for jj in range(a * half, (a + 1) * half):
                    s0 += np.int32(QP[jj, idx[m, jj, 0]])
                    if nbits > 1:
                        s1 += np.int32(QP[jj, idx[m, jj, 1]])
                    if nbits > 2:
                        s2 += np.int32(QP[jj, idx[m, jj, 2]])
                    if nbits > 3:
                        s3 += np.int32(QP[jj, idx[m, jj, 3]])
                ls = lut_s[a]
                c0 += np.float32(s0) * ls
                c1 += np.float32(s1) * ls
                c2 += np.float32(s2) * ls
                c3 += np.float32(s3) * ls
            c0 += bsum                                       # the table bias, on plane 0 only
            y += scales[m, g] * (ALPHA[0] * c0 + ALPHA[1] * c1 + ALPHA[2] * c2 + ALPHA[3] * c3)
            if has_zf:
                y += zf[m, g] * bsum
        out[m] = y
