"""StarCoder2 (`Starcoder2ForCausalLM`; llama.cpp's `starcoder2`): LayerNorms with biases, biases
on q, k, v, o and both MLP projections (mlp.c_fc -> ffn_up, mlp.c_proj -> ffn_down), a plain
tanh-GELU MLP, NeoX RoPE over whole heads, GQA.

The config's sliding_window (4096 in the released models) is not computed by llama.cpp, whose
loader has no window for starcoder2: the two agree on contexts up to the window."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.archs.ln.layernorm import GELU, eps, no_rope_scaling, refuse_unless

LAYER = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_up",
         "ffn_down")


def starcoder2_config(raw: dict, path=None) -> dict:
    return {"tie_word_embeddings": True, **raw}     # transformers' Starcoder2Config default


def starcoder2_keys(w: gguf.GGUFWriter, c) -> None:
    """The keys llama.cpp's converter writes for it (its generic TextModel set)."""
    refuse_unless(c, c.raw.get("use_bias", True), "use_bias=false (llama.cpp's starcoder2 "
                  "requires every bias)")
    no_rope_scaling(c)
    w.add_block_count(c.n_layer)
    w.add_context_length(c.n_ctx)
    w.add_embedding_length(c.n_embd)
    w.add_feed_forward_length(c.n_ff)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_kv_head)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_eps(eps(c, "norm_epsilon", "layer_norm_eps"))


FAMILIES = [
    Arch(("Starcoder2ForCausalLM",), gguf.MODEL_ARCH.STARCODER2, acts=GELU, layer_tensors=LAYER,
         prepare=starcoder2_config, common_keys=False, keys=starcoder2_keys),
]
