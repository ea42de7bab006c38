"""Gemma 1, 2 and 3 (llama.cpp's `gemma`, `gemma2`, `gemma3`): norms stored as w where HF computes
x*(1+w) (+1 baked at conversion), embeddings scaled by sqrt(n_embd) at run time, GeGLU with tanh
GELU, sandwich norms (2, 3), sliding-window layers with their own RoPE base (2, 3), logit
softcapping (2), per-head q/k RMSNorm (3). Gemma 3's text part is also read out of
Gemma3ForConditionalGeneration checkpoints (vision tower skipped)."""
from __future__ import annotations

import math

import gguf

from tinyconvert.archs.base import LLAMA_LAYER, Arch
from tinyconvert.formats.errors import InputError

GELU_TANH = ("gelu_pytorch_tanh", "gelu_tanh")
SANDWICH = LLAMA_LAYER + ("post_attention_norm", "post_ffw_norm")
# llama.cpp's default SWA period and the layer count it takes for the 27B (whose attention scale
# is 1/sqrt(n_embd/n_head) instead of 1/sqrt(head_dim)), per architecture
SWA_PERIOD = {"gemma2": 2, "gemma3": 6}
LAYERS_27B = {"gemma2": 46, "gemma3": 62}
MULTIMODAL_RENAMES = ((r"^model\.language_model\.", "model."),        # transformers 5
                      (r"^language_model\.model\.", "model."),         # transformers 4
                      (r"^language_model\.lm_head\.", "lm_head."))
MULTIMODAL_SKIP = (r"^(model\.)?(vision_tower|multi_modal_projector)\.",)


def _check_attention_scale(c, arch: str) -> None:
    """HF scales scores by query_pre_attn_scalar**-0.5; llama.cpp hard-codes its choice by layer
    count. A config that disagrees would give a file that computes another model."""
    qpas = c.raw.get("query_pre_attn_scalar")
    if qpas is None:
        return
    fixed = c.n_embd // c.n_head if c.n_layer == LAYERS_27B[arch] else c.head_dim
    if not math.isclose(float(qpas), float(fixed)):
        raise InputError(f"config.json has query_pre_attn_scalar={qpas}, but llama.cpp scales "
                         f"attention of a {c.n_layer}-layer {arch} by 1/sqrt({fixed}); the GGUF "
                         f"would compute a different model")


def _swa_keys(w: gguf.GGUFWriter, c, arch: str) -> None:
    """The window, and the per-layer pattern only where llama.cpp's default period would be
    wrong for this config's layer_types (llama.cpp's converter writes no pattern)."""
    window = c.raw.get("sliding_window")
    if not window or c.raw.get("sliding_window_pattern") == 1:
        return
    w.add_sliding_window(window)
    types = c.raw.get("layer_types")
    if types:
        swa = [t == "sliding_attention" for t in types[:c.n_layer]]
        n = SWA_PERIOD[arch]
        if swa != [i % n < n - 1 for i in range(c.n_layer)]:
            w.add_sliding_window_pattern(swa)


def gemma2_keys(w: gguf.GGUFWriter, c) -> None:
    _check_attention_scale(c, "gemma2")
    w.add_attn_logit_softcapping(c.raw.get("attn_logit_softcapping") or 50.0)
    w.add_final_logit_softcapping(c.raw.get("final_logit_softcapping") or 30.0)
    _swa_keys(w, c, "gemma2")


def gemma3_keys(w: gguf.GGUFWriter, c) -> None:
    _check_attention_scale(c, "gemma3")
    if c.raw.get("attn_logit_softcapping") is not None:
        raise InputError("config.json sets attn_logit_softcapping, which llama.cpp's gemma3 "
                         "does not compute")
    if c.raw.get("final_logit_softcapping"):
        w.add_final_logit_softcapping(c.raw["final_logit_softcapping"])
    _swa_keys(w, c, "gemma3")


_GEMMA = dict(acts=GELU_TANH, act_key="hidden_activation", norm_shift=1.0)
FAMILIES = [
    Arch(("GemmaForCausalLM",), gguf.MODEL_ARCH.GEMMA, drop_output=True,
         omit_defaults={"rope.freq_base": 10000.0}, **_GEMMA),
    Arch(("Gemma2ForCausalLM",), gguf.MODEL_ARCH.GEMMA2, drop_output=True,
         omit_defaults={"rope.freq_base": 10000.0}, layer_tensors=SANDWICH, keys=gemma2_keys,
         **_GEMMA),
    Arch(("Gemma3ForCausalLM",), gguf.MODEL_ARCH.GEMMA3,
         layer_tensors=SANDWICH + ("attn_q_norm", "attn_k_norm"), keys=gemma3_keys, **_GEMMA),
    Arch(("Gemma3ForConditionalGeneration",), gguf.MODEL_ARCH.GEMMA3,
         renames=MULTIMODAL_RENAMES, skip=MULTIMODAL_SKIP,
         layer_tensors=SANDWICH + ("attn_q_norm", "attn_k_norm"), keys=gemma3_keys, **_GEMMA),
]
