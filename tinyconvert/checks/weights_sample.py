"""Tensor by tensor: a file's stored values against the reference's values rounded to the file's
type, on an evenly spread sample of rows (numpy only; no torch, no model run).

A float file (f32/f16/bf16) is exact up to one rounding, so the check is bit-for-bit: the
reference rows (through the same plan verify's reference reads, transforms applied) are encoded
with the file's type and compared byte for byte with the stored rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyconvert.formats.records import rows_and_len
from tinyconvert.quant import qtype_by_id

SAMPLE_ELEMENTS = 65536          # per tensor; a smaller tensor is compared whole
RUNS = 16                        # stretches of consecutive rows the sample is read in
FLOAT_IDS = {0: "f32", 1: "f16", 30: "bf16"}   # GGML ids of the lossless-to-rounding types


@dataclass(frozen=True)
class RefTensor:
    """One reference tensor: its shape (outermost first) and float32 rows [r0, r1) on demand,
    which must be read in whole blocks of `align` rows (Q/K heads are permuted per block)."""
    shape: tuple[int, ...]
    rows: Callable[[int, int], np.ndarray]
    align: int = 1


@dataclass(frozen=True)
class TensorResult:
    n_elements: int              # elements compared
    sampled: bool                # False: the whole tensor
    mismatch: str | None         # first difference, or None


def sample_rows(n_rows: int, row_len: int, align: int = 1,
                budget: int = SAMPLE_ELEMENTS) -> np.ndarray:
    """Deterministic row indices of about `budget` elements: RUNS runs of consecutive blocks of
    `align` rows, evenly spread from the first block to the last (a run is read in one call);
    every row when the tensor is that small."""
    n_units = n_rows // align
    k = max(1, round(budget / max(1, row_len * align)))
    if k >= n_units:
        return np.arange(n_rows)
    n_runs = min(RUNS, k)
    run = k // n_runs
    starts = np.linspace(0, n_units - run, n_runs).round().astype(np.int64)
    units = np.unique((starts[:, None] + np.arange(run)[None, :]).ravel())
    return (units[:, None] * align + np.arange(align)[None, :]).ravel()


def read_sample(ref: RefTensor, idx: np.ndarray, row_len: int) -> np.ndarray:
    """The reference's float32 rows at idx, read in runs of consecutive aligned blocks."""
    blocks = np.unique(idx // ref.align)
    out = np.empty((len(idx), row_len), dtype=np.float32)
    start = 0
    while start < len(blocks):
        end = start
        while end + 1 < len(blocks) and blocks[end + 1] == blocks[end] + 1:
            end += 1
        r0, r1 = int(blocks[start]) * ref.align, (int(blocks[end]) + 1) * ref.align
        rows = np.asarray(ref.rows(r0, r1), dtype=np.float32).reshape(r1 - r0, row_len)
        pick = (idx >= r0) & (idx < r1)
        out[pick] = rows[idx[pick] - r0]
        start = end + 1
    return out


def compare_tensor(name: str, ref: RefTensor, stored: np.ndarray, ggml_type: int) -> TensorResult:
    """stored: the file's bytes of this tensor in the reference's row geometry, [n_rows,
    row_bytes] (a map; only the sampled rows are read). A float type has one value per block,
    so a 1-D tensor's rows of one value each are byte slices as well."""
    qtype = qtype_by_id(ggml_type)
    n_rows, row_len = rows_and_len(ref.shape)
    idx = sample_rows(n_rows, row_len, ref.align)
    want = qtype.quantize(read_sample(ref, idx, row_len))
    got = np.ascontiguousarray(stored[idx])
    sampled = len(idx) < n_rows
    if np.array_equal(want, got):
        return TensorResult(len(idx) * row_len, sampled, None)
    return TensorResult(len(idx) * row_len, sampled,
                        _first_difference(name, qtype, idx, want, got))


def _first_difference(name: str, qtype, idx: np.ndarray, want: np.ndarray,
                      got: np.ndarray) -> str:
    """Where and by how much: the first element whose stored bits differ."""
    unit = {4: np.uint32, 2: np.uint16}[qtype.type_size]
    differ = want.view(unit) != got.view(unit)
    i, j = (int(v) for v in np.argwhere(differ)[0])
    w, g = (float(qtype.dequantize(x[i:i + 1])[0, j]) for x in (want, got))
    return (f"tensor {name}: element [{int(idx[i])}, {j}] is {g!r} in the file, the source "
            f"rounded to {qtype.name} is {w!r} ({int(differ.sum())} of {differ.size} sampled "
            f"elements differ)")


def stored_rows(model, t, shape: tuple[int, ...]) -> np.ndarray:
    """A GGUF tensor's bytes as [n_rows, row_bytes] in the row geometry of shape (a view)."""
    return model.tensor_bytes(t).reshape(rows_and_len(shape)[0], -1)
