"""The library side of `tinyconvert imatrix`: compute and write, merge, and report, with the
parameter names the command's options have."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tinyconvert.formats.errors import InputError
from tinyconvert.imatrix import files
from tinyconvert.imatrix.compute import DEFAULT_CHUNK, compute_imatrix
from tinyconvert.imatrix.merge import merge
from tinyconvert.io.atomic import atomic_output, check_output


@dataclass(frozen=True)
class ImatrixResult:
    path: Path
    imatrix: files.Imatrix
    seconds: float

    def as_json(self) -> dict:
        im = self.imatrix
        return {"path": str(self.path), "entries": len(im.entries),
                "chunk_count": im.chunk_count, "chunk_size": im.chunk_size,
                "datasets": im.datasets, "seconds": self.seconds}


def read_text(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such text file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def imatrix(model: str, out: Path, *, text: Path, chunk_size: int = DEFAULT_CHUNK,
            chunks: int | None = None, from_chunk: int = 0, process_output: bool = False,
            output_format: str = "gguf", quiet: bool = True) -> ImatrixResult:
    """Computes MODEL's importance matrix on the text file and writes it (GGUF or .dat)."""
    start = time.perf_counter()
    out = Path(out)
    check_output(out, Path(text))
    if output_format not in files.FORMATS:
        raise InputError(f"unknown --format {output_format!r}; valid: "
                         f"{', '.join(files.FORMATS)}")
    im = compute_imatrix(model, read_text(text), chunk_size=chunk_size, chunks=chunks,
                         from_chunk=from_chunk, process_output=process_output,
                         dataset=str(text), quiet=quiet)
    files.write(im, out, output_format)
    return ImatrixResult(out, im, time.perf_counter() - start)


def merge_files(inputs: list[Path], out: Path, *, chunk_size: int = DEFAULT_CHUNK,
                output_format: str = "gguf") -> ImatrixResult:
    start = time.perf_counter()
    out = Path(out)
    check_output(out, *map(Path, inputs))
    im = merge([Path(p) for p in inputs], chunk_size=chunk_size)
    files.write(im, out, output_format)
    return ImatrixResult(out, im, time.perf_counter() - start)


def plot_to(stats, path: Path) -> None:
    """The statistics plot, appearing only when complete."""
    from tinyconvert.imatrix.stats import plot
    path = Path(path)
    check_output(path)
    with atomic_output(path) as tmp:
        plot(stats, tmp)
