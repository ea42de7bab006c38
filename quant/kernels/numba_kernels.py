"""Compiled (numba) versions of the per-block search loops of the K-quants and IQ4_NL: the same
statements as make_qkx2_quants, make_qx_quants (rmse_type 1), make_q3_quants and the IQ4_NL scale
search, one block at a time, in float32 (every constant and int is cast, so nothing is promoted to
float64 the way C would not). The vectorised numpy versions in kquants.py / kquants_low.py /
ternary_iq4.py stay the reference; tests hold both to llama.cpp's bytes.

Functions release the GIL, so the writer's thread pool runs them in parallel. This module is
imported only when a K-quant or IQ4_NL is first needed (tinyconvert.quant.kernels.loader.compiled).
"""
from __future__ import annotations

import numpy as np
from numba import njit

F = np.float32
MAGIC = F(12582912.0)          # 1.5 * 2^23: adding it rounds a float32 to an integer, ties even
EPS = F(1e-15)


@njit(nogil=True, cache=True)
def _nearest(v):
    return np.int32(np.float32(v + MAGIC)) - np.int32(12582912)


@njit(nogil=True, cache=True)
def qkx2(x, w, nmax, rmin, rdelta, nstep, use_mad):
    """make_qkx2_quants for each row of x (float32 [B, n]) -> (L uint8 [B, n], scale, -min)."""
    B, n = x.shape
    L = np.zeros((B, n), np.uint8)
    scales = np.zeros(B, np.float32)
    mins = np.zeros(B, np.float32)
    Laux = np.zeros(n, np.uint8)
    fnmax = np.float32(nmax)
    for b in range(B):
        mn = x[b, 0]
        mx = x[b, 0]
        sum_w = w[b, 0]
        sum_x = np.float32(sum_w * x[b, 0])
        for i in range(1, n):
            if x[b, i] < mn:
                mn = x[b, i]
            if x[b, i] > mx:
                mx = x[b, i]
            sum_w = np.float32(sum_w + w[b, i])
            sum_x = np.float32(sum_x + np.float32(w[b, i] * x[b, i]))
        if mn > 0:
            mn = np.float32(0)
        if mx == mn:
            scales[b] = np.float32(0)
            mins[b] = -mn
            continue
        iscale = np.float32(fnmax / np.float32(mx - mn))
        scale = np.float32(np.float32(1) / iscale)
        best = np.float32(0)
        for i in range(n):
            l = _nearest(np.float32(iscale * np.float32(x[b, i] - mn)))
            l = max(0, min(nmax, l))
            L[b, i] = l
            d = np.float32(np.float32(np.float32(scale * np.float32(l)) + mn) - x[b, i])
            d = abs(d) if use_mad else np.float32(d * d)
            best = np.float32(best + np.float32(w[b, i] * d))
        for step in range(nstep + 1):
            iscale = np.float32(np.float32(np.float32(rmin + np.float32(rdelta * np.float32(step)))
                                           + fnmax) / np.float32(mx - mn))
            sum_l = np.float32(0)
            sum_l2 = np.float32(0)
            sum_xl = np.float32(0)
            for i in range(n):
                l = _nearest(np.float32(iscale * np.float32(x[b, i] - mn)))
                l = max(0, min(nmax, l))
                Laux[i] = l
                fl = np.float32(l)
                wl = np.float32(w[b, i] * fl)
                sum_l = np.float32(sum_l + wl)
                sum_l2 = np.float32(sum_l2 + np.float32(wl * fl))
                sum_xl = np.float32(sum_xl + np.float32(wl * x[b, i]))
            D = np.float32(np.float32(sum_w * sum_l2) - np.float32(sum_l * sum_l))
            if D > 0:
                this_scale = np.float32(np.float32(np.float32(sum_w * sum_xl)
                                                   - np.float32(sum_x * sum_l)) / D)
                this_min = np.float32(np.float32(np.float32(sum_l2 * sum_x)
                                                 - np.float32(sum_l * sum_xl)) / D)
                if this_min > 0:
                    this_min = np.float32(0)
                    this_scale = np.float32(sum_xl / sum_l2)
                cur = np.float32(0)
                for i in range(n):
                    d = np.float32(np.float32(np.float32(this_scale * np.float32(Laux[i]))
                                              + this_min) - x[b, i])
                    d = abs(d) if use_mad else np.float32(d * d)
                    cur = np.float32(cur + np.float32(w[b, i] * d))
                if cur < best:
                    for i in range(n):
                        L[b, i] = Laux[i]
                    best = cur
                    scale = this_scale
                    mn = this_min
        scales[b] = scale
        mins[b] = -mn
    return L, scales, mins


@njit(nogil=True, cache=True)
def _absmax_first(row):
    amax = np.float32(0)
    mx = np.float32(0)
    for i in range(row.shape[0]):
        ax = abs(row[i])
        if ax > amax:
            amax = ax
            mx = row[i]
    return amax, mx


@njit(nogil=True, cache=True)
def _sums(row, nmax, iscale, Lrow):
    sumlx = np.float32(0)
    suml2 = np.float32(0)
    for i in range(row.shape[0]):
        l = _nearest(np.float32(iscale * row[i]))
        l = max(-nmax, min(nmax - 1, l))
        Lrow[i] = l
        fl = np.float32(l)
        w = np.float32(row[i] * row[i])
        sumlx = np.float32(sumlx + np.float32(np.float32(w * row[i]) * fl))
        suml2 = np.float32(suml2 + np.float32(np.float32(w * fl) * fl))
    return sumlx, suml2


