"""String arrays in a GGUF header (a vocabulary, its merges) are checked when the file is read
and decoded only when used: the values must equal gguf-py's reader, and every defect the eager
parse refused must still be refused at read time: a string that is not UTF-8 (also one whose
bytes would be valid joined to its neighbour's), a length that runs past the end, a length
field cut off by the end of the file."""
from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_file import Strings, read_gguf

TOKENS = ["<s>", "", "\n", "héllo", "日本", "a" * 300, "\u0120the", "🙂"]


def gguf_bytes(items: list[bytes], *, count: int | None = None, tail: bytes = b"") -> bytes:
    """A GGUF with no tensors and one key: an array of raw strings."""
    key = b"tokenizer.ggml.tokens"
    body = b"".join(struct.pack("<Q", len(b)) + b for b in items)
    kv = (struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, count or len(items))
          + body + tail)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv


def test_values_equal_gguf_py(tmp_path):
    path = tmp_path / "v.gguf"
    path.write_bytes(gguf_bytes([t.encode() for t in TOKENS]))
    fld = read_gguf(path).fields["tokenizer.ggml.tokens"]
    assert isinstance(fld.raw_value, Strings)           # not decoded by the read
    ref = gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"]
    theirs = [bytes(ref.parts[i]).decode("utf-8") for i in ref.data]
    assert fld.value == theirs == TOKENS
    assert fld.value is fld.value                       # decoded once


def test_empty_array(tmp_path):
    path = tmp_path / "e.gguf"
    path.write_bytes(gguf_bytes([], count=0))
    assert read_gguf(path).fields["tokenizer.ggml.tokens"].value == []


@pytest.mark.parametrize("items", [
    [b"ok", b"\xff"],                                   # never valid
    [b"ab\xc3", b"\xa9cd"],                             # valid only if joined: still refused
    [b"\xe6\x97", b"ok"],                               # cut short
])
def test_invalid_utf8_refused_at_read(tmp_path, items):
    path = tmp_path / "u.gguf"
    path.write_bytes(gguf_bytes(items))
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_gguf(path)


def test_length_past_the_end_refused(tmp_path):
    data = bytearray(gguf_bytes([b"abc", b"defg"]))
    at = data.rindex(b"defg") - 8
    data[at:at + 8] = struct.pack("<Q", 1 << 40)
    path = tmp_path / "t.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="past the end"):
        read_gguf(path)


def test_count_beyond_the_strings_refused(tmp_path):
    path = tmp_path / "c.gguf"
    path.write_bytes(gguf_bytes([b"abc", b"de"], count=3, tail=b"\x01\x00\x00"))
    with pytest.raises(InputError, match="past the end"):
        read_gguf(path)


def test_strings_random_round_trip():
    rng = np.random.default_rng(0)
    words = ["".join(chr(c) for c in rng.integers(32, 0x3000, rng.integers(0, 12)))
             for _ in range(2000)]
    raw = b"".join(struct.pack("<Q", len(w.encode())) + w.encode() for w in words)
    starts, pos = [], 0
    for w in words:
        starts.append(pos + 8)
        pos += 8 + len(w.encode())
    st = np.array(starts)
    en = np.append(st[1:] - 8, pos)
    assert Strings(raw, st, en).decode() == words
