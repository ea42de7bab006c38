"""Just enough protobuf to read a SentencePiece `tokenizer.model` without the sentencepiece package.

ModelProto: 1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec.
SentencePiece: 1 piece (string), 2 score (float), 3 type (enum, default NORMAL=1).
NormalizerSpec: 3 add_dummy_prefix (default true), 4 remove_extra_whitespaces (default true).
TrainerSpec: 3 model_type (1 unigram, 2 bpe), 35 byte_fallback.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tinyconvert.formats.errors import InputError


@dataclass(frozen=True)
class SpModel:
    pieces: list[tuple[str, float, int]]          # (piece, score, sentencepiece type)
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    model_type: int = 1
    byte_fallback: bool = False
    extra: dict = field(default_factory=dict)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise InputError("tokenizer.model: truncated or corrupt protobuf varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


FIXED = {1: 8, 5: 4}          # wire type -> bytes of a fixed64 / fixed32 value


def _take(buf: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(buf):
        raise InputError("tokenizer.model: a field runs past the end of its message "
                         "(truncated or corrupt)")
    return buf[pos:pos + n], pos + n


def _fields(buf: bytes):
    """Yields (field number, wire type, value) for one protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire in FIXED:
            val, pos = _take(buf, pos, FIXED[wire])
        elif wire == 2:
            n, pos = _varint(buf, pos)
            val, pos = _take(buf, pos, n)
        else:
            raise InputError(f"tokenizer.model: unsupported protobuf wire type {wire}")
        yield num, wire, val


def _piece(buf: bytes) -> tuple[str, float, int]:
    text, score, ptype = "", 0.0, 1
    for num, wire, val in _fields(buf):
        if num == 1 and wire == 2:
            try:
                text = val.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"tokenizer.model: piece {bytes(val[:16])!r} is not valid "
                                 f"UTF-8 (corrupt file)") from None
        elif num == 2 and wire == 5:
            (score,) = struct.unpack("<f", val)
        elif num == 3 and wire == 0:
            ptype = val
    return text, score, ptype


def parse_sp_model(data: bytes) -> SpModel:
    pieces, norm, trainer = [], {}, {}
    for num, wire, val in _fields(data):
        if num == 1 and wire == 2:
            pieces.append(_piece(val))
        elif num == 2 and wire == 2:
            trainer = {n: v for n, _, v in _fields(val)}
        elif num == 3 and wire == 2:
            norm = {n: v for n, _, v in _fields(val)}
    if not pieces:
        raise InputError("tokenizer.model: no pieces found (not a SentencePiece model?)")
    model_type = trainer.get(3, 1)
    if not isinstance(model_type, int):            # a varint field that came length-delimited
        raise InputError("tokenizer.model: trainer_spec.model_type is not a number (corrupt file)")
    return SpModel(pieces, bool(norm.get(3, 1)), bool(norm.get(4, 1)), model_type,
                   bool(trainer.get(35, 0)))


# --- writing: a SentencePiece BPE model from a vocabulary (a GGUF's `llama` tokenizer) ---

def _put_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _put(num: int, value) -> bytes:
    """One field: int/bool as a varint, float as fixed32, str/bytes length-delimited."""
    if isinstance(value, float):
        return _put_varint(num << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, (bool, int)):
        return _put_varint(num << 3) + _put_varint(int(value))
    data = value.encode("utf-8") if isinstance(value, str) else value
    return _put_varint(num << 3 | 2) + _put_varint(len(data)) + data


def build_sp_model(pieces: list[tuple[str, float, int]], *, add_dummy_prefix: bool,
                   special_ids: dict[str, int]) -> bytes:
    """A BPE ModelProto with byte fallback, spaces escaped as U+2581 and kept as they are (no
    normalization), as llama.cpp's SPM tokenizer reads a `llama` vocabulary. special_ids: unk /
    bos / eos / pad -> id (TrainerSpec fields 40-43; their pieces 45-48)."""
    out = bytearray()
    for text, score, ptype in pieces:
        out += _put(1, _put(1, text) + _put(2, float(score)) + _put(3, ptype))
    trainer = _put(3, 2) + _put(4, len(pieces)) + _put(35, True)
    for i, name in enumerate(("unk", "bos", "eos", "pad")):
        tid = special_ids.get(name, -1)
        trainer += _put(40 + i, tid if tid >= 0 else (1 << 64) + tid)      # int32 -1: 10 bytes
        if 0 <= tid < len(pieces):
            trainer += _put(45 + i, pieces[tid][0])
    out += _put(2, trainer)
    out += _put(3, _put(1, "identity") + _put(3, add_dummy_prefix) + _put(4, False) + _put(5, True))
    return bytes(out)
