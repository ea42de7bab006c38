"""Mixtures of experts (Mixtral with 8 and 4 experts, Qwen3-MoE, Qwen2-MoE with its shared expert,
OLMoE) on tiny seeded checkpoints with SmolLM2's real tokenizer and a decisive router (scaled up,
with a checked top-k margin, so expert choice cannot flip on float rounding): our runtime and
llama.cpp against transformers, the converter's bytes and keys, the mixes against llama-quantize,
the fused expert layout, verify's expert report, and the routing configs llama.cpp would not
compute."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.compare import hf_logits, kld_stats, llamacpp_logits
from tests.support.families import (converted_like_llamacpp, greedy_like_transformers,
                                     quantized_like_llamacpp, refused, route_margin,
                                     top1_agrees_where_clear, verified_with_transformers_reference)
from tinyconvert.cli import app
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers

TEXT = ("The quick brown fox, 1234 jumps! def f(x): return x*2  # café 東京 🙂\n"
        "I've been told they'RE here.   Spaces\tand\ttabs. Numbers: 12,345.67 and 2024-11-23.")
ROUTER = {".gate.weight": 6.0}          # the routers (block_sparse_moe.gate, mlp.gate)
CASES = {
    "mixtral-8": ("mixtral", dict(num_local_experts=8, num_experts_per_tok=2)),
    "mixtral-4": ("mixtral", dict(num_local_experts=4, num_experts_per_tok=2, tie=True)),
    "qwen3moe": ("qwen3moe", dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                                  norm_topk_prob=True, head_dim=16)),
    "qwen2moe-shared": ("qwen2moe", dict(num_experts=4, num_experts_per_tok=2,
                                         moe_intermediate_size=64, norm_topk_prob=False,
                                         shared_expert_intermediate_size=96, seed=1)),
    "olmoe": ("olmoe", dict(num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
                            n_kv_head=4)),
}


def build(folder, smollm2_hf, arch: str, **kw) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_hf / name, folder / name)
    tiny.build_model(folder, arch, n_vocab=49152, sharpen=5.0, scales=ROUTER, **kw)


def ids_of(folder) -> list[int]:
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)(TEXT)["input_ids"]


@pytest.fixture(scope="module", params=sorted(CASES))
def moe_model(request, tmp_path_factory, smollm2_hf):
    arch, kw = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    build(folder, smollm2_hf, arch, **kw)
    hf2gguf(str(folder), folder / "ours-f32.gguf", outtype="f32", quiet=True)
    return request.param, folder


def test_runtime_and_llamacpp_match_transformers(moe_model, monkeypatch):
    name, folder = moe_model
    ids = ids_of(folder)
    ref = hf_logits(folder, ids)
    gguf_src = open_source(folder / "ours-f32.gguf")
    assert route_margin(gguf_src, ids, monkeypatch) > 1e-3, "routing too close to call"
    for src in (open_source(folder), gguf_src):
        ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
        assert np.abs(ours - ref).max() < 1e-3, (name, src.kind)
    theirs = llamacpp_logits(folder / "ours-f32.gguf", ids)
    stats = kld_stats(ref, theirs)
    print(name, stats)
    assert stats["kld_mean"] < 1e-5, stats
    top1_agrees_where_clear(ref, theirs)


@pytest.mark.parametrize("outtype", ["f32", "bf16"])
def test_bytes_and_keys_match_llamacpp_converter(moe_model, tmp_path, outtype):
    name, folder = moe_model
    fa, fb = converted_like_llamacpp(folder, tmp_path, outtype)
    assert fa == fb


@pytest.fixture(scope="module", params=["mixtral-8", "qwen3moe"])
def moe_f32(request, tmp_path_factory, smollm2_hf):
    """Mixtral with 8 experts and 256-wide rows (its special rules, K-quants fit); Qwen3-MoE
    with 192-wide rows (fallback types), six layers for the layer-indexed ffn_down rules."""
    arch, kw = CASES[request.param]
    n = 256 if arch == "mixtral" else 192
    kw = dict(kw, hidden_size=n, intermediate_size=2 * n, num_hidden_layers=6)
    if arch == "qwen3moe":
        kw.update(moe_intermediate_size=n, head_dim=n // 4)
    folder = tmp_path_factory.mktemp(f"q-{request.param}")
    build(folder, smollm2_hf, arch, **kw)
    hf2gguf(str(folder), folder / "f32.gguf", outtype="f32", quiet=True)
    return folder


@pytest.mark.parametrize("mix", ["q8_0", "q4_k_m", "q3_k_m", "q2_k"])
def test_mixes_match_llamacpp(moe_f32, tmp_path, mix):
    quantized_like_llamacpp(moe_f32 / "f32.gguf", tmp_path, mix)


def test_fused_expert_layout_converts_like_per_expert(tmp_path, smollm2_hf):
    """transformers' fused layout (gate_up_proj [E, 2*ff, n_embd], down_proj [E, n_embd, ff])
    gives the very same file as the per-expert tensors."""
    import torch
    from safetensors.torch import load_file, save_file
    arch, kw = CASES["qwen3moe"]
    build(tmp_path, smollm2_hf, arch, **kw)
    hf2gguf(str(tmp_path), tmp_path / "per-expert.gguf", outtype="bf16", quiet=True)
    tensors, fused = load_file(tmp_path / "model.safetensors"), {}
    for name, t in tensors.items():
        if ".experts." not in name:
            fused[name] = t
    for i in range(2):
        pre = f"model.layers.{i}.mlp.experts"
        per = lambda w: [tensors[f"{pre}.{e}.{w}.weight"] for e in range(8)]  # noqa: E731
        fused[f"{pre}.gate_up_proj"] = torch.stack(
            [torch.cat([g, u]) for g, u in zip(per("gate_proj"), per("up_proj"))])
        fused[f"{pre}.down_proj"] = torch.stack(per("down_proj"))
    save_file(fused, tmp_path / "model.safetensors", metadata={"format": "pt"})
    hf2gguf(str(tmp_path), tmp_path / "fused.gguf", outtype="bf16", quiet=True)
    assert (tmp_path / "fused.gguf").read_bytes() == (tmp_path / "per-expert.gguf").read_bytes()


def test_verify_reports_expert_use(moe_model):
    name, folder = moe_model
    res = CliRunner().invoke(app, ["verify", str(folder), str(folder / "ours-f32.gguf"),
                                   "--tokens", "64", "--json"])
    assert res.exit_code == 0, res.output
    experts = json.loads(res.stdout)["experts"]
    n_tokens, k = json.loads(res.stdout)["tokens"], CASES[name][1]["num_experts_per_tok"]
    assert all(sum(row) == n_tokens * k for row in experts["histogram"])
    assert experts["max_share"] >= 1.0
    res = CliRunner().invoke(app, ["verify", str(folder), str(folder / "ours-f32.gguf"),
                                   "--tokens", "64"])
    assert "(layer, expert) pairs never chosen" in res.stdout


@pytest.mark.parametrize("arch, kw, match", [
    ("qwen3moe", dict(num_experts=4, num_experts_per_tok=2, norm_topk_prob=False),
     "norm_topk_prob=False"),
    ("olmoe", dict(num_experts=4, num_experts_per_tok=2, norm_topk_prob=True, n_kv_head=4),
     "norm_topk_prob=True"),
    ("olmoe", dict(num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, n_kv_head=2),
     "key/value heads"),
    ("qwen2moe", dict(num_experts=4, num_experts_per_tok=2, norm_topk_prob=False,
                      mlp_only_layers=[0]), "dense"),
])
def test_routing_llamacpp_would_not_compute_is_refused(tmp_path, smollm2_hf, arch, kw, match):
    build(tmp_path, smollm2_hf, arch, **kw)
    refused(tmp_path, match)


def test_run_from_the_gguf_alone_equals_transformers_greedy(moe_model):
    """Generation through the KV cache, with the tokenizer rebuilt from the file."""
    name, folder = moe_model
    greedy_like_transformers(folder, folder / "ours-f32.gguf")


def test_verify_with_transformers_reference(moe_model):
    """verify's transformers reference (independent of our architecture table) passes the f32 file."""
    name, folder = moe_model
    verified_with_transformers_reference(folder, folder / "ours-f32.gguf")
