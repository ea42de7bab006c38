"""T-MAC tensor types as GGUF stores them (shared/specs/tmac.md section 6), kept apart from the
main registry because their ids mean other types upstream: generation C (llama.cpp PR #13206,
TMAC_W2G64_0 = 40 ... TMAC_W4G128_1 = 47) collides with MXFP4/NVFP4/Q1_0, generation B (T-MAC's
own fork, I1..I4 = 36..39) with BitNet's types. A file says which table applies with the keys
below; without them, ids keep their upstream meaning.

Tensor payload, one blob per 2-D weight W [M, K] (ne = [K, M]):
    canonical (generation C):  q bits, row-major, MSB-first  | scales f32 [M, K/gs] | zf f32 [M, K/gs] (_1)
    kernel    (generation B):  q in T-MAC's tile layout (bm, kfactor) | scales (+ zf) in its tile layout
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinyconvert.quant.tmac import core as tmac

LAYOUT_KEY = "tinyconvert.tmac.layout"          # "canonical" (generation C) or "kernel" (B)
BITS_KEY = "tinyconvert.tmac.bits"
GROUP_KEY = "tinyconvert.tmac.group_size"
ZERO_POINT_KEY = "tinyconvert.tmac.zero_point"
BM_KEY = "tinyconvert.tmac.bm"
KFACTOR_KEY = "tinyconvert.tmac.kfactor"
SIMD_IN_KEY = "tinyconvert.tmac.simd_n_in"
SIMD_OUT_KEY = "tinyconvert.tmac.simd_n_out"
LAYOUTS = ("canonical", "kernel")
ALL_KEYS = (LAYOUT_KEY, BITS_KEY, GROUP_KEY, ZERO_POINT_KEY, BM_KEY, KFACTOR_KEY, SIMD_IN_KEY,
            SIMD_OUT_KEY)


@dataclass(frozen=True)
class TmacType:
    name: str
    ggml_id: int
    file_type: int           # llama.cpp file type (general.file_type) of a file of this type
    bits: int
    group: int
    zero_point: bool
    layout: str = "canonical"
    tile: tmac.Tile | None = None     # kernel layout only
    method: str = field(default="search", compare=False)   # quantizer (tmac.METHODS)

    @property
    def block_size(self) -> int:
        return self.group

    @property
    def type_size(self) -> int:            # bytes per group of one row: codes + scale (+ zf)
        return self.group * self.bits // 8 + 4 * (2 if self.zero_point else 1)

    @property
    def bits_per_weight(self) -> float:
        return self.type_size * 8 / self.group

    @property
    def row_align(self) -> int:
        """Rows are encoded in chunks of whole tiles (kernel layout) or any rows (canonical)."""
        return self.tile.bm // self.bits if self.tile else 1

    def fits(self, n_per_row: int) -> bool:
        return n_per_row % self.group == 0

    def fits_shape(self, shape: tuple[int, ...]) -> str | None:
        """None if a [M, K] matrix can be stored; else why not."""
        if len(shape) != 2:
            return f"{len(shape)}-D"
        if shape[1] % self.group:
            return f"row length {shape[1]} is not a multiple of the group size {self.group}"
        if self.tile is not None:
            try:
                tmac.check_tile(shape[0], shape[1], self.bits, self.group, self.tile)
            except ValueError as e:
                return str(e)
        return None

    def nbytes(self, shape: tuple[int, ...]) -> int:
        M, K = shape
        return M * (K // self.group) * self.type_size

    def pack(self, t: tmac.TmacWeights) -> tuple[np.ndarray, list[np.ndarray]]:
        """Rows of one chunk -> (their code bytes, their tail sections). The chunk's bytes follow
        the previous chunk's; each tail section is appended after all code bytes."""
        if self.layout == "canonical":
            tails = [t.scales.astype("<f4")] + ([t.zf.astype("<f4")] if self.zero_point else [])
            return np.frombuffer(tmac.pack_codes(t), np.uint8), tails
        codes, scales = tmac.pack_permuted(t, self.tile)
        return np.frombuffer(codes, np.uint8), [scales.astype("<f4")]

    def quantize_rows(self, rows: np.ndarray, imatrix: np.ndarray | None = None) -> tmac.TmacWeights:
        """imatrix: float32 [n_cols] weighting each column's error (search quantizer only)."""
        return tmac.quantize(rows, self.bits, self.group, sym=not self.zero_point,
                             method=self.method, imatrix=imatrix)

    def unpack(self, blob: np.ndarray, shape: tuple[int, ...]) -> tmac.TmacWeights:
        M, K = shape
        if self.layout == "canonical":
            return tmac.unpack_canonical(blob, M, K, self.bits, self.group, self.zero_point)
        nq = M * K * self.bits // 8
        q = tmac.unpack_permuted(blob[:nq], M, K, self.bits, self.tile)
        s, zf = tmac.unpermute_scales(np.frombuffer(blob, "<f4", offset=nq), M, K, self.bits,
                                      self.group, self.zero_point, self.tile)
        return tmac.TmacWeights(q, s, zf, self.bits, self.group)


