"""TQ1_0, TQ2_0 (ternary, 256 weights) and IQ4_NL (non-linear 4-bit, 32 weights): bit-exact
ports of ggml-quants.c's quantize_row_tq1_0_ref, quantize_row_tq2_0_ref and quantize_iq4_nl
without an importance matrix (quantize_row_iq4_nl_impl, ntry 7), vectorised over blocks.

    TQ1_0 (54 B): | qs[48]: 5 trits a byte | qh[4]: 4 trits a byte | d f16 |   x = d*(t - 1)
                  trits are packed base 3, most significant first, then scaled to a byte by
                  ceil(q * 256 / 243) so the decoder can read them with multiplications.
    TQ2_0 (66 B): | qs[64]: byte 32c + m holds weights 128c + m + 32n in bits 2n | d f16 |
    IQ4_NL (18 B): | d f16 | qs[16]: weight j low nibble, j+16 high | x = d*KVALUES[q]
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kquants import GROUP_MAX_EPS, F, _gguf_dequant, first_absmax
from tinyconvert.quant.kquants import seq_sum
from tinyconvert.quant.kernels.loader import compiled
from tinyconvert.quant.registry import QuantType, register
from tinyconvert.quant.rounding import roundf

KVALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                   dtype=np.int32)


def _ternary(x: np.ndarray):
    """Per 256-block: d = max|x| and trits lroundf(x / d) + 1 in {0, 1, 2}."""
    amax = np.abs(x).max(1)
    with np.errstate(divide="ignore"):
        inv = np.where(amax != 0, F(1) / amax, F(0)).astype(F)
    trits = (roundf(x * inv[:, None]) + 1).astype(np.int32)                 # [nb, 256]
    return amax.astype(np.float16), trits


def _trit_bytes(t: np.ndarray, extra_shift: bool = False) -> np.ndarray:
    """t: [..., k] trits, most significant first -> ceil(q * 256 / 243) as uint8."""
    q = np.zeros(t.shape[:-1], dtype=np.int32)
    for i in range(t.shape[-1]):
        q = q * 3 + t[..., i]
    if extra_shift:
        q = q * 3
    return ((q * 256 + 242) // 243).astype(np.uint8)


def quantize_tq1_0(rows, imatrix=None):
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, 256)
    nb = x.shape[0]
    d, t = _ternary(x)
    a = _trit_bytes(t[:, :160].reshape(nb, 5, 32).transpose(0, 2, 1))      # [nb, 32]
    b = _trit_bytes(t[:, 160:240].reshape(nb, 5, 16).transpose(0, 2, 1))   # [nb, 16]
    c = _trit_bytes(t[:, 240:].reshape(nb, 4, 4).transpose(0, 2, 1), True)  # [nb, 4]
    return np.concatenate([a, b, c, d.view(np.uint8).reshape(nb, 2)], 1).reshape(rows.shape[0], -1)


def quantize_tq2_0(rows, imatrix=None):
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, 256)
    nb = x.shape[0]
    d, t = _ternary(x)
    t = (t & 3).reshape(nb, 2, 4, 32)                                        # [nb, c, n, m]
    qs = sum(t[:, :, n] << (2 * n) for n in range(4)).astype(np.uint8).reshape(nb, 64)
    return np.concatenate([qs, d.view(np.uint8).reshape(nb, 2)], 1).reshape(rows.shape[0], -1)


def best_index(v: np.ndarray) -> np.ndarray:
    """best_index_int8 over KVALUES: the nearest value's index (ties to the upper one)."""
    mu = np.clip(np.searchsorted(KVALUES, v, side="right"), 1, 15)
    lower = v - KVALUES[mu - 1].astype(F) < KVALUES[mu].astype(F) - v
    idx = np.where(lower, mu - 1, mu)
    return np.where(v <= KVALUES[0], 0, np.where(v >= KVALUES[15], 15, idx))


def _fit(x, w, inv):
    q = KVALUES[best_index((inv[:, None] * x).astype(F))].astype(F)
    return seq_sum(w * q * x), seq_sum(w * q * q)


def quantize_iq4_nl(rows, imatrix=None):
    if imatrix is not None:
        from tinyconvert.quant.legacy_imatrix import quantize_iq4_nl_imatrix
        return quantize_iq4_nl_imatrix(rows, imatrix)
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, 32)
    nb = x.shape[0]
    kernels = compiled()
    d = kernels.iq4nl_scales(x, KVALUES) if kernels is not None else _iq4nl_scales(x)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F(1) / d, F(0)).astype(F)
    L = best_index((inv[:, None] * x).astype(F))
    qs = (L[:, :16] | (L[:, 16:] << 4)).astype(np.uint8)
    return np.concatenate([d.astype(np.float16).view(np.uint8).reshape(nb, 2), qs], 1) \
        .reshape(rows.shape[0], -1)


def _iq4nl_scales(x: np.ndarray) -> np.ndarray:
    """The per-block scale search of quantize_row_iq4_nl_impl (ntry 7), vectorised."""
    w = x * x
    mx = first_absmax(x)
    zero = np.abs(mx) < GROUP_MAX_EPS
    mxs = np.where(zero, F(1), mx).astype(F)
    d0 = (-mxs / F(-127)).astype(F)
    sumqx, sumq2 = _fit(x, w, (F(1) / d0).astype(F))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sumq2 > 0, sumqx / sumq2, F(0)).astype(F)
    best = d * sumqx
    for itry in range(-7, 8):
        sumqx, sumq2 = _fit(x, w, (F(itry - 127) / mxs).astype(F))
        better = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(better, sumqx / sumq2, d).astype(F)
        best = np.where(better, d * sumqx, best).astype(F)
    return np.where(zero, F(0), d).astype(F)


TQ1_0 = register(QuantType("tq1_0", 34, 256, 54, quantize_tq1_0, _gguf_dequant("TQ1_0")))
TQ2_0 = register(QuantType("tq2_0", 35, 256, 66, quantize_tq2_0, _gguf_dequant("TQ2_0")))
IQ4_NL = register(QuantType("iq4_nl", 20, 32, 18, quantize_iq4_nl, _gguf_dequant("IQ4_NL")))
