"""Importance-matrix files as llama.cpp 0.3.36 writes and reads them (tools/imatrix/imatrix.cpp
save_imatrix / save_imatrix_legacy, common/imatrix-loader.cpp, tools/quantize load_imatrix).

GGUF (the default): keys general.type = "imatrix", imatrix.datasets (array of str),
imatrix.chunk_count and imatrix.chunk_size (u32); per entry, in sorted name order, two F32 tensors
`<name>.in_sum2` (ggml ne [n_cols, n_mat]: the raw sums of x^2) and `<name>.counts` (ne [1, n_mat]:
tokens seen, per expert for MoE).

Legacy .dat, little-endian and packed:
    i32 n_entries
    per entry (sorted; entries whose counts are all 0 left out):
        i32 len, name[len], i32 ncall = ceil(max(counts) / chunk_size), i32 nval,
        f32 values[nval] = (sum / count) * ncall       (count 0: value 1, count 1)
    i32 chunk_count, i32 len, dataset[len]              (optional trailer)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_edit import encode_entry
from tinyconvert.formats.gguf_write import OutTensor, write_header
from tinyconvert.io.atomic import atomic_output, check_output

SUMS, COUNTS = ".in_sum2", ".counts"
KEYS = ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size")
FORMATS = ("gguf", "dat")


@dataclass
class Entry:
    sums: np.ndarray      # [n_mat, n_cols]: raw sums of x^2 (GGUF), or (sum/count)*ncall (.dat)
    counts: np.ndarray    # [n_mat] int64: tokens seen per matrix (GGUF), or [ncall] (.dat)


@dataclass
class Imatrix:
    entries: dict[str, Entry]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    is_legacy: bool = False
    has_metadata: bool = True

    def normalized(self, name: str) -> np.ndarray:
        """The float32 vector llama-quantize hands to the quantizer for this entry (n_mat *
        n_cols values): sum / count per matrix in float32, 1.0 where a matrix saw no token;
        legacy files: stored / ncall."""
        e = self.entries[name]
        sums = e.sums.astype(np.float32)
        if self.is_legacy:
            ncall = int(e.counts[0]) if e.counts.size else 0
            return (sums / np.float32(ncall) if ncall > 0 else sums).reshape(-1)
        counts = e.counts.astype(np.float32)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.float32(1))
        return out.astype(np.float32).reshape(-1)


def write(im: Imatrix, out: Path, fmt: str = "gguf") -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown imatrix format {fmt!r}; valid: {', '.join(FORMATS)}")
    out = Path(out)
    check_output(out)
    with atomic_output(out) as tmp, open(tmp, "wb") as fh:
        (_write_gguf if fmt == "gguf" else _write_dat)(im, fh)


def _write_gguf(im: Imatrix, fh) -> None:
    entries = [encode_entry("general.type", gf.STRING, "imatrix"),
               encode_entry(KEYS[0], gf.ARRAY, im.datasets, gf.STRING),
               encode_entry(KEYS[1], gf.U32, im.chunk_count),
               encode_entry(KEYS[2], gf.U32, im.chunk_size)]
    arrays = []
    for name in sorted(im.entries):
        e = im.entries[name]
        n_mat, n_cols = e.sums.shape
        arrays += [(name + SUMS, (n_cols, n_mat), e.sums.astype(np.float32)),
                   (name + COUNTS, (1, n_mat), e.counts.astype(np.float32))]
    write_header(fh, [OutTensor(n, _n_dims(ne), 0, a.nbytes) for n, ne, a in arrays], entries)
    for _, _, a in arrays:
        fh.write(a.tobytes())
        fh.write(bytes(-fh.tell() % gf.DEFAULT_ALIGNMENT))


def _n_dims(ne: tuple[int, ...]) -> tuple[int, ...]:
    """ggml_n_dims: trailing 1s are not written (a dense entry's sums are 1-D in the file)."""
    while len(ne) > 1 and ne[-1] == 1:
        ne = ne[:-1]
    return ne


def _write_dat(im: Imatrix, fh) -> None:
    if im.is_legacy:
        raise InputError("this matrix was read from a legacy .dat file; write it as gguf")
    size = max(1, im.chunk_size)
    kept = [n for n in sorted(im.entries) if im.entries[n].counts.any()]
    fh.write(struct.pack("<i", len(kept)))
    for name in kept:
        e = im.entries[name]
        raw = name.encode()
        ncall = (int(e.counts.max()) + size - 1) // size
        count = e.counts.astype(np.float32)[:, None]
        value = np.where(count == 0, np.float32(1), e.sums.astype(np.float32))
        vals = (value / np.where(count == 0, np.float32(1), count)) * np.float32(ncall)
        fh.write(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, e.sums.size))
        fh.write(vals.astype(np.float32).tobytes())
    dataset = (im.datasets[-1] if im.datasets else "").encode()
    fh.write(struct.pack("<ii", im.chunk_count, len(dataset)) + dataset)


