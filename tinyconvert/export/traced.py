"""The inverse of a family's own record transforms (Arch.records: GPT-2's Conv1D transposes,
GPT-NeoX's and Falcon's fused qkv regrouping, StableLM's stacked head norms, DeepSeek's kv_b
split), found by running those very transforms forward on index records: records whose values
are the element numbers of the HF tensors. Each record they return then says, element by
element, which HF element it holds, so the export gathers every HF tensor back from the GGUF
tensors without a hand-written inverse that could drift from the forward code.

Only element moves invert this way; a family that computes new values from old (Mamba's
A = -exp(A_log)) makes numbers that are no element index, and is refused. One traced record is
held at a time (its index array: 8 bytes an element), never the whole model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord, rows_and_len


@dataclass(frozen=True)
class Part:
    """One record the family's transforms return: its GGUF-side name and its index trace."""
    name: str
    shape: tuple[int, ...]
    record: TensorRecord

    def indices(self) -> np.ndarray:
        return np.asarray(self.record.read_rows(0, self.record.n_rows)).reshape(-1)


@dataclass(frozen=True)
class Traced:
    """An HF tensor the transforms moved: its elements [offset, offset + size) of the trace
    live in parts."""
    name: str
    shape: tuple[int, ...]
    offset: int
    parts: tuple[Part, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def gather(self, values) -> np.ndarray:
        """values(part) -> that part's float32 values (flat, in the part's element order)."""
        out = np.empty(self.size, dtype=np.float32)
        seen = np.zeros(self.size, dtype=bool)
        for p in self.parts:
            idx = p.indices()
            mine = (idx >= self.offset) & (idx < self.offset + self.size)
            out[idx[mine] - self.offset] = np.asarray(values(p), dtype=np.float32).reshape(-1)[mine]
            seen[idx[mine] - self.offset] = True
        if not seen.all():
            raise InputError(f"{self.name!r}: hf2gguf's transforms keep only {int(seen.sum())} "
                             f"of its {self.size} values; gguf2hf cannot rebuild it")
        return out.reshape(self.shape)


def _index_record(name: str, shape: tuple[int, ...], offset: int) -> TensorRecord:
    row_len = rows_and_len(shape)[1]

    def read(r0: int, r1: int) -> np.ndarray:
        return (offset + np.arange(r0 * row_len, r1 * row_len, dtype=np.int64)
                ).reshape(r1 - r0, row_len)
    return TensorRecord(name, tuple(shape), "F32", read, "index trace")


def trace(cfg, hf_shapes: dict[str, tuple[int, ...]]) -> tuple[set[str], dict[str, Traced]]:
    """(HF names the transforms pass through unchanged, the moved ones by HF name)."""
    offsets, records, at = {}, [], 0
    for name, shape in hf_shapes.items():
        offsets[name] = at
        records.append(_index_record(name, shape, at))
        at += int(np.prod(shape, dtype=np.int64))
    same = {id(r) for r in records}
    out = cfg.arch.records(cfg, records)
    kept = {r.name for r in out if id(r) in same}
    starts = np.array([offsets[n] for n in hf_shapes], dtype=np.int64)
    names = list(hf_shapes)
    parts: dict[str, list[Part]] = {}
    counts = np.zeros(len(names), dtype=np.int64)
    for r in out:
        if id(r) in same:
            continue
        part = Part(r.name, tuple(r.shape), r)
        idx = part.indices()
        if idx.dtype.kind != "i" or idx.size and (idx.min() < 0 or idx.max() >= at):
            raise InputError(f"{cfg.hf_class}: hf2gguf computes {r.name!r} from the checkpoint's "
                             f"values (not only moves them); gguf2hf has no inverse for that")
        which = np.searchsorted(starts, idx, side="right") - 1
        counts += np.bincount(which, minlength=len(names))
        for i in np.unique(which):
            parts.setdefault(names[i], []).append(part)
    traced = {}
    for i, name in enumerate(names):
        if name in kept:
            continue
        size = int(np.prod(hf_shapes[name], dtype=np.int64))
        if counts[i] != size:
            raise InputError(f"{cfg.hf_class}: hf2gguf keeps {counts[i]} of the {size} values of "
                             f"{name!r}; gguf2hf cannot rebuild it")
        traced[name] = Traced(name, tuple(hf_shapes[name]), offsets[name], tuple(parts[name]))
    return kept, traced
