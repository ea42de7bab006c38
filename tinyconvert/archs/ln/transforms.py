"""Tensor transforms the LayerNorm families need before naming, as row readers over checkpoint
records (tinyconvert.formats.records): a transpose (GPT-2's Conv1D weights are [in, out]), a
row-block reorder (GPT-NeoX's and Falcon's fused qkv) and a stack of 1-D tensors into rows
(StableLM 2 12B's per-head q/k norms)."""
from __future__ import annotations

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord
from tinyconvert.pipeline.write.held import HeldWhole


def transposed(rec: TensorRecord) -> TensorRecord:
    """rec [a, b] as [b, a]. A transpose needs whole columns: the source is read once when the
    first rows are asked for and let go after every row was served (one tensor in memory)."""
    if len(rec.shape) != 2:
        raise InputError(f"tensor {rec.name!r} has shape {rec.shape}; a 2-D matrix was expected")
    held = HeldWhole(lambda: np.ascontiguousarray(rec.read_rows(0, rec.shape[0]).T),
                     rec.shape[1])
    read = held.reader()
    return TensorRecord(rec.name, (rec.shape[1], rec.shape[0]), rec.dtype, read, rec.source)


def reordered(rec: TensorRecord, order: list[int], block_rows: int) -> TensorRecord:
    """Rows regrouped in blocks of block_rows: output block j is source block order[j] (a fused
    qkv weight, or its bias read as rows of one value)."""
    if rec.n_rows != len(order) * block_rows:
        raise InputError(f"tensor {rec.name!r} has {rec.n_rows} rows, expected "
                         f"{len(order)} blocks of {block_rows}")

    def read(r0: int, r1: int) -> np.ndarray:
        parts, r = [], r0
        while r < r1:
            j, off = divmod(r, block_rows)
            n = min(r1 - r, block_rows - off)
            src = order[j] * block_rows + off
            parts.append(rec.read_rows(src, src + n))
            r += n
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
    return TensorRecord(rec.name, rec.shape, rec.dtype, read, rec.source)


def stacked(name: str, recs: list[TensorRecord]) -> TensorRecord:
    """1-D records of equal length stacked into [len(recs), d] (row i is recs[i])."""
    d = recs[0].shape
    if any(r.shape != d or len(d) != 1 or r.dtype != recs[0].dtype for r in recs):
        raise InputError(f"cannot stack {[r.name for r in recs][:3]}...: shapes "
                         f"{sorted({r.shape for r in recs})} / dtypes differ")

    def read(r0: int, r1: int) -> np.ndarray:
        return np.concatenate([recs[i].read_rows(0, d[0]).reshape(1, -1) for i in range(r0, r1)])
    return TensorRecord(name, (len(recs), d[0]), recs[0].dtype, read, recs[0].source)
