"""llama.cpp's per-tensor quantizer, ggml_quantize_chunk from libggml-base (the library
llama-cpp-python ships), as the byte oracle for one tensor with or without an importance matrix.
The C code asserts (and kills the interpreter) for IQ2_XXS, IQ2_XS and IQ1_S without a matrix,
so those are refused here before the call."""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np


@functools.cache
def _lib():
    import llama_cpp
    from llama_cpp._ctypes_extensions import load_shared_library
    lib = load_shared_library("ggml-base", Path(llama_cpp.__file__).parent / "lib")
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


def requires_imatrix(ggml_id: int) -> bool:
    return bool(_lib().ggml_quantize_requires_imatrix(ggml_id))


def quantize_chunk(ggml_id: int, rows: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
    """rows: float32 [n, k]; imatrix: float32 [k] or None -> uint8 [n, row_bytes]."""
    lib = _lib()
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n, k = rows.shape
    if imatrix is None and requires_imatrix(ggml_id):
        raise ValueError(f"ggml type {ggml_id} needs an importance matrix")
    qw = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    if qw is not None and qw.shape != (k,):
        raise ValueError(f"imatrix shape {qw.shape} != ({k},)")
    row_bytes = lib.ggml_row_size(ggml_id, k)
    out = np.zeros((n, row_bytes), dtype=np.uint8)
    size = lib.ggml_quantize_chunk(ggml_id, rows.ctypes.data, out.ctypes.data, 0, n, k,
                                   None if qw is None else qw.ctypes.data)
    assert size == n * row_bytes, (size, n, row_bytes)
    return out


def llamacpp_quantize_imatrix(src: Path, dst: Path, ftype: int,
                              imatrix: dict[str, np.ndarray] | None, *, threads: int = 2) -> int:
    """llama_model_quantize with params.imatrix: a NULL-terminated llama_model_imatrix_data
    array of (name, float32 data, size), as llama-quantize passes its loaded matrix (None: no
    matrix at all; {}: an empty one, which still counts as "has an imatrix"). Returns the rc
    (1 where llama.cpp throws, e.g. a type that needs a matrix without one)."""
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    keep = []
    if imatrix is not None:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, vec) in enumerate(sorted(imatrix.items())):
            arr = np.ascontiguousarray(vec, dtype=np.float32)
            keep.append(arr)
            entries[i].name = name.encode()
            entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = arr.size
        keep.append(entries)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    return llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                          ctypes.byref(params))
