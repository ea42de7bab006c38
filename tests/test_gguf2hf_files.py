"""gguf2hf on quantized files (llama.cpp's q4_k_m, T-MAC, grouped INT8), on the real SmolLM2
(a llama.cpp-written Q4_1 file), with a SentencePiece vocabulary, through the CLI, and streamed:
one GGUF tensor dequantized and one HF tensor made at a time."""
from __future__ import annotations

import json
import shutil
import weakref

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.compare import hf_logits, llamacpp_tokenize
from tinyconvert.cli import app
from tinyconvert.export import gguf2hf as export_mod
from tinyconvert.export import safetensors_out
from tinyconvert.export.gguf2hf import gguf2hf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.quantize import TmacOptions, quantize
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers

TEXT = "The quick brown fox, 1234 jumps! def f(x): return x*2  # café 東京 🙂 I've been told."
QUANTS = {"q4_k_m": dict(qtype="q4_k_m"), "int8-g64": dict(bits=8, group_size=64)}


@pytest.fixture(scope="module")
def llama_f32(tmp_path_factory, smollm2_hf):
    """A tiny llama (rows of 256 so every quant type holds them) and its f32 GGUF."""
    folder = tmp_path_factory.mktemp("g2hf-llama")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_hf / name, folder / name)
    tiny.build_model(folder, "llama", n_vocab=49152, hidden_size=256, intermediate_size=512,
                     sharpen=5.0)
    hf2gguf(str(folder), folder / "m.gguf", outtype="f32", quiet=True)
    return folder


def _ids(folder) -> list[int]:
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)(TEXT)["input_ids"]


@pytest.mark.parametrize("quant", sorted(QUANTS))
def test_quantized_file_exports_the_weights_the_runtime_runs(llama_f32, tmp_path, quant):
    """transformers on the f32 export of a quantized file gives the runtime's logits on that
    file: the same dequantized weights, only the float rounding of two implementations apart."""
    q = tmp_path / "q.gguf"
    quantize(llama_f32 / "m.gguf", q, quiet=True, **QUANTS[quant])
    res = gguf2hf(q, tmp_path / "out", dtype="f32", quiet=True)
    ids = _ids(res.path)
    src = open_source(q)
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    theirs = hf_logits(res.path, ids)
    ref = hf_logits(llama_f32, ids)
    # exact weights give float-rounding differences; quantization moves logits far more
    assert np.abs(ours - theirs).max() < 2e-3 * np.abs(ours).max(), quant
    assert np.abs(ref - theirs).max() > 20 * np.abs(ours - theirs).max(), quant


def test_tmac_file_exports_its_dequantized_weights(llama_f32, tmp_path):
    """T-MAC tensors (which the runtime runs by lookup tables, not dequantized) export as their
    dequantized values: converted back to GGUF, every tensor equals the T-MAC file's dequantized
    tensor bit for bit (so the Q/K permutation was undone and redone exactly)."""
    from tinyconvert.formats.gguf_file import read_gguf
    from tinyconvert.runtime.weights import dequantize
    q = tmp_path / "q.gguf"
    quantize(llama_f32 / "m.gguf", q, bits=4, group_size=64, tmac=TmacOptions(), quiet=True)
    res = gguf2hf(q, tmp_path / "out", dtype="f32", quiet=True)
    hf2gguf(str(res.path), tmp_path / "back.gguf", outtype="f32", quiet=True)
    a, b = read_gguf(q), read_gguf(tmp_path / "back.gguf")
    assert sum(a.type_name(t.ggml_type).startswith("tmac") for t in a.tensors) >= 14
    back = {t.name: t for t in b.tensors}
    assert sorted(back) == sorted(t.name for t in a.tensors)
    for t in a.tensors:
        assert np.array_equal(dequantize(a, t), dequantize(b, back[t.name])), t.name


def test_default_dtype_follows_the_file(llama_f32, tmp_path):
    """auto: f32 for an f32 file, f16 for an f16 one (every tensor the original's f16 value)."""
    import torch
    from safetensors.torch import load_file
    assert gguf2hf(llama_f32 / "m.gguf", tmp_path / "a", quiet=True).dtype == "f32"
    hf2gguf(str(llama_f32), tmp_path / "h.gguf", outtype="f16", quiet=True)
    res = gguf2hf(tmp_path / "h.gguf", tmp_path / "h", quiet=True)
    assert res.dtype == "f16"
    orig, ours = load_file(llama_f32 / "model.safetensors"), load_file(res.path / "model.safetensors")
    assert sorted(orig) == sorted(ours)
    assert all(torch.equal(orig[k].half(), ours[k]) for k in orig)
    # a quantized file's default, bf16, is checked on the real SmolLM2 below


