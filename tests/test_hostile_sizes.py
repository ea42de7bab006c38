"""Sizes read from a file are computed exactly: a product that wraps a 64-bit integer must not
make a huge tensor look empty, and one past 2**64 must be a one-line InputError, not an
OverflowError. Safetensors headers, GGUF tensor infos and the quant registry's byte sizes."""
from __future__ import annotations

import json
import struct

import pytest
from typer.testing import CliRunner

from tinyconvert.cli import app
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.formats.records import rows_and_len
from tinyconvert.formats.safetensors_file import read_header
from tinyconvert.quant import get_qtype


def safetensors_bytes(entries: dict, data: bytes = b"") -> bytes:
    head = json.dumps(entries).encode()
    return struct.pack("<Q", len(head)) + head + data


@pytest.mark.parametrize("shape,offsets", [
    ([2**32, 2**32], [0, 0]),             # 2**64 elements: wraps to 0 in int64
    ([2**64, 1], [0, 0]),                 # does not even fit int64
    ([2**62, 4], [0, 0]),                 # 2**64 again, through the last dimension
    ([2**31, 2**31, 4], [0, 0]),
])
def test_safetensors_wrapping_shapes_refused(tmp_path, shape, offsets):
    path = tmp_path / "x.safetensors"
    path.write_bytes(safetensors_bytes({"w": {"dtype": "F32", "shape": shape,
                                              "data_offsets": offsets}}))
    with pytest.raises(InputError, match="do not match shape") as e:
        read_header(path)
    assert "\n" not in str(e.value)


def test_safetensors_wrapping_shape_through_cli(tmp_path):
    """The whole command: one line, exit 2, no output."""
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
        "num_hidden_layers": 1, "intermediate_size": 128, "vocab_size": 32}))
    (model / "model.safetensors").write_bytes(safetensors_bytes(
        {"model.embed_tokens.weight": {"dtype": "F32", "shape": [2**64, 1],
                                       "data_offsets": [0, 0]}}))
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(app, ["hf2gguf", str(model), "-o", str(out / "x.gguf")])
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert list(out.iterdir()) == []


def gguf_bytes(ne: tuple[int, ...], ggml_type: int) -> bytes:
    """A GGUF v3 with no keys and one tensor info, data section empty."""
    name = b"w"
    ti = struct.pack("<Q", len(name)) + name + struct.pack("<I", len(ne))
    ti += struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", ggml_type, 0)
    body = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + ti
    return body + bytes(-len(body) % 32)


@pytest.mark.parametrize("ne", [(2**32, 2**32), (2**63, 2), (2**64 - 1, 2**64 - 1)])
@pytest.mark.parametrize("ggml_type", [0, 1000])     # F32, and an id we do not know
def test_gguf_wrapping_shapes_refused(tmp_path, ne, ggml_type):
    """Lenient reading (set-metadata, inspect) skips the size check of an unknown type id, but
    not the shape check: an element count past any real tensor is refused either way."""
    path = tmp_path / "x.gguf"
    path.write_bytes(gguf_bytes(ne, ggml_type))
    with pytest.raises(InputError, match="implausibly large"):
        read_gguf(path, strict_types=False)


def test_gguf_inspect_counts_exactly(tmp_path):
    """An unknown type's element count (2**40, not 0 or a wrapped value) as inspect reports it."""
    path = tmp_path / "x.gguf"
    path.write_bytes(gguf_bytes((2**20, 2**20), 1000))
    r = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["parameters"] == 2**20 * 2**20


def test_registry_sizes_are_exact():
    """Byte sizes for shapes whose element counts pass 2**63 (no tensor has them, but the
    arithmetic must not wrap where a size check relies on it)."""
    q8 = get_qtype("q8_0")                      # 32 weights in 34 bytes
    assert q8.nbytes((2**32, 2**32, 32)) == 2**64 * 34
    assert get_qtype("f32").nbytes((2**40, 2**30, 2)) == 2**70 * 2 * 4
    assert rows_and_len((2**32, 2**32, 8)) == (2**64, 8)


@pytest.mark.parametrize("entry", [{"shape": [True, 1], "data_offsets": [0, 4]},
                                   {"shape": [1, 1], "data_offsets": [False, 4]}])
def test_safetensors_json_booleans_are_not_counts(tmp_path, entry):
    path = tmp_path / "x.safetensors"
    path.write_bytes(safetensors_bytes({"w": {"dtype": "F32", **entry}}, bytes(4)))
    with pytest.raises(InputError, match="bad shape|bad data_offsets"):
        read_header(path)
