"""HF checkpoint folders: single or sharded safetensors, or (sharded) PyTorch .bin files.

Yields TensorRecords in shard order; nothing is read until a record's load() is called.
"""
from __future__ import annotations

import json
from pathlib import Path

from tinyconvert.formats import gptq
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord, rows_and_len
from tinyconvert.formats.safetensors_file import open_safetensors

INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLES = ("model.safetensors", "pytorch_model.bin")


def checkpoint_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder, index first, then single files, then a glob."""
    for index in INDEXES:
        if (folder / index).is_file():
            return _shards_from_index(folder, folder / index)
    for single in SINGLES:
        if (folder / single).is_file():
            return [folder / single]
    found = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not found:
        raise InputError(f"{folder}: no model weights found (expected model.safetensors, "
                         f"a sharded index, or pytorch_model.bin)")
    return found


def _shards_from_index(folder: Path, index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{index}: not a valid shard index ({e})") from None
    root = folder.resolve()
    shards: list[Path] = []
    for shard in dict.fromkeys(weight_map.values()):
        path = (folder / shard).resolve()
        if not path.is_relative_to(root):
            raise InputError(f"{index}: shard {shard!r} points outside the checkpoint folder")
        if not path.is_file():
            raise InputError(f"{index}: shard {shard!r} is missing")
        shards.append(path)
    return shards


def open_checkpoint(folder: Path, quantization_config: dict | None = None) -> list[TensorRecord]:
    """quantization_config: config.json's, when the checkpoint is quantized (GPTQ layers then
    come as one T-MAC record each, see formats/gptq.py)."""
    records: list[TensorRecord] = []
    seen: dict[str, str] = {}
    for path in checkpoint_files(folder):
        part = open_safetensors(path) if path.suffix == ".safetensors" else open_torch_bin(path)
        for rec in part:
            if rec.name in seen:
                raise InputError(f"tensor {rec.name!r} appears in both {seen[rec.name]} and {path}")
            seen[rec.name] = str(path)
            records.append(rec)
    gptq_cfg = gptq.read_config(quantization_config)
    return records if gptq_cfg is None else gptq.group_records(records, gptq_cfg)


TORCH_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
                "int64": "I64", "int32": "I32", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def open_torch_bin(path: Path) -> list[TensorRecord]:
    """A PyTorch pickle checkpoint, loaded with weights_only=True: no code from it runs."""
    import pickle

    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: cannot load as a safe PyTorch checkpoint ({first})") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    records = []
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{path}: entry {name!r} is not a tensor")
        dtype = TORCH_DTYPES.get(str(t.dtype).removeprefix("torch."), str(t.dtype))
        records.append(TensorRecord(name, tuple(t.shape), dtype, _torch_rows(t), str(path)))
    return records


def _torch_rows(t):
    import torch
    n_rows, row_len = rows_and_len(tuple(t.shape))

    def read_rows(r0: int, r1: int):
        rows = t.reshape(n_rows, row_len)[r0:r1].contiguous()
        if rows.dtype == torch.bfloat16:
            return rows.view(torch.int16).numpy().view("uint16").copy()
        return rows.numpy().copy()
    return read_rows
