"""DeepSeek-V2 and V3 (`deepseek2`: latent attention, shared experts, a dense first layer) on tiny
seeded checkpoints with SmolLM2's real tokenizer and a decisive router: V2 routes by softmax; V3
by sigmoid plus a non-zero selection bias inside 2 of 4 expert groups, renormalised and scaled
by 2.5. Our runtime and llama.cpp against transformers, the converter's bytes and keys, the
mixes against llama-quantize, MTP layers skipped, and configs llama.cpp would compute
differently refused."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.support.compare import hf_logits, kld_stats, llamacpp_logits
from tests.support.families import (converted_like_llamacpp, greedy_like_transformers,
                                     quantized_like_llamacpp, refused, route_margin,
                                     top1_agrees_where_clear, verified_with_transformers_reference)
from tests.support import tiny
from tests.test_moe import ids_of
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers

# q_lora_rank set: without it llama.cpp's loader needs 26 or 27 layers ("lite")
MLA = dict(n_kv_head=4, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16,
           qk_rope_head_dim=8, v_head_dim=16, moe_intermediate_size=32, first_k_dense_replace=1)
CASES = {
    "v2": ("deepseek_v2", dict(MLA, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
                               routed_scaling_factor=1.0, norm_topk_prob=False)),
    "v3": ("deepseek_v3", dict(MLA, n_routed_experts=16, num_experts_per_tok=4, n_group=4,
                               topk_group=2, n_shared_experts=2, routed_scaling_factor=2.5,
                               norm_topk_prob=True, num_hidden_layers=3, seed=1)),
}
# router scale: a sigmoid router saturates when scaled as far as a softmax one (seed and scale
# picked for a selection margin over 1e-3 on the test text)
ROUTER = {"deepseek_v2": 6.0, "deepseek_v3": 3.0}


def build_deepseek(folder, smollm2_hf, name: str, **over) -> None:
    """The V3 selection bias is a zero buffer after init: give it values that change choices."""
    import torch
    from safetensors.torch import load_file, save_file
    arch, kw = CASES[name]
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_hf / file, folder / file)
    tiny.build_model(folder, arch, n_vocab=49152, sharpen=5.0,
                     scales={".gate.weight": ROUTER[arch]}, **dict(kw, **over))
    if arch == "deepseek_v3":
        tensors, gen = load_file(folder / "model.safetensors"), torch.Generator().manual_seed(7)
        for key in [k for k in tensors if k.endswith("e_score_correction_bias")]:
            tensors[key] = 0.1 * torch.randn(tensors[key].shape, generator=gen)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.fixture(scope="module", params=sorted(CASES))
def ds_model(request, tmp_path_factory, smollm2_hf):
    folder = tmp_path_factory.mktemp(request.param)
    build_deepseek(folder, smollm2_hf, request.param)
    hf2gguf(str(folder), folder / "ours-f32.gguf", outtype="f32", quiet=True)
    return request.param, folder


def test_runtime_and_llamacpp_match_transformers(ds_model, monkeypatch):
    name, folder = ds_model
    ids = ids_of(folder)
    ref = hf_logits(folder, ids)
    gguf_src = open_source(folder / "ours-f32.gguf")
    assert gguf_src.hparams.expert_gating == {"v2": "softmax", "v3": "sigmoid"}[name]
    assert route_margin(gguf_src, ids, monkeypatch) > 1e-3, "routing too close to call"
    for src in (open_source(folder), gguf_src):
        ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
        print(name, src.kind, "max |dlogit|", np.abs(ours - ref).max())
        assert np.abs(ours - ref).max() < 1e-3, (name, src.kind)
    theirs = llamacpp_logits(folder / "ours-f32.gguf", ids)
    stats = kld_stats(ref, theirs)
    print(name, stats)
    assert stats["kld_mean"] < 1e-5, stats
    top1_agrees_where_clear(ref, theirs)


@pytest.mark.parametrize("ds_model", ["v3"], indirect=True)
def test_v3_bias_changes_the_choice(ds_model):
    """Guards the test itself: the selection bias must matter on these tokens."""
    name, folder = ds_model
    src = open_source(folder / "ours-f32.gguf")
    ids = ids_of(folder)
    with_bias = prefill_layers(src.hparams, src.get, ids)
    get = lambda n: None if n.endswith("exp_probs_b.bias") else src.get(n)  # noqa: E731
    without = prefill_layers(src.hparams, get, ids)
    assert (with_bias - without).abs().max() > 0.1


@pytest.mark.parametrize("outtype", ["f32", "bf16"])
def test_bytes_and_keys_match_llamacpp_converter(ds_model, tmp_path, outtype):
    name, folder = ds_model
    fa, fb = converted_like_llamacpp(folder, tmp_path, outtype)
    if name == "v3":     # transformers' config has no scoring_func: llama.cpp's converter
        assert fa.pop("deepseek2.expert_gating_func") == 2       # writes none (softmax)
        assert "deepseek2.expert_gating_func" not in fb
    assert fa == fb


def test_mtp_layers_are_skipped(tmp_path, smollm2_hf):
    """Layers numbered from num_hidden_layers on (multi-token prediction) are not converted."""
    from safetensors.torch import load_file, save_file
    build_deepseek(tmp_path, smollm2_hf, "v3")
    hf2gguf(str(tmp_path), tmp_path / "plain.gguf", outtype="bf16", quiet=True)
    tensors = load_file(tmp_path / "model.safetensors")
    mtp = {k.replace("layers.2.", "layers.3."): v.clone() for k, v in tensors.items()
           if k.startswith("model.layers.2.")}
    mtp["model.layers.3.eh_proj.weight"] = tensors["model.embed_tokens.weight"][:64, :64].clone()
    save_file({**tensors, **mtp}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    hf2gguf(str(tmp_path), tmp_path / "mtp.gguf", outtype="bf16", quiet=True)
    assert (tmp_path / "mtp.gguf").read_bytes() == (tmp_path / "plain.gguf").read_bytes()


def test_v2_lite_without_q_compression_matches_transformers(tmp_path, smollm2_hf):
    """q_lora_rank null: one attn_q. llama.cpp loads that only at 26/27 layers, so only our
    runtime is checked here."""
    build_deepseek(tmp_path, smollm2_hf, "v2", q_lora_rank=None)
    hf2gguf(str(tmp_path), tmp_path / "lite.gguf", outtype="f32", quiet=True)
    ids = ids_of(tmp_path)
    ref = hf_logits(tmp_path, ids)
    src = open_source(tmp_path / "lite.gguf")
    assert "blk.0.attn_q.weight" in src.names and "blk.0.attn_q_a.weight" not in src.names
    assert np.abs(prefill_layers(src.hparams, src.get, ids).double().numpy() - ref).max() < 1e-3


@pytest.fixture(scope="module", params=sorted(CASES))
def ds_f32(request, tmp_path_factory, smollm2_hf):
    """256-wide rows where K-quants fit (hidden, experts, latents), 32-wide k_b rows where they
    fall back; V2's eight experts take llama.cpp's eight-expert rules."""
    folder = tmp_path_factory.mktemp(f"q-{request.param}")
    build_deepseek(folder, smollm2_hf, request.param, hidden_size=256, intermediate_size=512,
                   moe_intermediate_size=256, q_lora_rank=256, kv_lora_rank=256,
                   qk_nope_head_dim=32, qk_rope_head_dim=32, v_head_dim=64, num_hidden_layers=4)
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    return folder


@pytest.mark.parametrize("mix", ["q8_0", "q4_k_m", "q3_k_m", "q2_k"])
def test_mixes_match_llamacpp(ds_f32, tmp_path, mix):
    quantized_like_llamacpp(ds_f32 / "f32.gguf", tmp_path, mix)


def yarn(mscale, all_dim) -> dict:
    """YaRN over an original context of 32 (the test text is ~70 tokens), released configs'
    betas; mscale / mscale_all_dim None leaves the key out."""
    rope = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32,
            "beta_fast": 32.0, "beta_slow": 1.0, "rope_theta": 10000.0}
    return rope | {k: v for k, v in (("mscale", mscale), ("mscale_all_dim", all_dim)) if v}


# the released pairs: V2 / V2-Lite 0.707 / 0.707 (llama.cpp's special case), V3 1.0 / 1.0;
# seeds picked for a route margin over 1e-3 with YaRN on
YARN_CASES = {"v2": (0.707, 2), "v3": (1.0, 5)}


@pytest.mark.parametrize("name", sorted(YARN_CASES))
def test_yarn_as_released_matches_transformers(tmp_path, smollm2_hf, name, monkeypatch):
    m, seed = YARN_CASES[name]
    build_deepseek(tmp_path, smollm2_hf, name, rope=yarn(m, m), max_position_embeddings=128,
                   seed=seed)
    hf2gguf(str(tmp_path), tmp_path / "f32.gguf", outtype="f32", quiet=True)
    ids = ids_of(tmp_path)
    assert len(ids) > 2 * 32                                     # past the original context
    ref = hf_logits(tmp_path, ids)
    src = open_source(tmp_path / "f32.gguf")
    assert src.hparams.mla["yarn_log_mul"] == pytest.approx(m)
    assert route_margin(src, ids, monkeypatch) > 1e-3, "routing too close to call"
    assert np.abs(prefill_layers(src.hparams, src.get, ids).double().numpy() - ref).max() < 1e-3
    stats = kld_stats(ref, llamacpp_logits(tmp_path / "f32.gguf", ids))
    print(name, stats)
    assert stats["kld_mean"] < 1e-5, stats


@pytest.mark.parametrize("name, over, match", [
    ("v3", dict(rope=yarn(1.0, 0.707), max_position_embeddings=128), "mscale=1.0 and "
     "mscale_all_dim=0.707"),
    ("v2", dict(rope=yarn(0.707, None), max_position_embeddings=128), "mscale_all_dim=None"),
    ("v2", dict(norm_topk_prob=True), "norm_topk_prob=True"),
    ("v2", dict(n_group=4, topk_group=2, topk_method="group_limited_greedy"), "expert groups"),
    ("v3", dict(scoring_func="softmax"), "scoring_func"),
    ("v3", dict(rope_interleave=False), "rope_interleave"),
    ("v3", dict(n_kv_head=2), "key/value heads"),
])
def test_routing_llamacpp_would_not_compute_is_refused(tmp_path, smollm2_hf, name, over, match):
    build_deepseek(tmp_path, smollm2_hf, name, **over)
    refused(tmp_path, match)


def test_run_from_the_gguf_alone_equals_transformers_greedy(ds_model):
    """Generation through the KV cache, with the tokenizer rebuilt from the file."""
    name, folder = ds_model
    greedy_like_transformers(folder, folder / "ours-f32.gguf")


def test_verify_with_transformers_reference(ds_model):
    """verify's transformers reference (independent of our architecture table) passes the f32 file."""
    name, folder = ds_model
    verified_with_transformers_reference(folder, folder / "ours-f32.gguf")


