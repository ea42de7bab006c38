"""The Gemma family (gemma, gemma2, gemma3) on tiny seeded checkpoints with a Gemma-style
SentencePiece tokenizer (no dummy prefix): our runtime against transformers, llama.cpp on our file
against transformers and against llama.cpp's own converter output, the converter's bytes and
keys, and every mix against llama-quantize (rows multiple of 256 and not)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support import tiny
from tests.support.families import (MIXES, converted_like_llamacpp, quantized_like_llamacpp,
                                     verified_with_transformers_reference)
from tests.support.compare import hf_logits, kld_stats, llamacpp_logits
from tests.support.llamacpp_src import run_converter
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers

TEXT = ("The quick brown fox, 1234 jumps! def f(x): return x*2  # café 東京 🙂\n"
        "I've been told they'RE here.   Spaces\tand\ttabs. Numbers: 12,345.67 and 2024-11-23.")
GEMMA = dict(head_dim=16, query_pre_attn_scalar=16, hidden_activation="gelu_pytorch_tanh",
             sharpen=5.0)
CASES = {
    # a period that is not llama.cpp's default (the file carries the pattern array), untied
    "gemma3-pattern": ("gemma3", dict(GEMMA, sliding_window=8, num_hidden_layers=3, layer_types=[
        "sliding_attention", "full_attention", "sliding_attention"])),
    # llama.cpp's default period 6, tied, as the real models are
    "gemma3-period6-tied": ("gemma3", dict(GEMMA, sliding_window=8, num_hidden_layers=6,
                                           tie=True)),
    "gemma2-softcap": ("gemma2", dict(GEMMA, sliding_window=8, attn_logit_softcapping=50.0,
                                      final_logit_softcapping=30.0, tie=True,
                                      attn_implementation="eager")),
    "gemma-1": ("gemma", dict(GEMMA, tie=True)),
}


def build(folder, arch: str, kw: dict) -> None:
    tiny.train_spm(folder, dummy_prefix=False, tokenizer_class="GemmaTokenizer")
    tiny.build_model(folder, arch, **kw)


def spm_ids(folder, text: str = TEXT) -> list[int]:
    import sentencepiece as spm
    return [1] + spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).encode(text)


@pytest.fixture(scope="module", params=sorted(CASES))
def gemma(request, tmp_path_factory):
    arch, kw = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    build(folder, arch, kw)
    hf2gguf(str(folder), folder / "ours-f32.gguf", outtype="f32", quiet=True)
    return request.param, folder


def test_runtime_matches_transformers(gemma):
    name, folder = gemma
    ids = spm_ids(folder)
    assert len(ids) > 40                          # longer than the sliding window
    ref = hf_logits(folder, ids)
    for src in (open_source(folder), open_source(folder / "ours-f32.gguf")):
        ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
        assert np.abs(ours - ref).max() < 1e-3, (name, src.kind)


def test_llamacpp_matches_transformers_as_well_as_its_own_converter(gemma):
    """llama.cpp computes GELU from an f16 table, so 1e-5 is not a fair bar: our file must do
    as well as llama.cpp's own converter output (within 1.5x) and stay small."""
    name, folder = gemma
    ids = spm_ids(folder)
    ref = hf_logits(folder, ids)
    ours = kld_stats(ref, llamacpp_logits(folder / "ours-f32.gguf", ids))
    run_converter(folder, folder / "theirs-f32.gguf", "f32")
    theirs = kld_stats(ref, llamacpp_logits(folder / "theirs-f32.gguf", ids))
    print(name, "ours", ours, "llama.cpp's converter", theirs)
    assert ours["kld_mean"] <= 1.5 * theirs["kld_mean"] + 1e-9, (ours, theirs)
    assert ours["kld_mean"] < 1e-4 and ours["top1"] >= 0.95, ours


@pytest.mark.parametrize("outtype", ["f16", "bf16"])
def test_bytes_and_keys_match_llamacpp_converter(gemma, tmp_path, outtype):
    name, folder = gemma
    fa, fb = converted_like_llamacpp(folder, tmp_path, outtype)
    if name == "gemma3-pattern":      # the one key llama.cpp's converter leaves out
        assert fa.pop("gemma3.attention.sliding_window_pattern") == [True, False, True]
    if name == "gemma-1":   # llama.cpp's converter writes CodeGemma's FIM ids for every Gemma 1
        want = {"prefix": 67, "suffix": 69, "middle": 68, "fsep": 70, "eot": 107}
        fim = {k: fb.pop(f"tokenizer.ggml.{k}_token_id") for k in want
               if f"tokenizer.ggml.{k}_token_id" in fb}
        assert fim and fim.items() <= want.items(), fim
    assert fa == fb


