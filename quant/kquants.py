"""K-quants Q4_K, Q5_K and Q6_K: bit-exact ports of ggml-quants.c's quantize_row_q4_K_ref,
quantize_row_q5_K_ref and quantize_row_q6_K_ref (what llama.cpp runs without an importance
matrix), with their helpers make_qkx2_quants and make_qx_quants. Every block is processed at
once; loops over the weights of a block keep C's order, because float sums must round the same:
np.add.accumulate adds strictly left to right (np.sum would pair them up).

    Q4_K (144 B / 256): | d f16 | dmin f16 | scales[12] | qs[128] |   x = d*sc[j]*q - dmin*m[j]
    Q5_K (176 B / 256): | d f16 | dmin f16 | scales[12] | qh[32] | qs[128] |
    Q6_K (210 B / 256): | ql[128] | qh[64] | scales[16] i8 | d f16 |  x = d*sc[j]*(q - 32)
scales[12] packs 8 six-bit scales and 8 six-bit mins: bytes 0-3 sc0-3 (+ top bits of sc4-7),
bytes 4-7 m0-3 (+ top bits of m4-7), bytes 8-11 low nibbles of sc4-7 | m4-7 << 4.
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kernels.fused import quantize_rows
from tinyconvert.quant.kernels.loader import compiled
from tinyconvert.quant.registry import QuantType, register

QK_K = 256
F = np.float32
GROUP_MAX_EPS = F(1e-15)


def nearest_int(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int: add 1.5 * 2^23 in float32 and read the mantissa (ties to even)."""
    bits = (np.asarray(v, dtype=F) + F(12582912.0)).view(np.int32)
    return (bits & 0x007FFFFF) - 0x00400000


def seq_sum(a: np.ndarray) -> np.ndarray:
    """Left-to-right float32 sum over the last axis, as a C loop adds."""
    return np.add.accumulate(a.astype(F, copy=False), axis=-1)[..., -1]


def first_absmax(x: np.ndarray) -> np.ndarray:
    """The first value of largest magnitude in each row (C keeps it on a strict > from 0, so a
    NaN is never taken and a row of zeros and NaNs gives 0)."""
    a = np.abs(x)
    a = np.where(np.isnan(a), F(0), a)
    found = np.take_along_axis(x, a.argmax(-1)[..., None], -1)[..., 0]
    return np.where(a.max(-1) > 0, found, F(0)).astype(x.dtype)


def f16_round(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=F).astype(np.float16)


def make_qkx2_quants(x, w, nmax: int, rmin: float, rdelta: float, nstep: int,
                     use_mad: bool = False):
    """x, w: [B, n]. Returns (L uint8 [B, n], scale [B], the_min [B]) as make_qkx2_quants;
    the error is weighted squared (or, use_mad, absolute) difference."""
    if (kernels := compiled()) is not None:
        return kernels.qkx2(np.ascontiguousarray(x, dtype=F), np.ascontiguousarray(w, dtype=F),
                            nmax, F(rmin), F(rdelta), nstep, use_mad)

    def err(d):
        return np.abs(d) if use_mad else d * d
    lo = np.minimum(x.min(-1), F(0))                          # if (min > 0) min = 0
    hi = x.max(-1)
    flat = hi == lo
    sum_w, sum_x = seq_sum(w), seq_sum(w * x)
    rng = np.where(flat, F(1), hi - lo).astype(F)
    iscale = (F(nmax) / rng).astype(F)
    scale = (F(1) / iscale).astype(F)
    L = np.clip(nearest_int(iscale[:, None] * (x - lo[:, None])), 0, nmax)
    diff = (scale[:, None] * L.astype(F) + lo[:, None]) - x
    best = seq_sum(w * err(diff))
    mn = lo.copy()
    for i in range(nstep + 1):
        # as in C, a better fit's min replaces `min` for the later steps (and max - min)
        rng = np.where(flat, F(1), hi - mn).astype(F)
        iscale = ((F(rmin) + F(rdelta) * F(i) + F(nmax)) / rng).astype(F)
        Lc = np.clip(nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax)
        lf = Lc.astype(F)
        wl = w * lf
        sum_l, sum_l2, sum_xl = seq_sum(wl), seq_sum(wl * lf), seq_sum(wl * x)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > 0
        Ds = np.where(ok, D, F(1))
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / Ds
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / Ds
        pos = this_min > 0
        this_min = np.where(pos, F(0), this_min).astype(F)
        with np.errstate(divide="ignore", invalid="ignore"):
            this_scale = np.where(pos, sum_xl / sum_l2, this_scale).astype(F)
        d = (this_scale[:, None] * lf + this_min[:, None]) - x
        cur = seq_sum(w * err(d))
        better = ok & (cur < best)
        L = np.where(better[:, None], Lc, L)
        best = np.where(better, cur, best)
        scale = np.where(better, this_scale, scale)
        mn = np.where(better, this_min, mn)
    L = np.where(flat[:, None], 0, L)
    scale = np.where(flat, F(0), scale)
    return L.astype(np.uint8), scale.astype(F), (-mn).astype(F) + F(0)


