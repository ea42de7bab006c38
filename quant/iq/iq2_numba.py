"""Compiled IQ2_XXS, IQ2_XS and IQ2_S quantizers: ports of ggml-quants.c's
quantize_row_iq2_xxs_impl, quantize_row_iq2_xs_impl and quantize_row_iq2_s_impl, one 256-weight
super-block at a time (layouts in iq_types.py). Each kernel writes everything but the fp16 d,
which it returns as float32 (fudge factor applied) for numpy to round."""
from __future__ import annotations

import numpy as np
from numba import njit

from tinyconvert.quant.kernels.imatrix_numba import _qp_one
from tinyconvert.quant.iq.iq_numba import (best_neighbour, block_weights, fit, grid_levels, level,
                                        put_u32, scale_code, signs_of, sumsq, vmax)

KMAX = 3


@njit(nogil=True, cache=True)
def _group(idv, xval, k, Lout):
    """Levels of 8-group k at inverse scale idv into Lout -> the 2-bit code u."""
    u = 0
    for i in range(8):
        l = level(idv, xval[8 * k + i], KMAX)
        Lout[8 * k + i] = l
        u |= l << (2 * i)
    return u


@njit(nogil=True, cache=True)
def _code(L, k, kmap):
    u = 0
    for i in range(8):
        u |= L[8 * k + i] << (2 * i)
    return kmap[u]


@njit(nogil=True, cache=True)
def _search16(xval, weight, waux, L, mx, pos, kmap, nbs, nbc, nbrs):
    """IQ2_XS / IQ2_S: scale search over the 2 groups of a 16-block; only groups that ended
    off the grid are redone at the final scale -> scale (L set)."""
    Laux = np.zeros(16, np.int32)
    on = np.ones(2, np.bool_)
    on_aux = np.ones(2, np.bool_)
    best = np.float32(0)
    scale = np.float32(mx / np.float32(2 * KMAX - 1))
    for step in range(-9, 10):
        idv = np.float32(np.float32(np.float32(2 * KMAX - 1)
                                    + np.float32(np.float32(step) * np.float32(0.1))) / mx)
        this_scale = np.float32(np.float32(1) / idv)
        for k in range(2):
            u = _group(idv, xval, k, Laux)
            on_aux[k] = True
            if kmap[u] < 0:
                on_aux[k] = False
                best_neighbour(pos, nbs, nbc, nbrs, u, xval, waux, 8 * k, this_scale, Laux)
        sumqx, sumq2 = fit(weight, xval, Laux)
        if sumq2 > 0 and np.float32(sumqx * sumqx) > np.float32(best * sumq2):
            scale = np.float32(sumqx / sumq2)
            best = np.float32(scale * sumqx)
            L[:] = Laux
            on[:] = on_aux
    if (not on[0] or not on[1]) and scale > 0:
        idv = np.float32(np.float32(1) / scale)
        for k in range(2):
            if on[k]:
                continue
            u = _group(idv, xval, k, L)
            if kmap[u] < 0:
                best_neighbour(pos, nbs, nbc, nbrs, u, xval, waux, 8 * k, scale, L)
        sumqx, sumq2 = fit(weight, xval, L)
        if sumq2 > 0:
            scale = np.float32(sumqx / sumq2)
    return scale


@njit(nogil=True, cache=True)
def iq2_xs(x, qw, has_qw, pos, kmap, nbs, nbc, nbrs):
    """-> (blocks uint8 [n_rows, k/256, 74]: d | qs u16[32] = idx9 | signs7 << 9 | scales[8])."""
    return _iq2_16(x, qw, pos, kmap, nbs, nbc, nbrs, False)


@njit(nogil=True, cache=True)
def iq2_s(x, qw, has_qw, pos, kmap, nbs, nbc, nbrs):
    """-> (blocks uint8 [n_rows, k/256, 82]: d | qs[32] idx low 8 | signs[32] | qh[8] |
    scales[8])."""
    return _iq2_16(x, qw, pos, kmap, nbs, nbc, nbrs, True) if has_qw else \
        _iq2_16_noqw(x, pos, kmap, nbs, nbc, nbrs)


