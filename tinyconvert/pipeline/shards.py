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
from tinyconvert.pipeline.plan import PlannedTensor
from tinyconvert.pipeline.stream import stream_tensors


def writer_entries(writer) -> list[bytes]:
    """A gguf-py GGUFWriter's keys as the encoded entries it would write itself (its own
    packing, so a split model's first shard carries the very bytes of the unsplit file)."""
    from gguf import GGUFValueType
    (kv,) = writer.kv_data
    return [writer._pack_val(key, GGUFValueType.STRING, add_vtype=False) +
            writer._pack_val(v.value, v.type, add_vtype=True, sub_type=v.sub_type)
            for key, v in kv.items()]


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