@njit(nogil=True, cache=True)
def qx_rmse1(x, nmax):
    """make_qx_quants(n, nmax, x, L, 1, NULL) per row -> (L int32 [B, n] in [0, 2 nmax), scale)."""
    B, n = x.shape
    L = np.zeros((B, n), np.int32)
    scales = np.zeros(B, np.float32)
    Lt = np.zeros(n, np.int32)
    fnmax = np.float32(nmax)
    for b in range(B):
        amax, mx = _absmax_first(x[b])
        if amax < EPS:
            continue
        sumlx, suml2 = _sums(x[b], nmax, np.float32(-fnmax / mx), L[b])
        scale = np.float32(sumlx / suml2) if suml2 != 0 else np.float32(0)
        best = np.float32(scale * sumlx)
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = np.float32(-np.float32(fnmax + np.float32(np.float32(0.1) * np.float32(step)))
                                / mx)
            sumlx, suml2 = _sums(x[b], nmax, iscale, Lt)
            if suml2 > 0 and np.float32(sumlx * sumlx) > np.float32(best * suml2):
                L[b, :] = Lt
                scale = np.float32(sumlx / suml2)
                best = np.float32(scale * sumlx)
        scales[b] = scale
        for i in range(n):
            L[b, i] += nmax
    return L, scales


@njit(nogil=True, cache=True)
def q3(x, nmax):
    """make_q3_quants(n, nmax, x, L, true) per row -> (L int32 in [0, 2 nmax), scale)."""
    B, n = x.shape
    L = np.zeros((B, n), np.int32)
    scales = np.zeros(B, np.float32)
    for b in range(B):
        amax, mx = _absmax_first(x[b])
        if amax < EPS:
            continue
        sumlx, suml2 = _sums(x[b], nmax, np.float32(-np.float32(nmax) / mx), L[b])
        for _ in range(5):
            changed = 0
            for i in range(n):
                xi = x[b, i]
                w = np.float32(xi * xi)
                li = np.float32(L[b, i])
                slx = np.float32(sumlx - np.float32(np.float32(w * xi) * li))
                if slx > 0:
                    sl2 = np.float32(suml2 - np.float32(np.float32(w * li) * li))
                    new = _nearest(np.float32(np.float32(xi * sl2) / slx))
                    new = max(-nmax, min(nmax - 1, new))
                    if new != L[b, i]:
                        fn = np.float32(new)
                        slx = np.float32(slx + np.float32(np.float32(w * xi) * fn))
                        sl2 = np.float32(sl2 + np.float32(np.float32(w * fn) * fn))
                        if sl2 > 0 and np.float32(np.float32(slx * slx) * suml2) > \
                                np.float32(np.float32(sumlx * sumlx) * sl2):
                            L[b, i] = new
                            sumlx = slx
                            suml2 = sl2
                            changed += 1
            if changed == 0:
                break
        for i in range(n):
            L[b, i] += nmax
        scales[b] = np.float32(sumlx / suml2) if suml2 > 0 else np.float32(0)
    return L, scales


@njit(nogil=True, cache=True)
def _best_index(values, v):
    if v <= np.float32(values[0]):
        return 0
    if v >= np.float32(values[15]):
        return 15
    lo = 0
    hi = 15
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if v < np.float32(values[mid]):
            hi = mid
        else:
            lo = mid
    return hi - 1 if np.float32(v - np.float32(values[hi - 1])) < \
        np.float32(np.float32(values[hi]) - v) else hi


@njit(nogil=True, cache=True)
def _iq4_sums(values, row, inv):
    sumqx = np.float32(0)
    sumq2 = np.float32(0)
    for j in range(row.shape[0]):
        q = np.float32(values[_best_index(values, np.float32(inv * row[j]))])
        w = np.float32(row[j] * row[j])
        sumqx = np.float32(sumqx + np.float32(np.float32(w * q) * row[j]))
        sumq2 = np.float32(sumq2 + np.float32(np.float32(w * q) * q))
    return sumqx, sumq2


@njit(nogil=True, cache=True)
def iq4nl_scales(x, values):
    """The IQ4_NL per-block scale search (ntry 7, no importance matrix) -> d [B]."""
    B = x.shape[0]
    out = np.zeros(B, np.float32)
    for b in range(B):
        amax, mx = _absmax_first(x[b])
        if amax < EPS:
            continue
        d = np.float32(-mx / np.float32(values[0]))
        sumqx, sumq2 = _iq4_sums(values, x[b], np.float32(np.float32(1) / d))
        d = np.float32(sumqx / sumq2) if sumq2 > 0 else np.float32(0)
        best = np.float32(d * sumqx)
        for itry in range(-7, 8):
            sumqx, sumq2 = _iq4_sums(values, x[b], np.float32(np.float32(itry + values[0]) / mx))
            if sumq2 > 0 and np.float32(sumqx * sumqx) > np.float32(best * sumq2):
                d = np.float32(sumqx / sumq2)
                best = np.float32(d * sumqx)
        out[b] = d
    return out
