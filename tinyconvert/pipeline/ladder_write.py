"""Several GGUF outputs of one model written in one pass (a quant ladder): each source chunk is
read (and converted) once and encoded into every output, and each output's encoded chunk is
written straight away, so memory holds a few chunks, never a tensor per output.

Every output's tensor offsets are known from its plan before any data is read (plan, then
write), so each chunk goes to its place with pwrite. That lets outputs whose tensors are in
different orders (the converter's order for f16/q8_0, llama.cpp's quantizer order for mixes)
share one read of each tensor, and each file still has exactly the bytes of a separate run."""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyconvert.io.atomic_set import atomic_outputs
from tinyconvert.io.progress import TensorProgress
from tinyconvert.pipeline.encode import encode_rows
from tinyconvert.pipeline.plan import PlannedTensor
from tinyconvert.pipeline.stream import chunks

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


def _encode_all(ps: list[PlannedTensor], read: SharedRead, r0: int, r1: int) -> list[np.ndarray]:
    """One read of rows [r0, r1) of a tensor, encoded into each output's type."""
    raw_for = [p.src_dtype == "RAW" for p in ps]
    raw, rows = read(ps[0].name, r0, r1, any(raw_for), not all(raw_for))
    out = []
    for p, is_raw in zip(ps, raw_for):
        data = encode_rows(raw if is_raw else rows, p.src_dtype, p.qtype)
        if isinstance(data, tuple):
            raise RuntimeError(f"{p.name}: T-MAC tensors cannot be written in a ladder")
        out.append(np.ascontiguousarray(data))
    return out


def _bounded_map(pool, fn, items, window: int):
    """pool.map in order with at most `window` chunks in flight: encoded chunks wait for the
    writer, so an unbounded map would hold a whole tensor per output."""
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, *item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()


def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _same_tensor(ps: list[PlannedTensor]) -> None:
    first = ps[0]
    for p in ps[1:]:
        if p.shape != first.shape or p.align != first.align or (
                p.src_dtype != first.src_dtype and "RAW" not in (p.src_dtype, first.src_dtype)):
            raise RuntimeError(f"{p.name}: the outputs plan it from different sources")


def _stream(outputs, fds, where, read: SharedRead, threads: int, bar) -> None:
    by_name = [{p.name: p for p in o.planned} for o in outputs]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for p0 in outputs[0].planned:
            ps = [m[p0.name] for m in by_name]
            _same_tensor(ps)
            written = [0] * len(ps)
            parts = (_bounded_map(pool, lambda a, b, ps=ps: _encode_all(ps, read, a, b),
                                  chunks(p0, threads), threads + 1) if threads > 1
                     else (_encode_all(ps, read, a, b) for a, b in chunks(p0)))
            for pieces in parts:
                for k, data in enumerate(pieces):
                    _pwrite_all(fds[k], data, where[k][p0.name] + written[k])
                    written[k] += data.nbytes
            for p, n in zip(ps, written):
                if n != p.qtype.nbytes(p.shape):
                    raise RuntimeError(f"{p.name}: wrote {n} bytes, planned "
                                       f"{p.qtype.nbytes(p.shape)}")
            if bar is not None:
                bar.advance(p0.name, sum(written))


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
