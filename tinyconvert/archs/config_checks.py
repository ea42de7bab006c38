"""config.json values checked before anything is built from them: integers are integers (not
bools, floats or strings) within ranges no real model leaves, floats are finite numbers, and the
counts agree with the tensors the checkpoint actually has. A config claiming a billion layers
must fail in one line, not build a billion-layer name map."""
from __future__ import annotations

import math
from pathlib import Path

from tinyconvert.formats.errors import InputError

# key -> (smallest, largest) accepted; absent or null keys are the caller's business
INT_RANGES = {
    "num_hidden_layers": (1, 1 << 12),
    "hidden_size": (1, 1 << 20),
    "num_attention_heads": (1, 1 << 14),
    "num_key_value_heads": (1, 1 << 14),
    "intermediate_size": (1, 1 << 22),
    "vocab_size": (1, 1 << 24),
    "head_dim": (1, 1 << 16),
    "max_position_embeddings": (1, (1 << 32) - 1),      # GGUF stores it as u32
    "num_local_experts": (0, 1 << 16),
    "num_experts": (0, 1 << 16),
    "n_routed_experts": (0, 1 << 16),
    "num_experts_per_tok": (0, 1 << 16),
    "num_experts_per_token": (0, 1 << 16),
    "top_k_experts": (0, 1 << 16),
    "sliding_window": (0, (1 << 32) - 1),
}
BOOLS = ("tie_word_embeddings",)
POSITIVE_FLOATS = ("rms_norm_eps", "rope_theta")
DICTS = ("rope_scaling", "rope_parameters", "quantization_config")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_values(cfg: dict, path: Path) -> None:
    """Types and ranges of the keys every family reads (after a text_config is merged in)."""
    for key, (lo, hi) in INT_RANGES.items():
        v = cfg.get(key)
        if v is None:
            continue
        if not _is_int(v):
            raise InputError(f"{path}: {key} is {v!r} ({type(v).__name__}); it must be an integer")
        if not lo <= v <= hi:
            raise InputError(f"{path}: {key} = {v} is outside the plausible range {lo}..{hi}")
    for key in POSITIVE_FLOATS:
        v = cfg.get(key)
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool)
                                  and math.isfinite(v) and v > 0):
            raise InputError(f"{path}: {key} is {v!r}; it must be a positive finite number")
    for key in BOOLS:
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            raise InputError(f"{path}: {key} is {cfg[key]!r}, not true or false")
    for key in DICTS:
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            raise InputError(f"{path}: {key} is {cfg[key]!r}; it must be a JSON object")
        if key != "quantization_config" and isinstance(cfg.get(key), dict):
            _check_rope(cfg[key], f"{path}: {key}")
    _check_heads(cfg, path)
    used = next((cfg[k] for k in ("num_experts_per_tok", "num_experts_per_token", "top_k_experts")
                 if cfg.get(k) is not None), 0)
    n_expert = next((cfg[k] for k in ("num_local_experts", "num_experts", "n_routed_experts")
                     if cfg.get(k) is not None), 0)
    if used > n_expert:
        raise InputError(f"{path}: {used} experts used per token, but only {n_expert} experts")


ROPE_NUMBERS = ("factor", "low_freq_factor", "high_freq_factor", "beta_fast", "beta_slow",
                "attention_factor", "extrapolation_factor", "rope_theta",
                "original_max_position_embeddings")


def _check_rope(rope: dict, where: str) -> None:
    """A rope block, or (Gemma 3) one per layer kind; its numbers finite, the positive ones
    positive."""
    for kind in ("full_attention", "sliding_attention"):
        if kind in rope:
            if not isinstance(rope[kind], dict):
                raise InputError(f"{where}.{kind} is {rope[kind]!r}; it must be a JSON object")
            _check_rope(rope[kind], f"{where}.{kind}")
    kind = rope.get("rope_type", rope.get("type"))
    if kind is not None and not isinstance(kind, str):
        raise InputError(f"{where}: rope_type {kind!r} is not a name")
    for key in ROPE_NUMBERS:
        v = rope.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{where}: {key} is {v!r}; it must be a finite number")
        if key in ("factor", "rope_theta", "original_max_position_embeddings") and v <= 0:
            raise InputError(f"{where}: {key} is {v}; it must be positive")


