"""A GGUF model as every reading command sees it: one file, or a split set opened from its first
shard (llama.cpp's layout, formats/gguf_split.py) and read as one model. The keys are the first
shard's (where llama.cpp reads them); the tensors are those of all shards in order, each read
from its own shard. Every shard is checked the way llama.cpp's loader checks it, and more: a
missing, truncated or foreign shard is a one-line error naming the file."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyconvert.formats import gguf_split as gs
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_file import GgufFile, TensorInfo, read_gguf


@dataclass
class GgufModel:
    shards: list[GgufFile]
    _where: dict[str, int] = field(repr=False)           # tensor name -> shard index
    _fds: dict[int, int] = field(default_factory=dict, repr=False)

    # GgufFile's reading surface: keys from the first shard, tensors from all
    @property
    def first(self) -> GgufFile:
        return self.shards[0]

    @property
    def path(self) -> Path:
        return self.first.path

    @property
    def magic(self) -> bytes:
        return self.first.magic

    @property
    def version(self) -> int:
        return self.first.version

    @property
    def fields(self):
        return self.first.fields

    @property
    def types(self):
        return self.first.types

    @property
    def alignment(self) -> int:
        return self.first.alignment

    @property
    def tensors(self) -> list[TensorInfo]:
        return [t for s in self.shards for t in s.tensors]

    @property
    def file_size(self) -> int:
        return sum(s.file_size for s in self.shards)

    @property
    def is_split(self) -> bool:
        return len(self.shards) > 1

    def value(self, key: str, default=None):
        return self.first.value(key, default)

    def values(self) -> dict:
        return self.first.values()

    def type_name(self, ggml_type: int) -> str:
        return self.first.type_name(ggml_type)

    def shard_of(self, t: TensorInfo) -> GgufFile:
        return self.shards[self._where[t.name]]

    def tensor_bytes(self, t: TensorInfo) -> np.ndarray:
        """The tensor's raw bytes (a read-only view of its shard's file map)."""
        return self.shard_of(t).tensor_bytes(t)

    def pread(self, t: TensorInfo, start: int, n: int) -> bytes:
        """n bytes of t's data from byte start, by pread (no map: mapped pages would stay in
        this process and its memory would grow with the model)."""
        i = self._where[t.name]
        if i not in self._fds:
            self._fds[i] = os.open(self.shards[i].path, os.O_RDONLY)
        data = os.pread(self._fds[i], n, self.shards[i].data_start + t.offset + start)
        if len(data) != n:
            raise InputError(f"{self.shards[i].path}: truncated while reading {t.name}")
        return data

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_gguf(path: Path | str, *, strict_types: bool = True) -> GgufModel:
    """One file, or the whole set when path is the first shard of a split model."""
    first = read_gguf(path, strict_types=strict_types)
    count = _u16(first, gs.KEY_COUNT, 0)
    if count <= 1:
        return GgufModel([first], {t.name: 0 for t in first.tensors})
    no = _u16(first, gs.KEY_NO, 0)
    if no != 0:
        first_name = gs.shard_prefix(first.path, no, count)
        hint = f" ({gs.shard_path(first_name, 0, count)})" if first_name else ""
        raise InputError(f"{first.path}: is shard {no + 1} of {count} of a split model; give "
                         f"its first shard{hint}")
    prefix = gs.shard_prefix(first.path, 0, count)
    if prefix is None:
        raise InputError(f"{first.path}: the first shard of a {count}-shard model must be named "
                         f"PREFIX-00001-of-{count:05d}.gguf (llama.cpp finds the others by name)")
    shards = [first] + [_shard(prefix, i, count, first, strict_types) for i in range(1, count)]
    return GgufModel(shards, _where(shards, first))


def _u16(f: GgufFile, key: str, default: int) -> int:
    v = f.value(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{f.path}: {key} is {v!r}, not a whole number")
    return v


def _shard(prefix: Path, i: int, count: int, first: GgufFile, strict: bool) -> GgufFile:
    p = gs.shard_path(prefix, i, count)
    if not p.is_file():
        raise InputError(f"{p}: shard {i + 1} of {count} is missing (the split model "
                         f"{first.path.name} needs all {count})")
    s = read_gguf(p, strict_types=strict)
    got = (s.value(gs.KEY_NO), s.value(gs.KEY_COUNT), s.value(gs.KEY_TENSORS))
    want = (i, count, first.value(gs.KEY_TENSORS))
    if got != want or s.magic != first.magic:
        raise InputError(f"{p}: not shard {i + 1} of {first.path.name}'s set (it says split.no "
                         f"{got[0]}, split.count {got[1]}, split.tensors.count {got[2]}; "
                         f"expected {want[0]}, {want[1]}, {want[2]})")
    return s


def _where(shards: list[GgufFile], first: GgufFile) -> dict[str, int]:
    where: dict[str, int] = {}
    for i, s in enumerate(shards):
        for t in s.tensors:
            if t.name in where:
                raise InputError(f"{s.path}: tensor {t.name} is also in "
                                 f"{shards[where[t.name]].path.name} (shards of different sets?)")
            where[t.name] = i
    total = first.value(gs.KEY_TENSORS)
    if total != len(where):
        raise InputError(f"{first.path}: split.tensors.count says {total} tensors, the "
                         f"{len(shards)} shards hold {len(where)} (a shard of another set?)")
    return where
