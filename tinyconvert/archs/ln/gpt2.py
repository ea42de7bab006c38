"""GPT-2 (`GPT2LMHeadModel`; llama.cpp's `gpt2`): learned absolute positions (wpe ->
position_embd, kept F32 and never quantized), LayerNorms with biases, a fused qkv with bias, a
plain GELU MLP with biases, tied output.

The checkpoint's projections are Conv1D layers whose weights are stored [in, out]: c_attn,
attn.c_proj, mlp.c_fc and mlp.c_proj are transposed to the [out, in] of every other linear.

llama.cpp's converter reads `n_ctx`, which configs written by transformers 5 no longer have; the
context is the number of learned positions, `n_positions`, which both have."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.archs.ln.layernorm import GELU, eps, filled, refuse_unless
from tinyconvert.archs.ln.transforms import transposed

LAYER = ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down")
CONV1D = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")


def gpt2_config(raw: dict, path=None) -> dict:
    raw = filled(raw, hidden_size="n_embd", num_hidden_layers="n_layer",
                 num_attention_heads="n_head", max_position_embeddings="n_positions",
                 intermediate_size=lambda r: r.get("n_inner") or 4 * r.get("n_embd", 0))
    return {"tie_word_embeddings": True, **raw}     # transformers' GPT2Config default


def gpt2_keys(w: gguf.GGUFWriter, c) -> None:
    r = c.raw
    refuse_unless(c, r.get("scale_attn_weights", True), "scale_attn_weights=false")
    refuse_unless(c, not r.get("scale_attn_by_inverse_layer_idx"),
                  "scale_attn_by_inverse_layer_idx=true")
    refuse_unless(c, not r.get("add_cross_attention"), "add_cross_attention=true")
    w.add_block_count(c.n_layer)
    w.add_context_length(c.n_ctx)
    w.add_embedding_length(c.n_embd)
    w.add_feed_forward_length(c.n_ff)
    w.add_head_count(c.n_head)
    w.add_layer_norm_eps(eps(c, "layer_norm_epsilon"))


def gpt2_records(c, records):
    return [transposed(r) if r.name.endswith(CONV1D) else r for r in records]


FAMILIES = [
    Arch(("GPT2LMHeadModel",), gguf.MODEL_ARCH.GPT2, acts=GELU, act_key="activation_function",
         layer_tensors=LAYER, prepare=gpt2_config, common_keys=False, keys=gpt2_keys,
         records=gpt2_records, skip=(r"\.attn\.(masked_)?bias$",)),
]
