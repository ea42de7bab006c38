"""set-metadata and inspect: every edit kind, in place and into a new file, refusals, PowerInfer
and unknown-type files, interruption safety; llama.cpp reads the results."""
from __future__ import annotations

import hashlib
import json
import shutil
import struct

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.smollm2 import smollm2_gguf
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app
from tinyconvert.formats import gguf_edit
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf


def cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def tensor_digest(path) -> dict[str, str]:
    f = read_gguf(path, strict_types=False)
    with open(path, "rb") as fh:
        out = {}
        for t in f.tensors:
            fh.seek(f.data_start + t.offset)
            n = t.nbytes if t.nbytes >= 0 else 64
            out[t.name] = hashlib.sha256(fh.read(n)).hexdigest()
    return out


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinygguf")
    make_tokenizer(d, "gpt-2")
    tiny.build_model(d, "llama")
    hf2gguf(str(d), d / "t.gguf", outtype="f16", quiet=True)
    return d / "t.gguf"


def test_real_model_edits_read_by_llamacpp(tmp_path):
    from tinyconvert.checks.llamacpp import open_llama
    path = tmp_path / "s.gguf"
    shutil.copy(smollm2_gguf(), path)
    before = tensor_digest(path)
    (tmp_path / "t.jinja").write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n"
                                      "{% endfor %}", encoding="utf-8")
    assert cli("set-metadata", path, "general.name", "Smöl 🦙 模型 — ünïcode")[0] == 0
    assert cli("set-metadata", path, "--chat-template-file", tmp_path / "t.jinja")[0] == 0
    code, out, _ = cli("set-metadata", path, "llama.context_length", "2048")
    assert code == 0 and "patched in place" in out
    assert cli("set-metadata", path, "--delete", "general.languages")[0] == 0
    assert tensor_digest(path) == before
    md = open_llama(path, verbose=False, n_ctx=64).metadata
    assert md["general.name"] == "Smöl 🦙 模型 — ünïcode"
    assert md["tokenizer.chat_template"].startswith("{% for m in messages %}[{{ m.role }}]")
    assert md["llama.context_length"] == "2048"
    assert "general.languages" not in md


def test_types_arrays_rename_and_out(tiny_gguf, tmp_path):
    src = tmp_path / "a.gguf"
    shutil.copy(tiny_gguf, src)
    original = src.read_bytes()
    out = tmp_path / "b.gguf"
    code, _, err = cli("set-metadata", src, "custom.ids", "[1, -2, 3]", "--type", "array-of-i32",
                       "-o", out)
    assert code == 0, err
    assert src.read_bytes() == original                   # -o never touches the input
    f = read_gguf(out)
    assert f.value("custom.ids").tolist() == [1, -2, 3]
    assert cli("set-metadata", out, "custom.flag", "true", "--type", "bool")[0] == 0
    assert cli("set-metadata", out, "custom.scale", "0.5")[2].startswith("note: custom.scale is "
                                                                          "new: stored as f32")
    assert cli("set-metadata", out, "--rename", "custom.flag=custom.enabled")[0] == 0
    assert cli("set-metadata", out, "custom.names", '["a", "ü"]', "--from-json")[0] == 0
    f = read_gguf(out)
    assert f.value("custom.enabled") is True and "custom.flag" not in f.fields
    assert f.value("custom.scale") == 0.5 and f.value("custom.names") == ["a", "ü"]
    assert tensor_digest(out) == tensor_digest(src)
    assert f.data_start % f.alignment == 0


@pytest.mark.parametrize("args,message", [
    (["general.alignment", "64"], "relayout"),
    (["GGUF.version", "2"], "header fields"),
    (["--", "llama.block_count", "-1"], "does not fit"),
    (["llama.block_count", "4294967296"], "does not fit"),
    (["bad key", "1"], "not a valid key name"),
    (["llama.block_count", "x"], "not a valid u32"),
    (["--delete", "no.such.key"], "no such key"),
    (["general.name", "x", "--type", "u9"], "unknown --type"),
])
def test_refusals_leave_file_untouched(tiny_gguf, tmp_path, args, message):
    path = tmp_path / "r.gguf"
    shutil.copy(tiny_gguf, path)
    before = path.read_bytes()
    code, _, err = cli("set-metadata", *(args[:1] if args[0] == "--" else []), path,
                       *(args[1:] if args[0] == "--" else args))
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.gguf"]


def test_interrupted_rewrite_leaves_old_file(tiny_gguf, tmp_path, monkeypatch):
    path = tmp_path / "i.gguf"
    shutil.copy(tiny_gguf, path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(gguf_edit, "copy_range", boom)
    code, _, err = cli("set-metadata", path, "general.name", "a much longer name than before")
    assert code == 130
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.gguf"]


def _set_tensor_type(path, name: str, new_type: int) -> None:
    f = read_gguf(path)
    with open(path, "r+b") as fh:
        head = fh.read(f.data_start)
        at = head.index(struct.pack("<Q", len(name)) + name.encode(), f.ti_start)
        pos = at + 8 + len(name)
        (n_dims,) = struct.unpack_from("<I", head, pos)
        fh.seek(pos + 4 + 8 * n_dims)
        fh.write(struct.pack("<I", new_type))


def test_powerinfer_magic_and_unknown_types_survive(tiny_gguf, tmp_path):
    path = tmp_path / "p.gguf"
    shutil.copy(tiny_gguf, path)
    _set_tensor_type(path, "blk.0.ffn_up.weight", 250)        # a type id nobody knows
    with open(path, "r+b") as fh:
        fh.write(b"PWRI")
    before = tensor_digest(path)
    assert cli("set-metadata", path, "general.name", "a new, longer name for a PWRI file")[0] == 0
    assert cli("set-metadata", path, "powerinfer.sparse_threshold", "0.5", "--type", "f32")[0] == 0
    assert path.read_bytes()[:4] == b"PWRI"
    assert tensor_digest(path) == before
    code, out, _ = cli("inspect", path, "--json")
    info = json.loads(out)
    assert code == 0 and info["magic"] == "PWRI"
    assert {t["name"]: t["type"] for t in info["tensors"]}["blk.0.ffn_up.weight"] == "type250"


def test_inspect_text_json_filter_full(tmp_path):
    code, out, _ = cli("inspect", smollm2_gguf(), "--tensors", "blk.1.*")
    assert code == 0
    assert "tokenizer.chat_template" in out and "--full shows it whole" in out
    assert "blk.1.attn_q.weight" in out and "blk.2.attn_q.weight" not in out
    assert "total Q4_1" in out and "134,515,008 parameters" in out
    code, out, _ = cli("inspect", smollm2_gguf(), "--json", "--full")
    info = json.loads(out)
    assert info["tensor_count"] == 272 and info["metadata"]["llama.block_count"]["value"] == 30
    assert info["metadata"]["tokenizer.ggml.tokens"]["type"] == "array-of-str"
    code, out, _ = cli("inspect", smollm2_gguf(), "--full")
    assert "You are a helpful AI assistant named SmolLM" in out