def _generation_c() -> dict[str, TmacType]:
    out = {}
    ggml_id, file_type = 40, 39
    for bits in (2, 4):
        for group in (64, 128):
            for zp in (False, True):
                name = f"tmac_w{bits}g{group}_{int(zp)}"
                out[name] = TmacType(name, ggml_id, file_type, bits, group, zp)
                ggml_id, file_type = ggml_id + 1, file_type + 1
    return out


CANONICAL: dict[str, TmacType] = _generation_c()
KERNEL_IDS = {1: 36, 2: 37, 3: 38, 4: 39}           # GGML_TYPE_I1..I4 of T-MAC's fork
KERNEL_FILE_TYPE = 38                                # LLAMA_FTYPE_MOSTLY_INT_N


def canonical_type(bits: int, group: int, zero_point: bool) -> TmacType:
    name = f"tmac_w{bits}g{group}_{int(zero_point)}"
    if name not in CANONICAL:
        raise KeyError(f"no T-MAC type for {bits}-bit group {group}: valid "
                       f"{', '.join(CANONICAL)}")
    return CANONICAL[name]


def kernel_type(bits: int, group: int, zero_point: bool, tile: tmac.Tile) -> TmacType:
    if bits not in KERNEL_IDS:
        raise KeyError(f"T-MAC kernel layout needs 1..4 bits, got {bits}")
    return TmacType(f"tmac_i{bits}", KERNEL_IDS[bits], KERNEL_FILE_TYPE, bits, group, zero_point,
                    "kernel", tile)


def keys_for(t: TmacType) -> dict[str, tuple[str, object]]:
    """Metadata that makes a file's T-MAC ids unambiguous: key -> (gguf type name, value)."""
    keys = {LAYOUT_KEY: ("str", t.layout), BITS_KEY: ("u32", t.bits),
            GROUP_KEY: ("u32", t.group), ZERO_POINT_KEY: ("bool", t.zero_point)}
    if t.tile is not None:
        keys |= {BM_KEY: ("u32", t.tile.bm), KFACTOR_KEY: ("u32", t.tile.kfactor),
                 SIMD_IN_KEY: ("u32", t.tile.simd_in), SIMD_OUT_KEY: ("u32", t.tile.simd_out)}
    return keys


class TypeTable:
    """What a file's tensor type ids mean: the T-MAC ids its keys announce, else upstream's."""

    def __init__(self, values: dict):
        self.layout = values.get(LAYOUT_KEY)
        self.by_id: dict[int, TmacType] = {}
        if self.layout is None:
            return
        if self.layout not in LAYOUTS:
            raise ValueError(f"{LAYOUT_KEY} is {self.layout!r}; valid: {', '.join(LAYOUTS)}")
        if self.layout == "canonical":
            self.by_id = {t.ggml_id: t for t in CANONICAL.values()}
            return
        need = (BITS_KEY, GROUP_KEY, ZERO_POINT_KEY, BM_KEY, KFACTOR_KEY)
        missing = [k for k in need if not isinstance(values.get(k), (int, bool))]
        if missing:
            raise ValueError(f"T-MAC kernel layout without {missing[0]}")
        tile = tmac.Tile(values[BM_KEY], values[KFACTOR_KEY], values.get(SIMD_IN_KEY, 16),
                         values.get(SIMD_OUT_KEY, 8))
        if not all(isinstance(v, int) and 0 < v <= 1 << 16 for v in
                   (tile.bm, tile.kfactor, tile.simd_in, tile.simd_out, values[GROUP_KEY])):
            raise ValueError("T-MAC kernel layout keys out of range")
        try:
            t = kernel_type(values[BITS_KEY], values[GROUP_KEY], bool(values[ZERO_POINT_KEY]),
                            tile)
        except KeyError as e:
            raise ValueError(str(e).strip('"')) from None
        self.by_id = {t.ggml_id: t}

    def tmac(self, ggml_id: int) -> TmacType | None:
        return self.by_id.get(ggml_id)
