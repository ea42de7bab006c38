"""Compiled searches for the importance-matrix paths of ggml-quants.c: make_qx_quants with given
weights (rmse_type 1, qw != NULL), make_qp_quants (the non-negative scale-of-scales fit, keeping
C's uint8 storage of its levels) and the IQ4_NL / IQ4_XS scale search with given weights.
make_qkx3_quants with weights is statement for statement numba_kernels.qkx2, which is reused.

Like numba_kernels: one block per loop iteration, float32 throughout with every constant cast,
no fastmath (no fused multiply-add), first strict minimum / maximum wins as in C.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from tinyconvert.quant.kernels.numba_kernels import EPS, _absmax_first, _best_index, _nearest

F = np.float32


@njit(nogil=True, cache=True)
def _wsums(row, w, nmax, iscale, Lrow):
    sumlx = np.float32(0)
    suml2 = np.float32(0)
    for i in range(row.shape[0]):
        l = _nearest(np.float32(iscale * row[i]))
        l = max(-nmax, min(nmax - 1, l))
        Lrow[i] = l
        fl = np.float32(l)
        sumlx = np.float32(sumlx + np.float32(np.float32(w[i] * row[i]) * fl))
        suml2 = np.float32(suml2 + np.float32(np.float32(w[i] * fl) * fl))
    return sumlx, suml2


@njit(nogil=True, cache=True)
def qx_w(x, w, nmax):
    """make_qx_quants(n, nmax, x, L, 1, w) per row of x, w (float32 [B, n]) ->
    (L int32 [B, n]: l + nmax, or 0 for an all-zero row; scale [B])."""
    B, n = x.shape
    L = np.zeros((B, n), np.int32)
    scales = np.zeros(B, np.float32)
    Lt = np.zeros(n, np.int32)
    fnmax = np.float32(nmax)
    for b in range(B):
        amax, mx = _absmax_first(x[b])
        if amax < EPS:
            continue
        sumlx, suml2 = _wsums(x[b], w[b], nmax, np.float32(-fnmax / mx), L[b])
        scale = np.float32(sumlx / suml2) if suml2 != 0 else np.float32(0)
        best = np.float32(scale * sumlx)
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = np.float32(-np.float32(fnmax + np.float32(np.float32(0.1) * np.float32(step)))
                                / mx)
            sumlx, suml2 = _wsums(x[b], w[b], nmax, iscale, Lt)
            if suml2 > 0 and np.float32(sumlx * sumlx) > np.float32(best * suml2):
                L[b, :] = Lt
                scale = np.float32(sumlx / suml2)
                best = np.float32(scale * sumlx)
        scales[b] = scale
        for i in range(n):
            L[b, i] += nmax
    return L, scales


@njit(nogil=True, cache=True)
def _qp_mse(x, w, iscale, nmax, clamp):
    scale = np.float32(np.float32(1) / iscale)
    mse = np.float32(0)
    for i in range(x.shape[0]):
        l = _nearest(np.float32(iscale * x[i]))
        if clamp:
            l = min(nmax, l)
        else:
            l = l & 0xFF                  # first pass: stored to uint8 unclamped, read back
        diff = np.float32(x[i] - np.float32(scale * np.float32(l)))
        mse = np.float32(mse + np.float32(np.float32(w[i] * diff) * diff))
    return mse


@njit(nogil=True, cache=True)
def _qp_one(x, w, nmax, L):
    n = x.shape[0]
    mx = np.float32(0)
    for i in range(n):
        mx = mx if mx > x[i] else x[i]
    if mx < EPS:
        return np.float32(0)
    fnmax = np.float32(nmax)
    iscale = np.float32(fnmax / mx)
    best_mse = _qp_mse(x, w, iscale, nmax, False)
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = np.float32(np.float32(np.float32(np.float32(0.1) * np.float32(step)) + fnmax)
                               / mx)
        mse = _qp_mse(x, w, iscale_is, nmax, True)
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is
    sumlx = np.float32(0)
    suml2 = np.float32(0)
    for i in range(n):
        l = min(nmax, _nearest(np.float32(iscale * x[i])))
        L[i] = l & 0xFF                   # uint8 storage: a negative level wraps (C quirk)
        fl = np.float32(l)
        sumlx = np.float32(sumlx + np.float32(np.float32(w[i] * x[i]) * fl))
        suml2 = np.float32(suml2 + np.float32(np.float32(w[i] * fl) * fl))
    for _ in range(5):
        changed = 0
        for i in range(n):
            li = np.float32(L[i])
            slx = np.float32(sumlx - np.float32(np.float32(w[i] * x[i]) * li))
            sl2 = np.float32(suml2 - np.float32(np.float32(w[i] * li) * li))
            if slx > 0 and sl2 > 0:
                new = min(nmax, _nearest(np.float32(np.float32(x[i] * sl2) / slx)))
                if new != np.int64(L[i]):
                    fn = np.float32(new)
                    slx = np.float32(slx + np.float32(np.float32(w[i] * x[i]) * fn))
                    sl2 = np.float32(sl2 + np.float32(np.float32(w[i] * fn) * fn))
                    if np.float32(np.float32(slx * slx) * suml2) > \
                            np.float32(np.float32(sumlx * sumlx) * sl2):
                        L[i] = new & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        changed += 1
        if changed == 0:
            break
    return np.float32(sumlx / suml2) if suml2 > np.float32(0) else np.float32(0)


@njit(nogil=True, cache=True)
def qp(x, w, nmax):
    """make_qp_quants(n, nmax, x, L, w) per row of x, w (float32 [B, n]) -> (L uint8, scale)."""
    B, n = x.shape
    L = np.zeros((B, n), np.uint8)
    scales = np.zeros(B, np.float32)
    for b in range(B):
        scales[b] = _qp_one(x[b], w[b], nmax, L[b])
    return L, scales


@njit(nogil=True, cache=True)
def _iq4_wsums(values, row, w, inv):
    sumqx = np.float32(0)
    sumq2 = np.float32(0)
    for j in range(row.shape[0]):
        q = np.float32(values[_best_index(values, np.float32(inv * row[j]))])
        sumqx = np.float32(sumqx + np.float32(np.float32(w[j] * q) * row[j]))
        sumq2 = np.float32(sumq2 + np.float32(np.float32(w[j] * q) * q))
    return sumqx, sumq2


@njit(nogil=True, cache=True)
def iq4_scales_w(x, w, values):
    """quantize_row_iq4_nl_impl's per-32-block scale search (ntry 7) with given weights -> d [B]."""
    B = x.shape[0]
    out = np.zeros(B, np.float32)
    for b in range(B):
        amax, mx = _absmax_first(x[b])
        if amax < EPS:
            continue
        d = np.float32(-mx / np.float32(values[0]))
        sumqx, sumq2 = _iq4_wsums(values, x[b], w[b], np.float32(np.float32(1) / d))
        d = np.float32(sumqx / sumq2) if sumq2 > 0 else np.float32(0)
        best = np.float32(d * sumqx)
        for itry in range(-7, 8):
            inv = np.float32(np.float32(itry + values[0]) / mx)
            sumqx, sumq2 = _iq4_wsums(values, x[b], w[b], inv)
            if sumq2 > 0 and np.float32(sumqx * sumqx) > np.float32(best * sumq2):
                d = np.float32(sumqx / sumq2)
                best = np.float32(d * sumqx)
        out[b] = d
    return out


@njit(nogil=True, cache=True)
def best_indices(values, x, inv):
    """best_index_int8(values, inv[b] * x[b, j]) for x float32 [B, n], inv [B] -> uint8 [B, n]."""
    B, n = x.shape
    out = np.zeros((B, n), np.uint8)
    for b in range(B):
        for j in range(n):
            out[b, j] = _best_index(values, np.float32(inv[b] * x[b, j]))
    return out
