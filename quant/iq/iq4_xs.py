"""IQ4_XS: a bit-exact port of ggml-quants.c's quantize_iq4_xs (quantize_row_iq4_nl_impl with
super_block 256, block 32, ntry 7), with or without an importance matrix.

    IQ4_XS (136 B / 256): | d f16 | scales_h u16 | scales_l[4] | qs[128] |
        block ib (32 weights) has the 6-bit code ls = l + 32: low 4 bits in scales_l[ib/2]
        (even ib low nibble), high 2 bits at bits 2*ib of scales_h; qs[16 ib + j] holds weight
        j in the low nibble and j + 16 in the high one.  x = d * (ls - 32) * KVALUES[q]

Per 32-block the IQ4_NL scale search runs with weights x^2, or qw * sqrtf(sigma2 + x^2) with
sigma2 = 2 sum(x^2) / 256 over the super-block; then d = -max_scale / 32 (max_scale the scale of
largest magnitude, first on ties), l = clamp(nearest(scale / d), -32, 31), and every block is
requantized with 1 / (d l) (0 when d l is 0).
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kquants import F, _gguf_dequant, first_absmax, nearest_int
from tinyconvert.quant.registry import QuantType, register
from tinyconvert.quant.ternary_iq4 import KVALUES

QK_K = 256


def quantize_iq4_xs(rows, imatrix=None):
    from tinyconvert.quant.kernels import imatrix_numba
    from tinyconvert.quant.legacy_imatrix import iq4_weights
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, QK_K)               # [nb, 256]
    nb = x.shape[0]
    if imatrix is None:
        w = (x * x).reshape(-1, 32)
    else:
        w = iq4_weights(x, imatrix, rows.shape[0], QK_K)
    xb = x.reshape(-1, 32)
    scales = imatrix_numba.iq4_scales_w(xb, w, KVALUES).reshape(nb, 8)
    max_scale = first_absmax(scales)
    max_scale = np.where(np.abs(max_scale) > 0, max_scale, F(0))           # C starts from +0
    d = (-max_scale / F(32)).astype(F)                                      # [nb]
    with np.errstate(divide="ignore"):
        inv_d = np.where(d != 0, F(1) / d, F(0)).astype(F)
    l = np.clip(nearest_int(inv_d[:, None] * scales), -32, 31)              # [nb, 8]
    dl = (d[:, None] * l.astype(F)).astype(F)
    with np.errstate(divide="ignore"):
        idl = np.where(dl != 0, F(1) / dl, F(0)).astype(F).reshape(-1)
    L = imatrix_numba.best_indices(KVALUES, xb, idl).reshape(nb, 8, 32)
    qs = (L[:, :, :16] | (L[:, :, 16:] << 4)).astype(np.uint8).reshape(nb, 128)
    ls = (l + 32).astype(np.int32)
    scales_l = ((ls[:, 0::2] & 15) | ((ls[:, 1::2] & 15) << 4)).astype(np.uint8)      # [nb, 4]
    scales_h = ((ls >> 4) << (2 * np.arange(8))).sum(1).astype("<u2")
    out = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(nb, 2),
                          scales_h.view(np.uint8).reshape(nb, 2), scales_l, qs], 1)
    return out.reshape(rows.shape[0], -1)


IQ4_XS = register(QuantType("iq4_xs", 23, QK_K, 136, quantize_iq4_xs, _gguf_dequant("IQ4_XS")))
