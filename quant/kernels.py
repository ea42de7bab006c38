"""Where the compiled kernels come from: numba_kernels, imported on first use (numba takes a few
hundred milliseconds to import), or None without numba or with TINYCONVERT_NO_NUMBA=1, in which
case the vectorised numpy versions run."""
from __future__ import annotations

import functools
import importlib
import os


@functools.cache
def compiled(module: str = "numba_kernels"):
    """module: numba_kernels (K-quants, IQ4_NL) or tmac_numba (T-MAC search and LUT product)."""
    if os.environ.get("TINYCONVERT_NO_NUMBA") == "1":
        return None
    try:
        return importlib.import_module(f"tinyconvert.quant.{module}")
    except ImportError:
        return None
