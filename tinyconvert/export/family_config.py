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


FAMILIES = {
    "gptneox": Family(("use_parallel_residual",), _gptneox),
    "stablelm": Family(("use_parallel_residual",), _stablelm),
    "falcon": Family(("tensor_data_layout",), _falcon),
    "gpt2": Family((), _gpt2),
    # LongRoPE's cos/sin scale: hf2gguf derives it from the context lengths (round trip checks)
    "phi3": Family(("rope.scaling.attn_factor",), _phi3),
}


def handled(arch_name: str) -> tuple[str, ...]:
    return FAMILIES[arch_name].keys if arch_name in FAMILIES else ()


def family_values(arch_name: str, keys: dict, tensors: dict, out: dict) -> dict:
    return FAMILIES[arch_name].fill(keys, tensors, out) if arch_name in FAMILIES else out
