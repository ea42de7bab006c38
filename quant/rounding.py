"""C rounding helpers shared by the bit-exact ports of ggml-quants.c."""
from __future__ import annotations

import numpy as np


def roundf(x: np.ndarray) -> np.ndarray:
    """C roundf: halves away from zero. Not trunc(x + 0.5): in float32 0.49999997 + 0.5 rounds
    to 1.0. Round to nearest even instead, then move the exact halves away from zero (x - trunc(x)
    is exact in float32)."""
    x = np.asarray(x)
    r = np.rint(x)
    t = np.trunc(x)
    return np.where(np.abs(x - t) == 0.5, t + np.sign(x), r)
