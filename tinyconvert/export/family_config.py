"""config.json values of the families whose GGUF keys the common table (export/hfconfig.py
INVERSE_KEYS) does not cover: the keys they write by hand (parallel residual, Falcon's tensor
layout) and what their GGUF says only through which tensors it has (Falcon's second norm,
StableLM's head norms and qkv biases).

As for every family, the result is checked by reading it back with hf2gguf's own reader
(hfconfig.check_round_trip) and by the tensor shapes transformers builds from it; nothing here
is trusted. The GELU families get the tanh GELU (`gelu_new`): it is what llama.cpp's graphs
compute, whatever GELU the original checkpoint named, so the exported model computes the file."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tinyconvert.formats.errors import InputError

TANH_GELU = "gelu_new"


@dataclass(frozen=True)
class Family:
    keys: tuple[str, ...]                 # GGUF keys (after "{arch}.") handled here
    fill: Callable[[dict, dict, dict], dict]   # fill(keys, tensors, values) -> values


def _gptneox(keys: dict, tensors: dict, out: dict) -> dict:
    return {**out, "use_parallel_residual": bool(keys.get("use_parallel_residual", True)),
            "hidden_act": TANH_GELU, "attention_bias": "blk.0.attn_qkv.bias" in tensors}


def _stablelm(keys: dict, tensors: dict, out: dict) -> dict:
    return {**out, "use_parallel_residual": bool(keys.get("use_parallel_residual", False)),
            "use_qkv_bias": "blk.0.attn_q.bias" in tensors,
            "qk_layernorm": "blk.0.attn_q_norm.weight" in tensors}


def _falcon(keys: dict, tensors: dict, out: dict) -> dict:
    """7B: multi-query, one norm; 40B/180B (new decoder): GQA, two norms; Falcon2 11B: GQA
    (new decoder) with one norm."""
    if keys.get("tensor_data_layout", "jploski") != "jploski":
        raise InputError(f"falcon tensor_data_layout {keys['tensor_data_layout']!r}: only "
                         f"llama.cpp's converter's 'jploski' layout is known")
    n_head = int(keys["attention.head_count"])
    n_kv = int(keys.get("attention.head_count_kv", n_head))
    two_norms = "blk.0.attn_norm_2.weight" in tensors
    new = two_norms or n_kv not in (1, n_head)
    values = {k: v for k, v in out.items() if k not in ("intermediate_size",
                                                        "num_key_value_heads")}
    values.update(ffn_hidden_size=int(keys["feed_forward_length"]), activation=TANH_GELU,
                  new_decoder_architecture=new, multi_query=n_kv == 1, num_kv_heads=n_kv,
                  parallel_attn=True, bias=False, alibi=False)
    if new:
        values["num_ln_in_parallel_attn"] = 2 if two_norms else 1
    return values


def _gpt2(keys: dict, tensors: dict, out: dict) -> dict:
    values = {k: v for k, v in out.items() if k not in ("intermediate_size",)}
    return {**values, "n_inner": int(keys["feed_forward_length"]),
            "activation_function": TANH_GELU}


def _phi3(keys: dict, tensors: dict, out: dict) -> dict:
    """Phi3Config keeps the original context at the top level too, and its default (4096) would
    override rope_parameters' value."""
    orig = keys.get("rope.scaling.original_context_length")
    return out if orig is None else {**out, "original_max_position_embeddings": int(orig)}


# deepseek2 GGUF key -> DeepseekV2/V3Config key, where the value carries over as it is
DEEPSEEK_KEYS = {"leading_dense_block_count": "first_k_dense_replace",
                 "attention.kv_lora_rank": "kv_lora_rank", "expert_shared_count": "n_shared_experts",
                 "expert_weights_scale": "routed_scaling_factor", "expert_group_count": "n_group",
                 "expert_group_used_count": "topk_group", "attention.value_length_mla": "v_head_dim"}


