"""gpt-oss checkpoints as OpenAI ships them, experts in MXFP4 (`*_blocks` / `*_scales`, U8, with
config.json's quantization_config quant_method mxfp4), built here from seeded codes and scales:
the GGUF carries the same bits (no requantizing), equal to llama.cpp's converter byte for byte;
transformers (which dequantizes them itself) is the reference for what the checkpoint computes."""
from __future__ import annotations

import json

import gguf
import numpy as np
import pytest

from tests.support.compare import hf_logits, kld_stats, llamacpp_logits, llamacpp_quantize
from tests.support.families import converted_like_llamacpp, refused
from tests.test_gpt_oss import make
from tests.test_moe import ids_of
from tests.test_quantize import same_file_contents
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers

QUANT_CONFIG = {"quant_method": "mxfp4", "modules_to_not_convert": [
    "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
FUSED = ("experts.gate_up_proj", "experts.down_proj")


def make_mxfp4(folder, smollm2_hf, *, seed: int = 5) -> None:
    """The tiny float gpt-oss with its fused experts ([E, in, out]) replaced by MXFP4 blocks in
    OpenAI's layout ([E, out, in/32, 16] codes, [E, out, in/32] exponents) holding seeded codes
    and exponents 2^-7..2^-4 (weights up to 0.375, std about 0.05)."""
    from safetensors.numpy import load_file, save_file
    make(folder, smollm2_hf)
    t = load_file(folder / "model.safetensors")
    rng = np.random.default_rng(seed)
    for name in [k for k in t if k.endswith(FUSED)]:
        n_expert, n_in, n_out = t.pop(name).shape
        t[name + "_blocks"] = rng.integers(0, 256, (n_expert, n_out, n_in // 32, 16), np.uint8)
        t[name + "_scales"] = rng.integers(120, 124, (n_expert, n_out, n_in // 32), np.uint8)
    save_file(t, folder / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "quantization_config": QUANT_CONFIG}))


@pytest.fixture(scope="module")
def model(tmp_path_factory, smollm2_hf):
    folder = tmp_path_factory.mktemp("gpt-oss-mxfp4-ckpt")
    make_mxfp4(folder, smollm2_hf)
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    return folder


def test_bytes_and_keys_match_llamacpp_converter(model, tmp_path):
    """f32 only: the experts are the same bits at any outtype (test_gpt_oss covers bf16's
    other tensors)."""
    fa, fb = converted_like_llamacpp(model, tmp_path, "f32")
    assert fa == fb
    f = read_gguf(tmp_path / "ours.gguf")
    assert f.value("general.file_type") == 38          # MOSTLY_MXFP4_MOE, as the converter says
    assert {f.type_name(t.ggml_type) for t in f.tensors if "_exps.weight" in t.name} == {"MXFP4"}


def test_expert_bits_are_carried_over_not_requantized(model):
    """Each GGUF expert tensor decodes (gguf-py) to exactly what transformers' own MXFP4
    dequantizer makes of the checkpoint, gate and up taken from the interleaved rows."""
    import torch
    from safetensors.torch import load_file
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    t = load_file(model / "model.safetensors")
    f = read_gguf(model / "f32.gguf")
    tensors = {x.name: x for x in f.tensors}
    for layer in range(2):
        pre = f"model.layers.{layer}.mlp.experts"
        gate_up, down = (convert_moe_packed_tensors(t[f"{pre}.{w}_blocks"], t[f"{pre}.{w}_scales"],
                                                    dtype=torch.float32).transpose(1, 2)
                         for w in ("gate_up_proj", "down_proj"))         # [E, out, in]
        want = {"gate": gate_up[:, 0::2], "up": gate_up[:, 1::2], "down": down}
        for w, ref in want.items():
            info = tensors[f"blk.{layer}.ffn_{w}_exps.weight"]
            assert info.ggml_type == 39
            raw = f.tensor_bytes(info).reshape(-1, info.ne[0] // 32 * 17)
            got = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.MXFP4)
            assert np.array_equal(got.reshape(ref.shape), ref.numpy()), (layer, w)


def test_llamacpp_and_runtime_match_transformers(model, tmp_path, monkeypatch):
    """transformers dequantizes the MXFP4 experts on load. Our runtime decodes the file's bits
    exactly, so it matches to float rounding; llama.cpp rounds activations to Q8_0 for its MXFP4
    dot products (measured mean KLD 1.5e-3 here, against 3e-6 for the all-f32 float model in
    test_gpt_oss), so its bar is that type's, and a file with the nibbles left in OpenAI's order
    (the repacking skipped) must land far outside it."""
    ids = ids_of(model)
    ref = hf_logits(model, ids)
    for src in (open_source(model), open_source(model / "f32.gguf")):
        ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
        assert np.abs(ours - ref).max() < 1e-3, src.kind
    theirs = llamacpp_logits(model / "f32.gguf", ids)
    stats = kld_stats(ref, theirs)
    print("llama.cpp on our MXFP4 file vs transformers", stats)
    assert stats["kld_mean"] < 5e-3, stats
    from tinyconvert.archs.moe import gpt_oss_mxfp4
    monkeypatch.setattr(gpt_oss_mxfp4, "from_ocp", lambda b, s: np.concatenate(
        [s[..., None], b], axis=-1).reshape(*s.shape[:-1], -1))
    hf2gguf(str(model), tmp_path / "unpacked.gguf", outtype="f32", quiet=True)
    broken = kld_stats(ref, llamacpp_logits(tmp_path / "unpacked.gguf", ids))
    print("the same with OpenAI's nibble order", broken)
    assert broken["kld_mean"] > 10 * 5e-3, broken


def test_mxfp4_moe_in_one_pass_equals_llama_quantize(model, tmp_path):
    """hf2gguf --outtype mxfp4_moe keeps the experts' bits and puts the rest in Q8_0, as
    llama-quantize does from the converter's file."""
    llamacpp_quantize(model / "f32.gguf", tmp_path / "theirs.gguf", 38)
    hf2gguf(str(model), tmp_path / "ours.gguf", outtype="mxfp4_moe", quiet=True)
    same_file_contents(tmp_path / "ours.gguf", tmp_path / "theirs.gguf")


def test_q8_0_mix_requantizes_experts_as_llama_quantize(model, tmp_path):
    """A mix that wants other expert types decodes the MXFP4 first, as llama-quantize does with
    --allow-requantize."""
    llamacpp_quantize(model / "f32.gguf", tmp_path / "theirs.gguf", 7, allow_requantize=True)
    from tinyconvert.pipeline.quantize import quantize
    quantize(model, tmp_path / "mix.gguf", qtype="q8_0", quiet=True)
    same_file_contents(tmp_path / "mix.gguf", tmp_path / "theirs.gguf")


@pytest.mark.parametrize("drop, match", [
    ("model.layers.0.mlp.experts.down_proj_scales", "down_proj_scales"),
    ("model.layers.1.mlp.experts.gate_up_proj_blocks", "gate_up_proj_blocks"),
])
def test_half_a_pair_is_refused(tmp_path, smollm2_hf, drop, match):
    from safetensors.numpy import load_file, save_file
    make_mxfp4(tmp_path, smollm2_hf)
    t = load_file(tmp_path / "model.safetensors")
    del t[drop]
    save_file(t, tmp_path / "model.safetensors")
    refused(tmp_path, match)


def test_blocks_of_the_wrong_shape_are_refused(tmp_path, smollm2_hf):
    from safetensors.numpy import load_file, save_file
    make_mxfp4(tmp_path, smollm2_hf)
    t = load_file(tmp_path / "model.safetensors")
    name = "model.layers.0.mlp.experts.down_proj_blocks"
    t[name] = np.ascontiguousarray(t[name][..., :8])
    save_file(t, tmp_path / "model.safetensors")
    refused(tmp_path, "do not form")


def test_tmac_target_takes_the_decoded_experts(model, tmp_path):
    """T-MAC packs 2-D matrices only: the 3-D experts stay float, decoded exactly."""
    from tinyconvert.runtime.weights import dequantize
    hf2gguf(str(model), tmp_path / "tmac.gguf", outtype="tmac_w4g64_1", quiet=True)
    ours, mx = read_gguf(tmp_path / "tmac.gguf"), read_gguf(model / "f32.gguf")
    by_name = {t.name: t for t in mx.tensors}
    exps = [t for t in ours.tensors if t.name.endswith("_exps.weight")]
    assert len(exps) == 6 and {ours.type_name(t.ggml_type) for t in exps} == {"F32"}
    for t in exps:
        assert np.array_equal(dequantize(ours, t), dequantize(mx, by_name[t.name])), t.name
