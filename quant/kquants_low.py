"""K-quants Q2_K and Q3_K: bit-exact ports of ggml-quants.c's quantize_row_q2_K_ref and
quantize_row_q3_K_ref (with make_qkx2_quants in its absolute-error mode and make_q3_quants'
greedy refinement), vectorised over blocks, C's order kept within each block.

    Q2_K (84 B / 256):  | scales[16]: scale | min << 4 | qs[64] | d f16 | dmin f16 |
                        x = d*(sc & 15)*q - dmin*(sc >> 4), q in 0..3
    Q3_K (110 B / 256): | hmask[32] | qs[64] | scales[12]: 16 six-bit codes | d f16 |
                        x = d*(sc - 32)*(q - 4), q in 0..7 (bit 2 in hmask)
qs holds 2-bit values: byte 32c + l of each 128-weight half has weights l, l+32, l+64, l+96.
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kquants import (GROUP_MAX_EPS, F, _gguf_dequant, f16_round, first_absmax,
                                       make_qkx2_quants, nearest_int, seq_sum)
from tinyconvert.quant.kernels.loader import compiled
from tinyconvert.quant.registry import QuantType, register


def _pack_2bit(L: np.ndarray) -> np.ndarray:
    """L: [nb, 256] values 0..3 -> qs[64]."""
    q = L.reshape(-1, 2, 4, 32)                                              # [nb, half, k, l]
    return (q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)) \
        .astype(np.uint8).reshape(-1, 64)


def quantize_q2_k(rows, imatrix=None):
    if imatrix is not None:
        from tinyconvert.quant.kquants_imatrix import quantize_q2_k_imatrix
        return quantize_q2_k_imatrix(rows, imatrix)
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, 16, 16)              # [nb, 16, 16]
    nb = x.shape[0]
    sub = x.reshape(-1, 16)
    L, scales, mins = make_qkx2_quants(sub, np.abs(sub), 3, -0.5, 0.1, 15, use_mad=True)
    L, scales, mins = L.reshape(nb, 16, 16).astype(np.int32), scales.reshape(nb, 16), \
        mins.reshape(nb, 16)
    max_scale = np.maximum(scales.max(1), F(0))
    max_min = np.maximum(mins.max(1), F(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ls = np.where((max_scale > 0)[:, None],
                      nearest_int((F(15) / max_scale)[:, None] * scales), 0)
        lm = np.where((max_min > 0)[:, None], nearest_int((F(15) / max_min)[:, None] * mins), 0)
    sc = ((ls & 0xFF) | ((lm << 4) & 0xFF)).astype(np.uint8)                  # [nb, 16]
    d = np.where(max_scale > 0, f16_round(max_scale / F(15)), np.float16(0))
    dmin = np.where(max_min > 0, f16_round(max_min / F(15)), np.float16(0))
    dd = (d.astype(F)[:, None] * (sc & 15).astype(F)).astype(F)
    dm = (dmin.astype(F)[:, None] * (sc >> 4).astype(F)).astype(F)
    with np.errstate(divide="ignore", invalid="ignore"):
        req = np.clip(nearest_int((x + dm[:, :, None]) / dd[:, :, None]), 0, 3)
    L = np.where((dd != 0)[:, :, None], req, L).reshape(nb, 256)
    out = np.concatenate([sc, _pack_2bit(L), d.astype(np.float16).view(np.uint8).reshape(nb, 2),
                          dmin.astype(np.float16).view(np.uint8).reshape(nb, 2)], 1)
    return out.reshape(rows.shape[0], -1)


def make_q3_quants(x: np.ndarray, nmax: int = 4):
    """make_q3_quants(n, nmax, x, L, do_rmse=true) for x: [B, n]; L in [0, 2 nmax)."""
    if (kernels := compiled()) is not None:
        return kernels.q3(np.ascontiguousarray(x, dtype=F), nmax)
    mx = first_absmax(x)
    zero = np.abs(mx) < GROUP_MAX_EPS
    iscale = (F(-nmax) / np.where(zero, F(1), mx)).astype(F)
    L = np.clip(nearest_int(iscale[:, None] * x), -nmax, nmax - 1)           # [B, n]
    w = x * x
    wx = w * x
    sumlx = seq_sum(wx * L.astype(F))
    suml2 = seq_sum(w * L.astype(F) * L.astype(F))
    for _ in range(5):          # a block whose pass changed nothing stays unchanged after it
        for i in range(x.shape[1]):
            li = L[:, i].astype(F)
            slx = sumlx - wx[:, i] * li
            sl2 = suml2 - w[:, i] * li * li
            with np.errstate(divide="ignore", invalid="ignore"):
                new = np.clip(nearest_int(x[:, i] * sl2 / slx), -nmax, nmax - 1)
            nf = new.astype(F)
            slx2 = slx + wx[:, i] * nf
            sl22 = sl2 + w[:, i] * nf * nf
            take = (slx > 0) & (new != L[:, i]) & (sl22 > 0) & \
                (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
            L[:, i] = np.where(take, new, L[:, i])
            sumlx = np.where(take, slx2, sumlx).astype(F)
            suml2 = np.where(take, sl22, suml2).astype(F)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 > 0, sumlx / suml2, F(0)).astype(F)
    return np.where(zero[:, None], 0, L + nmax), np.where(zero, F(0), scale)


def quantize_q3_k(rows, imatrix=None):
    if imatrix is not None:
        from tinyconvert.quant.kquants_imatrix import quantize_q3_k_imatrix
        return quantize_q3_k_imatrix(rows, imatrix)
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, 16, 16)
    nb = x.shape[0]
    L, scales = make_q3_quants(x.reshape(-1, 16))
    L, scales = L.reshape(nb, 16, 16), scales.reshape(nb, 16)
    max_scale = first_absmax(scales)
    has = max_scale != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = (F(-32) / np.where(has, max_scale, F(1))).astype(F)
    l6 = np.clip(((nearest_int(iscale[:, None] * scales) + 128) & 0xFF) - 128, -32, 31) + 32
    l6 = np.where(has[:, None], l6, 0)                                       # [nb, 16] 0..63
    with np.errstate(divide="ignore"):
        d = np.where(has, f16_round(F(1) / iscale), np.float16(0))
    return q3k_finish(x, L, l6, d).reshape(rows.shape[0], -1)


def q3k_finish(x, L, l6, d):
    """Pack the 16 six-bit codes l6 ([nb, 16] in 0..63) under d (f16 [nb]), requantize x
    [nb, 16, 16] against d*(l6 - 32) (sub-blocks where that is 0 keep L) and lay out the block."""
    nb = x.shape[0]
    packed = np.zeros((nb, 12), dtype=np.int32)
    packed[:, 0:8] = (l6[:, 0:8] & 15) | ((l6[:, 8:16] & 15) << 4)
    for j in range(16):
        packed[:, 8 + j % 4] |= (l6[:, j] >> 4) << (2 * (j // 4))
    dd = (d.astype(F)[:, None] * (l6 - 32).astype(F)).astype(F)              # [nb, 16]
    with np.errstate(divide="ignore", invalid="ignore"):
        req = np.clip(nearest_int(x / dd[:, :, None]), -4, 3) + 4
    L = np.where((dd != 0)[:, :, None], req, L).reshape(nb, 256)
    high = (L > 3).reshape(nb, 8, 32)                                        # bit b: weights 32b..
    hmask = (high.astype(np.int32) << np.arange(8)[None, :, None]).sum(1).astype(np.uint8)
    out = np.concatenate([hmask, _pack_2bit(np.where(L > 3, L - 4, L)),
                          packed.astype(np.uint8), d.astype(np.float16).view(np.uint8)
                          .reshape(nb, 2)], 1)
    return out


Q2_K = register(QuantType("q2_k", 10, 256, 84, quantize_q2_k, _gguf_dequant("Q2_K")))
Q3_K = register(QuantType("q3_k", 11, 256, 110, quantize_q3_k, _gguf_dequant("Q3_K")))