def test_streamed_one_tensor_at_a_time(llama_f32, tmp_path, monkeypatch):
    """Every dequantized GGUF tensor is let go by the time the next HF tensor is written: at
    each write at most the tensor being written and the loader's last tensor are alive."""
    alive: list[weakref.ref] = []
    real_load, real_write = export_mod.dequantize_tensor, safetensors_out.write_tensor
    counts: list[int] = []

    def load(f, t):
        a = real_load(f, t)
        alive.append(weakref.ref(a))
        return a

    def write(fh, e, a, dtype):
        counts.append(sum(r() is not None for r in alive))
        real_write(fh, e, a, dtype)
    monkeypatch.setattr(export_mod, "dequantize_tensor", load)
    monkeypatch.setattr(safetensors_out, "write_tensor", write)
    res = gguf2hf(llama_f32 / "m.gguf", tmp_path / "out", quiet=True)
    assert len(counts) == res.n_tensors == len(alive) > 15
    assert max(counts) <= 2, counts


def test_spm_vocabulary_exports_tokenizer_model(tmp_path):
    """A SentencePiece vocabulary comes back as tokenizer.model: transformers' tokenizer on it
    splits as the original checkpoint's does, and as llama.cpp does on the file."""
    from transformers import AutoTokenizer
    tiny.train_spm(tmp_path, user_symbols=("<|im_start|>",))
    tiny.build_model(tmp_path, "llama", sharpen=5.0)
    hf2gguf(str(tmp_path), tmp_path / "m.gguf", outtype="f32", quiet=True)
    res = gguf2hf(tmp_path / "m.gguf", tmp_path / "out", quiet=True)
    assert (res.path / "tokenizer.model").is_file()
    ours, orig = AutoTokenizer.from_pretrained(res.path), AutoTokenizer.from_pretrained(tmp_path)
    for text in (TEXT, " leading  spaces\tand tabs\n\nnew", "<s>hi</s> <|im_start|>user x"):
        assert ours(text)["input_ids"] == orig(text)["input_ids"], text
    assert ours(TEXT)["input_ids"] == llamacpp_tokenize(tmp_path / "m.gguf", TEXT)


def test_real_smollm2_through_the_cli(tmp_path):
    """The llama.cpp-written SmolLM2 Q4_1: exported (bf16 by default), verified by the command
    itself against the GGUF, loaded by transformers, its tokenizer splitting as llama.cpp."""
    from tests.support.smollm2 import smollm2_gguf
    from transformers import AutoTokenizer
    gguf_path = smollm2_gguf()
    out = tmp_path / "smol"
    r = CliRunner().invoke(app, ["gguf2hf", str(gguf_path), "-o", str(out), "--json", "-q"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output.strip().splitlines()[-1])
    assert report["hf_class"] == "LlamaForCausalLM" and report["dtype"] == "bf16"
    assert report["verify"]["passed"] and report["verify"]["top1"] > 0.95, report
    tok = AutoTokenizer.from_pretrained(out)
    text = TEXT + " <|im_start|>user\nhi<|im_end|>"
    assert tok(text)["input_ids"] == llamacpp_tokenize(gguf_path, text)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) \
        .endswith("<|im_start|>user\nhi<|im_end|>\n")


@pytest.mark.parametrize("args, message", [
    (["missing.gguf"], "no such file"),
    (["{f32}", "--dtype", "f8"], "--dtype"),
    (["{f32}", "--max-shard-size", "lots"], "not a size"),
    (["{f32}", "--max-shard-size", "0"], "must be positive"),
])
def test_bad_input_is_one_line(llama_f32, tmp_path, args, message):
    args = [a.format(f32=llama_f32 / "m.gguf") for a in args]
    r = CliRunner().invoke(app, ["gguf2hf", *args, "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_refuses_a_non_empty_folder(llama_f32, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    r = CliRunner().invoke(app, ["gguf2hf", str(llama_f32 / "m.gguf"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and "not an empty folder" in r.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_real_gemma3_spm_vocabulary(tmp_path):
    """The llama.cpp-written Gemma 3 270M's vocabulary (SentencePiece, no space prefix, user-
    defined whitespace pieces): transformers' tokenizer on the exported files and SentencePiece
    on the exported tokenizer.model (what verify reads) both split text as llama.cpp does on the
    file. (The tokenizer files alone: the whole export of this model is the slowest test here.)"""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    from tests.support.smollm2 import DEFAULT_CACHE
    from tinyconvert.export.tokenizer_out import write_tokenizer
    from tinyconvert.formats.gguf_file import read_gguf
    gguf_path = DEFAULT_CACHE / "gemma-3-270m-q4_k_m.gguf"
    write_tokenizer(tmp_path, read_gguf(gguf_path).values(), n_ctx=32768)
    text = "def f(x):\n    return  x*2   # café 東京 🙂\n\n\tEnd.  <start_of_turn>user\nhi"
    want = llamacpp_tokenize(gguf_path, text)
    assert AutoTokenizer.from_pretrained(tmp_path)(text)["input_ids"] == want
    plain = text.split("  <start")[0]
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    assert [2] + list(sp.encode_as_ids(plain)) == llamacpp_tokenize(gguf_path, plain)
