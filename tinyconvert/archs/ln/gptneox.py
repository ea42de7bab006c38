"""GPT-NeoX and Pythia (`GPTNeoXForCausalLM`; llama.cpp's `gptneox`): LayerNorms with biases,
a fused qkv with bias, partial NeoX RoPE (rotary_pct of each head), a plain GELU MLP with biases,
and, by default, parallel attention + MLP with two norms (use_parallel_residual).

query_key_value holds its rows per head, [n_head, 3 (q, k, v), head_dim]; llama.cpp's attn_qkv
wants all of Q, then K, then V, so weight and bias rows are regrouped by head blocks.

HF computes the exact (erf) GELU, llama.cpp its tanh form: verify shows that difference.
llama.cpp's converter reads `rotary_pct`, which transformers 5 writes as
rope_parameters.partial_rotary_factor instead; both are read here."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.archs.ln.layernorm import (GELU, add_theta, eps, filled, no_rope_scaling,
                                         partial_rotary, refuse_unless)
from tinyconvert.archs.ln.transforms import reordered

LAYER = ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down")


def gptneox_config(raw: dict, path=None) -> dict:
    return filled({"tie_word_embeddings": False, **raw}, rope_theta="rotary_emb_base")


def rope_dim(c) -> int:
    return int(partial_rotary(c) * (c.n_embd // c.n_head))


def gptneox_keys(w: gguf.GGUFWriter, c) -> None:
    refuse_unless(c, c.raw.get("attention_bias", True), "attention_bias=false (llama.cpp's "
                  "gptneox requires the attention biases)")
    refuse_unless(c, not c.tied, "tie_word_embeddings=true (llama.cpp's gptneox needs its own "
                  "output.weight)")
    no_rope_scaling(c)
    w.add_context_length(c.n_ctx)
    w.add_embedding_length(c.n_embd)
    w.add_block_count(c.n_layer)
    w.add_feed_forward_length(c.n_ff)
    w.add_rope_dimension_count(rope_dim(c))
    w.add_head_count(c.n_head)
    w.add_parallel_residual(c.raw.get("use_parallel_residual", True))
    w.add_layer_norm_eps(eps(c, "layer_norm_eps"))
    add_theta(w, c)


def qkv_by_part(n_head: int) -> list[int]:
    """Head blocks of [n_head, 3, hd] in the order all Q, all K, all V."""
    return [h * 3 + part for part in range(3) for h in range(n_head)]


def gptneox_records(c, records):
    hd = c.n_embd // c.n_head
    return [reordered(r, qkv_by_part(c.n_head), hd) if ".query_key_value." in r.name else r
            for r in records]


FAMILIES = [
    Arch(("GPTNeoXForCausalLM",), gguf.MODEL_ARCH.GPTNEOX, acts=GELU, layer_tensors=LAYER,
         prepare=gptneox_config, common_keys=False, keys=gptneox_keys, records=gptneox_records),
]
