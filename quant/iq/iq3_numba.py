"""Compiled IQ3_XXS and IQ3_S quantizers: ports of ggml-quants.c's quantize_row_iq3_xxs_impl
(grid 256) and quantize_row_iq3_s_impl (grid 512, block 32), one 256-weight super-block at a
time. The block layouts are in iq3.py. Each kernel writes everything but the fp16 d, which it
returns as float32 (fudge factor applied) for numpy to round."""
from __future__ import annotations

import numpy as np
from numba import njit

from tinyconvert.quant.iq.iq_numba import (best_neighbour, block_weights, fit, grid_levels, level,
                                        put_u32, scale_code, signs_of, sumsq, vmax)

KMAX = 8


@njit(nogil=True, cache=True)
def _search(xval, weight, waux, L, mx, nis, init_on, refine_all, pos, kmap, nbs, nbc, nbrs,
            Laux, on, on_aux):
    """The scale search over the 8 groups of 4 of one 32-block -> scale (L set); Laux, on,
    on_aux are scratch (int32 [32], bool [8], bool [8])."""
    best = np.float32(0)
    scale = np.float32(mx / np.float32(2 * KMAX - 1))
    for k in range(8):
        on[k] = init_on
    for step in range(-nis, nis + 1):
        idv = np.float32(np.float32(np.float32(2 * KMAX - 1)
                                    + np.float32(np.float32(step) * np.float32(0.2))) / mx)
        this_scale = np.float32(np.float32(1) / idv)
        for k in range(8):
            u = 0
            for i in range(4):
                l = level(idv, xval[4 * k + i], KMAX)
                Laux[4 * k + i] = l
                u |= l << (3 * i)
            on_aux[k] = True
            if kmap[u] < 0:
                on_aux[k] = False
                best_neighbour(pos, nbs, nbc, nbrs, u, xval, waux, 4 * k, this_scale, Laux)
        sumqx, sumq2 = fit(weight, xval, Laux)
        if sumq2 > 0 and np.float32(sumqx * sumqx) > np.float32(best * sumq2):
            scale = np.float32(sumqx / sumq2)
            best = np.float32(scale * sumqx)
            for i in range(32):
                L[i] = Laux[i]
            for i in range(8):
                on[i] = on_aux[i]
    n_off = 0
    for k in range(8):
        if not on[k]:
            n_off += 1
    if n_off > 0 and scale > 0:
        idv = np.float32(np.float32(1) / scale)
        for k in range(8):
            if on[k] and not refine_all:
                continue
            u = 0
            for i in range(4):
                u |= level(idv, xval[4 * k + i], KMAX) << (3 * i)
            gi = kmap[u]
            if gi < 0:
                gi = best_neighbour(pos, nbs, nbc, nbrs, u, xval, waux, 4 * k, scale, L)
            grid_levels(pos, gi, L, 4 * k)
        sumqx, sumq2 = fit(weight, xval, L)
        if sumq2 > 0:
            scale = np.float32(sumqx / sumq2)
    return scale


@njit(nogil=True, cache=True)
def _code(L, k, kmap):
    u = 0
    for i in range(4):
        u |= L[4 * k + i] << (3 * i)
    return kmap[u]


