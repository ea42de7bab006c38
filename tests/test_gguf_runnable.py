"""A GGUF whose keys or tensors contradict each other (hostile or damaged; found by probing
verify and run around tests/test_fuzz_pipeline.py) is one line and exit 2 from verify and run,
not a TypeError or RuntimeError from inside the forward pass."""
from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app
from tinyconvert.edit.metaedit import apply_edits, make_set
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("runnable")
    make_tokenizer(d, "gpt-2")
    tiny.build_model(d, "llama")
    hf2gguf(str(d), d.parent / "base.gguf", outtype="f16", quiet=True)
    return d.parent / "base.gguf"


def renamed(data: bytes, old: str, new: str) -> bytes:
    assert len(old) == len(new) and data.count(old.encode()) == 1
    return data.replace(old.encode(), new.encode())


TENSORS = [
    ("blk.0.attn_q.weight", "blk.0.attn_x.weight", r"block 0 has no attn_q / attn_qkv"),
    ("token_embd.weight", "token_embx.weight", r"has no token_embd\.weight"),
    ("output_norm.weight", "output_nosm.weight", r"has no output_norm\.weight"),
    ("blk.1.ffn_down.weight", "blk.1.ffn_dowx.weight", r"block 1 has no ffn_down"),
]
KEYS = [
    ("llama.attention.head_count", "0", "u32", r"head_count is 0; the model needs a positive"),
    ("llama.attention.head_count_kv", "3", "u32", r"4 attention heads cannot share 3"),
    ("llama.block_count", "1000000", "u32", r"block_count is 1000000 but the file has only 21"),
    ("llama.embedding_length", "65", "u32", r"token_embd is 64 wide, but llama\.embedding_len"),
    ("llama.expert_count", "4", "u32", r"says 4 experts but has no expert tensors"),
    ("llama.attention.key_length", "7", "u32", r"attn_q has 64 rows, not 4 heads of 7"),
    ("llama.block_count", "two", "str", r"block_count is 'two'; the model needs a positive"),
    ("tokenizer.ggml.tokens", '["a"]', "array-of-str", r"1 tokens in the vocabulary but "
                                                        r"token_embd has 400 rows"),
]
CASES = [("tensor", *c) for c in TENSORS] + [("key", *c) for c in KEYS]


def broken(base, tmp_path, case):
    path = tmp_path / "x.gguf"
    if case[0] == "tensor":
        path.write_bytes(renamed(base.read_bytes(), case[1], case[2]))
    else:
        path.write_bytes(base.read_bytes())
        apply_edits(path, [make_set(read_gguf(path), case[1], case[2], case[3])])
    return path


@pytest.mark.parametrize("command", ["verify", "run"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}:{c[1]}={c[2]}" for c in CASES])
def test_contradicting_gguf(base, tmp_path, case, command):
    path = broken(base, tmp_path, case)
    args = (["verify", str(base), str(path), "--tokens", "8"] if command == "verify"
            else ["run", str(path), "-p", "hello"])
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert re.search(case[-1], r.stderr), r.stderr


def test_unbuildable_vocabulary_is_an_input_error(base, tmp_path):
    """A vocabulary the tokenizers library refuses (merges naming tokens it lacks)."""
    path = tmp_path / "x.gguf"
    path.write_bytes(base.read_bytes())
    f = read_gguf(path)
    merges = list(f.value("tokenizer.ggml.merges"))
    merges[0] = "\u0120zzzq \u0120qqqz"
    apply_edits(path, [make_set(f, "tokenizer.ggml.merges", json.dumps(merges),
                                "array-of-str", from_json=True)])
    r = CliRunner().invoke(app, ["run", str(path), "-p", "hello"])
    assert r.exit_code == 2, r.stderr
    assert "its vocabulary cannot be rebuilt into a tokenizer" in r.stderr


def test_other_families_get_only_the_file_wide_checks(tmp_path):
    """An SSM family (no heads, no attention or FFN tensors) is not held to the attention +
    FFN block roles; its embedding still is checked."""
    from tinyconvert.formats.errors import InputError
    from tinyconvert.formats.gguf_file import TensorInfo
    from tinyconvert.pipeline.gguf_checks import check_runnable
    tensors = {n: TensorInfo(n, ne, 0, 0, 0) for n, ne in [
        ("token_embd.weight", (64, 10)), ("output_norm.weight", (64,)),
        ("blk.0.ssm_in.weight", (64, 256)), ("blk.0.ssm_out.weight", (128, 64))]}
    fields = {"general.architecture": "mamba", "mamba.block_count": 1,
              "mamba.embedding_length": 64, "mamba.attention.head_count": 0,
              "tokenizer.ggml.tokens": ["t"] * 10}
    check_runnable(tmp_path, fields, tensors)
    with pytest.raises(InputError, match="token_embd is 64 wide"):
        check_runnable(tmp_path, {**fields, "mamba.embedding_length": 32}, tensors)
