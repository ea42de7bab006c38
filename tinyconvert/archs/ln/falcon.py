"""Falcon (`FalconForCausalLM`; llama.cpp's `falcon`): 7B with multi-query attention and one
LayerNorm feeding attention and MLP in parallel; 40B/180B ("new decoder architecture") with GQA
and two LayerNorms, ln_attn -> attn_norm_2 feeding attention and ln_mlp -> attn_norm feeding the
MLP. No linear biases, NeoX RoPE over whole heads, a plain GELU MLP.

query_key_value is grouped per KV head, [n_kv, n_head/n_kv + 2, head_dim] (the group's query
heads, then its key and value heads); llama.cpp wants all Q, then all K, then all V (its
tensor_data_layout "jploski"), so weight rows are regrouped by head blocks.

KV heads, as transformers computes them: num_kv_heads for the new decoder architecture, else 1
with multi_query, else n_head. FalconConfig writes num_kv_heads = n_head even for the multi-query
7B, and llama.cpp's converter takes that value and fails on the 7B's qkv; released 7B configs
have no num_kv_heads, and there it assumes 1. llama.cpp's converter also writes
feed_forward_length = 4 * n_embd and context_length = 2048 whatever the config says; we write the
config's ffn_hidden_size and max_position_embeddings (2048 without one)."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.archs.ln.layernorm import GELU, eps, filled, no_rope_scaling, refuse_unless
from tinyconvert.archs.ln.transforms import reordered

LAYER = ("attn_norm", "attn_qkv", "attn_output", "ffn_up", "ffn_down")
# The original remote-code releases (RWForCausalLM) name their keys n_head, n_layer and n_head_kv;
# model_type "RefinedWeb" (40B/180B) is the new decoder architecture, "RefinedWebModel" (7B) not.
NEW_DECODER_RW = "RefinedWeb"
CONTEXT = 2048           # what llama.cpp's converter writes (Falcon configs used to lack it)


def kv_heads(raw: dict) -> int:
    n_head = raw.get("num_attention_heads") or raw.get("n_head")
    if raw.get("new_decoder_architecture") or raw.get("model_type") == NEW_DECODER_RW:
        return raw.get("num_kv_heads") or raw.get("n_head_kv") or n_head
    return 1 if raw.get("multi_query", True) else n_head


def falcon_config(raw: dict, path=None) -> dict:
    raw = filled({"tie_word_embeddings": True, **raw}, num_attention_heads="n_head",
                 num_hidden_layers="n_layer", max_position_embeddings=lambda r: CONTEXT,
                 intermediate_size=lambda r: r.get("ffn_hidden_size") or 4 * r["hidden_size"])
    return {**raw, "num_key_value_heads": kv_heads(raw)}


def falcon_keys(w: gguf.GGUFWriter, c) -> None:
    r = c.raw
    refuse_unless(c, not r.get("alibi"), "alibi=true")
    refuse_unless(c, not r.get("bias"), "bias=true (linear biases)")
    refuse_unless(c, r.get("parallel_attn", True), "parallel_attn=false")
    refuse_unless(c, not r.get("apply_residual_connection_post_layernorm"),
                  "apply_residual_connection_post_layernorm=true")
    no_rope_scaling(c)
    w.add_context_length(c.n_ctx)
    w.add_tensor_data_layout("jploski")
    w.add_embedding_length(c.n_embd)
    w.add_feed_forward_length(c.n_ff)
    w.add_block_count(c.n_layer)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_kv_head)
    w.add_layer_norm_eps(eps(c, "layer_norm_epsilon"))
    if c.rope_theta != 10000.0:
        w.add_rope_freq_base(c.rope_theta)


def qkv_by_part(n_head: int, n_kv: int) -> list[int]:
    """Head blocks of [n_kv, g + 2, hd] (g = n_head / n_kv) as all Q, all K, all V."""
    g = n_head // n_kv
    return ([k * (g + 2) + q for k in range(n_kv) for q in range(g)]
            + [k * (g + 2) + g for k in range(n_kv)] + [k * (g + 2) + g + 1 for k in range(n_kv)])


def falcon_records(c, records):
    order = qkv_by_part(c.n_head, c.n_kv_head)
    return [reordered(r, order, c.head_dim) if r.name.endswith(".query_key_value.weight") else r
            for r in records]


FAMILIES = [
    Arch(("FalconForCausalLM", "RWForCausalLM"), gguf.MODEL_ARCH.FALCON, acts=GELU, act_key="activation",
         layer_tensors=LAYER, prepare=falcon_config, common_keys=False, keys=falcon_keys,
         records=falcon_records),
]
