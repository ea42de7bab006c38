"""A small GGUF writer for the plan-then-write flow when the key/value entries are already
encoded bytes (copied from another file): header, tensor infos with offsets computed from each
tensor's type and shape, then the data streamed by the caller, tensor by tensor."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from tinyconvert.formats.gguf_edit import encode_value
from tinyconvert.formats.gguf_file import STRING


@dataclass(frozen=True)
class OutTensor:
    name: str
    ne: tuple[int, ...]           # ggml order (innermost first)
    ggml_type: int
    nbytes: int


def write_header(f, tensors: list[OutTensor], entries: list[bytes], *, alignment: int = 32,
                 magic: bytes = b"GGUF", version: int = 3) -> int:
    """Writes everything up to the data section; returns the data section's start."""
    f.write(magic + struct.pack("<IQQ", version, len(tensors), len(entries)))
    for e in entries:
        f.write(e)
    offset = 0
    for t in tensors:
        f.write(encode_value(STRING, t.name) + struct.pack("<I", len(t.ne)))
        f.write(struct.pack(f"<{len(t.ne)}Q", *t.ne) + struct.pack("<IQ", t.ggml_type, offset))
        offset += -(-t.nbytes // alignment) * alignment
    f.write(bytes(-f.tell() % alignment))
    return f.tell()


def pad(f, alignment: int = 32) -> None:
    f.write(bytes(-f.tell() % alignment))
