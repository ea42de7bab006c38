"""The BPE pre-tokenizer is identified from the tokenizer's own definition, and the chosen
llama.cpp pre-tokenizer splits text exactly like the HF tokenizer."""
from __future__ import annotations

import json

import gguf
import pytest

from tests.support import tiny
from tests.support.compare import llamacpp_tokenize
from tests.test_tiny_models import bpe
from tinyconvert.formats.tokenizers import pretokenizer as pt
from tinyconvert.formats.errors import InputError
from tinyconvert.pipeline.hf2gguf import hf2gguf

PROBE = ("\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
         "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
         "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
         "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
         "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL")
TEXTS = (PROBE, tiny.CORPUS[2], tiny.CORPUS[6], tiny.CORPUS[7], "HelloWorld CamelCase XMLHttp",
         "path/to/file.txt\r\n\r\nend", "  x", "")


@pytest.mark.parametrize("kind", ["gpt-2", "smollm", "llama-bpe", "smaug-bpe", "qwen2", "qwen35",
                                  "gpt-4o", "tekken", "falcon", "deepseek-v3"])
def test_llamacpp_splits_like_hf(tmp_path, kind):
    from transformers import AutoTokenizer
    steps, ignore = bpe(kind)
    tiny.train_bpe(tmp_path, steps, ignore_merges=ignore, extra_tokens=("<custom>",))
    tiny.build_model(tmp_path, "llama")
    out = tmp_path / "m.gguf"
    hf2gguf(str(tmp_path), out, outtype="f32", quiet=True)
    assert gguf.GGUFReader(out).fields["tokenizer.ggml.pre"].contents() == kind
    tok = AutoTokenizer.from_pretrained(tmp_path)
    for text in TEXTS + ("a <custom> b<|im_end|>",):
        assert llamacpp_tokenize(out, text) == tok(text)["input_ids"], (kind, text[:30])


def test_finetune_with_added_tokens_still_recognised(tmp_path):
    steps, ignore = bpe("llama-bpe")
    tiny.train_bpe(tmp_path, steps, ignore_merges=ignore,
                   extra_tokens=("<|tool_call|>", "<think>", "</think>"))
    tj = json.loads((tmp_path / "tokenizer.json").read_text())
    assert pt.identify(tj) == "llama-bpe"


def test_unknown_pre_tokenizer_error_names_the_regex():
    tj = {"model": {"type": "BPE"}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\p{L}+|\d{1,4}"}, "behavior": "Isolated",
         "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}}
    with pytest.raises(InputError, match=r"\\p\{L\}\+\|\\d\{1,4\}"):
        pt.identify(tj)


def test_signature_reads_sequences_and_digits():
    tj = {"model": {"type": "BPE", "ignore_merges": True},
          "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
              {"type": "Digits", "individual_digits": True},
              {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}}
    assert pt.signature(tj) == ((pt.DIGIT, pt.GPT2), True, True)
