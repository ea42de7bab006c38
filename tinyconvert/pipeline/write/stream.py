"""Streams planned tensors into an open GGUF file after its header: row chunks are read, encoded
(in a thread pool; numpy releases the GIL; a bounded number in flight) and written in order,
each tensor on the alignment."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tinyconvert.pipeline.write.encode import encode_rows
from tinyconvert.pipeline.write.inflight import bounded_map, in_flight_limit
from tinyconvert.pipeline.planned import PlannedTensor

CHUNK_BYTES = 4 << 20


def chunks(p: PlannedTensor, threads: int = 1):
    """Row ranges of at most CHUNK_BYTES of float32 source, on multiples of p.align rows, and
    at least one per thread so that small tensors keep every thread busy too."""
    row_len = p.shape[-1] if len(p.shape) > 1 else 1
    rows = min(CHUNK_BYTES // max(1, row_len * 4), -(-p.n_rows // max(1, threads)))
    step = max(1, rows // p.align) * p.align
    for r0 in range(0, p.n_rows, step):
        yield r0, min(p.n_rows, r0 + step)


def _encode(p: PlannedTensor, r0: int, r1: int) -> np.ndarray:
    if p.imatrix is not None:                # per-expert vectors: tinyconvert.imatrix.apply
        from tinyconvert.imatrix.apply import encode
        return encode(p, r0, r1)
    return encode_rows(p.read_rows(r0, r1), p.src_dtype, p.qtype)


def _write(f, data: np.ndarray) -> int:
    f.write(memoryview(np.ascontiguousarray(data)).cast("B"))
    return data.nbytes


def _encoded(pool, planned: list[PlannedTensor], spans: list, threads: int):
    """Every chunk's encoded data in order; a new bounded map starts at each whole tensor."""
    starts = [i for i, p in enumerate(planned) if i == 0 or p.whole] + [len(planned)]
    for a, b in zip(starts, starts[1:]):
        jobs = ((p, r0, r1) for p, sp in zip(planned[a:b], spans[a:b]) for r0, r1 in sp)
        yield from (bounded_map(pool, lambda job: _encode(*job), jobs, in_flight_limit(threads))
                    if threads > 1 else (_encode(*job) for job in jobs))


def stream_tensors(f, planned: list[PlannedTensor], alignment: int, bar=None,
                   threads: int = 1) -> None:
    """Chunks go through one bounded map per run of tensors, so the workers run on into the
    next tensor while the writer finishes this one (no drain at each of a model's hundreds of
    tensors). At most in_flight_limit chunks are ahead of the writer. A run ends before each
    tensor produced whole (p.whole): the one before it is written and let go first, so two are
    never held at once."""
    planned = list(planned)
    spans = [list(chunks(p, threads)) for p in planned]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        parts = _encoded(pool, planned, spans, threads)
        for p, sp in zip(planned, spans):
            f.write(bytes(-f.tell() % alignment))
            written, tails = 0, []
            for _ in sp:
                data = next(parts)
                if isinstance(data, tuple):          # T-MAC: codes now, sections at the end
                    data, more = data
                    tails.append(more)
                written += _write(f, data)
                del data         # a view of a whole tensor: let it go before the next loads
            for section in zip(*tails):              # each section's chunks in row order
                for part in section:
                    written += _write(f, part)
            if written != p.qtype.nbytes(p.shape):
                raise RuntimeError(f"{p.name}: wrote {written} bytes, planned "
                                   f"{p.qtype.nbytes(p.shape)}")
            if bar is not None:
                bar.advance(p.name, written)
        f.write(bytes(-f.tell() % alignment))
