"""Writing an output plan's files: each file's header first (known from the plan), then its
tensors streamed one at a time, every file through a temporary file; with several (the shards
of a split model) none is renamed into place until all are complete (io/atomic_set.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from tinyconvert.formats.gguf_edit import copy_range
from tinyconvert.formats.gguf_write import OutTensor
from tinyconvert.io.atomic_set import atomic_outputs
from tinyconvert.io.progress import TensorProgress
from tinyconvert.pipeline.outplan import OutputPlan
from tinyconvert.pipeline.planned import PlannedTensor
from tinyconvert.pipeline.write.stream import stream_tensors


def writer_entries(writer) -> list[bytes]:
    """A gguf-py GGUFWriter's keys as the encoded entries it writes itself: its own packing,
    but flat arrays (a vocabulary) encoded at once, as gguf-py packs them item by item at
    seconds per 100k tokens. tests/test_split.py checks the bytes equal gguf-py's."""
    from gguf import GGUFValueType as T
    (kv,) = writer.kv_data
    out = []
    for key, v in kv.items():
        head = writer._pack_val(key, T.STRING, add_vtype=False)
        fast = _flat_array(v) if v.type == T.ARRAY else None
        out.append(head + (fast if fast is not None else
                           writer._pack_val(v.value, v.type, add_vtype=True, sub_type=v.sub_type)))
    return out


def _flat_array(v) -> bytes | None:
    """gguf-py's array packing (element type given, or inferred from the first item) for
    arrays of strings or numbers; None for anything else (gguf-py packs it)."""
    import struct

    import numpy as np
    from gguf import GGUFValueType as T
    from tinyconvert.formats.gguf_file import SCALAR
    val = v.value
    if isinstance(val, (bytes, bytearray)) or not isinstance(val, (list, tuple)) or not val:
        return None
    sub = v.sub_type if v.sub_type is not None else T.get_type(val[0])
    first = type(val[0])
    if v.sub_type is None and not all(type(x) is first for x in val):
        return None                              # mixed items: gguf-py decides (or refuses)
    head = struct.pack("<IIQ", T.ARRAY, sub, len(val))
    if sub == T.STRING:
        raw = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in val]
        return head + b"".join(struct.pack("<Q", len(r)) + r for r in raw)
    if int(sub) in SCALAR and sub != T.BOOL:
        return head + np.asarray(val, dtype=SCALAR[int(sub)]).tobytes()
    return None


def write_files(plan: OutputPlan, write_data: Callable[[object, tuple[OutTensor, ...]], None]
                ) -> int:
    """Checks free space, writes every file (header, then write_data(fh, tensors)); returns
    the bytes written."""
    plan.check_space()
    with atomic_outputs(plan.paths) as temps:
        for f, tmp in zip(plan.files, temps):
            with open(tmp, "wb") as fh:
                fh.write(f.header)
                write_data(fh, f.tensors)
                if fh.tell() != f.size:
                    raise RuntimeError(f"{f.path}: wrote {fh.tell()} bytes, planned {f.size}")
    return sum(p.stat().st_size for p in plan.paths)


def write_planned(plan: OutputPlan, planned: list[PlannedTensor], *, quiet: bool = False,
                  threads: int = 1) -> int:
    """Encodes planned tensors into the plan's files (hf2gguf, quantize)."""
    by_name = {p.name: p for p in planned}
    with TensorProgress(len(planned), plan.total, quiet) as bar:
        return write_files(plan, lambda fh, ts: stream_tensors(
            fh, [by_name[t.name] for t in ts], plan.files[0].alignment, bar, threads))


def write_copied(plan: OutputPlan, source: Callable[[str], tuple[Path, int]], *,
                 quiet: bool = False) -> int:
    """Copies each tensor's bytes from where source(name) says (file, absolute offset) into
    the plan's files, in the kernel where it can (split, merge)."""
    handles: dict[Path, object] = {}

    def copy(fh, tensors):
        for t in tensors:
            path, offset = source(t.name)
            if path not in handles:
                handles[path] = open(path, "rb")
            copy_range(handles[path], fh, offset, t.nbytes)
            fh.write(bytes(-fh.tell() % plan.files[0].alignment))
            bar.advance(t.name, t.nbytes)
    try:
        with TensorProgress(sum(len(f.tensors) for f in plan.files), plan.total, quiet) as bar:
            return write_files(plan, copy)
    finally:
        for h in handles.values():
            h.close()


def plan_planned(out: Path, entries: list[bytes], planned: list[PlannedTensor], *,
                 rule, alignment: int = 32, magic: bytes = b"GGUF") -> OutputPlan:
    """The output plan of planned tensors with these keys (hf2gguf, quantize)."""
    from tinyconvert.pipeline.outplan import plan_outputs
    tensors = [OutTensor(p.name, tuple(reversed(p.shape)) or (1,), p.qtype.ggml_id,
                         p.qtype.nbytes(p.shape)) for p in planned]
    return plan_outputs(Path(out), entries, tensors, {p.name: p.qtype.name for p in planned},
                        rule=rule, alignment=alignment, magic=magic)
