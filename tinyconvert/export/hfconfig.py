"""A GGUF's hyperparameter keys back to config.json for one HF class.

The inverse key table below is checked, never trusted: the written config.json is read back by
hf2gguf's own reader (tinyconvert.archs.config.read_config) and the keys hf2gguf would write for it
(`gguf_fields`) must equal the file's `{arch}.*` keys. A GGUF key no config.json of the class can
express is an error naming it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinyconvert.archs.base import Arch
from tinyconvert.archs.dense.gemma import LAYERS_27B
from tinyconvert.archs.config import EXPERT_COUNT_KEYS, EXPERT_USED_KEYS, gguf_fields, read_config
from tinyconvert.export.family_config import family_values, handled
from tinyconvert.formats.errors import InputError

# GGUF key (after "{arch}.") -> config.json key. Expert keys pick the name the class knows.
INVERSE_KEYS = {
    "block_count": "num_hidden_layers", "context_length": "max_position_embeddings",
    "embedding_length": "hidden_size", "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps", "attention.key_length": "head_dim",
    "attention.layer_norm_epsilon": ("layer_norm_eps", "norm_epsilon", "layer_norm_epsilon"),
    "vocab_size": "vocab_size", "expert_count": EXPERT_COUNT_KEYS,
    "expert_used_count": EXPERT_USED_KEYS, "expert_feed_forward_length": "moe_intermediate_size",
    "expert_shared_feed_forward_length": "shared_expert_intermediate_size",
    "attention.sliding_window": "sliding_window",
    "attn_logit_softcapping": "attn_logit_softcapping",
    "final_logit_softcapping": "final_logit_softcapping",
    # granite's multipliers (tinyconvert.archs.dense.granite.MULTIPLIERS, GGUF side)
    "attention.scale": "attention_multiplier", "embedding_scale": "embedding_multiplier",
    "residual_scale": "residual_multiplier", "logit_scale": "logits_scaling",
}
# Keys hf2gguf derives from others (checked by the round trip, not set)
DERIVED = ("rope.dimension_count", "attention.value_length", "rope.freq_base", "rope.freq_base_swa",
           "attention.sliding_window_pattern", "rope.scaling.type", "rope.scaling.factor",
           "rope.scaling.original_context_length",
           # YaRN's own keys, which _rope reads
           "rope.scaling.yarn_ext_factor", "rope.scaling.yarn_attn_factor",
           "rope.scaling.yarn_beta_fast", "rope.scaling.yarn_beta_slow")
# What llama.cpp assumes for a key the file leaves out, given the file's other keys
IMPLIED = {"attention.key_length": lambda k: k["embedding_length"] // k["attention.head_count"],
           "attention.value_length": lambda k: k["embedding_length"] // k["attention.head_count"],
           "rope.freq_base": lambda k: 10000.0,
           "rope.freq_base_swa": lambda k: 10000.0,     # llama-hparams.h (gemma3 reads no key)
           "attention.head_count_kv": lambda k: k["attention.head_count"]}
SWA_LAYER_TYPES = ("full_attention", "sliding_attention")


def _plain(v):
    """GGUF values as JSON values; f32 scalars as the shortest decimal that reads back the same."""
    if isinstance(v, (np.floating, float)):
        return float(str(np.float32(v)))
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (list, np.ndarray)):
        return [_plain(x) for x in v]
    return v


def _rope(keys: dict, default) -> dict:
    """rope_parameters as transformers 5 reads it (per layer type where the class keeps them so:
    Gemma 3's full and sliding layers have their own RoPE base)."""
    rope = {"rope_type": "default", "rope_theta": _plain(keys.get("rope.freq_base", 10000.0))}
    kind = keys.get("rope.scaling.type")
    if kind in ("linear", "yarn"):
        rope.update(rope_type=kind, factor=_plain(keys["rope.scaling.factor"]))
        if kind == "yarn":
            rope["original_max_position_embeddings"] = keys["rope.scaling.original_context_length"]
            for src, dst in (("yarn_ext_factor", "extrapolation_factor"),
                             ("yarn_attn_factor", "attention_factor"),
                             ("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow")):
                if f"rope.scaling.{src}" in keys:
                    rope[dst] = _plain(keys[f"rope.scaling.{src}"])
    elif kind not in (None, "none"):
        raise InputError(f"rope scaling {kind!r} cannot be written back to config.json")
    if "rope.dimension_count" in keys:      # partial rotary (phi2, stablelm): of each head
        head_dim = keys.get("attention.key_length") or (
            keys["embedding_length"] // keys["attention.head_count"])
        if int(keys["rope.dimension_count"]) != int(head_dim):
            rope["partial_rotary_factor"] = int(keys["rope.dimension_count"]) / int(head_dim)
    if isinstance(default, dict) and set(SWA_LAYER_TYPES) <= set(default):
        swa = dict(default["sliding_attention"])
        if "rope.freq_base_swa" in keys:
            swa["rope_theta"] = _plain(keys["rope.freq_base_swa"])
        return {"full_attention": rope, "sliding_attention": swa}
    if "rope.freq_base_swa" in keys:
        raise InputError("the file has a sliding-window RoPE base the class has no place for")
    return rope


def arch_keys(fields: dict, arch_name: str) -> dict:
    """The file's `{arch}.*` keys without the prefix."""
    prefix = arch_name + "."
    return {k[len(prefix):]: v for k, v in fields.items() if k.startswith(prefix)}


def _layer_types(keys: dict, n_layer: int) -> list[str] | None:
    pattern = keys.get("attention.sliding_window_pattern")
    if pattern is None:
        return None
    return [SWA_LAYER_TYPES[bool(x)] for x in list(pattern)[:n_layer]]


def config_dict(fields: dict, arch: Arch, hf_class: str, defaults: dict, *,
                tensors: dict[str, tuple[int, ...]], dtype: str) -> dict:
    """config.json's keys for hf_class from the file's keys. defaults: the class's own config
    defaults (they decide which of several names the class uses)."""
    keys = arch_keys(fields, arch.arch_name)
    unknown = [k for k in keys if k not in INVERSE_KEYS and k not in DERIVED
               and k not in handled(arch.arch_name)]
    if unknown:
        raise InputError(f"GGUF key {arch.arch_name}.{unknown[0]} has no config.json equivalent "
                         f"for {hf_class} that gguf2hf knows")
    out: dict = {"architectures": [hf_class], "dtype": dtype}
    for gkey, hkey in INVERSE_KEYS.items():
        if gkey not in keys:
            continue
        if isinstance(hkey, tuple):
            hkey = next((h for h in hkey if h in defaults), hkey[0])
        out[hkey] = _plain(keys[gkey])
    if out.get("sliding_window") == 0:      # hf2gguf writes a null window as 0 (phi3)
        out["sliding_window"] = None
    if "token_embd.weight" in tensors:      # only some architectures write a vocab_size key
        out["vocab_size"] = int(tensors["token_embd.weight"][0])
    n_layer = int(keys["block_count"])
    if arch.arch_name in LAYERS_27B:        # the attention scale llama.cpp fixes by layer count
        embd_per_head = int(keys["embedding_length"]) // int(keys["attention.head_count"])
        out["query_pre_attn_scalar"] = (embd_per_head if n_layer == LAYERS_27B[arch.arch_name]
                                        else int(keys.get("attention.key_length", embd_per_head)))
    if (types := _layer_types(keys, n_layer)) is not None:
        out["layer_types"] = types
    out["rope_parameters"] = _rope(keys, defaults.get("rope_parameters"))
    out["tie_word_embeddings"] = "output.weight" not in tensors
    for flag, probe in (("attention_bias", "blk.0.attn_q.bias"), ("mlp_bias", "blk.0.ffn_up.bias")):
        if flag in defaults:
            out[flag] = probe in tensors
    for hkey, gkey in (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding")):
        if (v := fields.get(f"tokenizer.ggml.{gkey}_token_id")) is not None:
            out[hkey] = int(v)
    return family_values(arch.arch_name, keys, tensors, out)


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        return np.float32(a) == np.float32(b)
    return a == b


def check_round_trip(folder: Path, fields: dict, arch: Arch) -> None:
    """hf2gguf reading folder/config.json must write the very keys the GGUF has."""
    cfg = read_config(folder)
    if cfg.arch.arch_name != arch.arch_name:
        raise InputError(f"config.json reads back as {cfg.arch.arch_name}, not {arch.arch_name}")
    want, got = arch_keys(fields, arch.arch_name), arch_keys(gguf_fields(cfg), arch.arch_name)
    for key in sorted(set(want) | set(got)):
        a = want[key] if key in want else IMPLIED.get(key, lambda k: None)(want)
        b = got[key] if key in got else IMPLIED.get(key, lambda k: None)(got)
        if not _same(a, b):
            raise InputError(f"{cfg.hf_class}: the exported config.json gives "
                             f"{arch.arch_name}.{key} = {b!r}, the GGUF has {a!r}")


def write_config(folder: Path, values: dict, model_type: str) -> dict:
    """Through transformers' config class, so defaults it would fill in are written out."""
    from transformers import AutoConfig
    config = AutoConfig.for_model(model_type, **values)
    config.save_pretrained(folder)
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))
