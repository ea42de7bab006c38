"""config.json to the hyperparameter keys llama.cpp reads: the common ones here, each family's
own through its `keys` function (tinyconvert.archs.<family>).

Real configs differ: rope_theta at top level or inside rope_parameters (transformers 5), rope
scaling under rope_scaling or rope_parameters (per layer type for Gemma 3: full_attention and
sliding_attention), torch_dtype or dtype, head_dim absent or null, and multimodal wrappers with
the language model's config under text_config.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import gguf

from tinyconvert.archs import arch_for
from tinyconvert.archs.base import Arch
from tinyconvert.archs.config_checks import check_architectures, check_resolved, check_values
from tinyconvert.formats.errors import InputError

RELU_ACTS = ("relu", "fatrelu")   # ReLU-gated FFNs (PowerInfer's models): the runtime runs them
                                  # (FATReLU's 0.01 floor is not modelled: PowerInfer ignores it)


@dataclass(frozen=True)
class ModelConfig:
    raw: dict
    hf_class: str
    arch: Arch
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_kv_head: int
    head_dim: int            # explicit head_dim or n_embd // n_head
    explicit_head_dim: bool
    n_ctx: int | None
    n_vocab: int | None
    rms_eps: float
    rope_theta: float
    rope: dict               # rope scaling parameters, with "rope_type" normalised
    tied: bool
    dtype: str | None        # what the config claims; the converter trusts the tensors instead
    rope_theta_swa: float | None = None   # RoPE base of sliding-window layers, when the config says
    n_expert: int = 0        # mixture of experts: experts per layer and experts used per token
    n_expert_used: int = 0


def _need(cfg: dict, key: str, path: Path):
    if cfg.get(key) is None:
        raise InputError(f"{path}: config.json has no {key!r}")
    return cfg[key]


def read_config(folder: Path, *, acts: tuple[str, ...] | None = None,
                extra_acts: tuple[str, ...] = ()) -> ModelConfig:
    """acts: the FFN activations accepted (default: what llama.cpp's graph for the family
    computes, `Arch.acts`), plus extra_acts."""
    path = folder / "config.json"
    if not path.is_file():
        raise InputError(f"{folder}: no config.json (is this a Hugging Face checkpoint folder?)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{path}: config.json is not a JSON object")
    check_architectures(cfg, path)
    hf_class, arch = arch_for(cfg)
    if isinstance(cfg.get("text_config"), dict):    # multimodal wrapper: the language model's
        cfg = {**cfg, **cfg["text_config"]}          # keys, as llama.cpp's converter reads them
    check_values(cfg, path)
    if arch.prepare is not None:
        cfg = arch.prepare(cfg, path)
    act = cfg.get(arch.act_key) or cfg.get("hidden_act", "silu")
    acts = (arch.acts if acts is None else acts) + extra_acts
    if act not in acts:
        raise InputError(f"{path}: hidden_act {act!r} is not supported for {hf_class} "
                         f"(supported: {', '.join(acts)})")
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    swa_rope = rope.get("sliding_attention") or {}
    rope = dict(rope.get("full_attention", rope))
    rope_type = rope.get("rope_type", rope.get("type"))
    rope["rope_type"] = None if rope_type in (None, "default") else str(rope_type).lower()
    n_embd, n_head = _need(cfg, "hidden_size", path), _need(cfg, "num_attention_heads", path)
    head_dim = cfg.get("head_dim")
    config = ModelConfig(
        raw=cfg, hf_class=hf_class, arch=arch,
        n_layer=_need(cfg, "num_hidden_layers", path), n_embd=n_embd,
        n_ff=_need(cfg, "intermediate_size", path), n_head=n_head,
        n_kv_head=cfg.get("num_key_value_heads") or n_head,
        head_dim=head_dim or (n_embd // n_head if n_head else 0), explicit_head_dim=head_dim is not None,
        n_ctx=cfg.get("max_position_embeddings"), n_vocab=cfg.get("vocab_size"),
        rms_eps=cfg.get("rms_norm_eps", 1e-6),
        rope_theta=cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0,
        rope=rope, tied=bool(cfg.get("tie_word_embeddings", False)),
        dtype=cfg.get("dtype") or cfg.get("torch_dtype"),
        rope_theta_swa=swa_rope.get("rope_theta"),
        n_expert=_first(cfg, EXPERT_COUNT_KEYS) or 0,
        n_expert_used=_first(cfg, EXPERT_USED_KEYS) or 0)
    check_resolved(config, path)
    gguf_fields(config)      # a config the family refuses fails here, before any tensor is read
    return config


# llama.cpp's converter takes the first of these that the config has
EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
EXPERT_USED_KEYS = ("num_experts_per_tok", "num_experts_per_token", "top_k_experts")


def _first(cfg: dict, keys: tuple[str, ...]):
    return next((cfg[k] for k in keys if cfg.get(k) is not None), None)


def add_hparams(w: gguf.GGUFWriter, c: ModelConfig) -> None:
    if not c.arch.common_keys:
        c.arch.keys(w, c)
        return
    w.add_block_count(c.n_layer)
    if c.n_ctx is not None:
        w.add_context_length(c.n_ctx)
    w.add_embedding_length(c.n_embd)
    w.add_feed_forward_length(c.n_ff)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_kv_head)
    if c.arch.omit_defaults.get("rope.freq_base") != c.rope_theta:
        w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.rms_eps)
    if c.explicit_head_dim:
        w.add_key_length(c.head_dim)
        w.add_value_length(c.head_dim)
    if c.rope_theta_swa is not None:
        w.add_rope_freq_base_swa(c.rope_theta_swa)
    if c.n_expert:
        w.add_expert_count(c.n_expert)
    if c.n_expert_used:
        w.add_expert_used_count(c.n_expert_used)
    if c.arch.keys is not None:
        c.arch.keys(w, c)
    if not c.arch.own_rope:
        _add_rope_scaling(w, c.rope)


def gguf_fields(c: ModelConfig) -> dict:
    """The keys hf2gguf writes for this config, as GGUF key -> value (what the runtime reads)."""
    w = gguf.GGUFWriter(None, c.arch.arch_name)
    add_hparams(w, c)
    return {key: v.value for key, v in w.kv_data[0].items()}


def _add_rope_scaling(w: gguf.GGUFWriter, rope: dict) -> None:
    kind, factor = rope["rope_type"], rope.get("factor")
    if kind in (None, "llama3"):          # llama3 is carried by the rope_freqs tensor instead
        return
    if kind == "linear" and factor is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(factor)
    elif kind == "yarn" and factor is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(factor)
        if "original_max_position_embeddings" not in rope:
            raise InputError("yarn rope scaling needs original_max_position_embeddings")
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        for key, add in (("extrapolation_factor", w.add_rope_scaling_yarn_ext_factor),
                         ("attention_factor", w.add_rope_scaling_yarn_attn_factor),
                         ("beta_fast", w.add_rope_scaling_yarn_beta_fast),
                         ("beta_slow", w.add_rope_scaling_yarn_beta_slow)):
            if rope.get(key) is not None:
                add(rope[key])
    else:
        raise InputError(f"rope scaling {kind!r} is not supported (linear, yarn, llama3)")


def llama3_rope_freqs(c: ModelConfig):
    """Per-frequency divisors llama.cpp applies for rope_type llama3 (the `rope_freqs` tensor):
    1 for short wavelengths, `factor` for long ones, a smooth blend in between. float32 throughout."""
    import torch
    r = c.rope
    factor = r.get("factor", 8.0)
    low, high = r.get("low_freq_factor", 1.0), r.get("high_freq_factor", 4.0)
    old_ctx = r.get("original_max_position_embeddings", 8192)
    dim = c.head_dim
    freqs = 1.0 / (c.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    wavelen = 2 * math.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    blended = 1 / ((1 - smooth) / factor + smooth)
    out = torch.where(wavelen < old_ctx / high, torch.ones_like(freqs),
                      torch.where(wavelen > old_ctx / low, torch.full_like(freqs, factor), blended))
    return out.to(torch.float32)
