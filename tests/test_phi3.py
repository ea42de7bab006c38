"""Phi-3 / 3.5 / Phi-4 / Phi-4-mini (phi3) on tiny seeded checkpoints with a Phi-3-style
SentencePiece tokenizer (added chat tokens, vocab padded past the pieces as 32064 is) or, for
Phi-4, a GPT2Tokenizer-class tokenizer.json: our runtime against transformers, llama.cpp on our
file against transformers and against our runtime, the converter's bytes and keys against
llama.cpp's converter, every mix against llama-quantize (rows multiple of 256 and not), and the
rope configs llama.cpp's converter would misread refused.

LongRoPE picks its factors by context: transformers by the sequence length, llama.cpp by its
context size (llama-cpp-python pads the n_ctx the tests ask for to 256), our runtime by the
sequence length. One case keeps orig above both (short factors everywhere), one below both (long
factors everywhere), so all three compute the same thing."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tests.support import tiny
from tests.support.families import (MIXES, converted_like_llamacpp, quantized_like_llamacpp,
                                     verified_with_transformers_reference)
from tests.support.compare import hf_logits, kld_stats, llamacpp_logits
from tinyconvert.formats.errors import InputError
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import Model, prefill_layers

TEXT = ("The quick brown fox, 1234 jumps! def f(x): return x*2  # café 東京 🙂\n"
        "I've been told they'RE here.   Spaces\tand\ttabs. Numbers: 12,345.67 and 2024-11-23.")
# Phi-3's added tokens in its order (32000..32010), here after the 1000 SentencePiece pieces
ADDED = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>",
         "<|placeholder3|>", "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>",
         "<|placeholder6|>", "<|user|>"]
N_PIECES, N_VOCAB, EOT = 1000, 1024, 1000
SHARPEN = 5.0


def longrope(rope_dim: int, orig: int, partial: float = 1.0) -> dict:
    """Factor lists of rope_dim/2 values: short ones near Phi-3.5's (1 to 3), long ones far apart
    from them, so using the wrong list shows."""
    n = rope_dim // 2
    return {"rope_type": "longrope", "partial_rotary_factor": partial,
            "original_max_position_embeddings": orig,
            "short_factor": [round(1.0 + 2.0 * i / (n - 1), 4) for i in range(n)],
            "long_factor": [round(1.0 + 39.0 * (i / (n - 1)) ** 2, 4) for i in range(n)]}


PHI = dict(eos_token_id=EOT, pad_token_id=EOT, n_vocab=N_VOCAB, max_position_embeddings=4096)
CASES = {
    # Phi-3-mini-4k: full rotary, no GQA, plain RoPE, a sliding window llama.cpp ignores
    "phi3-mini": dict(PHI, n_kv_head=4, sliding_window=2047, original_max_position_embeddings=4096),
    # Phi-4-mini: partial rotary 0.75 (12 of 16 dims), GQA, tied, LongRoPE; orig 32 is below the
    # text and llama.cpp's context, so every side runs the long factors. config.json as shipped.
    "phi4-mini-partial-long": dict(PHI, tie=True, rope=longrope(12, 32, 0.75),
                                   original_max_position_embeddings=32, shipped=True),
    # Phi-3.5-mini: LongRoPE with orig 512 above every context here: the short factors
    "phi3.5-longrope-short": dict(PHI, rope=longrope(16, 512),
                                  original_max_position_embeddings=512),
    # Phi-4 (14B): a GPT2Tokenizer (byte-level BPE; SmolLM2's, which llama.cpp recognises), θ 250000
    "phi4-bpe": dict(bpe=True, n_vocab=49152, pad_token_id=0, max_position_embeddings=16384,
                     original_max_position_embeddings=16384,
                     rope={"rope_type": "default", "rope_theta": 250000.0}),
}


def phi3_tokenizer(folder) -> None:
    tiny.train_spm(folder, vocab_size=N_PIECES)
    ids = {t: N_PIECES + i for i, t in enumerate(ADDED)}
    (folder / "added_tokens.json").write_text(json.dumps(ids))
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.update(eos_token="<|endoftext|>", pad_token="<|endoftext|>", added_tokens_decoder={
        str(i): {"content": t, "special": True, "lstrip": False, "rstrip": t != "<|endoftext|>",
                 "normalized": False, "single_word": False} for t, i in ids.items()})
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


def ship_style(folder) -> None:
    """config.json as Phi-3.5 / Phi-4-mini ship it (transformers 4 keys): rope_scaling with
    "type", and rope_theta, partial_rotary_factor, original_max_position_embeddings on top."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    rope = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["partial_rotary_factor"] = rope.pop("partial_rotary_factor", 1.0)
    rope.pop("original_max_position_embeddings", None)
    rope["type"] = rope.pop("rope_type")
    cfg["rope_scaling"] = rope
    path.write_text(json.dumps(cfg, indent=2))


