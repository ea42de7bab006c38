"""Weights llama.cpp's graphs multiply without their LoRA: its loader accepts an adapter on them
and the adapter is then silently ignored, so lora2gguf refuses such a target in one line.

Facts from llama.cpp 0.3.36 (src/models/*.cpp): every graph goes through build_lora_mm /
build_lora_mm_id (which add the adapters' B @ A x) for attention, FFN and expert weights, except
deepseek2, which calls ggml_mul_mat directly for its MLA projections (wq_a, wq_b, wq, wkv_a_mqa,
wk_b, wv_b, wkv_b) and for the output matrix. DeepSeek's kv_b_proj is written as attn_k_b and
attn_v_b (and kept as attn_kv_b), all three without LoRA."""
from __future__ import annotations

from tinyconvert.formats.errors import InputError

# GGUF architecture -> tensor kinds (the GGUF name without blk.N. and .weight)
NO_LORA = {
    "deepseek2": ("attn_q_a", "attn_q_b", "attn_q", "attn_kv_a_mqa", "attn_kv_b", "attn_k_b",
                  "attn_v_b", "output"),
}


def kind_of(gguf_name: str) -> str:
    parts = gguf_name.removesuffix(".weight").split(".")
    return ".".join(parts[2:] if parts[0] == "blk" else parts)


def refuse_unapplied(arch_name: str, gguf_name: str, target: str, merge_hint: str) -> None:
    kind = kind_of(gguf_name)
    if kind in NO_LORA.get(arch_name, ()):
        raise InputError(f"{target}: llama.cpp's {arch_name} graph multiplies by {kind} without "
                         f"applying LoRA adapters (src/models/{arch_name}.cpp), so a GGUF "
                         f"adapter on it would be ignored; {merge_hint}")
