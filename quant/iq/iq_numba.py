"""Pieces the compiled IQ quantizers share (ports of ggml-quants.c helpers, float32 throughout,
every constant cast, no fastmath): super-block weights, sign extraction with IQ2/IQ3_XXS's
parity flip, and iq2_find_best_neighbour / iq3_find_best_neighbour."""
from __future__ import annotations

import numpy as np
from numba import njit

from tinyconvert.quant.kernels.numba_kernels import _nearest

F = np.float32
FLT_MAX = np.float32(3.4028234663852886e38)


@njit(nogil=True, cache=True)
def sumsq(x):
    s = np.float32(0)
    for i in range(x.shape[0]):
        s = np.float32(s + np.float32(x[i] * x[i]))
    return s


@njit(nogil=True, cache=True)
def block_weights(xb, qw, has_qw, sigma2, weight, waux):
    """weight = qw * sqrtf(sigma2 + x^2) (x^2 without a matrix); waux = sqrtf(weight)."""
    for i in range(xb.shape[0]):
        x2 = np.float32(xb[i] * xb[i])
        if has_qw:
            weight[i] = np.float32(qw[i] * np.float32(np.sqrt(np.float32(sigma2 + x2))))
        else:
            weight[i] = x2
        waux[i] = np.float32(np.sqrt(weight[i]))


@njit(nogil=True, cache=True)
def signs_of(xb, weight, xval, n_groups, parity, signs):
    """xval = |x| per group of 8 with the sign bits; with parity, a group with an odd number of
    negatives flips its element of smallest w*x*x (first on ties), whose xval becomes -|x|."""
    for k in range(n_groups):
        nflip = 0
        s = 0
        for i in range(8):
            v = xb[8 * k + i]
            if v >= 0:
                xval[8 * k + i] = v
            else:
                xval[8 * k + i] = -v
                nflip += 1
                s |= 1 << i
        if parity and nflip % 2 == 1:
            imin = 0
            mn = np.float32(np.float32(weight[8 * k] * xb[8 * k]) * xb[8 * k])
            for i in range(1, 8):
                ax = np.float32(np.float32(weight[8 * k + i] * xb[8 * k + i]) * xb[8 * k + i])
                if ax < mn:
                    mn = ax
                    imin = i
            xval[8 * k + imin] = -xval[8 * k + imin]
            s ^= 1 << imin
        signs[k] = s & 127 if parity else s


@njit(nogil=True, cache=True)
def vmax(xval):
    m = xval[0]
    for i in range(1, xval.shape[0]):
        m = m if m > xval[i] else xval[i]
    return m


@njit(nogil=True, cache=True)
def level(idv, xv, kmax):
    """nearest_int(0.5f*(id*x - 1)) clamped to 0..kmax-1."""
    l = _nearest(np.float32(np.float32(0.5) * np.float32(np.float32(idv * xv) - np.float32(1))))
    return max(0, min(kmax - 1, l))


@njit(nogil=True, cache=True)
def best_neighbour(pos, nb_start, nb_count, nbrs, u, xval, waux, off, scale, L):
    """Among code u's neighbours, the first of least sum waux*(scale*pos - xval)^2; sets
    L[off + i] = (pos - 1)/2 and returns the grid index."""
    dim = pos.shape[1]
    best = FLT_MAX
    gi = -1
    for j in range(nb_start[u], nb_start[u] + nb_count[u]):
        g = nbrs[j]
        d2 = np.float32(0)
        for i in range(dim):
            diff = np.float32(np.float32(scale * np.float32(pos[g, i])) - xval[off + i])
            d2 = np.float32(d2 + np.float32(np.float32(waux[off + i] * diff) * diff))
        if d2 < best:
            best = d2
            gi = g
    for i in range(dim):
        L[off + i] = (np.int32(pos[gi, i]) - 1) // 2
    return gi


@njit(nogil=True, cache=True)
def grid_levels(pos, gi, L, off):
    for i in range(pos.shape[1]):
        L[off + i] = (np.int32(pos[gi, i]) - 1) // 2


@njit(nogil=True, cache=True)
def fit(weight, xval, L):
    """sumqx = sum w*xval*q, sumq2 = sum w*q*q with q = 2L + 1."""
    sumqx = np.float32(0)
    sumq2 = np.float32(0)
    for i in range(weight.shape[0]):
        q = np.float32(2 * L[i] + 1)
        sumqx = np.float32(sumqx + np.float32(np.float32(weight[i] * xval[i]) * q))
        sumq2 = np.float32(sumq2 + np.float32(np.float32(weight[i] * q) * q))
    return sumqx, sumq2


@njit(nogil=True, cache=True)
def scale_code(idv, s, top):
    """nearest_int(0.5f*(id*scale - 1)) clamped to 0..top."""
    l = _nearest(np.float32(np.float32(0.5) * np.float32(np.float32(idv * s) - np.float32(1))))
    return max(0, min(top, l))


@njit(nogil=True, cache=True)
def put_u32(out, at, v):
    for b in range(4):
        out[at + b] = (v >> (8 * b)) & 255