@njit(nogil=True, cache=True)
def iq3_xxs(x, qw, has_qw, pos, kmap, nbs, nbc, nbrs):
    """x float32 [n_rows, k] -> (blocks uint8 [n_rows, k/256, 98] with d left 0, d float32)."""
    n_rows, k = x.shape
    nbl = k // 256
    out = np.zeros((n_rows, nbl, 98), np.uint8)
    dout = np.zeros((n_rows, nbl), np.float32)
    weight = np.zeros(32, np.float32)
    waux = np.zeros(32, np.float32)
    xval = np.zeros(32, np.float32)
    L = np.zeros(32, np.int32)
    Laux = np.zeros(32, np.int32)
    on = np.zeros(8, np.bool_)
    on_aux = np.zeros(8, np.bool_)
    signs = np.zeros(4, np.int32)
    scales = np.zeros(8, np.float32)
    sas = np.zeros(8, np.int64)
    for r in range(n_rows):
        for ibl in range(nbl):
            xbl = x[r, 256 * ibl:256 * ibl + 256]
            sigma2 = np.float32(np.float32(np.float32(2) * sumsq(xbl)) / np.float32(256))
            q3 = out[r, ibl, 2:66]
            max_scale = np.float32(0)
            for ib in range(8):
                xb = xbl[32 * ib:32 * ib + 32]
                block_weights(xb, qw[256 * ibl + 32 * ib:], has_qw, sigma2, weight, waux)
                signs_of(xb, weight, xval, 4, True, signs)
                mx = vmax(xval)
                L[:] = 0
                sas[ib] = 0
                if mx < np.float32(1e-8):
                    scales[ib] = 0
                    continue
                scale = _search(xval, weight, waux, L, mx, 15, True, False, pos, kmap, nbs, nbc,
                                nbrs, Laux, on, on_aux)
                if scale < 0:
                    scale = -scale
                    for j in range(4):
                        signs[j] = (~signs[j]) & 127
                for j in range(8):
                    q3[8 * ib + j] = _code(L, j, kmap)
                sas[ib] = signs[0] | (signs[1] << 7) | (signs[2] << 14) | (signs[3] << 21)
                scales[ib] = scale
                max_scale = max_scale if max_scale > scale else scale
            if not max_scale:
                q3[:] = 0
                continue
            d = np.float32(max_scale / np.float32(31))
            dout[r, ibl] = np.float32(d * np.float32(1.0125))
            idv = np.float32(np.float32(1) / d)
            for ib in range(8):
                put_u32(out[r, ibl], 66 + 4 * ib, sas[ib] | (scale_code(idv, scales[ib], 15) << 28))
    return out, dout


@njit(nogil=True, cache=True)
def iq3_s(x, qw, has_qw, pos, kmap, nbs, nbc, nbrs):
    """x float32 [n_rows, k] -> (blocks uint8 [n_rows, k/256, 110] with d left 0, d float32).
    As in C, a 32-block whose weights are all zero does not advance the qs and signs cursors."""
    n_rows, k = x.shape
    nbl = k // 256
    out = np.zeros((n_rows, nbl, 110), np.uint8)
    dout = np.zeros((n_rows, nbl), np.float32)
    weight = np.zeros(32, np.float32)
    waux = np.zeros(32, np.float32)
    xval = np.zeros(32, np.float32)
    L = np.zeros(32, np.int32)
    Laux = np.zeros(32, np.int32)
    on = np.zeros(8, np.bool_)
    on_aux = np.zeros(8, np.bool_)
    signs = np.zeros(4, np.int32)
    scales = np.zeros(8, np.float32)
    for r in range(n_rows):
        for ibl in range(nbl):
            blk = out[r, ibl]                   # d 0:2 | qs 2:66 | qh 66:74 | signs 74:106 | sc
            xbl = x[r, 256 * ibl:256 * ibl + 256]
            sigma2 = np.float32(np.float32(np.float32(2) * sumsq(xbl)) / np.float32(256))
            max_scale = np.float32(0)
            qs_at = 2
            sg_at = 74
            for ib in range(8):
                xb = xbl[32 * ib:32 * ib + 32]
                block_weights(xb, qw[256 * ibl + 32 * ib:], has_qw, sigma2, weight, waux)
                signs_of(xb, weight, xval, 4, False, signs)
                mx = vmax(xval)
                L[:] = 0
                if not mx:
                    scales[ib] = 0
                    continue
                scale = _search(xval, weight, waux, L, mx, 9, False, True, pos, kmap, nbs, nbc,
                                nbrs, Laux, on, on_aux)
                if scale < 0:
                    scale = -scale
                    for j in range(4):
                        signs[j] = (~signs[j]) & 255
                for j in range(8):
                    gi = _code(L, j, kmap)
                    blk[qs_at + j] = gi & 255
                    blk[66 + ib] |= (gi >> 8) << j
                qs_at += 8
                for j in range(4):
                    blk[sg_at + j] = signs[j]
                sg_at += 4
                scales[ib] = scale
                max_scale = max_scale if max_scale > scale else scale
            if not max_scale:
                continue
            d = np.float32(max_scale / np.float32(31))
            dout[r, ibl] = np.float32(d * np.float32(1.033))
            idv = np.float32(np.float32(1) / d)
            for ib in range(0, 8, 2):
                blk[106 + ib // 2] = scale_code(idv, scales[ib], 15) | \
                    (scale_code(idv, scales[ib + 1], 15) << 4)
    return out, dout
