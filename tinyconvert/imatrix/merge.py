"""Merging importance matrices as llama-imatrix does with several --in-file (and no text):
IMatrixCollector::load_imatrix. GGUF files add raw sums and counts (float32 sums, as llama.cpp
adds them); a legacy file's (sum/count)*ncall values are brought back to raw sums by multiplying
by the chunk size, its ncall to a count the same way. A dense entry's single count broadcasts over
an MoE entry's experts. The merged file's chunk_count is the largest count over the chunk size."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.imatrix.files import Entry, Imatrix, read


def _add(acc: dict[str, Entry], name: str, sums: np.ndarray, counts: np.ndarray,
         where: Path) -> None:
    if name not in acc:
        acc[name] = Entry(sums.astype(np.float32).copy(), counts.astype(np.int64).copy())
        return
    e = acc[name]
    if e.sums.size != sums.size:
        raise InputError(f"{where}: {name} has {sums.size} values, the files before it "
                         f"{e.sums.size}: not matrices of the same model")
    if e.counts.size == 1 and counts.size > 1:
        e.counts = np.full(counts.size, e.counts[0], dtype=np.int64)
    if counts.size != e.counts.size:
        raise InputError(f"{where}: {name} has {counts.size} counts, the files before it "
                         f"{e.counts.size}")
    e.sums = (e.sums.reshape(-1) + sums.astype(np.float32).reshape(-1)).reshape(
        e.counts.size, -1)
    e.counts = e.counts + counts


def merge(paths: list[Path], *, chunk_size: int = 512) -> Imatrix:
    if len(paths) < 1:
        raise InputError("--merge needs at least one imatrix file")
    if chunk_size < 1:
        raise InputError(f"--chunk-size {chunk_size}: give a positive size")
    acc: dict[str, Entry] = {}
    datasets: list[str] = []
    for path in paths:
        im = read(Path(path))
        for name, e in im.entries.items():
            if im.is_legacy:
                n = acc[name].counts.size if name in acc else 1     # every expert's count
                sums = e.sums.astype(np.float32) * np.float32(chunk_size)
                _add(acc, name, sums, np.full(n, int(e.counts[0]) * chunk_size), path)
            else:
                _add(acc, name, e.sums, e.counts, path)
        datasets += im.datasets
    top = max(int(e.counts.max()) for e in acc.values())
    return Imatrix(acc, datasets, top // chunk_size, chunk_size)