def _check_heads(cfg: dict, path: Path) -> None:
    n_head, n_kv = cfg.get("num_attention_heads"), cfg.get("num_key_value_heads")
    if n_head is not None and n_kv is not None and n_head % n_kv:
        raise InputError(f"{path}: num_attention_heads {n_head} is not a multiple of "
                         f"num_key_value_heads {n_kv}")
    if cfg.get("head_dim") is None and n_head is not None and cfg.get("hidden_size") is not None \
            and cfg["hidden_size"] % n_head:
        raise InputError(f"{path}: hidden_size {cfg['hidden_size']} is not a multiple of "
                         f"num_attention_heads {n_head} (and there is no head_dim)")


def check_architectures(cfg: dict, path: Path) -> None:
    names = cfg.get("architectures")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str)
                                                                   for n in names)):
        raise InputError(f"{path}: architectures is {names!r}; it must be a list of class names")
    if "text_config" in cfg and cfg["text_config"] is not None \
            and not isinstance(cfg["text_config"], dict):
        raise InputError(f"{path}: text_config must be a JSON object")


def check_against_records(cfg, records) -> None:
    """Counts bounded by what the checkpoint holds: every layer and every expert needs at least
    one tensor (or, for fused experts, a slot along one dimension), and the token embedding has one row per vocabulary entry."""
    n = len(records)
    if cfg.n_layer > n:
        raise InputError(f"config.json claims {cfg.n_layer} layers but the checkpoint has only "
                         f"{n} tensors")
    # experts come one tensor each, or fused along a dimension of one tensor (gpt-oss)
    most = max([n, *(d for r in records for d in r.shape)], default=0)
    if cfg.n_expert > most:
        raise InputError(f"config.json claims {cfg.n_expert} experts but the checkpoint has "
                         f"only {n} tensors, none with a dimension that large")


def check_resolved(cfg, path: Path) -> None:
    """Values read from wherever the config keeps them (rope_theta may sit inside
    rope_parameters), once resolved."""
    for name, v in (("rope_theta", cfg.rope_theta), ("rms_norm_eps", cfg.rms_eps),
                    ("sliding-window rope_theta", cfg.rope_theta_swa)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v) or v <= 0):
            raise InputError(f"{path}: {name} is {v!r}; it must be a positive finite number")


def check_planned(cfg, planned) -> None:
    """The config against the tensors' shapes, where a mismatch would give a file llama.cpp
    refuses to load (or one that computes something else)."""
    shapes = {p.name: p.shape for p in planned}
    embd = shapes.get("token_embd.weight")
    if embd is not None and len(embd) == 2:
        if cfg.n_vocab is not None and embd[0] != cfg.n_vocab:
            raise InputError(f"config.json's vocab_size {cfg.n_vocab} differs from the token "
                             f"embedding's {embd[0]} rows")
        if embd[1] != cfg.n_embd:
            raise InputError(f"config.json's hidden_size {cfg.n_embd} differs from the token "
                             f"embedding's width {embd[1]}")
    if cfg.arch.permute_qk:          # rows are split into heads of head_dim: they must add up
        for part, heads in (("attn_q", cfg.n_head), ("attn_k", cfg.n_kv_head)):
            shape = shapes.get(f"blk.0.{part}.weight")
            if shape is not None and shape[0] != heads * cfg.head_dim:
                raise InputError(f"blk.0.{part} has {shape[0]} rows, but config.json gives "
                                 f"{heads} heads of {cfg.head_dim}")
    if cfg.n_expert and not any("_exps." in name for name in shapes):
        raise InputError(f"config.json says {cfg.n_expert} experts, but the checkpoint has no "
                         f"expert tensors")
