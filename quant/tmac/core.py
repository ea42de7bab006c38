"""T-MAC lookup-table quantization (shared/specs/tmac.md sections 2-5): n-bit codes with per-group
scales (and float zero points), the two packed layouts, and the LUT matrix-vector product.

Codes q in [0, 2^n): w = s * (q - 2^(n-1)) - zf, one (s, zf) per row and group of gs weights.
Bit-serial identity: q - 2^(n-1) = sum_b alpha_b * sigma_b - 1/2, sigma_b = 2 * bit_b - 1,
alpha = [1/2, 1, 2, 4], so W x is a sum over bit planes of +-1 dot products, which 16-entry tables of
4 activations answer by lookup.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyconvert.quant.tmac import tmac_search

G = 4                      # activations per table (16 entries)
ALPHA = np.array([0.5, 1.0, 2.0, 4.0], dtype=np.float64)


@dataclass(frozen=True)
class TmacWeights:
    q: np.ndarray          # uint8 [M, K], codes in [0, 2^bits)
    scales: np.ndarray     # float32 [M, K / group]
    zf: np.ndarray | None  # float32 [M, K / group], None for symmetric (_0 types)
    bits: int
    group: int

    def dequantize(self) -> np.ndarray:
        off = 1 << (self.bits - 1)
        s = np.repeat(self.scales, self.group, axis=1)
        w = s * (self.q.astype(np.float32) - off)
        if self.zf is not None:
            w = w - np.repeat(self.zf, self.group, axis=1)
        return w.astype(np.float32)


METHODS = ("search", "minmax")


def quantize(w: np.ndarray, bits: int, group: int, *, sym: bool = False,
             method: str = "minmax", imatrix: np.ndarray | None = None) -> TmacWeights:
    """Per-group min-max (zero point, `_1` types) or GPTQ-style symmetric (`_0`) quantization,
    as T-MAC's converters do. method="search" (zero point only): the scale and offset of each
    group are refit by least squares for a range of candidate scales (quant/tmac/tmac_search.py),
    keeping the lowest squared error, weighted per column by `imatrix` (float32 [K], the mean
    squared activation of each input column) when given. The codes decode exactly as T-MAC's;
    only their choice differs. Min-max and symmetric codes have no error to weight: they take no
    imatrix (llama.cpp's types without an imatrix path likewise ignore it)."""
    if bits not in (1, 2, 3, 4):
        raise ValueError(f"T-MAC bits must be 1..4, got {bits}")
    if method not in METHODS:
        raise ValueError(f"unknown T-MAC quantizer {method!r}; valid: {', '.join(METHODS)}")
    M, K = w.shape
    if K % group:
        raise ValueError(f"group size {group} does not divide the row length {K}")
    x = np.asarray(w, dtype=np.float32).reshape(M, K // group, group)
    top, off = (1 << bits) - 1, 1 << (bits - 1)
    if sym:
        s = (2 * np.abs(x).max(-1) / top).astype(np.float32)
        s = np.where(s > 0, s, np.float32(1e-8)).astype(np.float32)
        q = np.clip(np.round(x / s[..., None]) + off, 0, top)
        return TmacWeights(q.reshape(M, K).astype(np.uint8), s, None, bits, group)
    if method == "search":
        q, s, zf = tmac_search.search(x, top, off, tmac_search.check_imatrix(imatrix, K))
        return TmacWeights(q, s, zf, bits, group)
    lo, hi = x.min(-1), x.max(-1)
    s = (np.maximum(hi - lo, np.float32(1e-5)) / top).astype(np.float32)
    z = np.clip(-np.round(lo / s), 0, top)
    q = np.clip(np.round(x / s[..., None]) + z[..., None], 0, top)
    zf = ((z - off) * s).astype(np.float32)
    return TmacWeights(q.reshape(M, K).astype(np.uint8), s, zf, bits, group)


# ---- generation C: canonical MSB-first packing (llama.cpp PR #13206) --------------------------

def pack_codes(t: TmacWeights) -> bytes:
    """The low `bits` of each code, row-major, MSB-first (np.packbits order): for 4 bits the
    first code is the high nibble, for 2 bits code i of a byte sits at bits 7-2i..6-2i."""
    if 8 % t.bits == 0:                         # whole codes per byte: shift them into place
        per = 8 // t.bits
        q = t.q.reshape(-1, per)
        out = np.zeros(q.shape[0], np.uint8)
        for i in range(per):
            out |= q[:, i] << np.uint8(8 - t.bits * (i + 1))
        return out.tobytes()
    bits = ((t.q[..., None] >> np.arange(t.bits - 1, -1, -1)) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(-1)).tobytes()


def pack_canonical(t: TmacWeights) -> bytes:
    """[codes (pack_codes)] ++ [scales f32 [M, K/gs]] ++ [zf f32 [M, K/gs] (_1 only)]."""
    blob = pack_codes(t) + t.scales.astype("<f4").tobytes()
    return blob + (t.zf.astype("<f4").tobytes() if t.zf is not None else b"")


def unpack_canonical(blob: bytes, M: int, K: int, bits: int, group: int,
                     zero_point: bool) -> TmacWeights:
    nq = M * K * bits // 8
    raw = np.frombuffer(blob, np.uint8, nq)
    if 8 % bits == 0:                           # whole codes per byte (pack_codes' fast path)
        per, mask = 8 // bits, np.uint8((1 << bits) - 1)
        q = np.empty((nq, per), np.uint8)
        for i in range(per):
            q[:, i] = (raw >> np.uint8(8 - bits * (i + 1))) & mask
        q = q.reshape(M, K)
    else:
        flat = np.unpackbits(raw)[: M * K * bits]
        q = (flat.reshape(M, K, bits) << np.arange(bits - 1, -1, -1)).sum(-1).astype(np.uint8)
    ns = M * (K // group)
    s = np.frombuffer(blob, "<f4", ns, nq).reshape(M, K // group).copy()
    zf = (np.frombuffer(blob, "<f4", ns, nq + 4 * ns).reshape(M, K // group).copy()
          if zero_point else None)
    return TmacWeights(q, s, zf, bits, group)


# ---- generation B: T-MAC's kernel-permuted layout (preprocess_weights) ------------------------

@dataclass(frozen=True)
class Tile:
    bm: int = 256          # bit-rows per tile
    kfactor: int = 16      # 4-activation tables per k-block
    simd_in: int = 16      # SI
    simd_out: int = 8      # SO


def _weight_addresses(M: int, K: int, bits: int, tile: Tile):
    """For every (m, b, j): byte address and nibble shift of the 4-bit index I_b[m, j]."""
    SI, SO, bm, KF = tile.simd_in, tile.simd_out, tile.bm, tile.kfactor
    m = np.arange(M)[:, None, None]
    b = np.arange(bits)[None, :, None]
    j = np.arange(K // G)[None, None, :]
    R = (m // SO) * (bits * SO) + b * SO + m % SO                   # bit-row order
    tl, r = R // bm, R % bm
    blk, t = r // (2 * SI), r % (2 * SI)
    half, lane = t // SI, t % SI
    ko, ki = j // KF, j % KF
    addr = (((tl * (K // (G * KF)) + ko) * (bm // (2 * SI)) + blk) * KF + ki) * SI + lane
    return addr, 4 * half


def check_tile(M: int, K: int, bits: int, group: int, tile: Tile) -> None:
    SO, bm, KF = tile.simd_out, tile.bm, tile.kfactor
    problems = [(M % SO, f"M % {SO}"), ((M * bits) % bm, f"(M*bits) % bm={bm}"),
                (bm % (2 * tile.simd_in), "bm % (2*SI)"), (bm % (bits * SO), "bm % (bits*SO)"),
                (K % (G * KF), f"K % (4*kfactor={G * KF})"), (group % (G * KF), "group % (4*kfactor)")]
    bad = [name for value, name in problems if value]
    if bad:
        raise ValueError(f"T-MAC tile bm={bm} kfactor={KF} does not fit a {M}x{K} {bits}-bit "
                         f"matrix with group {group}: {', '.join(bad)} must be 0")


def pack_permuted(t: TmacWeights, tile: Tile = Tile()) -> tuple[bytes, np.ndarray]:
    """(weight bytes in the kernel layout, scales in the kernel layout (zf interleaved))."""
    M, K = t.q.shape
    check_tile(M, K, t.bits, t.group, tile)
    planes = (t.q[:, None, :] >> np.arange(t.bits, dtype=np.uint8)[None, :, None]) & 1
    idx = (planes.reshape(M, t.bits, K // G, G) << np.arange(G, dtype=np.uint8)).sum(
        -1, dtype=np.uint8)                                                  # [M, b, K/4]
    addr, shift = _weight_addresses(M, K, t.bits, tile)
    addr, val = addr.reshape(-1), (idx << shift.astype(np.uint8)).reshape(-1)
    out = np.zeros(M * K * t.bits // 8, dtype=np.uint8)
    low = np.broadcast_to(shift == 0, idx.shape).reshape(-1)
    out[addr[low]] = val[low]               # every byte: one low and one high nibble
    out[addr[~low]] |= val[~low]
    return out.tobytes(), _permuted_scales(t, tile)


def _permuted_scales(t: TmacWeights, tile: Tile) -> np.ndarray:
    M, ng = t.scales.shape
    SO, rows = tile.simd_out, tile.bm // t.bits
    m = np.arange(M)[:, None]
    g = np.arange(ng)[None, :]
    tm, rl = m // rows, m % rows
    if t.zf is None:
        out = np.zeros(M * ng, np.float32)
        out[((tm * ng + g) * rows + rl).reshape(-1)] = t.scales.reshape(-1)
        return out
    out = np.zeros(2 * M * ng, np.float32)
    base = (tm * ng + g) * (2 * rows) + (rl // SO) * 2 * SO + rl % SO
    out[base.reshape(-1)] = t.scales.reshape(-1)
    out[(base + SO).reshape(-1)] = t.zf.reshape(-1)
    return out


def unpermute_scales(flat: np.ndarray, M: int, K: int, bits: int, group: int, zero_point: bool,
                     tile: Tile) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of _permuted_scales: (scales [M, K/gs], zf [M, K/gs] or None)."""
    ng, SO, rows = K // group, tile.simd_out, tile.bm // bits
    m = np.arange(M)[:, None]
    g = np.arange(ng)[None, :]
    tm, rl = m // rows, m % rows
    if not zero_point:
        return flat[(tm * ng + g) * rows + rl].astype(np.float32), None
    base = (tm * ng + g) * (2 * rows) + (rl // SO) * 2 * SO + rl % SO
    return flat[base].astype(np.float32), flat[base + SO].astype(np.float32)


def unpack_permuted(blob: bytes, M: int, K: int, bits: int, tile: Tile = Tile()) -> np.ndarray:
    """The codes q [M, K] back from the kernel layout."""
    data = np.frombuffer(blob, dtype=np.uint8)
    addr, shift = _weight_addresses(M, K, bits, tile)
    idx = (data[addr] >> shift) & 15                                         # [M, b, K/4]
    planes = (idx[..., None] >> np.arange(G)) & 1                           # [M, b, K/4, 4]
    q = (planes.reshape(M, bits, K) << np.arange(bits)[None, :, None]).sum(1)
    return q.astype(np.uint8)


# ---- LUTs and the LUT GEMV ---------------------------------------------------------------------

SIGNS = (2 * ((np.arange(16)[:, None] >> np.arange(G)) & 1) - 1).astype(np.float32)   # [16, 4]


def build_lut(x: np.ndarray, act_group: int, int8: bool = True):
    """Tables T_j[v] = sum_t (2 bit_t(v) - 1) x_{4j+t}: (QT [K/4, 16], lut_scale [K/AG],
    lut_bias [K/AG] = -sum of x over the group). int8: QT rounded (ties to even) to int8 with one
    scale per act_group activations (max |T| / 127); otherwise float tables, scale 1."""
    x = np.asarray(x, dtype=np.float32)
    K = x.shape[0]
    T = x.reshape(K // G, G) @ SIGNS.T                                        # [K/4, 16]
    bias = -x.reshape(K // act_group, act_group).sum(-1)
    if not int8:
        return T, np.ones(K // act_group, np.float32), bias
    per = act_group // G
    amax = np.abs(x).reshape(K // G, G).sum(-1).reshape(-1, per).max(-1)     # = max|T| per group
    scale = (amax / 127).astype(np.float32)
    inv = np.where(scale > 0, 1 / np.where(scale > 0, scale, 1), 0).astype(np.float32)
    QT = np.clip(np.rint(T * np.repeat(inv, per)[:, None]), -128, 127)
    return QT.astype(np.float32), scale, bias


def lut_gemv(t: TmacWeights, x: np.ndarray, act_group: int = 64, int8: bool = True) -> np.ndarray:
    """y = W x the way T-MAC computes it: per bit plane, table lookups summed per activation
    group and scaled (the bias only on plane 0), times the weight group's scale, zero points via
    the bias sums, planes combined with alpha = [1/2, 1, 2, 4]."""
    M, K = t.q.shape
    if t.group % act_group and act_group % t.group:
        raise ValueError("act_group and group must nest")
    QT, lut_s, lut_b = build_lut(x, act_group, int8)
    per = act_group // G
    y = np.zeros(M, dtype=np.float64)
    cols = np.arange(K // G)[None, :]
    for b in range(t.bits):
        plane = (t.q >> b) & 1                                                # [M, K]
        idx = (plane.reshape(M, K // G, G) << np.arange(G)).sum(-1)          # [M, K/4]
        looked = QT[cols, idx].reshape(M, K // act_group, per).sum(-1)       # [M, K/AG]
        c = looked * lut_s + (lut_b if b == 0 else 0)
        c = c.reshape(M, K // t.group, -1).sum(-1) if t.group >= act_group else c
        y += ALPHA[b] * (c * t.scales).sum(-1)
    if t.zf is not None:
        gb = lut_b.reshape(K // t.group, -1).sum(-1) if t.group >= act_group else lut_b
        y += (t.zf * gb).sum(-1)                       # 2 zf sum(bias) on plane 0, times 1/2
    return y.astype(np.float32)


def lut_gemm(t: TmacWeights, X: np.ndarray, act_group: int = 64, int8: bool = True) -> np.ndarray:
    """Batched (prefill): one table per activation row, as llama.cpp's T-MAC path does."""
    return np.stack([lut_gemv(t, row, act_group, int8) for row in np.asarray(X)])
