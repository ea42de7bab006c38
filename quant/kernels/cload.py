"""The C kernels (quant/kernels/ckernels.c, built at install where a C compiler is found) loaded
through ctypes: a millisecond, where numba's import and dispatch set-up take about 0.35 s, most
of a small model's quantization. None when the library was not built, or with
TINYCONVERT_NO_C=1 (then fused.py falls back to the numba kernels)."""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import os

ROW_KERNELS = ("q8_0", "q4_0", "q5_0", "q4_k", "q5_k", "q6_k")


@functools.cache
def library():
    """The loaded C library with its row kernels typed, or None."""
    if os.environ.get("TINYCONVERT_NO_C") == "1":
        return None
    spec = importlib.util.find_spec("tinyconvert.quant.kernels._ckernels")
    if spec is None or not spec.origin:
        return None
    lib = ctypes.CDLL(spec.origin)
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    for name in ROW_KERNELS:
        fn = getattr(lib, f"tc_{name}_rows")
        fn.argtypes = [p, i64, i64, ctypes.c_int, p, p]
        fn.restype = ctypes.c_int
    lib.tc_f16_bits.argtypes = [p, i64, p]
    lib.tc_f16_bits.restype = None
    return lib


def row_kernel(name: str):
    """A callable (src [n, k], kind, table, out) -> None for type `name`, as the numba row
    kernels take, or None without the library or without a C kernel for `name`."""
    lib = library()
    if lib is None or name not in ROW_KERNELS:
        return None
    fn = getattr(lib, f"tc_{name}_rows")

    def run(src, kind, table, out):
        n, k = src.shape
        if fn(src.ctypes.data, n, k, kind, table.ctypes.data, out.ctypes.data) != 0:
            raise ValueError(f"{name}: C kernel refused rows of shape {src.shape}")
    return run


def f16_bits(v):
    """fp16 bits (uint16) of a float32 array through the C rounding (for tests)."""
    import numpy as np
    v = np.ascontiguousarray(v, dtype=np.float32)
    out = np.empty(v.shape, dtype=np.uint16)
    library().tc_f16_bits(v.ctypes.data, v.size, out.ctypes.data)
    return out
