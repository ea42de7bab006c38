"""llama.cpp's split GGUF layout, as llama-gguf-split writes it (tools/gguf-split/gguf-split.cpp)
and llama.cpp's loader reads it (src/llama-model-loader.cpp):

- shard i of n is named PREFIX-{i+1:05d}-of-{n:05d}.gguf; the loader finds shards 2..n from the
  first one's name, so a first shard under any other name cannot be loaded as a set;
- shard 1 holds every key of the model, minus any old split.* keys, then split.no (u16),
  split.tensors.count (i32, tensors in all shards) and split.count (u16) in that order; every
  other shard holds only those three keys;
- every shard is a GGUF v3 file with tensor data aligned to 32 bytes (GGUF_DEFAULT_ALIGNMENT;
  the tool pads with that constant, whatever general.alignment says, so other alignments are
  refused here) and each tensor's data padded to 32, the last one included;
- a tensor info's n_dims is ggml_n_dims: trailing dimensions of 1 are dropped (at least 1);
- --split-max-tensors N starts a new shard before every tensor whose index is a multiple of N;
  --split-max-size S starts one when the shard's padded tensor bytes would pass S (header bytes
  not counted); a first tensor larger than S is an error (the tool refuses an empty shard).
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_edit import encode_entry, encode_value
from tinyconvert.formats.gguf_file import I32, STRING, U16
from tinyconvert.formats.gguf_write import OutTensor

ALIGNMENT = 32
KEY_NO, KEY_COUNT, KEY_TENSORS = "split.no", "split.count", "split.tensors.count"
SPLIT_KEYS = (KEY_NO, KEY_COUNT, KEY_TENSORS)
MAX_SHARDS = 65535                                   # split.count is a u16
UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}   # decimal, as llama.cpp
NAME_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


@dataclass(frozen=True)
class SplitRule:
    """One of the two limits (llama-gguf-split takes one or the other, not both)."""
    max_size: int | None = None          # bytes of padded tensor data per shard
    max_tensors: int | None = None

    def __post_init__(self):
        if (self.max_size is None) == (self.max_tensors is None):
            raise InputError("give one of --split-max-size or --split-max-tensors, not both")
        if self.max_tensors is not None and self.max_tensors < 1:
            raise InputError(f"--split-max-tensors {self.max_tensors}: must be at least 1")


def parse_size(text: str) -> int:
    """'45G', '500M', '100K' (decimal units, as llama.cpp) or a plain number of bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)B?\s*", str(text), re.IGNORECASE)
    if m is None or int(m.group(1)) <= 0:
        raise InputError(f"--split-max-size {text!r}: give a positive whole number with an "
                         f"optional unit K, M, G or T (decimal, e.g. 45G)")
    return int(m.group(1)) * UNITS[m.group(2).upper()]


def make_rule(split_max_size: str | None, split_max_tensors: int | None) -> SplitRule | None:
    """The CLI's two options as a rule; None when neither is given (one file)."""
    if split_max_size is None and split_max_tensors is None:
        return None
    size = parse_size(split_max_size) if split_max_size is not None else None
    return SplitRule(size, split_max_tensors)


def padded(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def group(tensors: list[OutTensor], rule: SplitRule) -> list[list[OutTensor]]:
    """The shards' tensor lists, by llama-gguf-split's should_split."""
    shards: list[list[OutTensor]] = [[]]
    current = 0
    for i, t in enumerate(tensors):
        size = padded(t.nbytes)
        if rule.max_size is not None:
            cut = current + size > rule.max_size
        else:
            cut = i > 0 and i % rule.max_tensors == 0
        if cut and not shards[-1]:
            raise InputError(f"--split-max-size {rule.max_size} bytes is smaller than the first "
                             f"tensor {t.name} ({size} bytes); llama-gguf-split refuses an "
                             f"empty first shard: give a larger size")
        if cut:
            shards.append([])
            current = 0
        shards[-1].append(t)
        current += size
    if len(shards) > MAX_SHARDS:
        raise InputError(f"{len(shards)} shards; a split model has at most {MAX_SHARDS}")
    return shards


def split_entries(no: int, count: int, n_tensors: int) -> list[bytes]:
    """In llama-gguf-split's order: split.count is set last (once the shards are counted), and
    gguf_set_val_* removes a key before appending it."""
    return [encode_entry(KEY_NO, U16, no), encode_entry(KEY_TENSORS, I32, n_tensors),
            encode_entry(KEY_COUNT, U16, count)]


def n_dims(ne: tuple[int, ...]) -> int:
    """ggml_n_dims: the rank without trailing dimensions of 1."""
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return n


def header(entries: list[bytes], tensors: list[OutTensor]) -> bytes:
    """A shard's bytes before its data: magic, v3, counts, entries, tensor infos, padding."""
    out = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(entries)), *entries]
    offset = 0
    for t in tensors:
        d = n_dims(t.ne)
        out.append(encode_value(STRING, t.name) + struct.pack(f"<I{d}QIQ", d, *t.ne[:d],
                                                               t.ggml_type, offset))
        offset += padded(t.nbytes)
    raw = b"".join(out)
    return raw + bytes(-len(raw) % ALIGNMENT)


def shard_headers(model_entries: list[bytes], shards: list[list[OutTensor]]) -> list[bytes]:
    """Every shard's header; model_entries are the model's keys without split.* ones."""
    n, total = len(shards), sum(len(s) for s in shards)
    return [header((model_entries if i == 0 else []) + split_entries(i, n, total), s)
            for i, s in enumerate(shards)]


def shard_path(prefix: Path | str, no: int, count: int) -> Path:
    """llama_split_path: no counts from 0."""
    return Path(f"{prefix}-{no + 1:05d}-of-{count:05d}.gguf")


def shard_prefix(path: Path | str, no: int, count: int) -> Path | None:
    """llama_split_prefix: the prefix if path is the name of shard no of count, else None."""
    tail = f"-{no + 1:05d}-of-{count:05d}.gguf"
    s = str(path)
    return Path(s[:-len(tail)]) if len(s) > len(tail) and s.endswith(tail) else None


def output_prefix(out: Path | str) -> Path:
    """A prefix from an output name: 'model.gguf' and 'model' both give 'model'."""
    out = Path(out)
    return out.with_suffix("") if out.suffix == ".gguf" else out


def check_alignment(alignment: int, what: str) -> None:
    if alignment != ALIGNMENT:
        raise InputError(f"{what}: general.alignment is {alignment}; llama.cpp's split layout "
                         f"pads with {ALIGNMENT} (llama-gguf-split would write broken shards)")
