"""hf2gguf on the real SmolLM2-135M-Instruct checkpoint, checked against transformers (what the
model computes), llama.cpp (what the file means) and llama.cpp's own converter (the bytes)."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from tests.support.compare import hf_logits, kld_stats, llamacpp_logits, llamacpp_tokenize
from tests.support.llamacpp_src import run_converter
from tinyconvert.pipeline.hf2gguf import hf2gguf

MIXED = ("Hello world! The year 2024 had 366 days.\n\n    def f(x):\n\treturn x ** 2  # square\n"
         "Café naïve résumé façade — «quotes» “curly” ‘single’. 東京タワー 北京 서울 Привет мир "
         "🙂🚀👍🏽 👨‍👩‍👧   three   spaces,\ttabs\t\tand\r\nCRLF. 3.14159 1,000,000 0x1F "
         "I've you're he'll WE'D DON'T <|im_start|> <|im_end|><|endoftext|> done.   ")


@pytest.fixture(scope="module")
def f32_gguf(smollm2_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "smollm2-f32.gguf"
    hf2gguf(str(smollm2_hf), out, outtype="f32", quiet=True)
    return out


def test_f32_in_llamacpp_matches_transformers(smollm2_hf, f32_gguf, sample_text):
    from transformers import AutoTokenizer
    ids = AutoTokenizer.from_pretrained(smollm2_hf)(sample_text)["input_ids"][:384]
    assert len(ids) >= 300
    stats = kld_stats(hf_logits(smollm2_hf, ids), llamacpp_logits(f32_gguf, ids))
    print("f32 llama.cpp vs transformers:", stats)
    assert stats["kld_mean"] < 1e-5
    assert stats["top1"] >= 0.99


def _tensor_bytes(path):
    r = gguf.GGUFReader(path)
    return {t.name: (t.tensor_type, np.asarray(t.data).tobytes()) for t in r.tensors}, r


def _fields(reader, prefix):
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith(prefix)}


@pytest.mark.parametrize("outtype", ["f16", "bf16", "q8_0"])
def test_bit_identical_to_llamacpp_converter(smollm2_hf, llamacpp_root, tmp_path, outtype):
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    hf2gguf(str(smollm2_hf), ours, outtype=outtype, quiet=True)
    run_converter(smollm2_hf, theirs, outtype)
    a, ra = _tensor_bytes(ours)
    b, rb = _tensor_bytes(theirs)
    assert sorted(a) == sorted(b)
    different = [n for n in a if a[n] != b[n]]
    assert different == [], f"{len(different)} tensors differ, first {different[:3]}"
    assert _fields(ra, "tokenizer.") == _fields(rb, "tokenizer.")
    assert _fields(ra, "llama.") == _fields(rb, "llama.")
    assert _fields(ra, "general.") == _fields(rb, "general.")


def test_llamacpp_tokenizes_like_hf(smollm2_hf, f32_gguf, sample_text):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(smollm2_hf)
    chat = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "What is 12 × 7? Answer in 日本語, please 🙂"}],
        tokenize=False, add_generation_prompt=True)
    for text in (MIXED, sample_text, chat, " leading space", "\n\nnewlines first", ""):
        want = tok(text)["input_ids"]
        got = llamacpp_tokenize(f32_gguf, text, add_bos=True, special=True)
        assert got == want, f"tokenization differs for {text[:40]!r}"


def test_chat_template_and_special_tokens_carried_over(smollm2_hf, f32_gguf):
    import json
    r = gguf.GGUFReader(f32_gguf)
    template = (smollm2_hf / "chat_template.jinja").read_text(encoding="utf-8")
    assert r.fields["tokenizer.chat_template"].contents() == template
    cfg = json.loads((smollm2_hf / "config.json").read_text())
    assert r.fields["tokenizer.ggml.bos_token_id"].contents() == 1
    assert r.fields["tokenizer.ggml.eos_token_id"].contents() == cfg["eos_token_id"]
    assert r.fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert "output.weight" not in {t.name for t in r.tensors}      # tied embeddings
