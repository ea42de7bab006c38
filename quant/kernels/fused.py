"""The whole-row compiled kernels by type: rows in their stored float format (float32, or fp16 /
bf16 bits) to finished block bytes in one pass: the C ones (quant/kernels/ckernels.c) where
they were built, else quant/kernels/fused_legacy_numba.py and fused_kquants_numba.py. Types
without one, runs without numba (TINYCONVERT_NO_NUMBA=1) and importance-matrix quantization
take the per-type quantize functions instead."""
from __future__ import annotations

import numpy as np

from tinyconvert.quant.kernels.cload import row_kernel
from tinyconvert.quant.kernels.loader import compiled, run_rows

# type name -> (kernel module, kernel, weights per block, bytes per block)
FUSED = {
    "q8_0": ("kernels.fused_legacy_numba", "q8_0_rows", 32, 34),
    "q4_0": ("kernels.fused_legacy_numba", "q4_0_rows", 32, 18),
    "q5_0": ("kernels.fused_legacy_numba", "q5_0_rows", 32, 22),
    "q4_k": ("kernels.fused_kquants_numba", "q4_k_rows", 256, 144),
    "q5_k": ("kernels.fused_kquants_numba", "q5_k_rows", 256, 176),
    "q6_k": ("kernels.fused_kquants_numba", "q6_k_rows", 256, 210),
}
SOURCES = ("F32", "F16", "BF16")


def kernel(name: str):
    """The compiled kernel for type `name`: the C one where the library was built, else numba's,
    or None (no such kernel, or neither available)."""
    if name not in FUSED:
        return None
    if (fn := row_kernel(name)) is not None:
        return fn
    mod = compiled(FUSED[name][0])
    return None if mod is None else getattr(mod, FUSED[name][1])


def quantize_rows(name: str, rows: np.ndarray, src_dtype: str = "F32"):
    """rows [n, k] (float32 values, or fp16 / bf16 bits as uint16 for "F16" / "BF16") -> uint8
    [n, k / block * bytes] of type `name`; None where there is no compiled kernel for it."""
    fn = kernel(name)
    if fn is None or src_dtype not in SOURCES:
        return None
    return run_rows(fn, rows, src_dtype, *FUSED[name][2:])
