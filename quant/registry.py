"""The quant registry: one entry per GGML tensor type, keyed by lower-case GGUF type name.

Each entry knows its GGML id, block layout and how to encode/decode float32 rows. Named mixes
(`q4_k_m`, ...) are recipes in `tinyconvert/`, not quant types.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class QuantType:
    name: str                 # lower-case GGUF type name, e.g. "q8_0"
    ggml_id: int              # GGMLQuantizationType value
    block_size: int           # weights per block
    type_size: int            # bytes per block
    quantize: Callable[..., np.ndarray]    # (rows f32 [n, k], imatrix=None) -> uint8 [n, k/bs*ts]
    dequantize: Callable[[np.ndarray], np.ndarray]  # uint8 [n, row_bytes] -> f32 [n, k]

    def row_bytes(self, n_per_row: int) -> int:
        self.check_row(n_per_row)
        return n_per_row // self.block_size * self.type_size

    def nbytes(self, shape: tuple[int, ...]) -> int:
        n_rows = math.prod(shape[:-1])        # exact: int64 would wrap on a hostile shape
        return n_rows * self.row_bytes(shape[-1])

    def fits(self, n_per_row: int) -> bool:
        return n_per_row % self.block_size == 0

    def check_row(self, n_per_row: int) -> None:
        if not self.fits(n_per_row):
            raise ValueError(
                f"{self.name} needs rows that are a multiple of {self.block_size}, got {n_per_row}")

    @property
    def bits_per_weight(self) -> float:
        return self.type_size * 8 / self.block_size


REGISTRY: dict[str, QuantType] = {}


def c_float_semantics(fn):
    """Ports of C code overflow to inf for denormal blocks exactly as C does; numpy's warnings
    about it are noise."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return fn(*args, **kwargs)
    return wrapper


def register(qtype: QuantType) -> QuantType:
    if qtype.name in REGISTRY:
        raise ValueError(f"quant type {qtype.name!r} registered twice")
    if any(q.ggml_id == qtype.ggml_id for q in REGISTRY.values()):
        raise ValueError(f"GGML id {qtype.ggml_id} registered twice ({qtype.name})")
    qtype = QuantType(qtype.name, qtype.ggml_id, qtype.block_size, qtype.type_size,
                      c_float_semantics(qtype.quantize), qtype.dequantize)
    REGISTRY[qtype.name] = qtype
    return qtype


def get_qtype(name: str) -> QuantType:
    key = name.lower()
    if key not in REGISTRY:
        raise KeyError(f"unknown quant type {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def qtype_by_id(ggml_id: int) -> QuantType:
    for q in REGISTRY.values():
        if q.ggml_id == ggml_id:
            return q
    raise KeyError(f"GGML type id {ggml_id} is not supported; known ids: "
                   f"{', '.join(f'{q.ggml_id} ({q.name})' for q in REGISTRY.values())}")
