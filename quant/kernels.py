"""Where the compiled kernels come from: numba_kernels, imported on first use (numba takes a few
hundred milliseconds to import), or None without numba or with TINYCONVERT_NO_NUMBA=1, in which
case the vectorised numpy versions run."""
from __future__ import annotations

import functools
import importlib
import os


@functools.cache
def compiled(module: str = "numba_kernels"):
    """module: numba_kernels (K-quants, IQ4_NL), legacy_numba (Q8_0, Q4_0, Q5_0) or tmac_numba
    (T-MAC search and LUT product)."""
    if os.environ.get("TINYCONVERT_NO_NUMBA") == "1":
        return None
    try:
        return importlib.import_module(f"tinyconvert.quant.{module}")
    except ImportError:
        return None


def compiled_blocks(kernel, rows, block_bytes: int, qk: int = 32):
    """A 32-weight block kernel (legacy_numba) over rows [n, k]: it writes every byte of each
    block but the leading fp16 scale and returns the scales in float32, rounded here by numpy
    (numba has no float16)."""
    import numpy as np
    x = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, qk)
    out = np.empty((x.shape[0], block_bytes), dtype=np.uint8)
    d = kernel(x, out)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return out.reshape(rows.shape[0], -1)
