"""MXFP4 (GGML type 39): the OCP microscaling 4-bit float format gpt-oss ships its experts in.

Block layout (17 bytes, 32 weights):

    +-------+-----------------------------------------------+
    | e: u8 | qs[16]: weight j in the low nibble, j+16 high |
    +-------+-----------------------------------------------+

e is an E8M0 exponent (2^(e-127), no mantissa); each nibble indexes the E2M1 values
{0, 0.5, 1, 1.5, 2, 3, 4, 6} with bit 3 as the sign. ggml keeps the E2M1 values doubled as
integers (kvalues_mxfp4) and halves the scale instead: x = kvalues[q] * 2^(e-128).

Bit-exact port of ggml-quants.c's quantize_row_mxfp4_ref (what ggml_quantize_chunk runs for
MXFP4, with or without an importance matrix) and dequantize_row_mxfp4.
"""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.registry import QuantType, register

QK = 32
BLOCK_BYTES = 1 + QK // 2
KVALUES = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.float32)
MIDPOINTS = np.array([0.5, 1.5, 2.5, 3.5, 5, 7, 10], dtype=np.float32)   # between magnitudes
CHUNK = 1 << 15               # blocks per step
F = np.float32


def e8m0_half(e: np.ndarray) -> np.ndarray:
    """ggml_e8m0_to_fp32_half: 2^(e-128) as float32, built from bits (e < 2 are denormals)."""
    e = np.asarray(e, dtype=np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - np.uint32(1)) << np.uint32(23))
    return bits.astype(np.uint32).view(np.float32)


def _exponent(amax: np.ndarray) -> np.ndarray:
    """(uint8_t)(floorf(log2f(amax)) - 2 + 127), 0 for an all-zero block. log2 is taken in
    double and rounded to float, as a correctly rounded log2f gives it (this matters just below
    a power of two, where the float result rounds up to the integer). The C cast of an
    out-of-range float goes through int32 on x86 and keeps the low byte; tiny blocks hit it."""
    with np.errstate(divide="ignore"):
        lg = np.log2(amax.astype(np.float64)).astype(F)
    e = (np.floor(lg) - F(2) + F(127)).astype(F)
    e = np.where(amax > 0, e, F(0))
    return (e.astype(np.int64) & 0xFF).astype(np.uint8)


def _nearest(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """best_index_mxfp4 for every weight: the first of the 16 codes with the least
    |kvalues[i] * d - x|. The codes are 0 (twice, +0 first), then +-{1,2,3,4,6,8,12}, so it is
    the nearest magnitude, ties to the smaller one, signed. |x| / d is exact (d is a power of
    two, and a quotient too small to be exact is far below the first midpoint), and so are the
    errors C compares near each midpoint (Sterbenz), so comparing |x| / d with the midpoints
    decides exactly as C's float comparisons do, in 7 comparisons instead of 16 errors."""
    r = np.abs(x) / d                                                     # [nb, 32]
    mag = np.zeros(r.shape, dtype=np.uint8)
    for m in MIDPOINTS:                          # how many midpoints lie strictly below
        mag += r > m
    return np.where((x < 0) & (mag > 0), mag + 8, mag).astype(np.uint8)


def _quantize_blocks(x: np.ndarray) -> np.ndarray:
    """x: [nb, 32] float32 -> [nb, 17] uint8."""
    e = _exponent(np.abs(x).max(axis=1))                                 # [nb]
    q = _nearest(x, e8m0_half(e)[:, None])                               # [nb, 32]
    out = np.empty((len(x), BLOCK_BYTES), dtype=np.uint8)
    out[:, 0] = e
    out[:, 1:] = q[:, :16] | (q[:, 16:] << 4)
    return out


def quantize(rows: np.ndarray, imatrix=None) -> np.ndarray:
    """rows f32 [n, k] -> uint8 [n, k/32*17]. llama.cpp ignores an importance matrix here."""
    n_rows = rows.shape[0]
    x = np.ascontiguousarray(rows, dtype=F).reshape(-1, QK)              # [nb, 32]
    out = np.empty((len(x), BLOCK_BYTES), dtype=np.uint8)
    for b in range(0, len(x), CHUNK):
        out[b:b + CHUNK] = _quantize_blocks(x[b:b + CHUNK])
    return out.reshape(n_rows, -1)


def dequantize(data: np.ndarray) -> np.ndarray:
    n_rows = data.shape[0]
    b = np.ascontiguousarray(data).reshape(-1, BLOCK_BYTES)
    d = e8m0_half(b[:, :1])                                               # [nb, 1]
    q = np.concatenate([b[:, 1:] & 0x0F, b[:, 1:] >> 4], axis=1)          # [nb, 32]
    with np.errstate(over="ignore"):             # e = 255 times 12 is inf, as in C
        return (KVALUES[q] * d).reshape(n_rows, -1)


def from_ocp(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The OCP / OpenAI packing to ggml blocks, losslessly (only bits move).

    blocks u8 [..., nb, 16]: byte i holds weight 2i in its low nibble and 2i+1 in its high one
    scales u8 [..., nb]:     the E8M0 exponent of each block, the same byte ggml stores
    -> u8 [..., nb * 17]:    | e | qs[16]: weight j low, weight j+16 high |

    The nibble codes mean the same E2M1 values on both sides, so they are moved, not mapped."""
    if blocks.shape[-1] != QK // 2 or blocks.shape[:-1] != scales.shape:
        raise ValueError(f"MXFP4 blocks {blocks.shape} do not go with scales {scales.shape}")
    codes = np.stack([blocks & 0x0F, blocks >> 4], axis=-1).reshape(*scales.shape, QK)
    qs = codes[..., :16] | (codes[..., 16:] << 4)
    out = np.concatenate([scales[..., None], qs], axis=-1)                # [..., nb, 17]
    return out.reshape(*scales.shape[:-1], -1)


MXFP4 = register(QuantType("mxfp4", 39, QK, BLOCK_BYTES, quantize, dequantize))
