"""Tiny generated checkpoints of each architecture, tokenizer kind, tied and untied, with and
without rope scaling: our GGUF in llama.cpp must compute what transformers computes."""
from __future__ import annotations

import gguf
import pytest

from tests.support import tiny
from tests.support.compare import hf_logits, kld_stats, llamacpp_logits, llamacpp_tokenize
from tinyconvert.formats.tokenizers import pretokenizer as pt
from tinyconvert.pipeline.hf2gguf import hf2gguf

TEXT = ("The quick brown fox, 1234 jumps! def f(x): return x*2  # café 東京 🙂\n"
        "I've been told they'RE here.   Spaces\tand\ttabs.")
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def bpe(kind: str):
    from tokenizers import Regex, pre_tokenizers as p
    byte_level = p.ByteLevel(add_prefix_space=False, use_regex=False)
    if kind == "gpt-2":
        return [p.ByteLevel(add_prefix_space=False, use_regex=True)], False
    if kind == "smollm":
        return [p.Digits(individual_digits=True),
                p.ByteLevel(add_prefix_space=False, use_regex=True)], False
    if kind == "falcon":  # tiiuae/falcon-7b's steps
        return [p.Punctuation(behavior="contiguous"),
                p.ByteLevel(add_prefix_space=False, use_regex=True),
                p.Digits(individual_digits=False),
                p.Split(Regex(pt.DIGIT_TRIPLES), behavior="isolated")], False
    if kind == "deepseek-v3":
        return [*(p.Split(Regex(r), behavior="isolated") for r in pt.DS3), byte_level], False
    regex = {"llama-bpe": pt.LLAMA3, "qwen2": pt.QWEN2, "qwen35": pt.QWEN35, "gpt-4o": pt.GPT4O,
             "tekken": pt.TEKKEN, "smaug-bpe": pt.LLAMA3}[kind]
    ignore = kind in ("llama-bpe", "tekken")
    return [p.Split(Regex(regex), behavior="isolated"), byte_level], ignore


def make_tokenizer(folder, kind: str, **kw):
    if kind == "spm":
        tiny.train_spm(folder, user_symbols=("<tool>",))
    else:
        steps, ignore = bpe(kind)
        tiny.train_bpe(folder, steps, ignore_merges=ignore, **kw)


