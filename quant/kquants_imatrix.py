"""The importance-matrix paths of the K-quants: bit-exact ports of ggml-quants.c's
quantize_row_q2_K_impl .. quantize_row_q6_K_impl with quant_weights given (what llama.cpp runs
when quantizing with an imatrix; without one it runs the _ref functions in kquants*.py).

Each 256-weight super-block weighs its weights by w = qw * sqrtf(sigma2 + x^2), sigma2 being
sum(x^2)/256 (Q2_K) or 2*sum(x^2)/256 (Q3_K..Q5_K); Q6_K uses qw itself. The sub-block scales
(and mins) are then coded against one fp16 super-scale by a weighted fit (make_qp_quants for
Q2_K/Q4_K/Q5_K, make_qx_quants for Q3_K) whose weights are the sub-blocks' summed w. Layouts are
those of kquants.py / kquants_low.py.
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kquants import F, f16_round, nearest_int, qk_finish, seq_sum

QK_K = 256


def _kernels():
    from tinyconvert.quant.kernels import imatrix_numba
    from tinyconvert.quant.kernels import numba_kernels
    return imatrix_numba, numba_kernels


def tile(imatrix, n_rows: int, block: int) -> np.ndarray:
    """The per-column matrix (float32 [k]) repeated for every row, as [n_rows * k / block, block]:
    block b of a row reads columns b*block .. b*block + block - 1."""
    qw = np.asarray(imatrix, dtype=F).reshape(1, -1)
    return np.ascontiguousarray(np.broadcast_to(qw, (n_rows, qw.shape[1]))).reshape(-1, block)


def make_qx_quants_w(x, w, nmax: int):
    return _kernels()[0].qx_w(np.ascontiguousarray(x, dtype=F), np.ascontiguousarray(w, dtype=F),
                              nmax)


def make_qp_quants(x, w, nmax: int):
    return _kernels()[0].qp(np.ascontiguousarray(x, dtype=F), np.ascontiguousarray(w, dtype=F),
                            nmax)


def make_qkx3_quants(x, w, nmax: int):
    """make_qkx3_quants(n, nmax, x, w, ..., -0.9, 0.05, 36, false): with weights it is
    statement for statement make_qkx2_quants -> (L uint8, scale, the_min)."""
    return _kernels()[1].qkx2(np.ascontiguousarray(x, dtype=F), np.ascontiguousarray(w, dtype=F),
                              nmax, F(-0.9), F(0.05), 36, False)


def weights(x, imatrix, n_rows: int, sigma_factor: float, block: int):
    """x [nb, 256] -> w [nb * 256 / block, block] = qw * sqrtf(sigma2 + x^2)."""
    sigma2 = (F(sigma_factor) * seq_sum(x * x) / F(QK_K)).astype(F)
    qw = tile(imatrix, n_rows, QK_K)
    return (qw * np.sqrt(sigma2[:, None] + x * x)).astype(F).reshape(-1, block)


def quantize_q2_k_imatrix(rows, imatrix):
    from tinyconvert.quant.kquants_low import _pack_2bit
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, QK_K)
    nb = x.shape[0]
    w = weights(x, imatrix, rows.shape[0], 1.0, 16)                         # [nb*16, 16]
    L, scales, mins = make_qkx3_quants(x.reshape(-1, 16), w, 3)
    sw = seq_sum(w).reshape(nb, 16)
    Ls, dm = make_qp_quants(scales.reshape(nb, 16), sw, 15)
    Lm, mm = make_qp_quants(mins.reshape(nb, 16), sw, 15)
    d, dmin = f16_round(dm), f16_round(mm)
    sc = (Ls | (Lm << 4)).astype(np.uint8)                                    # [nb, 16]
    dd = (d.astype(F)[:, None] * (sc & 15).astype(F)).astype(F)
    dmn = (dmin.astype(F)[:, None] * (sc >> 4).astype(F)).astype(F)
    xs = x.reshape(nb, 16, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        req = np.clip(nearest_int((xs + dmn[:, :, None]) / dd[:, :, None]), 0, 3)
    L = np.where((dd != 0)[:, :, None], req, L.reshape(nb, 16, 16)).reshape(nb, QK_K)
    out = np.concatenate([sc, _pack_2bit(L), d.view(np.uint8).reshape(nb, 2),
                          dmin.view(np.uint8).reshape(nb, 2)], 1)
    return out.reshape(rows.shape[0], -1)


def quantize_q3_k_imatrix(rows, imatrix):
    from tinyconvert.quant.kquants_low import q3k_finish
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, QK_K)
    nb = x.shape[0]
    w = weights(x, imatrix, rows.shape[0], 2.0, 16)
    L, scales = make_qx_quants_w(x.reshape(-1, 16), w, 4)
    sw = seq_sum(w).reshape(nb, 16)
    Ls, d_block = make_qx_quants_w(scales.reshape(nb, 16), sw, 32)          # Ls in 0..63
    out = q3k_finish(x.reshape(nb, 16, 16), L.reshape(nb, 16, 16), Ls, f16_round(d_block))
    return out.reshape(rows.shape[0], -1)


def qk_search(rows, imatrix, nmax: int):
    """The Q4_K (nmax 15) / Q5_K (nmax 31) impl up to packing: returns qk_finish's (head, L)."""
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, QK_K)
    nb = x.shape[0]
    w = weights(x, imatrix, rows.shape[0], 2.0, 32)                          # [nb*8, 32]
    L, scales, mins = make_qkx3_quants(x.reshape(-1, 32), w, nmax)
    sw = seq_sum(w).reshape(nb, 8)
    Ls, d_block = make_qp_quants(scales.reshape(nb, 8), sw, 63)
    Lm, m_block = make_qp_quants(mins.reshape(nb, 8), sw, 63)
    if nmax == 31:                                 # Q5_K clamps the codes, Q4_K does not
        Ls, Lm = np.minimum(Ls, 63), np.minimum(Lm, 63)
    return qk_finish(x.reshape(nb, 8, 32), L.reshape(nb, 8, 32), Ls, Lm, f16_round(d_block),
                     f16_round(m_block), nmax)
