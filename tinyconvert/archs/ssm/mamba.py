"""The state-space families: Mamba and Falcon-Mamba (llama.cpp's `mamba`) and Mamba2 (`mamba2`).

No attention and no FFN: every block is RMSNorm, then a mixer (in_proj, a causal depthwise conv,
a selective scan, out_proj), then the residual add. llama.cpp's converter writes only the ssm.*
keys and zeros for the attention ones (head_count 0, feed_forward_length 0, context 2^20), and:
- A_log -> A = -exp(A_log); conv1d [C, 1, k] squeezed to [C, k];
- Mamba2: A and D as [n_head, 1], the gated norm as [n_group, d_inner / n_group], dt_bias
  renamed to dt_proj.bias, time_step_rank = d_inner / head_dim (the head count);
- the vocabulary padded to a multiple of 8 (Mamba) or 16 (Mamba2), or pad_vocab_size_multiple;
- Mamba: an output matrix equal to the embeddings is dropped.
Falcon-Mamba RMS-normalises dt, B and C without weights: llama.cpp with layer_norm_epsilon (its
only eps key), transformers with mixer_rms_eps, so the HF reference keeps the latter.
Configs llama.cpp would compute differently (biases it does not load, another expansion factor,
a clamped time step) are refused."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import gguf

from tinyconvert.archs.base import Arch
from tinyconvert.archs.ssm.reshape import neg_exp, reshaped, same_values
from tinyconvert.formats.errors import InputError

MAMBA_LAYER = ("attn_norm", "ssm_in", "ssm_conv1d", "ssm_x", "ssm_dt", "ssm_out")
MAMBA2_LAYER = ("attn_norm", "ssm_in", "ssm_conv1d", "ssm_norm", "ssm_out")
CONTEXT = 2 ** 20          # llama.cpp's converter: "arbitrary value"
# config names llama.cpp's converter accepts for each value, first found wins
NAMES = {"d_model": ("hidden_size", "d_model", "dim"),
         "n_layer": ("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
         "d_conv": ("conv_kernel", "d_conv"), "d_state": ("state_size", "d_state"),
         "dt_rank": ("time_step_rank", "dt_rank"),
         "eps": ("layer_norm_epsilon", "rms_norm_eps"),
         "d_inner": ("intermediate_size", "d_inner"),
         "d_inner2": ("mamba_d_ssm", "intermediate_size", "d_inner"),
         "expand": ("mamba_expand", "expand"), "head_dim": ("mamba_d_head", "head_dim")}


def _find(cfg: dict, what: str, default=None):
    return next((cfg[k] for k in NAMES[what] if cfg.get(k) is not None), default)


def _prepared(cfg: dict, path: Path, pad: int, d_inner: int) -> dict:
    d_model = _find(cfg, "d_model")
    if d_model is None or cfg.get("vocab_size") is None:
        raise InputError(f"{path}: config.json has no hidden_size (d_model) or vocab_size")
    multiple = cfg.get("pad_vocab_size_multiple", pad)
    return {**cfg, "hidden_size": d_model, "num_hidden_layers": _find(cfg, "n_layer"),
            "num_attention_heads": 0, "num_key_value_heads": 0, "intermediate_size": d_inner,
            "vocab_size": -(cfg["vocab_size"] // -multiple) * multiple,
            "rms_norm_eps": _find(cfg, "eps") or 1e-5}


def mamba_prepare(cfg: dict, path: Path) -> dict:
    d_model = _find(cfg, "d_model") or 0
    return _prepared(cfg, path, 8, _find(cfg, "d_inner") or 2 * d_model)


def mamba2_prepare(cfg: dict, path: Path) -> dict:
    d_model = _find(cfg, "d_model") or 0
    expand = _find(cfg, "expand") or 2
    return _prepared(cfg, path, 16, _find(cfg, "d_inner2") or expand * d_model)


def _common_keys(w: gguf.GGUFWriter, c, d_conv: int, d_state: int, dt_rank: int) -> None:
    w.add_context_length(CONTEXT)
    w.add_embedding_length(c.n_embd)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_block_count(c.n_layer)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(c.n_ff)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(dt_rank)
    w.add_layer_norm_rms_eps(c.rms_eps)


def _check_mixer(c, n_in_conv: str) -> None:
    r = c.raw
    if r.get("use_bias"):
        raise InputError(f"config.json has use_bias=true: llama.cpp's {c.arch.arch_name} has no "
                         f"in_proj/out_proj biases, the GGUF would compute a different model")
    if r.get("use_conv_bias") is False:
        raise InputError(f"config.json has use_conv_bias=false: llama.cpp's {c.arch.arch_name} "
                         f"needs the {n_in_conv} conv1d bias")


def mamba_keys(w: gguf.GGUFWriter, c) -> None:
    _check_mixer(c, "x")
    if c.n_ff != 2 * c.n_embd:
        raise InputError(f"config.json has intermediate_size {c.n_ff} for hidden_size "
                         f"{c.n_embd}: llama.cpp's mamba supports only an expansion factor of 2")
    dt_rank = _find(c.raw, "dt_rank")
    dt_rank = -(c.n_embd // -16) if dt_rank in (None, "auto") else dt_rank
    _common_keys(w, c, _find(c.raw, "d_conv") or 4, _find(c.raw, "d_state") or 16, dt_rank)
    w.add_ssm_dt_b_c_rms(c.raw.get("model_type") == "falcon_mamba")


def _time_step_limit(r: dict) -> tuple[float, float]:
    lo, hi = r.get("time_step_limit") or (0.0, math.inf)
    as_float = [float(v["__float__"]) if isinstance(v, dict) else float(v) for v in (lo, hi)]
    return as_float[0], as_float[1]


def mamba2_keys(w: gguf.GGUFWriter, c) -> None:
    r = c.raw
    _check_mixer(c, "xBC")
    head_dim = _find(r, "head_dim") or 64
    expand = _find(r, "expand") or 2
    if c.n_ff != expand * c.n_embd or c.n_ff % head_dim:
        raise InputError(f"config.json has d_inner {c.n_ff}, hidden_size {c.n_embd}, expand "
                         f"{expand}, head_dim {head_dim}: llama.cpp's mamba2 needs d_inner = "
                         f"expand * hidden_size, a multiple of head_dim")
    if r.get("num_heads") is not None and r["num_heads"] != c.n_ff // head_dim:
        raise InputError(f"config.json has num_heads {r['num_heads']}; llama.cpp's mamba2 "
                         f"runs d_inner / head_dim = {c.n_ff // head_dim} heads")
    lo, hi = _time_step_limit(r)
    if lo > 0 or hi != math.inf:
        raise InputError(f"config.json clamps the time step to {[lo, hi]} (time_step_limit); "
                         f"llama.cpp's mamba2 does not clamp it")
    _common_keys(w, c, _find(r, "d_conv") or 4, _find(r, "d_state") or 128, c.n_ff // head_dim)
    w.add_ssm_group_count(r.get("n_groups") or 1)


def _falcon_reference(c, hp):
    """transformers normalises dt, B and C with mixer_rms_eps (the GGUF: layer_norm_epsilon)."""
    eps = c.raw.get("mixer_rms_eps")
    return hp if eps is None else replace(hp, ssm={**hp.ssm, "bcdt_eps": float(eps)})


def _embeddings(records):
    return next((r for r in records if r.name.endswith(("embeddings.weight", "embedding.weight"))),
                None)


def mamba_records(c, records):
    """A_log negated and exponentiated, conv1d squeezed; lm_head dropped when it equals the
    embeddings (llama.cpp's converter keeps only token_embd then)."""
    embd, out = _embeddings(records), []
    for rec in records:
        if rec.name.endswith(".A_log"):
            rec = neg_exp(rec)
        elif rec.name.endswith(".conv1d.weight"):
            rec = reshaped(rec, (rec.shape[0], rec.shape[-1]))
        elif rec.name.endswith("lm_head.weight") and embd is not None and same_values(embd, rec):
            continue
        out.append(rec)
    return out


def mamba2_records(c, records):
    """As Mamba, with A and D as [n_head, 1] and the gated norm as [n_group, d_inner/n_group]."""
    n_group, out = c.raw.get("n_groups") or 1, []
    for rec in records:
        if rec.name.endswith(".A_log"):
            rec = neg_exp(reshaped(rec, (*rec.shape, 1)))
        elif rec.name.endswith(".D"):
            rec = reshaped(rec, (*rec.shape, 1))
        elif rec.name.endswith(".mixer.norm.weight"):
            rec = reshaped(rec, (n_group, c.n_ff // n_group))
        elif rec.name.endswith(".conv1d.weight"):
            rec = reshaped(rec, (rec.shape[0], rec.shape[-1]))
        out.append(rec)
    return out


_MAMBA = dict(prepare=mamba_prepare, common_keys=False, keys=mamba_keys, records=mamba_records,
              layer_tensors=MAMBA_LAYER)
FAMILIES = [
    Arch(("MambaForCausalLM",), gguf.MODEL_ARCH.MAMBA, **_MAMBA),
    Arch(("FalconMambaForCausalLM",), gguf.MODEL_ARCH.MAMBA, reference=_falcon_reference,
         **_MAMBA),
    Arch(("Mamba2ForCausalLM",), gguf.MODEL_ARCH.MAMBA2, prepare=mamba2_prepare,
         common_keys=False, keys=mamba2_keys, records=mamba2_records, layer_tensors=MAMBA2_LAYER,
         renames=((r"^model\.(backbone|lm_head)", r"\1"), (r"\.dt_bias$", ".dt_proj.bias"))),
]
