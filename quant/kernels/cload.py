"""The C kernels (quant/kernels/ckernels.c, built at install where a C compiler is found) loaded
through ctypes: a millisecond, where numba's import and dispatch set-up take about 0.35 s, most
of a small model's quantization. None when the library was not built, or with
TINYCONVERT_NO_C=1 (then fused.py falls back to the numba kernels)."""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import os


@functools.cache
def library():
    """The loaded C library, or None."""
    if os.environ.get("TINYCONVERT_NO_C") == "1":
        return None
    spec = importlib.util.find_spec("tinyconvert.quant.kernels._ckernels")
    if spec is None or not spec.origin:
        return None
    lib = ctypes.CDLL(spec.origin)
    lib.tc_f16_bits.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    lib.tc_f16_bits.restype = None
    return lib


@functools.cache
def _typed(name: str):
    """tc_<name>_rows with its argument types, or None where the library has no such kernel
    (the types are fused.FUSED's; the C file says which it implements)."""
    fn = getattr(library(), f"tc_{name}_rows", None)
    if fn is not None:
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        fn.argtypes = [p, i64, i64, ctypes.c_int, p, p]
        fn.restype = ctypes.c_int
    return fn


def row_kernel(name: str):
    """A callable (src [n, k], kind, table, out) -> None for type `name`, as the numba row
    kernels take, or None without the library or without a C kernel for `name`."""
    if library() is None or (fn := _typed(name)) is None:
        return None

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