def read(path: Path) -> Imatrix:
    """A GGUF imatrix, or else a legacy .dat one (llama.cpp tries them in that order too)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such imatrix file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    return _read_gguf(path) if magic == b"GGUF" else _read_dat(path)


def _read_gguf(path: Path) -> Imatrix:
    f = gf.read_gguf(path)
    pairs: dict[str, dict] = {}
    for t in f.tensors:
        for suffix in (SUMS, COUNTS):
            if t.name.endswith(suffix):
                pairs.setdefault(t.name[: -len(suffix)], {})[suffix] = t
    if not pairs:
        raise InputError(f"{path}: not an importance matrix (no <name>.in_sum2 / <name>.counts "
                         f"tensors)")
    entries = {}
    for name, pair in sorted(pairs.items()):
        if len(pair) != 2:
            raise InputError(f"{path}: entry {name} lacks its {SUMS} or {COUNTS} tensor")
        if any(t.ggml_type != 0 for t in pair.values()):
            raise InputError(f"{path}: {name}'s sums and counts must be F32")
        sums = f.tensor_bytes(pair[SUMS]).view(np.float32)
        counts = f.tensor_bytes(pair[COUNTS]).view(np.float32)
        if counts.size == 0 or sums.size % counts.size:
            raise InputError(f"{path}: {name} has {sums.size} sums for {counts.size} counts")
        # llama.cpp reads counts back with lround: halves away from zero
        whole = np.sign(counts) * np.floor(np.abs(counts.astype(np.float64)) + 0.5)
        entries[name] = Entry(sums.reshape(counts.size, -1).copy(), whole.astype(np.int64))
    v = f.values()
    datasets = v.get(KEYS[0], [])
    return Imatrix(entries, list(datasets) if isinstance(datasets, list) else [],
                   int(v.get(KEYS[1], 0)), int(v.get(KEYS[2], 0)), False,
                   all(k in v for k in KEYS))


class _Cursor:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InputError(f"{self.path}: truncated legacy imatrix file (reading {what})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def i32(self, what: str) -> int:
        return struct.unpack("<i", self.take(4, what))[0]


def _read_dat(path: Path) -> Imatrix:
    c = _Cursor(path.read_bytes(), path)
    n = c.i32("the entry count")
    if n < 1:
        raise InputError(f"{path}: not an imatrix file (neither GGUF nor legacy .dat with "
                         f"entries)")
    entries = {}
    for i in range(n):
        name = c.take(c.i32(f"entry {i}'s name length"), f"entry {i}'s name")
        name = name.split(b"\0")[0].decode("utf-8", "replace")
        ncall, nval = c.i32(f"{name}'s ncall"), c.i32(f"{name}'s size")
        if nval < 1:
            raise InputError(f"{path}: entry {name} has {nval} values")
        vals = np.frombuffer(c.take(4 * nval, f"{name}'s values"), dtype="<f4")
        entries[name] = Entry(vals.reshape(1, -1).astype(np.float32), np.array([ncall]))
    chunk_count, datasets = 0, []
    if c.pos + 4 <= len(c.data):
        chunk_count = c.i32("the chunk count")
        if c.pos + 4 <= len(c.data):
            size = c.i32("the dataset name length")
            if 0 < size <= len(c.data) - c.pos:
                datasets = [c.take(size, "the dataset").split(b"\0")[0].decode("utf-8", "replace")]
    return Imatrix(entries, datasets, chunk_count, 0, is_legacy=True, has_metadata=False)
