"""Mamba, Falcon-Mamba and Mamba2 on tiny seeded checkpoints with SmolLM2's real tokenizer:
the converter's bytes and keys (f32, and f16/bf16 checkpoints, where -exp(A_log) is
computed in the checkpoint's precision), the output dropped when it equals the embeddings, and
configs llama.cpp would compute differently."""
from __future__ import annotations

import pytest

from tests.support.families import converted_like_llamacpp, read_gguf_contents, refused
from tests.support.ssm import build_ssm
from tinyconvert.pipeline.hf2gguf import hf2gguf

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


@pytest.mark.parametrize("kind, dtype, outtype", [
    ("mamba", "float16", "f16"), ("mamba2", "bfloat16", "bf16")])
def test_half_checkpoints_convert_like_llamacpp(tmp_path, smollm2_hf, kind, dtype, outtype):
    build_ssm(tmp_path, smollm2_hf, kind, dtype=dtype, seed=1)
    fa, fb = converted_like_llamacpp(tmp_path, tmp_path, outtype)
    assert fa == fb


@pytest.mark.parametrize("kind", ["mamba", "mamba2"])
def test_tied_and_equal_outputs_like_llamacpp(tmp_path, smollm2_hf, kind):
    """Tied: no lm_head in the checkpoint. Mamba's converter also drops an untied lm_head
    that equals the embeddings; Mamba2's keeps it."""
    import torch
    from safetensors.torch import load_file, save_file
    build_ssm(tmp_path, smollm2_hf, kind, sharpen=1.0)
    path = tmp_path / "model.safetensors"
    weights = load_file(path)
    weights["lm_head.weight"] = weights["backbone.embeddings.weight"].clone()
    save_file(weights, path, metadata={"format": "pt"})
    converted_like_llamacpp(tmp_path, tmp_path, "f32")
    tensors, _ = read_gguf_contents(tmp_path / "ours.gguf")
    assert ("output.weight" in tensors) == (kind == "mamba2")
    assert torch.equal(weights["lm_head.weight"], weights["backbone.embeddings.weight"])


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