@pytest.mark.parametrize("ds_model", ["v3"], indirect=True)
def test_v3_f16_verifies_and_a_wrong_routed_scale_does_not(ds_model, tmp_path):
    """verify's default path on an f16 V3 file: f16 rounding can flip a sigmoid router's choice
    on a token (which f16's usual bar would call broken); the reference quantized at the file's
    own types flips the same way, so the file passes. The same file with llama.cpp told a
    routed scale of 1.0 instead of 2.5 fails."""
    from tinyconvert.checks.verify import verify
    from tinyconvert.edit.metaedit import apply_edits, make_set
    from tinyconvert.formats.gguf_file import read_gguf
    name, folder = ds_model
    f16 = tmp_path / "f16.gguf"
    hf2gguf(str(folder), f16, outtype="f16", quiet=True)
    report = verify(str(folder), f16, tokens=128)
    print(report.summary_line(), report.stats)
    assert report.stats["kld_mean"] > 100 * 3.1e-6      # the premise: a route did flip, far
    assert report.passed, report.summary_line()        # above f16's usual cost
    edit = make_set(read_gguf(f16), "deepseek2.expert_weights_scale", "1.0")
    apply_edits(f16, [edit], tmp_path / "scale1.gguf")
    broken = verify(str(folder), tmp_path / "scale1.gguf", tokens=128)
    print(broken.summary_line())
    assert not broken.passed
