"""The LUT matrix product the runtime runs T-MAC tensors with (shared/specs/tmac.md sections 3, 5):
weights stay as 4-bit table indices per bit plane; activations become int8 tables of 16 entries
per 4 activations; y = W x is assembled from table lookups, never from dequantized weights.

The arithmetic is T-MAC's (PR #13206 qgemm_lut_int8_g4): int8 tables with one scale per
activation group (64 activations when the weight group allows, else 32), lookups summed in
integers per activation group, then scaled; the table bias (-sum x) on bit plane 0; zero points
through the bias sums; planes combined with alpha = [1/2, 1, 2, 4]. The compiled kernel is
quant/tmac/tmac_numba.py; without numba the reference quant.tmac.lut_gemv runs row by row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyconvert.quant.tmac import core as tmac
from tinyconvert.quant.kernels.loader import compiled

G = tmac.G


@dataclass(frozen=True)
class LutWeights:
    idx: np.ndarray          # uint8 [M, K/8, bits]: table j's index in the low nibble of byte
                             # j/2 for even j, the high nibble for odd j; bit planes together
    scales: np.ndarray       # float32 [M, K/group]
    zf: np.ndarray | None    # float32 [M, K/group]
    bits: int
    group: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.idx.shape[0], self.idx.shape[1] * 2 * G

    @property
    def act_group(self) -> int:
        return 64 if self.group % 64 == 0 else 32

    @property
    def nbytes(self) -> int:
        return self.idx.nbytes + self.scales.nbytes + (self.zf.nbytes if self.zf is not None else 0)

    @classmethod
    def from_tmac(cls, t: tmac.TmacWeights) -> "LutWeights":
        """What T-MAC's load-time transform does: bit planes split into 4-bit table indices."""
        M, K = t.q.shape
        if K % (2 * G):
            raise ValueError(f"LUT path needs rows that are a multiple of 8, got {K}")
        planes = []
        for b in range(t.bits):
            nib = (((t.q >> b) & 1).reshape(M, K // G, G) << np.arange(G, dtype=np.uint8)).sum(
                -1, dtype=np.uint8)                                              # [M, K/4]
            planes.append(nib[:, 0::2] | (nib[:, 1::2] << 4))
        zf = None if t.zf is None else np.ascontiguousarray(t.zf, np.float32)
        return cls(np.ascontiguousarray(np.stack(planes, axis=-1)), np.ascontiguousarray(
            t.scales, np.float32), zf, t.bits, t.group)

    def to_tmac(self) -> tmac.TmacWeights:
        M, K = self.shape
        planes = np.moveaxis(self.idx, -1, 0)                                   # [b, M, K/8]
        nib = np.empty((self.bits, M, K // G), np.uint8)
        nib[..., 0::2], nib[..., 1::2] = planes & 15, planes >> 4
        bits = (nib[..., None] >> np.arange(G, dtype=np.uint8)) & 1               # [b, M, K/4, 4]
        q = (bits.reshape(self.bits, M, K) << np.arange(self.bits, dtype=np.uint8)[:, None, None])
        return tmac.TmacWeights(q.sum(0, dtype=np.uint8), self.scales, self.zf, self.bits,
                                self.group)


def tables(X: np.ndarray, act_group: int, int8: bool = True):
    """Activation rows X [N, K] -> (QT [K/4, 16, N] int8 (or float32), lut_scale [K/AG, N],
    lut_bias [K/AG, N]); rows last so the kernel adds all N rows' lookups as one vector."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    N, K = X.shape
    T = X.reshape(N, K // G, G) @ tmac.SIGNS.T                                  # [N, K/4, 16]
    bias = -X.reshape(N, K // act_group, act_group).sum(-1)
    if not int8:
        return (np.ascontiguousarray(T.transpose(1, 2, 0)), np.ones((K // act_group, N),
                np.float32), np.ascontiguousarray(bias.T))
    per = act_group // G
    amax = np.abs(X).reshape(N, K // G, G).sum(-1).reshape(N, -1, per).max(-1)   # [N, K/AG]
    scale = (amax / 127).astype(np.float32)
    inv = np.where(scale > 0, 1 / np.where(scale > 0, scale, 1), 0).astype(np.float32)
    QT = np.clip(np.rint(T * np.repeat(inv, per, axis=1)[..., None]), -128, 127).astype(np.int8)
    return (np.ascontiguousarray(QT.transpose(1, 2, 0)), np.ascontiguousarray(scale.T),
            np.ascontiguousarray(bias.T))


def pair_tables(QT: np.ndarray) -> np.ndarray:
    """int8 QT [K/4, 16] -> int16 [K/8, 256]: entry hi*16 + lo = QT[2jj, lo] + QT[2jj+1, hi], the
    lookup sum for one byte of indices (low nibble: table 2jj, high nibble: table 2jj+1)."""
    lo = QT[0::2].astype(np.int16)[:, None, :]                      # [K/8, 1, 16]
    hi = QT[1::2].astype(np.int16)[:, :, None]                      # [K/8, 16, 1]
    return np.ascontiguousarray((lo + hi).reshape(-1, 256))


def matmul(w: LutWeights, X: np.ndarray, int8: bool = True) -> np.ndarray:
    """Y [N, M] = X [N, K] W^T through tables."""
    X = np.asarray(X, dtype=np.float32)
    kernels = compiled("tmac.tmac_numba")
    if kernels is None:
        t = w.to_tmac()
        return np.stack([tmac.lut_gemv(t, row, w.act_group, int8) for row in X])
    QT, lut_s, lut_b = tables(X, w.act_group, int8)
    out = np.empty((X.shape[0], w.shape[0]), np.float32)
    zf = w.zf if w.zf is not None else np.zeros((1, 1), np.float32)
    args = (w.zf is not None, w.group // w.act_group, w.act_group // G)
    if X.shape[0] == 1 and int8:
        kernels.lut_gemv(w.idx, w.scales, zf, args[0], pair_tables(QT[..., 0]), lut_s[:, 0],
                         lut_b[:, 0], *args[1:], out[0])
    else:
        kernels.lut_matmul(w.idx, w.scales, zf, args[0], QT, lut_s, lut_b, *args[1:], out)
    return out
