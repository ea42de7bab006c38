"""Several GGUF outputs of one model written in one pass (a quant ladder): each source chunk is
read and converted to float32 once, encoded once per distinct type among the outputs (in
parallel over the thread pool, ladder/tasks.py), and written straight away into every output
that takes those bytes, so memory holds a few chunks, never a tensor per output.

Every output's tensor offsets are known from its plan before any data is read (plan, then
write), so each chunk goes to its place with pwrite. That lets outputs whose tensors are in
different orders (the converter's order for f16/q8_0, llama.cpp's quantizer order for mixes)
share one read of each tensor, and each file still has exactly the bytes of a separate run."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyconvert.io.atomic_set import atomic_outputs
from tinyconvert.io.progress import TensorProgress
from tinyconvert.pipeline.write.inflight import bounded_map, in_flight_limit
from tinyconvert.pipeline.ladder.tasks import tasks
from tinyconvert.pipeline.plan import PlannedTensor

# (name, r0, r1, need_raw, need_rows) -> (stored bytes or None, rows in src_dtype or None)
SharedRead = Callable[[str, int, int, bool, bool], tuple]


@dataclass(frozen=True)
class LadderOutput:
    path: Path
    planned: list[PlannedTensor]          # this output's tensors, in its own file order
    write_header: Callable[[Path], int]   # writes the header to a path; returns its end offset
    alignment: int


def _padded(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def _offsets(out: LadderOutput, header_end: int) -> tuple[dict[str, int], int]:
    """Absolute file offset of each tensor's data, and the file's final size (as a separate
    run lays them out: the data section starts aligned, each tensor padded to the alignment)."""
    pos, where = _padded(header_end, out.alignment), {}
    for p in out.planned:
        where[p.name] = pos
        pos += _padded(p.qtype.nbytes(p.shape), out.alignment)
    return where, pos


def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _stream(outputs, fds, where, read: SharedRead, threads: int, bar) -> None:
    """Runs the ladder's tasks (ladder/tasks.py: one per chunk and distinct encoding) over the pool
    with a bounded number in flight, across tensor boundaries, and writes each result to every
    output that takes those bytes, at its place."""
    written: dict[tuple[int, str], int] = {}
    planned = [{p.name: p for p in o.planned} for o in outputs]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        done = (bounded_map(pool, lambda t: (t, t.run()), tasks(outputs, read, threads),
                            in_flight_limit(threads))
                if threads > 1 else ((t, t.run()) for t in tasks(outputs, read, 1)))
        for task, data in done:
            name = task.chunk.name
            for k in task.enc.outputs:
                at = written.get((k, name), 0)
                _pwrite_all(fds[k], data, where[k][name] + at)
                written[k, name] = at + data.nbytes
            if task.last:
                _check_sizes(planned, written, name, bar)


def _check_sizes(planned: list[dict], written, name: str, bar) -> None:
    total = 0
    for k, by_name in enumerate(planned):
        p = by_name[name]
        n = written.pop((k, name), 0)
        if n != p.qtype.nbytes(p.shape):
            raise RuntimeError(f"{name}: wrote {n} bytes, planned {p.qtype.nbytes(p.shape)}")
        total += n
    if bar is not None:
        bar.advance(name, total)


def write_outputs(outputs: list[LadderOutput], read: SharedRead, *, threads: int | None = None,
                  quiet: bool = False) -> list[int]:
    """Writes every output (all or none); returns their sizes in bytes."""
    from tinyconvert.io.threads import resolve_threads
    threads = resolve_threads(threads)
    names = [p.name for p in outputs[0].planned]
    for o in outputs[1:]:
        if sorted(p.name for p in o.planned) != sorted(names):
            raise RuntimeError(f"{o.path}: its plan has other tensors than {outputs[0].path}'s")
    total = sum(p.qtype.nbytes(p.shape) for o in outputs for p in o.planned)
    with atomic_outputs([o.path for o in outputs]) as tmps:
        layout = [_offsets(o, o.write_header(tmp)) for o, tmp in zip(outputs, tmps)]
        fds = [os.open(tmp, os.O_WRONLY) for tmp in tmps]
        try:
            with TensorProgress(len(names), total, quiet) as bar:
                _stream(outputs, fds, [w for w, _ in layout], read, threads, bar)
            for fd, (_, end) in zip(fds, layout):
                os.ftruncate(fd, end)            # the last tensor's padding
        finally:
            for fd in fds:
                os.close(fd)
    return [o.path.stat().st_size for o in outputs]
