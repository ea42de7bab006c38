"""Where the numba kernels come from: imported on first use (numba takes a few hundred
milliseconds to import), or None without numba or with TINYCONVERT_NO_NUMBA=1, in which case the
vectorised numpy versions run. The whole-row kernels prefer the C library (cload.py) and come
here only without it; run_rows drives either."""
from __future__ import annotations

import functools
import importlib
import os

F32, F16, BF16 = 0, 1, 2          # source kinds: float32 values, fp16 bits, bf16 bits (uint16)
KINDS = {"F32": F32, "F16": F16, "BF16": BF16}


@functools.cache
def compiled(module: str = "kernels.numba_kernels"):
    """module, under tinyconvert.quant: kernels.fused_legacy_numba / kernels.fused_kquants_numba
    (whole rows of Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K), kernels.numba_kernels (K-quant searches,
    IQ4_NL) or tmac.tmac_numba / tmac.tmac_search_numba (T-MAC LUT product and search)."""
    if os.environ.get("TINYCONVERT_NO_NUMBA") == "1":
        return None
    try:
        return importlib.import_module(f"tinyconvert.quant.{module}")
    except ImportError:
        return None


def run_rows(kernel, rows, src_dtype: str, qk: int, type_size: int):
    """A whole-row kernel (quant/kernels/fused.py) over rows [n, k] in their stored format ("F32":
    float32 values, "F16" / "BF16": the bits as uint16) -> uint8 [n, k / qk * type_size]."""
    import numpy as np
    if src_dtype == "F16" and rows.dtype == np.float16:
        rows = rows.view(np.uint16)
    src = np.ascontiguousarray(rows, dtype=np.float32 if src_dtype == "F32" else np.uint16)
    if src.ndim != 2 or src.shape[1] % qk:
        raise ValueError(f"rows of a multiple of {qk} weights needed, got shape {src.shape}")
    out = np.empty((src.shape[0], src.shape[1] // qk * type_size), dtype=np.uint8)
    kernel(src, KINDS[src_dtype], half_table(), out)
    return out


@functools.cache
def half_table():
    """float32 value of every fp16 bit pattern (exact, NaN payloads included)."""
    import numpy as np
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
