"""The IQ (importance-matrix) types with lattice codebooks, registered from their compiled
kernels. Block layouts (little-endian, 256 weights; the spec's section 3.1):

    IQ3_XXS (98 B):  | d f16 | qs[64]: 256-grid index per 4 weights | u32[8] per 32-block:
                       4 x 7-bit sign codes (ksigns, even parity) | scale s << 28 |
                       x = d * (0.5 + s) / 2 * grid * sign
    IQ3_S (110 B):   | d f16 | qs[64]: low 8 bits of the 512-grid index | qh[8]: bit k of qh[ib]
                       = bit 8 of group (ib, k) | signs[32]: one bit per weight |
                       scales[4]: 4 bits per 32-block | x = d * (1 + 2 s) * grid * sign

Which types need a matrix: ggml_quantize_requires_imatrix (IQ2_XXS, IQ2_XS, IQ1_S) refuse to
run without one; the rest fall back to x^2 weights as llama.cpp does.
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kquants import F, _gguf_dequant
from tinyconvert.quant.registry import QuantType, register

QK_K = 256
NEEDS_IMATRIX = ("iq2_xxs", "iq2_xs", "iq1_s")


def _run(qname: str, kernel_name: str, module: str, rows, imatrix, d_at: int | None = 0,
         grid_name: str | None = None):
    import importlib

    from tinyconvert.quant.iq.iq_grids import grid
    if imatrix is None and qname in NEEDS_IMATRIX:
        raise ValueError(f"{qname} needs an importance matrix (llama.cpp refuses it without one)")
    x = np.ascontiguousarray(rows, dtype=F)
    n_rows, k = x.shape
    qw = np.zeros(k, F) if imatrix is None else np.ascontiguousarray(imatrix, dtype=F)
    if qw.shape != (k,):
        raise ValueError(f"importance matrix has {qw.size} columns, rows have {k}")
    g = grid(grid_name or qname)
    kernel = getattr(importlib.import_module(f"tinyconvert.quant.iq.{module}"), kernel_name)
    blocks, d = kernel(x, qw, imatrix is not None, g.pos, g.kmap, g.nb_start, g.nb_count,
                       g.neighbours)
    bits = d.astype(np.float16).view(np.uint16).astype(np.uint16)          # [n_rows, nbl]
    if d_at is not None:
        blocks[:, :, d_at:d_at + 2] = bits.view(np.uint8).reshape(n_rows, -1, 2)
    else:                                   # IQ1_M: nibble j of d into bits 12-15 of word j
        words = blocks[:, :, 48:56].copy().view("<u2")                     # [n_rows, nbl, 4]
        for j in range(4):
            words[:, :, j] |= ((bits >> (4 * j)) & 0xF) << 12
        blocks[:, :, 48:56] = words.view(np.uint8)
    return blocks.reshape(n_rows, -1)


def quantize_iq3_xxs(rows, imatrix=None):
    return _run("iq3_xxs", "iq3_xxs", "iq3_numba", rows, imatrix)


def quantize_iq3_s(rows, imatrix=None):
    return _run("iq3_s", "iq3_s", "iq3_numba", rows, imatrix)


IQ3_XXS = register(QuantType("iq3_xxs", 18, QK_K, 98, quantize_iq3_xxs, _gguf_dequant("IQ3_XXS")))
IQ3_S = register(QuantType("iq3_s", 21, QK_K, 110, quantize_iq3_s, _gguf_dequant("IQ3_S")))


def quantize_iq2_xxs(rows, imatrix=None):
    return _run("iq2_xxs", "iq2_xxs", "iq2_numba", rows, imatrix)


def quantize_iq2_xs(rows, imatrix=None):
    return _run("iq2_xs", "iq2_xs", "iq2_numba", rows, imatrix)


def quantize_iq2_s(rows, imatrix=None):
    return _run("iq2_s", "iq2_s", "iq2_numba", rows, imatrix)


IQ2_XXS = register(QuantType("iq2_xxs", 16, QK_K, 66, quantize_iq2_xxs, _gguf_dequant("IQ2_XXS")))
IQ2_XS = register(QuantType("iq2_xs", 17, QK_K, 74, quantize_iq2_xs, _gguf_dequant("IQ2_XS")))
IQ2_S = register(QuantType("iq2_s", 22, QK_K, 82, quantize_iq2_s, _gguf_dequant("IQ2_S")))


def quantize_iq1_s(rows, imatrix=None):
    return _run("iq1_s", "iq1_s", "iq1_numba", rows, imatrix)


IQ1_S = register(QuantType("iq1_s", 19, QK_K, 50, quantize_iq1_s, _gguf_dequant("IQ1_S")))


def quantize_iq1_m(rows, imatrix=None):
    """IQ1_M has no separate d: its fp16 bits go, a nibble each, to bits 12-15 of the four
    scale words."""
    return _run("iq1_m", "iq1_m", "iq1_numba", rows, imatrix, d_at=None, grid_name="iq1_s")


IQ1_M = register(QuantType("iq1_m", 29, QK_K, 56, quantize_iq1_m, _gguf_dequant("IQ1_M")))
