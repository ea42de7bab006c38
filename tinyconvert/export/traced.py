"""The inverse of a family's own record transforms (Arch.records: GPT-2's Conv1D transposes,
GPT-NeoX's and Falcon's fused qkv regrouping, StableLM's stacked head norms, DeepSeek's kv_b
split, gpt-oss's interleaved experts, the SSMs' reshapes), found by running those very transforms forward on index records: records whose values
are the element numbers of the HF tensors. Each record they return then says, element by
element, which HF element it holds, so the export gathers every HF tensor back from the GGUF
tensors without a hand-written inverse that could drift from the forward code.

Only element moves invert this way; a transform that computes new values from old makes numbers
that are no element index, and is refused (Mamba's A = -exp(A_log) is kept out of the trace and
inverted by export/ssm.py). Traces are read in row blocks of about CHUNK elements (8 bytes
each), never a whole tensor's or the model's at once."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord, rows_and_len

CHUNK = 1 << 22


@dataclass(frozen=True)
class Part:
    """One record the family's transforms return: its GGUF-side name and its index trace."""
    name: str
    shape: tuple[int, ...]
    record: TensorRecord

    def chunks(self):
        """(flat start, element indices) over row blocks of about CHUNK elements, so a trace
        never holds a whole expert stack's indices."""
        rec = self.record
        step = max(1, CHUNK // max(rec.row_len, 1))
        for r0 in range(0, rec.n_rows, step):
            r1 = min(r0 + step, rec.n_rows)
            yield r0 * rec.row_len, np.asarray(rec.read_rows(r0, r1)).reshape(-1)


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
            vals = np.asarray(values(p), dtype=np.float32).reshape(-1)
            for start, idx in p.chunks():
                mine = (idx >= self.offset) & (idx < self.offset + self.size)
                out[idx[mine] - self.offset] = vals[start:start + idx.size][mine]
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
        part, found = Part(r.name, tuple(r.shape), r), set()
        for _, idx in part.chunks():
            if idx.dtype.kind != "i" or idx.size and (idx.min() < 0 or idx.max() >= at):
                raise InputError(f"{cfg.hf_class}: hf2gguf computes {r.name!r} from the "
                                 f"checkpoint's values (not only moves them); gguf2hf has no "
                                 f"inverse for that")
            which = np.searchsorted(starts, idx, side="right") - 1
            counts += np.bincount(which, minlength=len(names))
            found.update(np.unique(which).tolist())
        for i in sorted(found):
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
