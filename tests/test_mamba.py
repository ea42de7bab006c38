"""Mamba, Falcon-Mamba and Mamba2 on tiny seeded checkpoints with SmolLM2's real tokenizer:
the converter's bytes and keys (f32, and f16/bf16 checkpoints, where -exp(A_log) is
computed in the checkpoint's precision), the output dropped when it equals the embeddings, and
configs llama.cpp would compute differently; our runtime and llama.cpp against transformers,
the per-layer state carried across calls, and greedy generation from the GGUF alone."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.compare import hf_logits, kld_stats, llamacpp_logits
from tests.support.families import (converted_like_llamacpp, greedy_like_transformers,
                                     quantized_like_llamacpp, read_gguf_contents, refused,
                                     top1_agrees_where_clear)
from tests.support.ssm import build_ssm
from tests.test_moe import ids_of
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import Model, prefill_layers

KINDS = ["mamba", "falcon_mamba", "mamba2"]


@pytest.fixture(scope="module", params=KINDS)
def ssm_model(request, tmp_path_factory, smollm2_hf):
    folder = tmp_path_factory.mktemp(request.param)
    build_ssm(folder, smollm2_hf, request.param)
    hf2gguf(str(folder), folder / "ours-f32.gguf", outtype="f32", quiet=True)
    return request.param, folder


def test_bytes_and_keys_match_llamacpp_converter(ssm_model, tmp_path):
    kind, folder = ssm_model
    fa, fb = converted_like_llamacpp(folder, tmp_path, "f32")
    assert fa == fb
    arch = "mamba2" if kind == "mamba2" else "mamba"
    assert fa[f"{arch}.attention.head_count"] == 0 and f"{arch}.ssm.inner_size" in fa
    if kind != "mamba2":
        assert fa["mamba.ssm.dt_b_c_rms"] is (kind == "falcon_mamba")
    # the runtime runs llama.cpp's own file from its keys alone, as it runs ours
    ids = ids_of(folder)
    theirs = _ours(open_source(tmp_path / "theirs.gguf"), ids)
    assert np.abs(theirs - _ours(open_source(folder / "ours-f32.gguf"), ids)).max() == 0


@pytest.mark.parametrize("kind, dtype, outtype", [
    ("mamba", "float16", "f16"), ("mamba2", "bfloat16", "bf16")])
def test_half_checkpoints_convert_like_llamacpp(tmp_path, smollm2_hf, kind, dtype, outtype):
    build_ssm(tmp_path, smollm2_hf, kind, dtype=dtype, seed=1)
    fa, fb = converted_like_llamacpp(tmp_path, tmp_path, outtype)
    assert fa == fb


@pytest.mark.parametrize("kind", ["mamba", "mamba2"])
def test_equal_outputs_like_llamacpp(tmp_path, smollm2_hf, kind):
    """Mamba's converter drops an untied lm_head that equals the embeddings; Mamba2's keeps it."""
    from safetensors.torch import load_file, save_file
    build_ssm(tmp_path, smollm2_hf, kind, sharpen=1.0)
    path = tmp_path / "model.safetensors"
    weights = load_file(path)
    weights["lm_head.weight"] = weights["backbone.embeddings.weight"].clone()
    save_file(weights, path, metadata={"format": "pt"})
    converted_like_llamacpp(tmp_path, tmp_path, "f32")
    tensors, _ = read_gguf_contents(tmp_path / "ours.gguf")
    assert ("output.weight" in tensors) == (kind == "mamba2")


def test_tied_mamba_converts_and_runs_like_transformers(tmp_path, smollm2_hf):
    """tie_word_embeddings (MambaConfig's default): no lm_head in the checkpoint or the GGUF,
    and the runtime reuses token_embd as transformers does."""
    from safetensors import safe_open
    build_ssm(tmp_path, smollm2_hf, "mamba", tie=True, sharpen=1.0)
    with safe_open(tmp_path / "model.safetensors", "np") as f:
        assert "lm_head.weight" not in f.keys()
    converted_like_llamacpp(tmp_path, tmp_path, "f32")
    tensors, _ = read_gguf_contents(tmp_path / "ours.gguf")
    assert "output.weight" not in tensors
    ids = ids_of(tmp_path)
    ours = _ours(open_source(tmp_path / "ours.gguf"), ids)
    assert np.abs(ours - hf_logits(tmp_path, ids)).max() < 1e-3


@pytest.mark.parametrize("kind, padded", [("mamba", 49160), ("mamba2", 49168)])
def test_vocab_padded_like_llamacpp(tmp_path, smollm2_hf, kind, padded):
    """Released Mamba checkpoints have more embedding rows than tokenizer entries (vocab_size a
    multiple of 8 for Mamba, 16 for Mamba2): the token list is padded to vocab_size exactly as
    llama.cpp's converter pads it (SmolLM2's 49152 tokens to `padded`)."""
    build_ssm(tmp_path, smollm2_hf, kind, vocab_size=padded, sharpen=1.0)
    fa, fb = converted_like_llamacpp(tmp_path, tmp_path, "f32")
    assert fa == fb and len(fa["tokenizer.ggml.tokens"]) == padded


@pytest.mark.parametrize("kind", ["mamba", "mamba2"])
def test_vocab_size_off_the_multiple_is_refused(tmp_path, smollm2_hf, kind):
    """vocab_size 49155 with 49155 embedding rows: llama.cpp's converter rounds the token list up
    to the multiple but keeps 49155 rows, a file llama.cpp's loader refuses (token_embd must
    have one row per token); we refuse it in one line instead of writing it."""
    build_ssm(tmp_path, smollm2_hf, kind, vocab_size=49155, sharpen=1.0)
    refused(tmp_path, "vocab_size 491(60|68) differs from the token embedding's 49155 rows")


@pytest.mark.parametrize("kind, kw, match", [
    ("mamba", dict(use_bias=True), "use_bias"),
    ("mamba", dict(use_conv_bias=False), "use_conv_bias"),
    ("mamba", dict(intermediate_size=192), "expansion factor of 2"),
    ("mamba2", dict(time_step_limit=(0.001, 0.1)), "time_step_limit"),
    ("mamba2", dict(use_bias=True), "use_bias"),
])
def test_configs_llamacpp_would_not_compute_are_refused(tmp_path, smollm2_hf, kind, kw, match):
    build_ssm(tmp_path, smollm2_hf, kind, **kw)
    refused(tmp_path, match)


def _ours(src, ids):
    return prefill_layers(src.hparams, src.get, ids).double().numpy()


def test_runtime_and_llamacpp_match_transformers(ssm_model):
    """Falcon-Mamba's GGUF says only layer_norm_epsilon, which llama.cpp also uses for the
    dt/B/C norms where transformers uses mixer_rms_eps: the HF reference follows transformers,
    the GGUF follows llama.cpp, and the two stay within the KLD bar."""
    kind, folder = ssm_model
    ids = ids_of(folder)
    ref, theirs = hf_logits(folder, ids), llamacpp_logits(folder / "ours-f32.gguf", ids)
    hf_src, gguf_src = open_source(folder), open_source(folder / "ours-f32.gguf")
    assert np.abs(_ours(hf_src, ids) - ref).max() < 1e-3
    ours_gguf = _ours(gguf_src, ids)
    if kind != "falcon_mamba":
        assert np.abs(ours_gguf - ref).max() < 1e-3
    assert np.abs(ours_gguf - theirs).max() < 1e-3
    stats = kld_stats(ref, theirs)
    print(kind, stats)
    assert stats["kld_mean"] < 1e-5, stats
    top1_agrees_where_clear(ref, theirs)


def test_falcon_mamba_gguf_differs_only_by_the_mixer_eps(tmp_path, smollm2_hf):
    build_ssm(tmp_path, smollm2_hf, "falcon_mamba", mixer_rms_eps=1e-5)
    hf2gguf(str(tmp_path), tmp_path / "f32.gguf", outtype="f32", quiet=True)
    ids = ids_of(tmp_path)
    ours = _ours(open_source(tmp_path / "f32.gguf"), ids)
    assert np.abs(ours - hf_logits(tmp_path, ids)).max() < 1e-3


def test_state_carried_across_calls_equals_one_pass(ssm_model):
    """`Model` keeps each layer's conv and scan state instead of a KV cache: the text fed in
    three pieces gives the logits of one pass."""
    import torch
    _, folder = ssm_model
    src, ids = open_source(folder / "ours-f32.gguf"), ids_of(folder)
    whole = _ours(src, ids)
    model = Model(src.hparams, {n: src.get(n) for n in src.names})
    parts = [model.forward(ids[a:b]) for a, b in ((0, 5), (5, 6), (6, len(ids)))]
    assert model.cache.length == len(ids)
    assert np.abs(torch.cat(parts).double().numpy() - whole).max() < 1e-4


def test_run_from_the_gguf_alone_equals_transformers_greedy(ssm_model):
    _, folder = ssm_model
    greedy_like_transformers(folder, folder / "ours-f32.gguf")


@pytest.fixture(scope="module", params=["mamba", "mamba2"])
def wide_f32(request, tmp_path_factory, smollm2_hf):
    """256-wide rows so K-quants fit in_proj, x_proj and out_proj (dt_proj's 16-wide rows
    take llama-quantize's fallback)."""
    kind = request.param
    folder = tmp_path_factory.mktemp(f"{kind}-q")
    wide = dict(hidden_size=256, time_step_rank=16) if kind != "mamba2" else dict(
        hidden_size=256, head_dim=64, num_heads=8)
    intermediate = {"intermediate_size": 512} if kind != "mamba2" else {}
    build_ssm(folder, smollm2_hf, kind, **wide, **intermediate)
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    return folder


@pytest.mark.parametrize("mix", ["q8_0", "q4_k_m", "q3_k_m"])
def test_mixes_match_llamacpp(wide_f32, tmp_path, mix):
    quantized_like_llamacpp(wide_f32 / "f32.gguf", tmp_path, mix)
    tensors, _ = read_gguf_contents(tmp_path / "ours.gguf")
    kept = [n for n in tensors if "ssm_conv1d" in n or n.endswith(("ssm_a", "ssm_d"))]
    assert kept and all(tensors[n][0] == 0 for n in kept)       # F32: never quantized


def test_verify_and_inspect_from_the_gguf_alone(wide_f32, tmp_path):
    """The quantized file against the f32 one, both GGUF: verify runs the SSM blocks layer by
    layer and inspect reads the ssm keys. (These untrained, sharpened models are sensitive:
    q8_0 of the embeddings alone costs ~1.5e-3 mean KLD, measured with the runtime.)"""
    from typer.testing import CliRunner

    from tinyconvert.checks.verify import verify
    from tinyconvert.cli import app
    from tinyconvert.pipeline.quantize import quantize
    quantize(wide_f32 / "f32.gguf", tmp_path / "q8.gguf", qtype="q8_0", quiet=True)
    report = verify(str(wide_f32 / "f32.gguf"), tmp_path / "q8.gguf", tokens=64)
    assert report.passed and report.stats["kld_mean"] > 0 and report.stats["top1"] > 0.9, \
        report.stats
    assert len(report.layers) == 2
    out = CliRunner().invoke(app, ["inspect", str(tmp_path / "q8.gguf")])
    assert out.exit_code == 0 and ".ssm.state_size" in out.output
