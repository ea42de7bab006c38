"""Compiled IQ1_S and IQ1_M quantizers: ports of ggml-quants.c's quantize_row_iq1_s_impl and
quantize_row_iq1_m_impl (this llama.cpp version's IQ1_M search), one 256-weight super-block at
a time (layouts in iq_types.py). Both split each block's weights, sorted ascending, into three
levels exactly; C sorts with qsort on the value only, which glibc (2.36 here) does with a stable
merge sort, so ties keep index order: a stable insertion sort here. Kernels write everything
but the fp16 d, returned as float32 (fudge applied) for numpy to round."""
from __future__ import annotations

import numpy as np
from numba import njit

from tinyconvert.quant.iq.iq_numba import FLT_MAX, block_weights, scale_code, sumsq

DELTA = np.float32(0.125)


@njit(nogil=True, cache=True)
def _sorted_index(xb):
    n = xb.shape[0]
    idx = np.arange(n)
    for j in range(1, n):
        v = idx[j]
        i = j - 1
        while i >= 0 and xb[v] < xb[idx[i]]:
            idx[i + 1] = idx[i]
            i -= 1
        idx[i + 1] = v
    return idx


@njit(nogil=True, cache=True)
def _levels(xx):
    """x_p (shift +) or x_m (shift -) as float32 [3]."""
    out = np.zeros(3, np.float32)
    sgn = np.float32(1) if xx > 0 else np.float32(-1)
    out[0] = np.float32(np.float32(-1) + np.float32(sgn * DELTA))
    out[1] = np.float32(sgn * DELTA)
    out[2] = np.float32(np.float32(1) + np.float32(sgn * DELTA))
    return out


