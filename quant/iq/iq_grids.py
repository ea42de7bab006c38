"""The IQ quantizers' lattice tables, built from gguf-py's dequantization grids (the same points
as ggml-quants.c's kgrid_* tables; see the spec's section 3.2) the way iq2xs_init_impl and
iq3xs_init_impl build them:

- pos [n_grid, dim] int8: grid point k's coordinates 2*digit + 1 (1, 3, 5 for the 3-level grids
  of IQ2/IQ1, 1..15 for IQ3), digit being the value's index in gguf-py's grid_map;
- kmap [4^8 or 8^4 codes]: a code u = sum(L_i << bits*i) -> its grid index, or -1 off the grid;
- for every off-grid code, its neighbour list: the grid points whose squared distance to the
  code's coordinates is among the nwant smallest distinct distances, ordered by (distance,
  index) as C's qsort with a total order leaves them. Stored flat: nb_start[u], nb_count[u].
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import njit

# type -> (gguf-py class, levels per coordinate: 2-bit or 3-bit code, nwant)
GRIDS = {"iq2_xxs": ("IQ2_XXS", 2, 2), "iq2_xs": ("IQ2_XS", 2, 2), "iq2_s": ("IQ2_S", 2, 1),
         "iq1_s": ("IQ1_S", 2, 3), "iq3_xxs": ("IQ3_XXS", 3, 2), "iq3_s": ("IQ3_S", 3, 3)}


@dataclass(frozen=True)
class Grid:
    pos: np.ndarray          # int8 [n_grid, dim]
    kmap: np.ndarray         # int32 [kmap_size]
    nb_start: np.ndarray     # int32 [kmap_size]
    nb_count: np.ndarray     # int32 [kmap_size]
    neighbours: np.ndarray   # int32 [total]


@njit(cache=True)
def _neighbours(pos, kmap, bits, nwant):
    n_grid, dim = pos.shape
    size = kmap.shape[0]
    mask = (1 << bits) - 1
    start = np.zeros(size, np.int32)
    count = np.zeros(size, np.int32)
    out = np.zeros(size * 64, np.int32)
    total = 0
    d2 = np.zeros(n_grid, np.int32)
    p = np.zeros(dim, np.int32)
    near = np.zeros(nwant, np.int32)         # the nwant smallest distinct distances, ascending
    for u in range(size):
        if kmap[u] >= 0:
            continue
        for k in range(dim):
            p[k] = 2 * ((u >> (bits * k)) & mask) + 1
        have = 0
        for j in range(n_grid):
            s = 0
            for k in range(dim):
                diff = np.int32(pos[j, k]) - p[k]
                s += diff * diff
            d2[j] = s
            at = have                         # insert s into near if new and small enough
            for m in range(have):
                if near[m] >= s:
                    at = m
                    break
            if at < have and near[at] == s:
                continue
            if at < nwant:
                for m in range(min(have, nwant - 1), at, -1):
                    near[m] = near[m - 1]
                near[at] = s
                have = min(have + 1, nwant)
        if total + n_grid > out.shape[0]:
            grown = np.zeros(out.shape[0] * 2 + n_grid, np.int32)
            grown[:total] = out[:total]
            out = grown
        start[u] = total
        for m in range(have):                 # by distance, then by index (C's qsort order)
            for j in range(n_grid):
                if d2[j] == near[m]:
                    out[total] = j
                    total += 1
        count[u] = total - start[u]
    return start, count, out[:total].copy()


@functools.cache
def grid(qname: str) -> Grid:
    import gguf
    cls_name, bits, nwant = GRIDS[qname]
    cls = getattr(gguf.quants, cls_name)
    cls.init_grid()
    values = np.asarray(cls.grid, dtype=np.float32).reshape(cls.grid_shape)
    grid_map = np.asarray(cls.grid_map, dtype=np.float32)
    digits = np.argmax(values[..., None] == grid_map, axis=-1)             # [n_grid, dim]
    assert np.array_equal(grid_map[digits], values), qname
    pos = (2 * digits + 1).astype(np.int8)
    dim = pos.shape[1]
    codes = (digits << (bits * np.arange(dim))).sum(1)
    kmap = np.full(1 << (bits * dim) if bits == 3 else 43692, -1, dtype=np.int32)
    kmap[codes] = np.arange(len(codes), dtype=np.int32)
    start, count, flat = _neighbours(pos, kmap, bits, nwant)
    return Grid(pos, kmap, start, count, flat)


@functools.cache
def ksigns() -> np.ndarray:
    """ksigns_iq2xs: 7 sign bits -> the 8-bit pattern with even parity (bit 7 the parity)."""
    import gguf
    return np.frombuffer(gguf.quants.IQ2_XXS.ksigns, dtype=np.uint8).copy()
