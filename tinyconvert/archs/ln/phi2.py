"""Phi-2 and Phi-1/1.5 (`PhiForCausalLM`; llama.cpp's `phi2`): one LayerNorm with bias feeding
attention and a plain tanh-GELU MLP in parallel, q/k/v and dense with biases, partial NeoX RoPE
(0.4 of each head in Phi-2: 32 of 80 dims), final_layernorm -> output_norm, and an output bias
(lm_head.bias -> output.bias). Phi's tokenizer adds no BOS.

llama.cpp's converter writes feed_forward_length = 4 * n_embd and head_count_kv = n_head whatever
the config says; those are the released models' values, and we write the config's."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.archs.ln.layernorm import GELU, add_theta, eps, no_rope_scaling, refuse_unless
from tinyconvert.archs.dense.phi3 import rope_dim

LAYER = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down")


def phi2_keys(w: gguf.GGUFWriter, c) -> None:
    refuse_unless(c, not c.raw.get("qk_layernorm"), "qk_layernorm=true")
    refuse_unless(c, not c.tied, "tie_word_embeddings=true (llama.cpp's phi2 needs its own "
                  "output.weight and output.bias)")
    no_rope_scaling(c)
    w.add_context_length(c.n_ctx)
    w.add_embedding_length(c.n_embd)
    w.add_feed_forward_length(c.n_ff)
    w.add_block_count(c.n_layer)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_kv_head)
    w.add_layer_norm_eps(eps(c, "layer_norm_eps", "layer_norm_epsilon"))
    w.add_rope_dimension_count(rope_dim(c))
    add_theta(w, c)


FAMILIES = [
    Arch(("PhiForCausalLM",), gguf.MODEL_ARCH.PHI2, acts=GELU, layer_tensors=LAYER,
         common_keys=False, keys=phi2_keys),
]
