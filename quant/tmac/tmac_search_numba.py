"""Compiled least-squares search for T-MAC's zero-point codes (quant/tmac/tmac_search.py); needs numba.

Per group: candidate codes from a range of scales, then alternately refit (s, m) by weighted
least squares and re-round the codes, keeping the (s, m) of lowest weighted squared error.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(inline="always")
def _codes_fit(row, wt, s, m, ftop, wsum, wx):
    """Codes for (s, m), then the weighted least-squares (s, m) for those codes."""
    rs = np.float32(1) / s if s > 0 else np.float32(0)
    sl, sl2, slx = np.float32(0), np.float32(0), np.float32(0)
    for i in range(row.shape[0]):
        L = min(max(np.float32(np.rint((row[i] - m) * rs)), np.float32(0)), ftop)
        wl = wt[i] * L
        sl += wl
        sl2 += wl * L
        slx += wl * row[i]
    det = wsum * sl2 - sl * sl
    if det <= 0:
        return s, m, False
    return (wsum * slx - sl * wx) / det, (sl2 * wx - sl * slx) / det, True


@njit(inline="always")
def _error(row, wt, s, m, ftop):
    rs = np.float32(1) / s if s > 0 else np.float32(0)
    err = np.float32(0)
    for i in range(row.shape[0]):
        L = min(max(np.float32(np.rint((row[i] - m) * rs)), np.float32(0)), ftop)
        d = s * L + m - row[i]
        err += wt[i] * d * d
    return err


@njit(parallel=True, nogil=True, cache=True, fastmath=True)
def search_groups_weighted(x, wts, top, off, cands, iters):
    """x, wts [n, gs] float32; cands: scale candidates as codes per span. -> codes, scales, zf."""
    n, gs = x.shape
    codes = np.zeros((n, gs), np.uint8)
    scales = np.zeros(n, np.float32)
    zfs = np.zeros(n, np.float32)
    ftop = np.float32(top)
    for g in prange(n):
        row, wt = x[g], wts[g]
        lo, hi = row[0], row[0]
        wsum, wx = np.float32(0), np.float32(0)
        for i in range(gs):
            lo, hi = min(lo, row[i]), max(hi, row[i])
            wsum += wt[i]
            wx += wt[i] * row[i]
        span = max(hi - lo, np.float32(1e-8))
        best_s, best_m = span / ftop, lo
        best_err = _error(row, wt, best_s, best_m, ftop)
        for c in cands:
            s, m, last = span / np.float32(c), lo, np.float32(3e38)   # (fastmath: no inf)
            for _ in range(iters):
                s, m, ok = _codes_fit(row, wt, s, m, ftop, wsum, wx)
                if not ok or s <= 0:
                    break
                err = _error(row, wt, s, m, ftop)
                if err < best_err:
                    best_err, best_s, best_m = err, s, m
                if err >= last:          # the codes stopped changing: later rounds repeat this
                    break
                last = err
        rs = np.float32(1) / best_s
        for i in range(gs):
            codes[g, i] = np.uint8(min(max(np.rint((row[i] - best_m) * rs), 0), ftop))
        scales[g] = best_s
        zfs[g] = -(best_s * off + best_m)
    return codes, scales, zfs
