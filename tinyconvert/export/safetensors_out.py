"""Safetensors shards written one tensor at a time. The safetensors library's save_file takes the
whole state dict; here every shard's header is known from the shapes, so it is written first and
each tensor's bytes follow as soon as the tensor is made, then the tensor is let go.

File layout: u64 little-endian header length N | N bytes of JSON {name: {dtype, shape,
data_offsets: [begin, end)}, "__metadata__": {"format": "pt"}}, padded with spaces to a multiple
of 8 | data section. Shards split as transformers' save_pretrained does (a new shard when the next
tensor would pass max_shard_size), named model-0000i-of-0000n.safetensors, with
model.safetensors.index.json; a single shard is model.safetensors."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

DTYPES = {"f32": ("F32", 4), "f16": ("F16", 2), "bf16": ("BF16", 2)}
INDEX = "model.safetensors.index.json"
DEFAULT_SHARD = "50GB"              # transformers 5's save_pretrained default (the Hub's file limit)


@dataclass(frozen=True)
class Entry:
    name: str
    shape: tuple[int, ...]

    def nbytes(self, dtype: str) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * DTYPES[dtype][1]


def encode(a: np.ndarray, dtype: str) -> np.ndarray:
    """float32 -> a contiguous array of the shard's dtype, written as it is (no bytes copy);
    bf16 rounds to nearest even, as torch converts."""
    if dtype == "f32":
        return np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "f16":
        return np.ascontiguousarray(a, dtype=np.float32).astype(np.float16)
    import torch
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy()


def shard_groups(entries: list[Entry], dtype: str, max_shard_size: int) -> list[list[Entry]]:
    groups: list[list[Entry]] = [[]]
    size = 0
    for e in entries:
        n = e.nbytes(dtype)
        if groups[-1] and size + n > max_shard_size:
            groups.append([])
            size = 0
        groups[-1].append(e)
        size += n
    return groups


def shard_names(n: int) -> list[str]:
    if n == 1:
        return ["model.safetensors"]
    return [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def _header(group: list[Entry], dtype: str) -> bytes:
    head: dict = {"__metadata__": {"format": "pt"}}
    off = 0
    for e in group:
        n = e.nbytes(dtype)
        head[e.name] = {"dtype": DTYPES[dtype][0], "shape": list(e.shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(head, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write_shards(folder: Path, entries: list[Entry], make: Callable[[Entry], np.ndarray], *,
                 dtype: str, max_shard_size: int,
                 on_tensor: Callable[[str, int], None] = lambda name, n: None) -> list[str]:
    """make(entry) gives one float32 tensor; it is encoded, written and dropped before the next.
    Returns the shard file names."""
    groups = shard_groups(entries, dtype, max_shard_size)
    names = shard_names(len(groups))
    for group, fname in zip(groups, names):
        with open(folder / fname, "wb") as f:
            f.write(_header(group, dtype))
            for e in group:
                write_tensor(f, e, make(e), dtype)
                on_tensor(e.name, e.nbytes(dtype))
    if len(groups) > 1:
        _write_index(folder, groups, names, dtype)
    return names


def write_tensor(f, e: Entry, a: np.ndarray, dtype: str) -> None:
    if tuple(a.shape) != e.shape:
        raise ValueError(f"{e.name}: made shape {a.shape}, planned {e.shape}")
    data = encode(a, dtype)
    if data.nbytes != e.nbytes(dtype):
        raise ValueError(f"{e.name}: {data.nbytes} bytes, planned {e.nbytes(dtype)}")
    f.write(data.reshape(-1).data)


def _write_index(folder: Path, groups: Iterable[list[Entry]], names: list[str], dtype: str) -> None:
    weight_map, total = {}, 0
    for group, fname in zip(groups, names):
        for e in group:
            weight_map[e.name] = fname
            total += e.nbytes(dtype)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
