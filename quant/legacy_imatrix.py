"""The importance-matrix paths of Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL: bit-exact ports of
ggml-quants.c's quantize_row_q4_0_impl .. quantize_row_q5_1_impl and quantize_iq4_nl with
quant_weights given. Layouts are those of legacy.py / ternary_iq4.py.

The legacy types weigh a weight by qw * sqrtf(sigma2 + x^2) with sigma2 = sum(x^2)/n_per_row over
the whole row, then fit each 32-block by make_qx_quants (Q4_0, Q5_0: symmetric, L in 0..2 nmax-1)
or make_qkx3_quants (Q4_1, Q5_1: scale and min). IQ4_NL uses sigma2 = 2*sum(x^2)/32 per block and
the weighted form of its usual scale search.
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kquants import F, seq_sum
from tinyconvert.quant.kquants_imatrix import make_qkx3_quants, make_qx_quants_w, tile
from tinyconvert.quant.legacy import _f16, _high_bits, _nibbles, _out

QK = 32


def _row_weights(rows, imatrix):
    """-> (x [nb, 32], w [nb, 32]) with sigma2 taken over each whole row."""
    x = np.ascontiguousarray(rows, dtype=F)
    n_rows, k = x.shape
    sigma2 = (seq_sum(x * x) / F(k)).astype(F)                              # [n_rows]
    w = tile(imatrix, n_rows, k) * np.sqrt(sigma2[:, None] + x * x)
    return x.reshape(-1, QK), w.astype(F).reshape(-1, QK)


def _symmetric(rows, imatrix, nmax: int):
    x, w = _row_weights(rows, imatrix)
    L, d = make_qx_quants_w(x, w, nmax)
    return L, d.astype(np.float16).view(np.uint8).reshape(-1, 2)


def _asymmetric(rows, imatrix, nmax: int):
    x, w = _row_weights(rows, imatrix)
    L, d, the_min = make_qkx3_quants(x, w, nmax)
    return L.astype(np.int32), _f16(d), _f16((-the_min).astype(F))


def quantize_q4_0_imatrix(rows, imatrix):
    L, d = _symmetric(rows, imatrix, 8)
    return _out(rows.shape[0], d, _nibbles(L))


def quantize_q5_0_imatrix(rows, imatrix):
    L, d = _symmetric(rows, imatrix, 16)
    return _out(rows.shape[0], d, _high_bits(L), _nibbles(L))


def quantize_q4_1_imatrix(rows, imatrix):
    L, d, m = _asymmetric(rows, imatrix, 15)
    return _out(rows.shape[0], d, m, _nibbles(L))


def quantize_q5_1_imatrix(rows, imatrix):
    L, d, m = _asymmetric(rows, imatrix, 31)
    return _out(rows.shape[0], d, m, _high_bits(L), _nibbles(L))


def iq4_weights(x, imatrix, n_rows: int, super_block: int):
    """x [nb, super_block] -> qw * sqrtf(sigma2 + x^2) with sigma2 = sum(x^2) * (2/super_block),
    as [nb * super_block / 32, 32]."""
    sigma2 = (seq_sum(x * x) * F(2.0 / super_block)).astype(F)
    qw = tile(imatrix, n_rows, super_block)
    return (qw * np.sqrt(sigma2[:, None] + x * x)).astype(F).reshape(-1, 32)


def quantize_iq4_nl_imatrix(rows, imatrix):
    from tinyconvert.quant.kernels import imatrix_numba
    from tinyconvert.quant.ternary_iq4 import KVALUES
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, QK)
    w = iq4_weights(x, imatrix, rows.shape[0], QK)
    d = imatrix_numba.iq4_scales_w(x, w, KVALUES)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F(1) / d, F(0)).astype(F)
    L = imatrix_numba.best_indices(KVALUES, x, inv)
    qs = (L[:, :16] | (L[:, 16:] << 4)).astype(np.uint8)
    return _out(rows.shape[0], _f16(d), qs)