@njit(nogil=True, cache=True)
def _iq2_16_noqw(x, pos, kmap, nbs, nbc, nbrs):
    return _iq2_16_impl(x, np.zeros(x.shape[1], np.float32), False, pos, kmap, nbs, nbc, nbrs,
                        True)


@njit(nogil=True, cache=True)
def _iq2_16(x, qw, pos, kmap, nbs, nbc, nbrs, is_s):
    return _iq2_16_impl(x, qw, True, pos, kmap, nbs, nbc, nbrs, is_s)


@njit(nogil=True, cache=True)
def _iq2_16_impl(x, qw, has_qw, pos, kmap, nbs, nbc, nbrs, is_s):
    n_rows, k = x.shape
    nbl = k // 256
    size = 82 if is_s else 74
    out = np.zeros((n_rows, nbl, size), np.uint8)
    dout = np.zeros((n_rows, nbl), np.float32)
    weight = np.zeros(16, np.float32)
    waux = np.zeros(16, np.float32)
    xval = np.zeros(16, np.float32)
    L = np.zeros(16, np.int32)
    signs = np.zeros(2, np.int32)
    scales = np.zeros(16, np.float32)
    eps = np.float32(1e-8) if is_s else np.float32(1e-15)
    for r in range(n_rows):
        for ibl in range(nbl):
            blk = out[r, ibl]
            xbl = x[r, 256 * ibl:256 * ibl + 256]
            s2 = sumsq(xbl)
            sigma2 = np.float32(np.float32(np.float32(2) * s2) / np.float32(256)) if is_s else \
                np.float32(s2 / np.float32(256))
            max_scale = np.float32(0)
            for ib in range(16):
                xb = xbl[16 * ib:16 * ib + 16]
                if has_qw:
                    block_weights(xb, qw[256 * ibl + 16 * ib:], True, sigma2, weight, waux)
                else:                       # IQ2_S without a matrix: 0.25 sigma2 + x^2
                    for i in range(16):
                        weight[i] = np.float32(np.float32(np.float32(0.25) * sigma2)
                                               + np.float32(xb[i] * xb[i]))
                        waux[i] = np.float32(np.sqrt(weight[i]))
                signs_of(xb, weight, xval, 2, not is_s, signs)
                mx = vmax(xval)
                L[:] = 0
                if mx < eps:
                    scales[ib] = 0
                    continue
                scale = _search16(xval, weight, waux, L, mx, pos, kmap, nbs, nbc, nbrs)
                if scale < 0:
                    scale = -scale
                    for j in range(2):
                        signs[j] = (~signs[j]) & (255 if is_s else 127)
                for j in range(2):
                    gi = _code(L, j, kmap)
                    i8 = 2 * ib + j
                    if is_s:
                        blk[2 + i8] = gi & 255
                        blk[66 + i8 // 4] |= (gi >> 8) << (2 * (i8 % 4))
                        blk[2 + 32 + i8] = signs[j]
                    else:
                        v = gi | (signs[j] << 9)
                        blk[2 + 2 * i8] = v & 255
                        blk[3 + 2 * i8] = v >> 8
                scales[ib] = scale
                max_scale = max_scale if max_scale > scale else scale
            if not max_scale:
                if not is_s:
                    blk[2:66] = 0
                continue
            d = np.float32(max_scale / np.float32(31))
            dout[r, ibl] = np.float32(d * np.float32(0.9875)) if is_s else d
            idv = np.float32(np.float32(1) / d)
            at = 74 if is_s else 66
            for ib in range(0, 16, 2):
                blk[at + ib // 2] = scale_code(idv, scales[ib], 15) | \
                    (scale_code(idv, scales[ib + 1], 15) << 4)
    return out, dout


@njit(nogil=True, cache=True)
def iq2_xxs(x, qw, has_qw, pos, kmap, nbs, nbc, nbrs):
    """-> (blocks uint8 [n_rows, k/256, 66]: d | per 32-block u32 grid indices of its 4
    groups, u32 4 x 7-bit signs | scale << 28)."""
    n_rows, k = x.shape
    nbl = k // 256
    out = np.zeros((n_rows, nbl, 66), np.uint8)
    dout = np.zeros((n_rows, nbl), np.float32)
    weight = np.zeros(32, np.float32)
    waux = np.zeros(32, np.float32)
    xval = np.zeros(32, np.float32)
    L = np.zeros(32, np.int32)
    Lqp = np.zeros(32, np.uint8)
    signs = np.zeros(4, np.int32)
    scales = np.zeros(8, np.float32)
    hi = np.zeros(8, np.int64)
    for r in range(n_rows):
        for ibl in range(nbl):
            blk = out[r, ibl]
            xbl = x[r, 256 * ibl:256 * ibl + 256]
            sigma2 = np.float32(sumsq(xbl) / np.float32(256))
            max_scale = np.float32(0)
            for ib in range(8):
                xb = xbl[32 * ib:32 * ib + 32]
                block_weights(xb, qw[256 * ibl + 32 * ib:], True, sigma2, weight, waux)
                signs_of(xb, weight, xval, 4, True, signs)
                hi[ib] = 0
                mx = vmax(xval)
                if mx < np.float32(1e-15):
                    scales[ib] = 0
                    continue
                scale = _search_xxs(xval, weight, waux, L, Lqp, pos, kmap, nbs, nbc, nbrs)
                if scale == np.float32(-1e30):
                    scales[ib] = 0
                    continue
                if scale < 0:
                    scale = -scale
                    for j in range(4):
                        signs[j] = (~signs[j]) & 127
                lo = 0
                for j in range(4):
                    lo |= _code(L, j, kmap) << (8 * j)
                    hi[ib] |= signs[j] << (7 * j)
                put_u32(blk, 2 + 8 * ib, lo)
                scales[ib] = scale
                max_scale = max_scale if max_scale > scale else scale
            if not max_scale:
                blk[2:66] = 0
                continue
            d = np.float32(max_scale / np.float32(31))
            dout[r, ibl] = d
            idv = np.float32(np.float32(1) / d)
            for ib in range(8):
                put_u32(blk, 6 + 8 * ib, hi[ib] | (scale_code(idv, scales[ib], 15) << 28))
    return out, dout


@njit(nogil=True, cache=True)
def _search_xxs(xval, weight, waux, L, Lqp, pos, kmap, nbs, nbc, nbrs):
    """IQ2_XXS's search, seeded by make_qp_quants(32, 4, xval, w); all 4 groups are redone at the
    final scale. Returns -1e30 for a block make_qp_quants zeroes (eff_max <= 0)."""
    Laux = np.zeros(32, np.int32)
    scale = _qp_one(xval, weight, KMAX + 1, Lqp)
    eff_max = np.float32(scale * np.float32(KMAX))
    if eff_max <= 0:
        return np.float32(-1e30)
    for i in range(32):                 # int8 view of make_qp_quants' uint8 levels
        L[i] = np.int32(Lqp[i]) - 256 if Lqp[i] > 127 else np.int32(Lqp[i])
    best = np.float32(0)
    for step in range(-6, 7):
        idv = np.float32(np.float32(np.float32(2 * KMAX - 1)
                                    + np.float32(np.float32(step) * np.float32(0.1))) / eff_max)
        this_scale = np.float32(np.float32(1) / idv)
        for k in range(4):
            u = _group(idv, xval, k, Laux)
            if kmap[u] < 0:
                best_neighbour(pos, nbs, nbc, nbrs, u, xval, waux, 8 * k, this_scale, Laux)
        sumqx, sumq2 = fit(weight, xval, Laux)
        if sumq2 > 0 and np.float32(sumqx * sumqx) > np.float32(best * sumq2):
            scale = np.float32(sumqx / sumq2)
            best = np.float32(scale * sumqx)
            L[:] = Laux
    if scale > 0:
        idv = np.float32(np.float32(1) / scale)
        for k in range(4):
            u = 0
            for i in range(8):
                u |= level(idv, xval[8 * k + i], KMAX) << (2 * i)
            gi = kmap[u]
            if gi < 0:
                gi = best_neighbour(pos, nbs, nbc, nbrs, u, xval, waux, 8 * k, scale, L)
            grid_levels(pos, gi, L, 8 * k)
        sumqx, sumq2 = fit(weight, xval, L)
        if sumq2 > 0:
            scale = np.float32(sumqx / sumq2)
    return scale
