"""ggml's own row quantizer, ggml_quantize_chunk, called through ctypes from the libggml-base
that llama-cpp-python built: the bytes llama.cpp writes for an array, without a model file."""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np


@functools.cache
def _chunk():
    import llama_cpp
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    fn = lib.ggml_quantize_chunk
    # size_t ggml_quantize_chunk(enum ggml_type, const float * src, void * dst, int64_t start,
    #                            int64_t nrows, int64_t n_per_row, const float * imatrix)
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                   ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    return fn


def ggml_quantize(rows: np.ndarray, ggml_type: int, row_bytes: int) -> np.ndarray:
    """rows f32 [n, k] -> uint8 [n, row_bytes] as ggml quantizes them (no importance matrix)."""
    x = np.ascontiguousarray(rows, dtype=np.float32)
    out = np.zeros((x.shape[0], row_bytes), dtype=np.uint8)
    written = _chunk()(ggml_type, x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1], None)
    assert written == out.nbytes, (written, out.nbytes)
    return out