@pytest.fixture(scope="module", params=[256, 192])
def gemma3_f32(request, tmp_path_factory):
    """Rows of 256 (K-quants fit) and of 192 (they fall back)."""
    n = request.param
    folder = tmp_path_factory.mktemp(f"g3q{n}")
    build(folder, "gemma3", dict(GEMMA, hidden_size=n, intermediate_size=2 * n, head_dim=32,
                                 query_pre_attn_scalar=32, num_hidden_layers=6,
                                 sliding_window=8, tie=True))
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    return folder


@pytest.mark.parametrize("mix", MIXES)
def test_mixes_match_llamacpp(gemma3_f32, tmp_path, mix):
    quantized_like_llamacpp(gemma3_f32 / "f32.gguf", tmp_path, mix)


def test_config_contradicting_llamacpp_is_refused(tmp_path):
    from tinyconvert.formats.errors import InputError
    build(tmp_path, "gemma3", dict(GEMMA, query_pre_attn_scalar=64, num_hidden_layers=2))
    with pytest.raises(InputError, match="query_pre_attn_scalar"):
        hf2gguf(str(tmp_path), tmp_path / "x.gguf", quiet=True)
    assert not (tmp_path / "x.gguf").exists()


def build_multimodal(folder) -> None:
    """A tiny Gemma3ForConditionalGeneration: the Gemma 3 text model behind a SigLIP tower."""
    import torch
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig,
                              SiglipVisionConfig)
    tiny.train_spm(folder, dummy_prefix=False, tokenizer_class="GemmaTokenizer")
    text = Gemma3TextConfig(vocab_size=tiny.vocab_size(folder), hidden_size=64,
                            intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                            sliding_window=8, max_position_embeddings=256,
                            initializer_range=0.08, bos_token_id=1, eos_token_id=2,
                            pad_token_id=0)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, image_size=28, patch_size=14)
    cfg = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                       image_token_index=999, boi_token_index=998, eoi_token_index=997)
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(0.2 * torch.randn_like(p))
    model.save_pretrained(folder)


def test_multimodal_checkpoint_converts_its_text_model(tmp_path):
    """The vision tower and projector are skipped on purpose; the text model's tensors and keys
    equal llama.cpp's converter's, and llama.cpp computes what transformers computes."""
    build_multimodal(tmp_path)
    hf2gguf(str(tmp_path), tmp_path / "m.gguf", outtype="f32", quiet=True)
    ids = spm_ids(tmp_path)
    ref = hf_logits(tmp_path, ids)
    src = open_source(tmp_path)
    assert np.abs(prefill_layers(src.hparams, src.get, ids).double().numpy() - ref).max() < 1e-3
    stats = kld_stats(ref, llamacpp_logits(tmp_path / "m.gguf", ids))
    assert stats["kld_mean"] < 1e-4 and stats["top1"] >= 0.95, stats
    (tmp_path / "c").mkdir()
    fa, fb = converted_like_llamacpp(tmp_path, tmp_path / "c", "f16")
    assert fa == fb


def test_verify_with_transformers_reference(gemma):
    """verify's transformers reference (independent of our architecture table) passes the f32 file."""
    name, folder = gemma
    verified_with_transformers_reference(folder, folder / "ours-f32.gguf")


@pytest.mark.parametrize("same", [False, True])
def test_untied_output_llamacpp_cannot_run_is_refused(tmp_path, same):
    """Gemma 1 / 2 in llama.cpp always multiply by token_embd at the output. An untied lm_head
    that differs from the embeddings cannot be carried: refused, nothing written. One that
    equals them (AutoAWQ saves such a copy) is dropped, as llama.cpp's converter drops it."""
    from safetensors.numpy import load_file, save_file
    from tinyconvert.formats.errors import InputError
    build(tmp_path, "gemma", dict(GEMMA, tie=False))
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    assert not np.array_equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"])
    if same:
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
        save_file(tensors, path, metadata={"format": "pt"})
        hf2gguf(str(tmp_path), tmp_path / "x.gguf", outtype="f32", quiet=True)
        assert (tmp_path / "x.gguf").exists()
        return
    with pytest.raises(InputError, match="lm_head.weight differs from the token embeddings"):
        hf2gguf(str(tmp_path), tmp_path / "x.gguf", outtype="f32", quiet=True)
    assert not (tmp_path / "x.gguf").exists()