@njit(nogil=True, cache=True)
def _neighbour2(pos, nbs, nbc, nbrs, u, xb, weight, off, scale, xx, L):
    """iq1_find_best_neighbour2 (its full-grid fallback runs only on non-finite distances and is
    not ported: it reads past its input in C)."""
    best = FLT_MAX
    gi = -1
    for j in range(nbs[u], nbs[u] + nbc[u]):
        g = nbrs[j]
        d2 = np.float32(0)
        for i in range(8):
            q = xx[(np.int32(pos[g, i]) - 1) // 2]
            diff = np.float32(np.float32(scale * q) - xb[off + i])
            d2 = np.float32(d2 + np.float32(np.float32(weight[off + i] * diff) * diff))
        if d2 < best:
            best = d2
            gi = g
    if gi < 0:
        raise ValueError("IQ1: no finite grid distance (non-finite weights)")
    for i in range(8):
        L[off + i] = (np.int32(pos[gi, i]) - 1) // 2
    return gi


@njit(nogil=True, cache=True)
def _to_grid(L, xb, weight, scale, shift_of, pos, kmap, nbs, nbc, nbrs, index):
    """Map each 8-group to the grid (or its best neighbour); refit the scale if any was off."""
    ngroups = index.shape[0]
    all_on = True
    for k in range(ngroups):
        u = 0
        for j in range(8):
            u |= L[8 * k + j] << (2 * j)
        gi = kmap[u]
        if gi < 0:
            all_on = False
            gi = _neighbour2(pos, nbs, nbc, nbrs, u, xb, weight, 8 * k, scale,
                             _levels(shift_of[k]), L)
        index[k] = gi
    if not all_on:
        sqx = np.float32(0)
        sq2 = np.float32(0)
        for k in range(ngroups):
            xx = _levels(shift_of[k])
            for j in range(8):
                w = weight[8 * k + j]
                q = xx[(np.int32(pos[index[k], j]) - 1) // 2]
                sqx = np.float32(sqx + np.float32(np.float32(w * q) * xb[8 * k + j]))
                sq2 = np.float32(sq2 + np.float32(np.float32(w * q) * q))
        if sqx > 0 and sq2 > 0:
            scale = np.float32(sqx / sq2)
    return scale


@njit(nogil=True, cache=True)
def _split_s(xb, weight, L):
    """IQ1_S's exhaustive 3-level split of a 32-block -> (scale, shift 1/-1, or 0 if none)."""
    n = 32
    idx = _sorted_index(xb)
    sx = np.zeros(n + 1, np.float32)
    sw = np.zeros(n + 1, np.float32)
    for j in range(n):
        i = idx[j]
        sx[j + 1] = np.float32(sx[j] + np.float32(weight[i] * xb[i]))
        sw[j + 1] = np.float32(sw[j] + weight[i])
    best = -FLT_MAX
    scale = np.float32(0)
    b1 = -1
    b2 = -1
    shift = 0
    vp = _levels(1)
    vm = _levels(-1)
    for i1 in range(n + 1):
        for i2 in range(i1, n + 1):
            a, b, c = np.float32(sx[i1] - sx[0]), np.float32(sx[i2] - sx[i1]), \
                np.float32(sx[n] - sx[i2])
            wa, wb, wc = np.float32(sw[i1] - sw[0]), np.float32(sw[i2] - sw[i1]), \
                np.float32(sw[n] - sw[i2])
            for sgn in (1, -1):
                v = vp if sgn == 1 else vm
                sumqx = np.float32(np.float32(np.float32(a * v[0]) + np.float32(b * v[1]))
                                   + np.float32(c * v[2]))
                sumq2 = np.float32(np.float32(np.float32(np.float32(wa * v[0]) * v[0])
                                              + np.float32(np.float32(wb * v[1]) * v[1]))
                                   + np.float32(np.float32(wc * v[2]) * v[2]))
                if sumq2 > 0 and np.float32(sumqx * sumqx) > np.float32(best * sumq2):
                    scale = np.float32(sumqx / sumq2)
                    best = np.float32(scale * sumqx)
                    b1 = i1
                    b2 = i2
                    shift = sgn
    if b1 < 0 or b2 < 0 or shift == 0:
        return np.float32(0), 0
    for j in range(n):
        L[idx[j]] = 0 if j < b1 else 1 if j < b2 else 2
    return scale, shift


@njit(nogil=True, cache=True)
def iq1_s(x, qw, has_qw, pos, kmap, nbs, nbc, nbrs):
    """-> (blocks uint8 [n_rows, k/256, 50]: d | qs[32] | qh u16[8], d float32)."""
    n_rows, k = x.shape
    nbl = k // 256
    out = np.zeros((n_rows, nbl, 50), np.uint8)
    dout = np.zeros((n_rows, nbl), np.float32)
    weight = np.zeros(32, np.float32)
    waux = np.zeros(32, np.float32)
    L = np.zeros(32, np.int32)
    index = np.zeros(4, np.int32)
    shift_of = np.zeros(4, np.int32)
    scales = np.zeros(8, np.float32)
    shifts = np.zeros(8, np.int32)
    qh = np.zeros(8, np.int32)
    for r in range(n_rows):
        for ibl in range(nbl):
            blk = out[r, ibl]
            xbl = x[r, 256 * ibl:256 * ibl + 256]
            sigma2 = np.float32(np.float32(np.float32(2) * sumsq(xbl)) / np.float32(256))
            max_scale = np.float32(0)
            for ib in range(8):
                xb = xbl[32 * ib:32 * ib + 32]
                block_weights(xb, qw[256 * ibl + 32 * ib:], True, sigma2, weight, waux)
                mx = abs(xb[0])
                for i in range(1, 32):
                    mx = mx if mx > abs(xb[i]) else abs(xb[i])
                scales[ib] = 0
                shifts[ib] = 1
                qh[ib] = 0
                if mx < np.float32(1e-12):
                    continue
                scale, shift = _split_s(xb, weight, L)
                if shift == 0:
                    continue
                if scale < 0:
                    for j in range(32):
                        L[j] = 2 - L[j]
                    scale = -scale
                    shift = -shift
                shift_of[:] = shift
                scale = _to_grid(L, xb, weight, scale, shift_of, pos, kmap, nbs, nbc, nbrs, index)
                for j in range(4):
                    blk[2 + 4 * ib + j] = index[j] & 255
                    qh[ib] |= (index[j] >> 8) << (3 * j)
                scales[ib] = scale
                shifts[ib] = shift
                max_scale = max_scale if max_scale > scale else scale
            if max_scale:
                d = np.float32(max_scale / np.float32(15))
                dout[r, ibl] = np.float32(d * np.float32(1.125))
                idv = np.float32(np.float32(1) / d)
                for ib in range(8):
                    l = scale_code(idv, scales[ib], 7)
                    if shifts[ib] == -1:
                        l |= 8
                    qh[ib] |= l << 12
            for ib in range(8):
                blk[34 + 2 * ib] = qh[ib] & 255
                blk[35 + 2 * ib] = (qh[ib] >> 8) & 255
    return out, dout


@njit(nogil=True, cache=True)
def _split_m(xb, weight, L):
    """IQ1_M's exhaustive split of a 16-block with one shift per 8-half, prefix sums kept per
    half -> (scale, k: 0 ++, 1 +-, 2 -+, 3 --, or -1 if none)."""
    n = 16
    idx = _sorted_index(xb)
    px = np.zeros((2, n + 1), np.float32)
    pw = np.zeros((2, n + 1), np.float32)
    for j in range(n):
        i = idx[j]
        h = 0 if i < n // 2 else 1
        px[h, j + 1] = np.float32(px[h, j] + np.float32(weight[i] * xb[i]))
        px[1 - h, j + 1] = px[1 - h, j]
        pw[h, j + 1] = np.float32(pw[h, j] + weight[i])
        pw[1 - h, j + 1] = pw[1 - h, j]
    vp = _levels(1)
    vm = _levels(-1)
    p2, m2 = vp[2], vm[2]
    cp1 = np.float32(np.float32(vp[0] * vp[0]) - np.float32(vp[1] * vp[1]))
    cp2 = np.float32(np.float32(vp[1] * vp[1]) - np.float32(vp[2] * vp[2]))
    cm1 = np.float32(np.float32(vm[0] * vm[0]) - np.float32(vm[1] * vm[1]))
    cm2 = np.float32(np.float32(vm[1] * vm[1]) - np.float32(vm[2] * vm[2]))
    qxp = np.zeros(2, np.float32)
    qxm = np.zeros(2, np.float32)
    q2p = np.zeros(2, np.float32)
    q2m = np.zeros(2, np.float32)
    sqx = np.zeros(4, np.float32)
    sq2 = np.zeros(4, np.float32)
    best = -FLT_MAX
    scale = np.float32(0)
    b1 = -1
    b2 = -1
    bk = -1
    for i1 in range(n + 1):
        for i2 in range(i1, n + 1):
            for h in range(2):
                sx = np.float32(px[h, i1] + px[h, i2])
                qxp[h] = np.float32(np.float32(px[h, n] * p2) - sx)
                qxm[h] = np.float32(np.float32(px[h, n] * m2) - sx)
                q2p[h] = np.float32(np.float32(np.float32(np.float32(pw[h, n] * p2) * p2)
                                               + np.float32(pw[h, i1] * cp1))
                                    + np.float32(pw[h, i2] * cp2))
                q2m[h] = np.float32(np.float32(np.float32(np.float32(pw[h, n] * m2) * m2)
                                               + np.float32(pw[h, i1] * cm1))
                                    + np.float32(pw[h, i2] * cm2))
            sqx[0] = np.float32(qxp[0] + qxp[1])
            sqx[1] = np.float32(qxp[0] + qxm[1])
            sqx[2] = np.float32(qxm[0] + qxp[1])
            sqx[3] = np.float32(qxm[0] + qxm[1])
            sq2[0] = np.float32(q2p[0] + q2p[1])
            sq2[1] = np.float32(q2p[0] + q2m[1])
            sq2[2] = np.float32(q2m[0] + q2p[1])
            sq2[3] = np.float32(q2m[0] + q2m[1])
            for k in range(4):
                if sq2[k] > 0 and np.float32(sqx[k] * sqx[k]) > np.float32(best * sq2[k]):
                    scale = np.float32(sqx[k] / sq2[k])
                    best = np.float32(scale * sqx[k])
                    b1 = i1
                    b2 = i2
                    bk = k
    if b1 < 0 or b2 < 0 or bk < 0:
        return np.float32(0), -1
    for j in range(n):
        L[idx[j]] = 0 if j < b1 else 1 if j < b2 else 2
    return scale, bk


@njit(nogil=True, cache=True)
def _m_weights(xb, qw, has_qw, sigma2, weight):
    for i in range(16):
        x2 = np.float32(xb[i] * xb[i])
        weight[i] = np.float32(qw[i] * np.float32(np.sqrt(np.float32(sigma2 + x2)))) \
            if has_qw else x2


@njit(nogil=True, cache=True)
def iq1_m(x, qw, has_qw, pos, kmap, nbs, nbc, nbrs):
    """-> (blocks uint8 [n_rows, k/256, 56]: qs[32] | qh[16] | scales u16[4] without the d
    nibbles, d float32 = the least-squares refit times 1.1125)."""
    n_rows, k = x.shape
    nbl = k // 256
    out = np.zeros((n_rows, nbl, 56), np.uint8)
    dout = np.zeros((n_rows, nbl), np.float32)
    weight = np.zeros(16, np.float32)
    L = np.zeros(16, np.int32)
    index = np.zeros(2, np.int32)
    shift_of = np.zeros(2, np.int32)
    scales = np.zeros(16, np.float32)
    shifts = np.zeros(16, np.int32)
    masks = (0x00, 0x80, 0x08, 0x88)
    for r in range(n_rows):
        for ibl in range(nbl):
            blk = out[r, ibl]
            xbl = x[r, 256 * ibl:256 * ibl + 256]
            sigma2 = np.float32(np.float32(np.float32(2) * sumsq(xbl)) / np.float32(256))
            max_scale = np.float32(0)
            for ib in range(16):
                xb = xbl[16 * ib:16 * ib + 16]
                _m_weights(xb, qw[256 * ibl + 16 * ib:], has_qw, sigma2, weight)
                mx = abs(xb[0])
                for i in range(1, 16):
                    mx = mx if mx > abs(xb[i]) else abs(xb[i])
                scales[ib] = 0
                shifts[ib] = 0
                if mx < np.float32(1e-7):
                    continue
                scale, bk = _split_m(xb, weight, L)
                if bk < 0:
                    continue
                if scale < 0:
                    for j in range(16):
                        L[j] = 2 - L[j]
                    scale = -scale
                    bk = 3 - bk
                shift_of[0] = 1 if bk < 2 else -1
                shift_of[1] = 1 if bk % 2 == 0 else -1
                scale = _to_grid(L, xb, weight, scale, shift_of, pos, kmap, nbs, nbc, nbrs, index)
                blk[2 * ib] = index[0] & 255
                blk[2 * ib + 1] = index[1] & 255
                blk[32 + ib] = (index[0] >> 8) | ((index[1] >> 8) << 4)
                scales[ib] = scale
                shifts[ib] = bk
                max_scale = max_scale if max_scale > scale else scale
            if not max_scale:
                continue
            d = np.float32(max_scale / np.float32(15))
            idv = np.float32(np.float32(1) / d)
            sqx = np.float32(0)
            sq2 = np.float32(0)
            sc = np.zeros(4, np.int64)
            for ib in range(16):
                l = scale_code(idv, scales[ib], 7)
                sc[ib // 4] |= l << (3 * (ib % 4))
                blk[32 + ib] |= masks[shifts[ib]]
                xb = xbl[16 * ib:16 * ib + 16]
                _m_weights(xb, qw[256 * ibl + 16 * ib:], has_qw, sigma2, weight)
                qh = np.int64(blk[32 + ib])
                for kk in range(2):
                    sgn = (1 if shifts[ib] < 2 else -1) if kk == 0 else \
                        (1 if shifts[ib] % 2 == 0 else -1)
                    xx = _levels(sgn)
                    g = np.int64(blk[2 * ib + kk]) + ((qh << (8 - 4 * kk)) & 0x700)
                    for j in range(8):
                        w = weight[8 * kk + j]
                        q = np.float32(xx[(np.int32(pos[g, j]) - 1) // 2] * np.float32(2 * l + 1))
                        sqx = np.float32(sqx + np.float32(np.float32(w * q) * xb[8 * kk + j]))
                        sq2 = np.float32(sq2 + np.float32(np.float32(w * q) * q))
            if sq2 > 0:
                d = np.float32(sqx / sq2)
            dout[r, ibl] = np.float32(d * np.float32(1.1125))
            for j in range(4):
                blk[48 + 2 * j] = sc[j] & 255
                blk[49 + 2 * j] = (sc[j] >> 8) & 255
    return out, dout
