"""Granite (llama.cpp's `granite`): llama plus four multipliers: embeddings, attention scores
(instead of 1/sqrt(head_dim)), each sublayer's output before the residual add, and the logits
(divided by logits_scaling)."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.archs.dense.llama import llama_keys
from tinyconvert.formats.errors import InputError

# config.json multiplier -> GGUF key writer (skipped when absent or zero, as llama.cpp does)
MULTIPLIERS = {"attention_multiplier": "add_attention_scale",
               "embedding_multiplier": "add_embedding_scale",
               "residual_multiplier": "add_residual_scale",
               "logits_scaling": "add_logit_scale"}


def granite_keys(w: gguf.GGUFWriter, c) -> None:
    if c.explicit_head_dim and c.head_dim != c.n_embd // c.n_head:
        raise InputError(f"config.json has head_dim {c.head_dim}, but llama.cpp's granite always "
                         f"uses hidden_size/num_attention_heads = {c.n_embd // c.n_head}")
    llama_keys(w, c)
    for key, add in MULTIPLIERS.items():
        if c.raw.get(key):
            getattr(w, add)(c.raw[key])


FAMILIES = [
    Arch(("GraniteForCausalLM",), gguf.MODEL_ARCH.GRANITE, permute_qk=True, keys=granite_keys),
]
