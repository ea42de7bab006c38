"""The real Gemma 3 270M end to end (a second family with a real model): hf2gguf against
llama.cpp's converter, quantize q4_k_m against llama-quantize and against the published file's
own tensor types, verify against transformers in our runtime and in llama.cpp, run, and the
SentencePiece vocabulary rebuilt from a GGUF against llama.cpp's tokenizer."""
from __future__ import annotations

from collections import Counter

import gguf
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.support.compare import hf_logits, kld_stats, llamacpp_logits, llamacpp_quantize
from tests.support.compare import llamacpp_tokenize
from tests.support.gemma3 import gemma3_gguf
from tests.support.llamacpp_src import run_converter
from tests.support.families import read_gguf_contents as _read
from tests.test_quantize import same_file_contents
from tinyconvert.checks.generate import generate
from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
from tinyconvert.checks.verify import verify
from tinyconvert.cli import app
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source

MIXED = ("Hello world! The year 2024 had 366 days.\n\n    def f(x):\n\treturn x ** 2  # square\n"
         "Café naïve résumé — «quotes» “curly”. 東京タワー 北京 서울 Привет мир 🙂🚀👍🏽   three   "
         "spaces,\ttabs\t\tand\r\nCRLF. 3.14159 1,000,000 <start_of_turn>user\nhi<end_of_turn>\n")


@pytest.fixture(scope="module")
def f16(gemma3_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("g3real") / "gemma3-f16.gguf"
    hf2gguf(str(gemma3_hf), out, outtype="f16", quiet=True)
    return out


@pytest.fixture(scope="module")
def ids(gemma3_hf, sample_text):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(gemma3_hf)(sample_text)["input_ids"][:256]


def test_f16_identical_to_llamacpp_converter(gemma3_hf, f16, tmp_path):
    run_converter(gemma3_hf, tmp_path / "theirs.gguf", "f16")
    (ta, fa), (tb, fb) = _read(f16), _read(tmp_path / "theirs.gguf")
    assert sorted(ta) == sorted(tb) and len(ta) == 236
    assert [n for n in ta if ta[n] != tb[n]] == []
    # llama.cpp's converter types tokenizer.model's user-defined pieces (Gemma's runs of spaces)
    # NORMAL; ours keeps USER_DEFINED, written with spaces for U+2581 so that llama.cpp finds them
    # in raw text. Every other key is equal.
    ours, theirs = fa.pop("tokenizer.ggml.token_type"), fb.pop("tokenizer.ggml.token_type")
    assert {(a, b) for a, b in zip(ours, theirs) if a != b} == {(4, 1)}
    ours_t, theirs_t = fa.pop("tokenizer.ggml.tokens"), fb.pop("tokenizer.ggml.tokens")
    changed = {i for i, (a, b) in enumerate(zip(ours_t, theirs_t)) if a != b}
    assert changed and all(ours[i] == 4 and ours_t[i] == theirs_t[i].replace("\u2581", " ")
                           for i in changed)
    assert fa == fb


def test_runtime_and_llamacpp_match_transformers(gemma3_hf, f16, ids):
    ref = hf_logits(gemma3_hf, ids)
    src = open_source(gemma3_hf)
    from tinyconvert.runtime.model import prefill_layers
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    assert np.abs(ours - ref).max() < 1e-3
    stats = kld_stats(ref, llamacpp_logits(f16, ids))
    print("gemma3 f16 in llama.cpp vs transformers:", stats)
    assert stats["kld_mean"] < 2e-3 and stats["top1"] >= 0.97, stats


@pytest.fixture(scope="module")
def q4km(f16):
    out = f16.parent / "gemma3-q4_k_m.gguf"
    res = CliRunner().invoke(app, ["quantize", str(f16), "-o", str(out), "-t", "q4_k_m"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1].startswith("verify: PASS"), res.stdout
    return out


def test_q4_k_m_equals_llama_quantize_and_the_published_mix(f16, q4km, tmp_path):
    llamacpp_quantize(f16, tmp_path / "theirs.gguf", 15)
    same_file_contents(q4km, tmp_path / "theirs.gguf")
    types = Counter(int(t.tensor_type) for t in gguf.GGUFReader(q4km).tensors)
    published = Counter(int(t.tensor_type) for t in gguf.GGUFReader(gemma3_gguf()).tensors)
    assert types == published


def test_verify_runtime_agrees_with_llamacpp(gemma3_hf, f16, q4km, tmp_path):
    """This checkpoint's weights are the published Q4_K_M's, dequantized: Q4_K_M again gives
    nearly the same weights, so our runtime (exact dequantization) sees almost no drift while
    llama.cpp adds its own (it rounds activations to 8 bits in quantized matmuls). Q2_K changes
    the weights enough for the two engines to measure the same drift."""
    from tinyconvert.pipeline.quantize import quantize
    runtime = verify(str(gemma3_hf), q4km, tokens=256)
    engine = verify(str(gemma3_hf), q4km, tokens=256, engine="llama.cpp")
    print("gemma3 q4_k_m kld: runtime", runtime.stats["kld_mean"], "llama.cpp",
          engine.stats["kld_mean"])
    assert runtime.passed and engine.passed and runtime.vocab_mismatches == []
    assert runtime.stats["kld_mean"] < 1e-4 and engine.stats["kld_mean"] < 0.02
    q2k = tmp_path / "q2_k.gguf"
    quantize(f16, q2k, qtype="q2_k", quiet=True)
    a = verify(str(gemma3_hf), q2k, tokens=256).stats["kld_mean"]
    b = verify(str(gemma3_hf), q2k, tokens=256, engine="llama.cpp").stats["kld_mean"]
    print("gemma3 q2_k kld: runtime", a, "llama.cpp", b)
    assert abs(a - b) / b < 0.25, (a, b)


def test_run_on_the_published_gguf_equals_transformers_greedy(gemma3_hf):
    """The file as llama.cpp wrote it (Q4_K_M), run by our runtime with the tokenizer rebuilt
    from the file: transformers built its checkpoint from the same quantized values."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    prompt = "The capital of France is"
    tok = AutoTokenizer.from_pretrained(gemma3_hf)
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(gemma3_hf, dtype=torch.float32)
    want = model.generate(ids, max_new_tokens=16, do_sample=False)[0, ids.shape[1]:].tolist()
    got = generate(str(gemma3_gguf()), prompt, max_tokens=16)
    assert got == want[:len(got)] and len(got) >= 12
    res = CliRunner().invoke(app, ["run", str(gemma3_gguf()), "-p", prompt, "--max-tokens", "8"])
    assert res.exit_code == 0 and tok.decode(want[:4]) in res.stdout, res.output


def test_vocabulary_from_the_gguf_tokenizes_like_llamacpp(sample_text):
    path = gemma3_gguf()
    tok = tokenizer_for(open_source(path))
    for text in (MIXED, sample_text, "  leading", "trailing  ", "", "a" * 40, " " * 40):
        assert tok.encode(text) == llamacpp_tokenize(path, text), text[:40]
