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
}
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
    for key in DICTS:
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            raise InputError(f"{path}: {key} is {cfg[key]!r}; it must be a JSON object")
    _check_heads(cfg, path)


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


def check_vocab_rows(cfg, planned) -> None:
    """llama.cpp sizes token_embd by the token list, which hf2gguf builds from vocab_size."""
    embd = next((p for p in planned if p.name == "token_embd.weight"), None)
    if embd is not None and cfg.n_vocab is not None and len(embd.shape) == 2 \
            and embd.shape[0] != cfg.n_vocab:
        raise InputError(f"config.json's vocab_size {cfg.n_vocab} differs from the token "
                         f"embedding's {embd.shape[0]} rows")
