"""C rounding helpers shared by the bit-exact ports of ggml-quants.c."""
from __future__ import annotations

import numpy as np


def roundf(x: np.ndarray) -> np.ndarray:
    """C roundf: halves away from zero. Computed in float64 so that `|x| + 0.5` cannot round up
    (in float32, 0.49999997 + 0.5 == 1.0)."""
    x64 = np.asarray(x, dtype=np.float64)
    return np.copysign(np.floor(np.abs(x64) + 0.5), x64)