def gpt2_tokenizer(folder, smollm2_hf) -> None:
    """Phi-4's kind: tokenizer.json with tokenizer_class GPT2Tokenizer (llama.cpp's converter
    takes its BPE branch by that class name)."""
    shutil.copy(smollm2_hf / "tokenizer.json", folder / "tokenizer.json")
    cfg = json.loads((smollm2_hf / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "GPT2Tokenizer"
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


def build(folder, kw: dict, smollm2_hf=None) -> None:
    kw = dict(kw)
    shipped = kw.pop("shipped", False)
    if kw.pop("bpe", False):
        gpt2_tokenizer(folder, smollm2_hf)
    else:
        phi3_tokenizer(folder)
    tiny.build_model(folder, "phi3", sharpen=SHARPEN, **kw)
    if shipped:
        ship_style(folder)


def ids_of(folder, text: str = TEXT) -> list[int]:
    if not (folder / "tokenizer.model").exists():
        from tokenizers import Tokenizer
        return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    return [1] + sp.encode(text) + [N_PIECES + ADDED.index("<|end|>")]


@pytest.fixture(scope="module", params=sorted(CASES))
def phi3(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    kw = CASES[request.param]
    build(folder, kw, request.getfixturevalue("smollm2_hf") if "bpe" in kw else None)
    hf2gguf(str(folder), folder / "ours-f32.gguf", outtype="f32", quiet=True)
    return request.param, folder


def test_runtime_matches_transformers(phi3):
    name, folder = phi3
    ids = ids_of(folder)
    assert 32 < len(ids) < 256
    ref = hf_logits(folder, ids)
    for src in (open_source(folder), open_source(folder / "ours-f32.gguf")):
        ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
        print(name, src.kind, "max |dlogit|", np.abs(ours - ref).max())
        assert np.abs(ours - ref).max() < 1e-3, (name, src.kind)


def test_llamacpp_matches_transformers_and_our_runtime(phi3):
    name, folder = phi3
    ids = ids_of(folder)
    ref = hf_logits(folder, ids)
    theirs = llamacpp_logits(folder / "ours-f32.gguf", ids)
    src = open_source(folder / "ours-f32.gguf")
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    vs_hf, vs_ours = kld_stats(ref, theirs), kld_stats(ours, theirs)
    print(name, "llama.cpp vs transformers", vs_hf, "vs our runtime", vs_ours)
    assert vs_hf["kld_mean"] < 1e-5 and vs_hf["top1"] == 1.0, vs_hf
    assert vs_ours["kld_mean"] < 1e-5, vs_ours


LONGROPE_CASES = sorted(n for n, kw in CASES.items() if kw.get("rope", {}).get("rope_type") ==
                        "longrope")


@pytest.mark.parametrize("phi3", LONGROPE_CASES, indirect=True)
def test_longrope_factors_matter(phi3):
    """The LongRoPE cases would fail the bars above with the other factor list: swapping long and
    short moves the logits far beyond them."""
    name, folder = phi3
    src = open_source(folder / "ours-f32.gguf")
    assert src.get("rope_factors_long.weight") is not None
    swap = {"rope_factors_long.weight": "rope_factors_short.weight",
            "rope_factors_short.weight": "rope_factors_long.weight"}
    ids = ids_of(folder)
    right = prefill_layers(src.hparams, src.get, ids)
    wrong = prefill_layers(src.hparams, lambda n: src.get(swap.get(n, n)), ids)
    assert (right - wrong).abs().max() > 1.0        # measured: 3.9 (long case), 6.2 (short)


def test_cached_generation_matches_prefill(phi3):
    """Token by token through the KV cache, with the context fixed up front as llama.cpp's is: in
    the long-factor case the first 8 tokens are within orig, yet they rotate with the long
    factors as the whole sequence does."""
    name, folder = phi3
    src = open_source(folder / "ours-f32.gguf")
    ids = ids_of(folder)
    whole = prefill_layers(src.hparams, src.get, ids)
    model = Model(src.hparams, {n: src.get(n) for n in src.names}, n_ctx=len(ids))
    steps = [model.forward(ids[:8])] + [model.forward([t]) for t in ids[8:]]
    assert (torch.cat(steps) - whole).abs().max() < 1e-4


@pytest.mark.parametrize("outtype", ["f16", "bf16"])
def test_bytes_and_keys_match_llamacpp_converter(phi3, tmp_path, outtype):
    name, folder = phi3
    fa, fb = converted_like_llamacpp(folder, tmp_path, outtype)
    assert fa == fb
    if "long" in name:
        assert "phi3.rope.scaling.attn_factor" in fa


@pytest.fixture(scope="module", params=[256, 192])
def phi3_f32(request, tmp_path_factory):
    """Rows of 256 (K-quants fit) and of 192 (they fall back); partial rotary with LongRoPE."""
    n = request.param
    folder = tmp_path_factory.mktemp(f"phi3q{n}")
    head_dim = n // 4
    build(folder, dict(PHI, hidden_size=n, intermediate_size=2 * n, num_hidden_layers=6,
                       rope=longrope(int(0.75 * head_dim), 512, 0.75),
                       original_max_position_embeddings=512))
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    return folder


@pytest.mark.parametrize("mix", MIXES)
def test_mixes_match_llamacpp(phi3_f32, tmp_path, mix):
    quantized_like_llamacpp(phi3_f32 / "f32.gguf", tmp_path, mix)


BAD_ROPE = {
    "yarn": ({"type": "yarn"}, "rope scaling 'yarn'"),
    "short list": ({"short_factor": [1.0, 1.0]}, "short_factor of 8 values"),
    "attention_factor": ({"attention_factor": 1.5}, "attention_factor"),
}


@pytest.mark.parametrize("bad", sorted(BAD_ROPE))
def test_configs_llamacpp_would_misread_are_refused(tmp_path, bad):
    """yarn: transformers runs it as LongRoPE, llama.cpp's converter scales cos/sin otherwise;
    factor lists of the wrong length; an attention_factor llama.cpp's converter ignores."""
    change, message = BAD_ROPE[bad]
    build(tmp_path, dict(PHI, rope=longrope(16, 512), original_max_position_embeddings=512))
    cfg = json.loads((tmp_path / "config.json").read_text())
    if "type" in change:                  # the old key name, as yarn Phi configs spell it
        del cfg["rope_parameters"]["rope_type"]
    cfg["rope_parameters"].update(change)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=message):
        hf2gguf(str(tmp_path), tmp_path / "x.gguf", quiet=True)
    assert not (tmp_path / "x.gguf").exists()


def test_verify_with_transformers_reference(phi3):
    """verify's transformers reference (independent of our architecture table) passes the f32 file."""
    name, folder = phi3
    verified_with_transformers_reference(folder, folder / "ours-f32.gguf")
