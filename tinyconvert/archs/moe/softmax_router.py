"""Mixtures of experts with a softmax router: Mixtral (llama.cpp's `llama` with experts),
Qwen3-MoE, Qwen2-MoE (plus a sigmoid-gated shared expert) and OLMoE. Experts are stacked into
[n_expert, rows, cols] tensors (tinyconvert.pipeline.experts); the router (`ffn_gate_inp`) stays
F32. llama.cpp hard-codes whether the top-k weights are renormalised: a config that says
otherwise is refused, since the GGUF would compute another model."""
from __future__ import annotations

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.archs.dense.llama import llama_keys
from tinyconvert.formats.errors import InputError

ATTN = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm")
EXPERTS = ("ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
SHARED = ("ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp", "ffn_gate_inp_shexp")
QK_NORM = ("attn_q_norm", "attn_k_norm")
# llama.cpp's build_moe_ffn norm_w per architecture (src/models/<arch>.cpp)
RENORMALISES = {"llama": True, "qwen3moe": True, "qwen2moe": False, "olmoe": False}


def _check_moe(c, arch: str) -> None:
    if not c.n_expert or not c.n_expert_used:
        raise InputError(f"{c.hf_class}: config.json gives no expert count / experts per token")
    want = RENORMALISES[arch]
    said = c.raw.get("norm_topk_prob")
    if said is not None and bool(said) != want:
        raise InputError(f"config.json has norm_topk_prob={said}, but llama.cpp's {arch} always "
                         f"{'renormalises' if want else 'keeps'} the top-{c.n_expert_used} "
                         f"router weights{'' if want else ' as they are'}; the GGUF would "
                         f"compute a different model")
    sparse = c.raw.get("decoder_sparse_step", 1)
    if sparse not in (None, 1) or c.raw.get("mlp_only_layers"):
        raise InputError(f"config.json makes some layers dense (decoder_sparse_step / "
                         f"mlp_only_layers); llama.cpp's {arch} needs experts in every layer")


def mixtral_keys(w: gguf.GGUFWriter, c) -> None:
    _check_moe(c, "llama")
    llama_keys(w, c)


def qwen_moe_keys(arch: str):
    def keys(w: gguf.GGUFWriter, c) -> None:
        _check_moe(c, arch)
        if c.raw.get("moe_intermediate_size") is not None:
            w.add_expert_feed_forward_length(c.raw["moe_intermediate_size"])
        if c.raw.get("shared_expert_intermediate_size") is not None:
            w.add_expert_shared_feed_forward_length(c.raw["shared_expert_intermediate_size"])
    return keys


def olmoe_keys(w: gguf.GGUFWriter, c) -> None:
    _check_moe(c, "olmoe")
    if c.n_kv_head != c.n_head:
        raise InputError(f"config.json has {c.n_kv_head} key/value heads for {c.n_head} query "
                         f"heads; llama.cpp's olmoe sizes its k norm for n_embd and cannot load "
                         f"grouped-query OLMoE")
    if abs(c.rms_eps - 1e-5) > 1e-12:
        raise InputError(f"config.json has rms_norm_eps={c.rms_eps}; llama.cpp's converter "
                         f"writes 1e-5 for every OLMoE")


FAMILIES = [
    Arch(("MixtralForCausalLM",), gguf.MODEL_ARCH.LLAMA, permute_qk=True, keys=mixtral_keys,
         layer_tensors=ATTN + EXPERTS),
    Arch(("Qwen3MoeForCausalLM",), gguf.MODEL_ARCH.QWEN3MOE, keys=qwen_moe_keys("qwen3moe"),
         layer_tensors=ATTN + QK_NORM + EXPERTS),
    Arch(("Qwen2MoeForCausalLM",), gguf.MODEL_ARCH.QWEN2MOE, keys=qwen_moe_keys("qwen2moe"),
         layer_tensors=ATTN + EXPERTS + SHARED),
    Arch(("OlmoeForCausalLM",), gguf.MODEL_ARCH.OLMOE, keys=olmoe_keys,
         layer_tensors=ATTN + QK_NORM + EXPERTS),
]