CASES = {
    # name: (arch, tokenizer, build_model keyword arguments)
    "llama-spm-untied": ("llama", "spm", {}),
    "llama-bpe-tied-llama3rope": ("llama", "llama-bpe", {"tie": True, "rope": LLAMA3_ROPE}),
    "llama-gpt2-linear-rope": ("llama", "gpt-2", {"rope": {"rope_type": "linear", "factor": 2.0}}),
    "mistral-spm-gqa-headdim": ("mistral", "spm", {"n_kv_head": 1, "head_dim": 32}),
    "qwen2-bias-tied": ("qwen2", "qwen2", {"tie": True}),
    "qwen2-yarn": ("qwen2", "qwen2", {"rope": {"rope_type": "yarn", "factor": 4.0,
                                               "original_max_position_embeddings": 64}}),
    "qwen3-qknorm-headdim": ("qwen3", "qwen2", {"head_dim": 32}),
    "qwen3-tied-smollm-tok": ("qwen3", "smollm", {"tie": True, "head_dim": 16}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def converted(request, tmp_path_factory):
    arch, tok, kw = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    make_tokenizer(folder, tok)
    tiny.build_model(folder, arch, **kw)
    out = folder / "model-f32.gguf"
    hf2gguf(str(folder), out, outtype="f32", quiet=True)
    return request.param, folder, out


def test_llamacpp_matches_transformers(converted):
    name, folder, out = converted
    from transformers import AutoTokenizer
    ids = AutoTokenizer.from_pretrained(folder)(TEXT)["input_ids"]
    stats = kld_stats(hf_logits(folder, ids), llamacpp_logits(out, ids))
    print(name, stats)
    assert stats["kld_mean"] < 1e-5, stats
    assert stats["top1"] == 1.0, stats


SINGLE_SPACED = ("The quick brown fox, 1234 jumps! def f(x): return x*2 # café 東京 🙂\n"
                 "I've been told they'RE here. Spaces and\ttabs.")


def test_tokenization_matches(converted):
    """BPE: llama.cpp == transformers on any text. SentencePiece: llama.cpp == sentencepiece (the
    library that defines tokenizer.model) on any text, and, for llama, == transformers where
    transformers agrees with sentencepiece (it does not on runs of spaces; for model_type mistral
    transformers 5 builds a tokenizer without SentencePiece's dummy prefix)."""
    name, folder, out = converted
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder)
    texts = (TEXT, tiny.CORPUS[3], tiny.CORPUS[6], "  two leading spaces", "x", "")
    if CASES[name][1] == "spm":
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        for text in texts:
            assert llamacpp_tokenize(out, text) == [1] + sp.encode(text), (name, text)
        texts = (SINGLE_SPACED, tiny.CORPUS[0], tiny.CORPUS[3]) if CASES[name][0] == "llama" else ()
    for text in texts:
        assert llamacpp_tokenize(out, text) == tok(text)["input_ids"], (name, text)


def test_spm_user_defined_symbols_stay_whole(tmp_path):
    """A SentencePiece user-defined symbol is one token in llama.cpp too (typed USER_DEFINED;
    llama.cpp's converter types it NORMAL and llama.cpp then splits it into pieces)."""
    import sentencepiece as spm
    make_tokenizer(tmp_path, "spm")
    tiny.build_model(tmp_path, "llama")
    hf2gguf(str(tmp_path), tmp_path / "m.gguf", outtype="f32", quiet=True)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    tool = sp.piece_to_id("<tool>")
    got = llamacpp_tokenize(tmp_path / "m.gguf", "call <tool>now")
    assert got[: got.index(tool) + 1] == [1] + sp.encode("call <tool>")


def test_tied_models_have_no_output_tensor(converted):
    name, folder, out = converted
    names = {t.name for t in gguf.GGUFReader(out).tensors}
    assert ("output.weight" in names) == (not CASES[name][2].get("tie", False))
    assert ("rope_freqs.weight" in names) == (CASES[name][2].get("rope") is LLAMA3_ROPE)


def test_runtime_matches_transformers_and_llamacpp(converted):
    """The bundled runtime: HF weights vs transformers (max |logit diff| < 1e-3), and the same
    runtime on our GGUF vs llama.cpp (mean KLD < 1e-5)."""
    import numpy as np
    from transformers import AutoTokenizer

    from tinyconvert.runtime.model import prefill_layers
    from tinyconvert.pipeline.sources import open_source
    name, folder, out = converted
    ids = AutoTokenizer.from_pretrained(folder)(TEXT)["input_ids"]
    hf = open_source(folder)
    ours = prefill_layers(hf.hparams, hf.get, ids).double().numpy()
    assert np.abs(ours - hf_logits(folder, ids)).max() < 1e-3, name
    gg = open_source(out)
    ours_gguf = prefill_layers(gg.hparams, gg.get, ids).double().numpy()
    assert kld_stats(llamacpp_logits(out, ids), ours_gguf)["kld_mean"] < 1e-5, name


def test_runtime_relu_ffn_matches_transformers(tmp_path):
    """ReLU-gated FFN (ReLU-LLaMA style): the runtime runs it; hf2gguf refuses it, because
    llama.cpp's `llama` architecture would run it with SiLU."""
    import numpy as np

    from tinyconvert.formats.errors import InputError
    from tinyconvert.runtime.model import prefill_layers
    from tinyconvert.pipeline.sources import open_source
    make_tokenizer(tmp_path, "gpt-2")
    tiny.build_model(tmp_path, "llama", hidden_act="relu")
    ids = list(range(3, 60))
    src = open_source(tmp_path)
    assert src.hparams.act == "relu"
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    assert np.abs(ours - hf_logits(tmp_path, ids)).max() < 1e-3
    with pytest.raises(InputError, match="hidden_act 'relu'"):
        hf2gguf(str(tmp_path), tmp_path / "x.gguf", quiet=True)
