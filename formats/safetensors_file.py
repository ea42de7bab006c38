"""Safetensors reader that checks the header against the file before touching any data.

Layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}}
(plus "__metadata__"), then the data section; offsets are relative to the data section.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord, rows_and_len

MAX_HEADER = 100 * 1024 * 1024
ITEM_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
NUMPY_VIEW = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.int16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
              "BOOL": np.bool_, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64}


def read_header(path: Path) -> tuple[dict, int]:
    """Returns (tensor entries, data start offset). Every length and offset is checked."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"{path}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER, size - 8):
            raise InputError(f"{path}: safetensors header length {n} is past the end of the "
                             f"{size}-byte file (truncated or not safetensors)")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    data_start = 8 + n
    for name, entry in header.items():
        _check_entry(path, name, entry, size - data_start)
    return header, data_start


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0     # JSON true is not 1


def _check_entry(path: Path, name: str, entry, data_size: int) -> None:
    if not isinstance(entry, dict) or entry.get("dtype") not in ITEM_SIZE:
        raise InputError(f"{path}: tensor {name!r} has an unknown dtype {entry!r}")
    shape, offs = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
        raise InputError(f"{path}: tensor {name!r} has a bad shape {shape!r}")
    if not (isinstance(offs, list) and len(offs) == 2 and all(_is_count(o) for o in offs)):
        raise InputError(f"{path}: tensor {name!r} has bad data_offsets {offs!r}")
    begin, end = offs
    want = math.prod(shape) * ITEM_SIZE[entry["dtype"]]      # exact: a file's sizes never wrap
    if not (0 <= begin <= end) or end - begin != want:
        raise InputError(f"{path}: tensor {name!r} offsets {offs} do not match shape {shape} "
                         f"of {entry['dtype']}")
    if end > data_size:
        raise InputError(f"{path}: tensor {name!r} ends at byte {end} of a {data_size}-byte data "
                         f"section: the file is truncated")


def open_safetensors(path: Path) -> list[TensorRecord]:
    header, data_start = read_header(path)
    records = []
    for name, entry in header.items():
        if entry["dtype"] not in NUMPY_VIEW:
            raise InputError(f"{path}: tensor {name!r} has dtype {entry['dtype']}, which is not "
                             f"supported for conversion")
        records.append(TensorRecord(name, tuple(entry["shape"]), entry["dtype"],
                                    _row_reader(path, data_start, entry), str(path)))
    return records


def _row_reader(path: Path, data_start: int, entry: dict):
    dtype = np.dtype(NUMPY_VIEW[entry["dtype"]])
    n_rows, row_len = rows_and_len(tuple(entry["shape"]))
    row_bytes = row_len * dtype.itemsize
    begin = entry["data_offsets"][0]

    def read_rows(r0: int, r1: int) -> np.ndarray:
        if not 0 <= r0 <= r1 <= n_rows:
            raise IndexError(f"rows [{r0}, {r1}) outside [0, {n_rows})")
        buf = np.empty((r1 - r0, row_len), dtype=dtype)
        with open(path, "rb") as f:
            f.seek(data_start + begin + r0 * row_bytes)
            if f.readinto(memoryview(buf).cast("B")) != buf.nbytes:
                raise InputError(f"{path}: truncated while reading a tensor")
        return buf
    return read_rows