def make_qx_quants_rmse1(x, nmax: int):
    """make_qx_quants(n, nmax, x, L, rmse_type=1, NULL) for x: [B, n]; L in [0, 2 nmax)."""
    if (kernels := compiled()) is not None:
        return kernels.qx_rmse1(np.ascontiguousarray(x, dtype=F), nmax)
    mx = first_absmax(x)
    zero = np.abs(mx) < GROUP_MAX_EPS
    mxs = np.where(zero, F(1), mx).astype(F)
    w = x * x

    def attempt(iscale):
        l = np.clip(nearest_int(iscale[:, None] * x), -nmax, nmax - 1)
        lf = l.astype(F)
        return l, seq_sum(w * x * lf), seq_sum(w * lf * lf)
    l, sumlx, suml2 = attempt((F(-nmax) / mxs).astype(F))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / suml2, F(0)).astype(F)
    best = scale * sumlx
    L = l
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = (-(F(nmax) + F(0.1) * F(step)) / mxs).astype(F)
        l, sumlx, suml2 = attempt(iscale)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        with np.errstate(divide="ignore", invalid="ignore"):
            new_scale = (sumlx / suml2).astype(F)
        L = np.where(better[:, None], l, L)
        scale = np.where(better, new_scale, scale)
        best = np.where(better, scale * sumlx, best)
    L = np.where(zero[:, None], 0, L + nmax)
    return L.astype(np.int32), np.where(zero, F(0), scale).astype(F)


def _pack_scales_k4(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """ls, lm: [nb, 8] six-bit values -> scales[12] (see the module docstring)."""
    s = np.zeros((ls.shape[0], 12), dtype=np.uint8)
    s[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    s[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    return s


def _unpack_scales_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """get_scale_min_k4 for j = 0..7: scales[12] -> (sc [nb, 8], m [nb, 8])."""
    s = s.astype(np.int32)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], 1)
    m = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], 1)
    return sc, m


def _qk_common(rows, nmax: int, rmin: float, nstep: int):
    """The shared part of Q4_K / Q5_K: per 32-weight sub-block scale and min, their 6-bit codes
    under one fp16 super-scale each, then the weights requantized against the coded values."""
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, 8, 32)               # [nb, 8, 32]
    nb = x.shape[0]
    sub = x.reshape(-1, 32)
    av = np.sqrt(seq_sum(sub * sub) / F(32)).astype(F)
    w = av[:, None] + np.abs(sub)
    L, scales, mins = make_qkx2_quants(sub, w, nmax, rmin, 0.1, nstep)
    scales, mins, L = scales.reshape(nb, 8), mins.reshape(nb, 8), L.reshape(nb, 8, 32)
    max_scale = np.maximum(scales.max(1), F(0))
    max_min = np.maximum(mins.max(1), F(0))
    with np.errstate(divide="ignore"):
        inv_s = np.where(max_scale > 0, F(63) / max_scale, F(0)).astype(F)
        inv_m = np.where(max_min > 0, F(63) / max_min, F(0)).astype(F)
    ls = np.minimum(63, nearest_int(inv_s[:, None] * scales) & 0xFF).astype(np.uint8)
    lm = np.minimum(63, nearest_int(inv_m[:, None] * mins) & 0xFF).astype(np.uint8)
    return qk_finish(x, L, ls, lm, f16_round(max_scale / F(63)), f16_round(max_min / F(63)), nmax)


def qk_finish(x, L, ls, lm, d, dmin, nmax: int):
    """Pack the 6-bit codes ls, lm (uint8 [nb, 8]) under d, dmin (f16 [nb]), then requantize the
    weights x [nb, 8, 32] against the coded values (sub-blocks whose d*sc is 0 keep L)."""
    nb = x.shape[0]
    packed = _pack_scales_k4(ls, lm)
    sc, m = _unpack_scales_k4(packed)
    dd = (d.astype(F)[:, None] * sc.astype(F)).astype(F)                      # [nb, 8]
    dm = (dmin.astype(F)[:, None] * m.astype(F)).astype(F)
    with np.errstate(divide="ignore", invalid="ignore"):
        req = np.clip(nearest_int((x + dm[:, :, None]) / dd[:, :, None]), 0, nmax)
    L = np.where((dd != 0)[:, :, None], req, L).astype(np.int32)             # [nb, 8, 32]
    head = np.concatenate([d.view(np.uint8).reshape(nb, 2), dmin.view(np.uint8).reshape(nb, 2),
                           packed], 1)
    return head, L.reshape(nb, 4, 2, 32)           # L[c, h, j]: weight 64c + 32h + j


