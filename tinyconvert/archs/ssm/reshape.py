"""Checkpoint records the state-space families change before naming, each still streamed by
rows: a new shape over the same elements (Mamba's conv1d squeeze, Mamba2's [n, 1] A and D and
its grouped norm), A = -exp(A_log) in the precision llama.cpp's converter computes it, and the
chunked equality test that drops an output matrix equal to the embeddings."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord, rows_and_len
from tinyconvert.pipeline.write.encode import to_f32

CHUNK_ROWS = 4096


def reshaped(rec: TensorRecord, shape: tuple[int, ...]) -> TensorRecord:
    """The same elements in row-major order under another shape."""
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(rec.shape, dtype=np.int64)):
        raise InputError(f"tensor {rec.name!r} has shape {rec.shape}; expected "
                         f"{int(np.prod(shape))} values to view as {shape}")
    _, row_len = rows_and_len(shape)
    src_len = rec.row_len

    def read(r0: int, r1: int) -> np.ndarray:
        e0, e1 = r0 * row_len, r1 * row_len               # element range wanted
        s0, s1 = e0 // src_len, -(-e1 // src_len)         # source rows holding it
        flat = rec.read_rows(s0, s1).reshape(-1)
        return flat[e0 - s0 * src_len:e1 - s0 * src_len].reshape(r1 - r0, row_len)
    return replace(rec, shape=tuple(shape), read_rows=read)


def neg_exp(rec: TensorRecord) -> TensorRecord:
    """A = -exp(A_log), computed by torch as llama.cpp's converter does: in f16 for F16
    checkpoints, in f32 otherwise (it widens BF16 to F32 before any transform)."""
    out_dtype = "F16" if rec.dtype == "F16" else "F32"

    def read(r0: int, r1: int) -> np.ndarray:
        import torch
        x = rec.read_rows(r0, r1)
        x = x if out_dtype == "F16" else to_f32(x, rec.dtype)
        return (-torch.exp(torch.from_numpy(np.ascontiguousarray(x)))).numpy()
    return replace(rec, dtype=out_dtype, read_rows=read)


def same_values(a: TensorRecord, b: TensorRecord) -> bool:
    """torch.equal on the two tensors as float32, read CHUNK_ROWS rows at a time."""
    if a.shape != b.shape:
        return False
    for r0 in range(0, a.n_rows, CHUNK_ROWS):
        r1 = min(r0 + CHUNK_ROWS, a.n_rows)
        if not np.array_equal(to_f32(a.read_rows(r0, r1), a.dtype),
                              to_f32(b.read_rows(r0, r1), b.dtype)):
            return False
    return True
