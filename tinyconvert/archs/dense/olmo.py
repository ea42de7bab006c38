"""OLMo 2 and OLMo 3 (llama.cpp's `olmo2`): norms after each sublayer only (no pre-norm), RMS
q/k norm over the whole projection, rotate-half RoPE; OLMo 3 adds sliding-window layers (its
YaRN applies to the full layers only). llama.cpp requires output.weight (no tying)."""
from __future__ import annotations

import gguf

from tinyconvert.formats.errors import InputError
from tinyconvert.archs.base import Arch

LAYER = ("attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm",
         "post_attention_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm")


def olmo2_keys(w: gguf.GGUFWriter, c) -> None:
    if c.tied:
        raise InputError(f"{c.hf_class} with tie_word_embeddings: llama.cpp's olmo2 needs its "
                         f"own output.weight and cannot load a tied model")
    if "sliding_window" not in c.raw:
        return
    w.add_sliding_window(c.raw["sliding_window"])
    types = c.raw.get("layer_types")
    if types:
        w.add_sliding_window_pattern([t == "sliding_attention" for t in types])
    else:         # OLMo 3's default: every 4th layer attends to everything
        w.add_sliding_window_pattern([(i + 1) % 4 != 0 for i in range(c.n_layer)])


FAMILIES = [
    Arch(("Olmo2ForCausalLM", "Olmo3ForCausalLM"), gguf.MODEL_ARCH.OLMO2, layer_tensors=LAYER,
         keys=olmo2_keys),
]