def _deepseek(keys: dict, tensors: dict, out: dict) -> dict:
    """MLA's head sizes from the MLA keys (key_length / value_length and head_count_kv = 1 are
    the absorbed MQA form llama.cpp runs); the router's gating is the class's own, so the key is
    checked by the round trip of the V2 or V3 config it fits."""
    rope = int(keys["rope.dimension_count"])
    n_head = int(keys["attention.head_count"])
    values = {k: v for k, v in out.items() if k not in ("head_dim", "num_key_value_heads")}
    values.update({h: keys[g] for g, h in DEEPSEEK_KEYS.items() if g in keys})
    values.update(num_key_value_heads=n_head, qk_rope_head_dim=rope, head_dim=rope,
                  qk_nope_head_dim=int(keys["attention.key_length_mla"]) - rope,
                  q_lora_rank=keys.get("attention.q_lora_rank"),
                  norm_topk_prob=bool(keys.get("expert_weights_norm", False)))
    # rope.dimension_count is the whole rotated part (qk_rope_head_dim), not a fraction of
    # key_length (the absorbed kv_lora + rope)
    rope_params = {k: v for k, v in values["rope_parameters"].items()
                   if k != "partial_rotary_factor"}
    if "rope.scaling.yarn_log_multiplier" in keys:      # hf2gguf wrote 0.1 * mscale_all_dim
        mscale = float(str(keys["rope.scaling.yarn_log_multiplier"] / 0.1))
        rope_params.update(mscale_all_dim=mscale, mscale=mscale)
    return {**values, "rope_parameters": rope_params}


SSM_KEYS = ("ssm.conv_kernel", "ssm.inner_size", "ssm.state_size", "ssm.time_step_rank",
            "ssm.dt_b_c_rms", "ssm.group_count")
# what the common table fills from the zeros llama.cpp's converter writes for an SSM
NOT_SSM = ("intermediate_size", "num_attention_heads", "max_position_embeddings", "rms_norm_eps",
           "rope_parameters")


def _ssm(keys: dict, out: dict) -> dict:
    values = {k: v for k, v in out.items() if k not in NOT_SSM}
    values.update(state_size=int(keys["ssm.state_size"]), conv_kernel=int(keys["ssm.conv_kernel"]),
                  layer_norm_epsilon=out["rms_norm_eps"], use_bias=False, use_conv_bias=True)
    return values


def _mamba(keys: dict, tensors: dict, out: dict) -> dict:
    values = {**_ssm(keys, out), "intermediate_size": int(keys["ssm.inner_size"]),
              "time_step_rank": int(keys["ssm.time_step_rank"])}
    if keys.get("ssm.dt_b_c_rms"):      # Falcon-Mamba: llama.cpp's one eps for dt/B/C too
        values["mixer_rms_eps"] = out["rms_norm_eps"]
    return values


def _mamba2(keys: dict, tensors: dict, out: dict) -> dict:
    inner, heads = int(keys["ssm.inner_size"]), int(keys["ssm.time_step_rank"])
    expand = inner // int(keys["embedding_length"])
    if expand * int(keys["embedding_length"]) != inner or inner % heads:
        raise InputError(f"mamba2 inner size {inner} is no whole multiple of the embedding "
                         f"length and of the {heads} heads")
    return {**_ssm(keys, out), "num_heads": heads, "head_dim": inner // heads, "expand": expand,
            "n_groups": int(keys.get("ssm.group_count", 1))}


FAMILIES = {
    "gptneox": Family(("use_parallel_residual",), _gptneox),
    "stablelm": Family(("use_parallel_residual",), _stablelm),
    "falcon": Family(("tensor_data_layout",), _falcon),
    "gpt2": Family((), _gpt2),
    # LongRoPE's cos/sin scale: hf2gguf derives it from the context lengths (round trip checks)
    "deepseek2": Family((*DEEPSEEK_KEYS, "attention.q_lora_rank", "attention.key_length_mla",
                         "expert_weights_norm", "expert_gating_func",
                         "rope.scaling.yarn_log_multiplier"), _deepseek),
    "mamba": Family(SSM_KEYS, _mamba),
    "mamba2": Family(SSM_KEYS, _mamba2),
    "phi3": Family(("rope.scaling.attn_factor",), _phi3),
}


def handled(arch_name: str) -> tuple[str, ...]:
    return FAMILIES[arch_name].keys if arch_name in FAMILIES else ()


def family_values(arch_name: str, keys: dict, tensors: dict, out: dict) -> dict:
    return FAMILIES[arch_name].fill(keys, tensors, out) if arch_name in FAMILIES else out