def quantize_q4_k(rows, imatrix=None):
    if imatrix is not None:
        from tinyconvert.quant.kquants_imatrix import qk_search
        head, L = qk_search(rows, imatrix, 15)
    elif (fast := quantize_rows("q4_k", rows)) is not None:   # C or numba
        return fast
    else:
        head, L = _qk_common(rows, 15, -1.0, 20)
    qs = (L[:, :, 0, :] | (L[:, :, 1, :] << 4)).astype(np.uint8).reshape(len(head), 128)
    return np.concatenate([head, qs], 1).reshape(rows.shape[0], -1)


def quantize_q5_k(rows, imatrix=None):
    if imatrix is not None:
        from tinyconvert.quant.kquants_imatrix import qk_search
        head, L = qk_search(rows, imatrix, 31)
    elif (fast := quantize_rows("q5_k", rows)) is not None:
        return fast
    else:
        head, L = _qk_common(rows, 31, -0.5, 15)
    qs = ((L[:, :, 0, :] & 15) | ((L[:, :, 1, :] & 15) << 4)).astype(np.uint8)
    hi = L >> 4                                                               # [nb, 4, 2, 32]
    shifts = (2 * np.arange(4)[:, None] + np.arange(2)[None, :])[None, :, :, None]
    qh = (hi << shifts).sum((1, 2)).astype(np.uint8)                          # [nb, 32]
    return np.concatenate([head, qh, qs.reshape(len(head), 128)], 1).reshape(rows.shape[0], -1)


def quantize_q6_k(rows, imatrix=None):
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, 16, 16)              # [nb, 16, 16]
    nb = x.shape[0]
    if imatrix is not None:         # quantize_row_q6_K_impl: the raw matrix as the weights
        from tinyconvert.quant.kquants_imatrix import make_qx_quants_w, tile
        L, scales = make_qx_quants_w(x.reshape(-1, 16), tile(imatrix, rows.shape[0], 16), 32)
    elif (fast := quantize_rows("q6_k", rows)) is not None:
        return fast
    else:
        L, scales = make_qx_quants_rmse1(x.reshape(-1, 16), 32)
    L, scales = L.reshape(nb, 16, 16), scales.reshape(nb, 16)
    max_scale = first_absmax(scales)
    zero = np.abs(max_scale) < GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = (F(-128) / np.where(zero, F(1), max_scale)).astype(F)
        d = f16_round(F(1) / iscale)
    sc = np.minimum(127, nearest_int(iscale[:, None] * scales)).astype(np.int8)
    dd = (d.astype(F)[:, None] * sc.astype(F)).astype(F)                      # [nb, 16]
    with np.errstate(divide="ignore", invalid="ignore"):
        req = np.clip(nearest_int(x / dd[:, :, None]), -32, 31) + 32
    L = np.where((dd != 0)[:, :, None], req, L).reshape(nb, 2, 4, 32)        # [nb, half, k, l]
    ql = np.concatenate([(L[:, :, 0] & 15) | ((L[:, :, 2] & 15) << 4),
                         (L[:, :, 1] & 15) | ((L[:, :, 3] & 15) << 4)], 2)    # [nb, 2, 64]
    qh = sum(((L[:, :, k] >> 4) & 3) << (2 * k) for k in range(4))          # [nb, 2, 32]
    out = np.concatenate([ql.reshape(nb, 128).astype(np.uint8), qh.reshape(nb, 64).astype(np.uint8),
                          sc.view(np.uint8), d.view(np.uint8).reshape(nb, 2)], 1)
    out[zero] = 0
    return out.reshape(rows.shape[0], -1)


def _gguf_dequant(name: str):
    def dequantize(data: np.ndarray) -> np.ndarray:
        import gguf
        rows = gguf.quants.dequantize(np.ascontiguousarray(data), gguf.GGMLQuantizationType[name])
        return np.asarray(rows, dtype=F).reshape(data.shape[0], -1)
    return dequantize


Q4_K = register(QuantType("q4_k", 12, QK_K, 144, quantize_q4_k, _gguf_dequant("Q4_K")))
Q5_K = register(QuantType("q5_k", 13, QK_K, 176, quantize_q5_k, _gguf_dequant("Q5_K")))
Q6_K = register(QuantType("q6_k", 14, QK_K, 210, quantize_q6_k, _gguf_dequant("Q6_K")))
