"""The least-squares search behind T-MAC's zero-point codes (method "search" of quant/tmac/core.py).

Per group of gs weights: candidate scales span/c for c in CANDIDATES (as llama.cpp's K-quant
searches: top-1 ... top+1 in steps of 0.1, plus min-max's own), then ITERS rounds of "round the
codes for (s, m), refit (s, m) to those codes by weighted least squares"; the (s, m) of lowest
weighted squared error wins. Weights: the importance matrix of the input columns when given (what
each column's activations cost, llama-imatrix's mean of x^2), else all 1.

Why not weights x^2 + mean(x^2), as before: on SmolLM2 that objective fits the large weights and
leaves biased errors on the small ones; perplexity got worse than min-max's although KL divergence
fell (tests/benchmarks/tmac_heldout.py). Plain squared error with refit iterations is better on
both, and an importance matrix (the activations' energy per column) better still.
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kernels.loader import compiled

STEPS = 20
ITERS = 4


def candidates(top: int) -> np.ndarray:
    return np.array([top - 1 + 0.1 * i for i in range(STEPS + 1)], np.float32)


def group_weights(imatrix: np.ndarray | None, M: int, K: int, group: int) -> np.ndarray:
    """[M * K/group, group] float32: the per-column importance for every group, or ones."""
    if imatrix is None:
        return np.ones((M * (K // group), group), np.float32)
    return np.ascontiguousarray(np.broadcast_to(imatrix.reshape(1, K // group, group),
                                                (M, K // group, group)).reshape(-1, group))


def check_imatrix(imatrix, K: int) -> np.ndarray | None:
    """None, or the vector as float32 [K] with a tiny floor so no column's weight is exactly 0
    (a group of unused columns still gets codes that fit its weights)."""
    if imatrix is None:
        return None
    v = np.asarray(imatrix, dtype=np.float32).reshape(-1)
    if v.shape[0] != K:
        raise ValueError(f"importance matrix has {v.shape[0]} entries for rows of {K} columns")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError("importance matrix has negative or non-finite entries")
    return np.maximum(v, np.float32(1e-6) * max(float(v.mean()), 1e-30)).astype(np.float32)


def search(x: np.ndarray, top: int, off: int, imatrix: np.ndarray | None = None):
    """x [M, ng, gs] float32 (rows in groups), imatrix [ng * gs] or None -> codes uint8
    [M, ng * gs], scales [M, ng], zf [M, ng] (w = s (q - off) - zf)."""
    M, ng, gs = x.shape
    flat = np.ascontiguousarray(x.reshape(-1, gs), dtype=np.float32)
    wts = group_weights(imatrix, M, ng * gs, gs)
    kernels = compiled("tmac.tmac_search_numba")
    if kernels is not None:
        q, s, zf = kernels.search_groups_weighted(flat, wts, top, off, candidates(top), ITERS)
    else:
        q, s, zf = search_numpy(flat, wts, top, off)
    return q.reshape(M, ng * gs), s.reshape(M, ng), zf.reshape(M, ng)


def _fit(x, wt, L, wsum, wx):
    wl = wt * L
    sl, sl2, slx = wl.sum(-1), (wl * L).sum(-1), (wl * x).sum(-1)
    det = wsum * sl2 - sl * sl
    safe = np.where(det > 0, det, 1)
    return (wsum * slx - sl * wx) / safe, (sl2 * wx - sl * slx) / safe, det > 0


def search_numpy(x: np.ndarray, wt: np.ndarray, top: int, off: int):
    """The compiled kernel's search, vectorised over groups (x, wt [n, gs])."""
    lo, hi = x.min(-1), x.max(-1)
    span = np.maximum(hi - lo, np.float32(1e-8))
    wsum, wx = wt.sum(-1), (wt * x).sum(-1)

    def codes(s, m):
        rs = np.where(s > 0, 1 / np.where(s > 0, s, 1), 0)
        return np.clip(np.rint((x - m[:, None]) * rs[:, None]), 0, top)

    def error(s, m):
        return (wt * (s[:, None] * codes(s, m) + m[:, None] - x) ** 2).sum(-1)

    best_s, best_m = span / top, lo
    best_err = error(best_s, best_m)
    for c in candidates(top):
        s, m, live = span / c, lo, np.ones(len(x), bool)
        for _ in range(ITERS):
            ns, nm, ok = _fit(x, wt, codes(s, m), wsum, wx)
            live &= ok & (ns > 0)
            s, m = np.where(live, ns, s), np.where(live, nm, m)
            err = np.where(live, error(s, m), np.inf)
            win = err < best_err
            best_err = np.where(win, err, best_err)
            best_s, best_m = np.where(win, s, best_s), np.where(win, m, best_m)
    q = codes(best_s, best_m).astype(np.uint8)
    return q, best_s.astype(np.float32), (-(best_s * off + best_m)).astype(np.float32)
