"""Where the compiled kernels come from: numba_kernels, imported on first use (numba takes a few
hundred milliseconds to import), or None without numba or with TINYCONVERT_NO_NUMBA=1, in which
case the vectorised numpy versions run."""
from __future__ import annotations

import functools
import os


@functools.cache
def compiled():
    if os.environ.get("TINYCONVERT_NO_NUMBA") == "1":
        return None
    try:
        from tinyconvert.quant import numba_kernels
    except ImportError:
        return None
    return numba_kernels
