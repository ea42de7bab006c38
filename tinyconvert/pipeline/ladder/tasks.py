"""The work of a quant ladder cut into tasks for the thread pool: one task per chunk of rows of a
source tensor and per DISTINCT encoding of it. Outputs that give a tensor the same type from the
same source (the q6_k token_embd of a q4_k_m, a q5_k_m and a q6_k file) share one encoding and its
bytes are written to each; every encoding of a chunk shares one read of the source rows and one
float32 conversion of them, done by whichever task needs them first."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from tinyconvert.pipeline.write.encode import encode_rows, to_f32
from tinyconvert.pipeline.planned import PlannedTensor
from tinyconvert.pipeline.write.stream import chunks

# a copy of the source's own bits: encode_rows takes these rows as they are, never as float32
_KEEPS_BITS = {("RAW", None), ("I8", None), ("F16", "f16"), ("BF16", "bf16")}


def keeps_bits(src_dtype: str, qtype_name: str) -> bool:
    return (src_dtype, None) in _KEEPS_BITS or (src_dtype, qtype_name) in _KEEPS_BITS


@dataclass(frozen=True)
class Encoding:
    """One distinct way the outputs store a tensor, and which outputs (by index) take it."""
    planned: PlannedTensor                # the first of them (type and source are all alike)
    outputs: tuple[int, ...]


def encodings(ps: list[PlannedTensor]) -> list[Encoding]:
    """ps: one tensor as each output plans it. Same type and same source give the same bytes
    (a ladder has no importance matrix, and every quantizer is a function of the rows alone)."""
    groups: dict[tuple, list[int]] = {}
    for k, p in enumerate(ps):
        if p.imatrix is not None:
            raise RuntimeError(f"{p.name}: a ladder cannot apply an importance matrix")
        groups.setdefault((p.qtype.name, p.qtype.ggml_id, p.src_dtype), []).append(k)
    return [Encoding(ps[ks[0]], tuple(ks)) for ks in groups.values()]


class SharedChunk:
    """Rows [r0, r1) of one source tensor: read once, converted to float32 once (only if some
    encoding needs it), for all encodings of the chunk; thread-safe, loaded on first use."""

    def __init__(self, read, name: str, r0: int, r1: int, encs: list[Encoding]):
        self.read, self.name, self.r0, self.r1 = read, name, r0, r1
        raw_for = [e.planned.src_dtype == "RAW" for e in encs]
        self.need_raw, self.need_rows = any(raw_for), not all(raw_for)
        self._lock = threading.Lock()
        self._data = None
        self._f32 = None

    def _load(self) -> tuple:
        if self._data is None:
            self._data = self.read(self.name, self.r0, self.r1, self.need_raw, self.need_rows)
        return self._data

    def source(self, p: PlannedTensor) -> tuple[np.ndarray, str]:
        """(rows, their dtype) to encode p from: the stored bytes, the source rows, or the one
        float32 conversion of them."""
        with self._lock:
            raw, rows = self._load()
            if p.src_dtype == "RAW":
                return raw, "RAW"
            if keeps_bits(p.src_dtype, p.qtype.name):
                return rows, p.src_dtype
            if self._f32 is None:
                self._f32 = to_f32(rows, p.src_dtype)
            return self._f32, "F32"


@dataclass(frozen=True)
class Task:
    enc: Encoding
    chunk: SharedChunk
    last: bool                            # the tensor's last task: it is complete once written

    def run(self) -> np.ndarray:
        rows, src_dtype = self.chunk.source(self.enc.planned)
        data = encode_rows(rows, src_dtype, self.enc.planned.qtype)
        if isinstance(data, tuple):
            raise RuntimeError(f"{self.chunk.name}: T-MAC tensors cannot be written in a ladder")
        return np.ascontiguousarray(data)


def same_tensor(ps: list[PlannedTensor]) -> None:
    first = ps[0]
    for p in ps[1:]:
        if p.shape != first.shape or p.align != first.align or (
                p.src_dtype != first.src_dtype and "RAW" not in (p.src_dtype, first.src_dtype)):
            raise RuntimeError(f"{p.name}: the outputs plan it from different sources")


def tasks(outputs, read, threads: int):
    """Every task of the ladder in write order: tensors in the first output's order, chunks in
    row order, then the tensor's encodings."""
    by_name = [{p.name: p for p in o.planned} for o in outputs]
    for p0 in outputs[0].planned:
        ps = [m[p0.name] for m in by_name]
        same_tensor(ps)
        encs = encodings(ps)
        spans = list(chunks(p0, threads))
        for i, (r0, r1) in enumerate(spans):
            chunk = SharedChunk(read, p0.name, r0, r1, encs)
            for j, e in enumerate(encs):
                yield Task(e, chunk, i == len(spans) - 1 and j == len(encs) - 1)


__all__ = ["Encoding", "SharedChunk", "Task", "encodings", "keeps_bits", "same_tensor", "tasks"]
